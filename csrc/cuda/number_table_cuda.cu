// parse_numbers for text in CUDA memory (see ops/number_table.h).  Reading a table is a one-off step
// of loading it, and its tokens have data-dependent lengths and counts; so the bytes are copied to
// the host, read by the CPU kernel, and the values and status come back on the text's device.
#include <ATen/core/Tensor.h>

#include "cpu/cpu_kernels.h"
#include "cuda/cuda_kernels.h"
#include "ops/number_table.h"

namespace gkdfast {
namespace cuda {

std::tuple<at::Tensor, at::Tensor> parse_numbers_cuda(const at::Tensor& text, at::ScalarType dtype) {
  check_parse_numbers(text, dtype);
  auto out = parse_numbers_cpu(text.cpu(), dtype);
  return {std::get<0>(out).to(text.device()), std::get<1>(out).to(text.device())};
}

}  // namespace cuda
}  // namespace gkdfast
