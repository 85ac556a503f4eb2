// deepwalk for CUDA tensors (see ops/deepwalk.h).  Skip-gram SGD over random walks is a stream of
// dependent, lock-free row updates scattered over two N x dim matrices: the host kernel (Hogwild
// over the CPU threads, huge pages, prefetched rows) runs it, and the embedding comes back on the
// device.  The graph and starts are copied to the host once per call: O(N + E + W) bytes, next to
// O(W * walk_length * window * negative * dim) work.
#include <ATen/core/Tensor.h>

#include "cpu/cpu_kernels.h"
#include "cuda/cuda_kernels.h"
#include "ops/graph_checks.h"

namespace gkdfast {
namespace cuda {

at::Tensor deepwalk_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& starts, int64_t dim,
                         int64_t walk_length, int64_t window, int64_t negative, double lr, int64_t seed,
                         bool deterministic) {
  // One device before the copies hide a mismatch; the CPU kernel validates the rest on the host copies.
  check_same_device(col, rowptr, "deepwalk", "col");
  check_same_device(starts, rowptr, "deepwalk", "starts");
  return deepwalk_cpu(rowptr.cpu(), col.cpu(), starts.cpu(), dim, walk_length, window, negative, lr, seed,
                      deterministic)
      .to(rowptr.device());
}

}  // namespace cuda
}  // namespace gkdfast
