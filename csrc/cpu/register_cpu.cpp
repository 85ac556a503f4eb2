// The CPU kernels of every gkdfast op, registered in one place: an op's schema is in
// csrc/gkdfast.cpp, its kernel in csrc/cpu/<family>_cpu.cpp (docs/adding-an-op.md).
#include <torch/library.h>

#include "cpu/cpu_kernels.h"

namespace gkdfast {

TORCH_LIBRARY_IMPL(gkdfast, CPU, m) {
  m.impl("cdf_guide", &cdf_guide_cpu);
  m.impl("cdf_search", &cdf_search_cpu);
  m.impl("deepwalk", &deepwalk_cpu);
  m.impl("dropout", &dropout_cpu);
  m.impl("edge_softmax", &edge_softmax_cpu);
  m.impl("edge_softmax_backward", &edge_softmax_backward_cpu);
  m.impl("gsp_tiled", &gsp_tiled_cpu);
  m.impl("gsp_tiled_backward", &gsp_tiled_backward_cpu);
  m.impl("infonce", &infonce_cpu);
  m.impl("infonce_backward", &infonce_backward_cpu);
  m.impl("sample_negatives", &sample_negatives_cpu);
  m.impl("topk_similar", &topk_similar_cpu);
  m.impl("gram_lse", &gram_lse_cpu);
  m.impl("gram_lse_backward", &gram_lse_backward_cpu);
  m.impl("lsp", &lsp_cpu);
  m.impl("lsp_backward", &lsp_backward_cpu);
  m.impl("sample_neighbors", &sample_neighbors_cpu);
  m.impl("sddmm", &sddmm_cpu);
  m.impl("parse_numbers", &parse_numbers_cpu);
  m.impl("ppr_topk", &ppr_topk_cpu);
  m.impl("segment_pool", &segment_pool_cpu);
  m.impl("segment_pool_backward", &segment_pool_backward_cpu);
  m.impl("spmm", &spmm_cpu);
  m.impl("spmm_gcn", &spmm_gcn_cpu);
  m.impl("symmetric_csr", &symmetric_csr_cpu);
  m.impl("spmm_arg_backward", &spmm_arg_backward_cpu);
  m.impl("csr_mm", &csr_mm_cpu);
}

}  // namespace gkdfast
