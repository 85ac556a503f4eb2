// symmetric_csr for CUDA tensors (see ops/symmetric_csr.h).  Building a graph is a one-off step of
// loading it, bound by memory traffic, and the CPU kernel does it in O(E) with one int array of 2E
// entries; so the edge list is copied to the host, built there, and the CSR comes back on the device.
#include <ATen/core/Tensor.h>

#include "cpu/cpu_kernels.h"
#include "cuda/cuda_kernels.h"
#include "ops/symmetric_csr.h"

namespace gkdfast {
namespace cuda {

std::tuple<at::Tensor, at::Tensor> symmetric_csr_cuda(const at::Tensor& src, const at::Tensor& dst,
                                                      int64_t num_nodes) {
  check_symmetric_csr(src, dst, num_nodes);  // one device before the copies hide a mismatch
  auto out = symmetric_csr_cpu(src.cpu(), dst.cpu(), num_nodes);
  return {std::get<0>(out).to(src.device()), std::get<1>(out).to(src.device())};
}

}  // namespace cuda
}  // namespace gkdfast
