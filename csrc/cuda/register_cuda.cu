// The CUDA kernels of every gkdfast op, registered in one place: an op's schema is in
// csrc/gkdfast.cpp, its kernel in csrc/cuda/<family>_cuda.cu (docs/adding-an-op.md).
#include <torch/library.h>

#include "cuda/cuda_kernels.h"

namespace gkdfast {

TORCH_LIBRARY_IMPL(gkdfast, CUDA, m) {
  m.impl("cdf_guide", &cuda::cdf_guide_cuda);
  m.impl("cdf_search", &cuda::cdf_search_cuda);
  m.impl("deepwalk", &cuda::deepwalk_cuda);
  m.impl("dropout", &cuda::dropout_cuda);
  m.impl("edge_softmax", &cuda::edge_softmax_cuda);
  m.impl("edge_softmax_backward", &cuda::edge_softmax_backward_cuda);
  m.impl("gsp_tiled", &cuda::gsp_tiled_cuda);
  m.impl("gsp_tiled_backward", &cuda::gsp_tiled_backward_cuda);
  m.impl("infonce", &cuda::infonce_cuda);
  m.impl("infonce_backward", &cuda::infonce_backward_cuda);
  m.impl("sample_negatives", &cuda::sample_negatives_cuda);
  m.impl("topk_similar", &cuda::topk_similar_cuda);
  m.impl("gram_lse", &cuda::gram_lse_cuda);
  m.impl("gram_lse_backward", &cuda::gram_lse_backward_cuda);
  m.impl("lsp", &cuda::lsp_cuda);
  m.impl("lsp_backward", &cuda::lsp_backward_cuda);
  m.impl("ppr_topk", &cuda::ppr_topk_cuda);
  m.impl("symmetric_csr", &cuda::symmetric_csr_cuda);
  m.impl("parse_numbers", &cuda::parse_numbers_cuda);
  m.impl("sample_neighbors", &cuda::sample_neighbors_cuda);
  m.impl("sddmm", &cuda::sddmm_cuda);
  m.impl("segment_pool", &cuda::segment_pool_cuda);
  m.impl("segment_pool_backward", &cuda::segment_pool_backward_cuda);
  m.impl("spmm", &cuda::spmm_cuda);
  m.impl("spmm_gcn", &cuda::spmm_gcn_cuda);
  m.impl("spmm_arg_backward", &cuda::spmm_arg_backward_cuda);
  m.impl("csr_mm", &cuda::csr_mm_cuda);
}

}  // namespace gkdfast
