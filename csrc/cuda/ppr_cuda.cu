// ppr_topk for CUDA tensors (see ops/ppr.h).  Forward push is a data-dependent FIFO walk per source
// with O(N) dense scratch per source in flight; on a GPU that is thousands of queues and N-sized
// scratch arrays at once, so the push runs on the host (the CPU kernel, sources in parallel over the
// CPU threads) and the result comes back on the device.  The graph and sources are copied to the
// host once per call: O(N + E + S) bytes, next to O(S / (alpha * eps)) work.
#include <ATen/core/Tensor.h>

#include "cpu/cpu_kernels.h"
#include "cuda/cuda_kernels.h"
#include "ops/graph_checks.h"

namespace gkdfast {
namespace cuda {

std::tuple<at::Tensor, at::Tensor> ppr_topk_cuda(const at::Tensor& rowptr, const at::Tensor& col,
                                                 const at::Tensor& sources, int64_t k, double alpha, double eps) {
  // One device before the copies hide a mismatch; the CPU kernel validates everything else on the
  // host copies (validating the CSR here as well would walk it twice).
  check_same_device(col, rowptr, "ppr_topk", "col");
  check_same_device(sources, rowptr, "ppr_topk", "sources");
  auto out = ppr_topk_cpu(rowptr.cpu(), col.cpu(), sources.cpu(), k, alpha, eps);
  return {std::get<0>(out).to(rowptr.device()), std::get<1>(out).to(rowptr.device())};
}

}  // namespace cuda
}  // namespace gkdfast
