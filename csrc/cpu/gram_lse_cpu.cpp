// CPU registration of gram_lse (the tiled implementation in ops/gram_lse.cpp: BLAS GEMMs on tiles).
#include <torch/library.h>
#include <torch/types.h>

#include "ops/gram_lse.h"

namespace gkdfast {
namespace {

void check_cpu(const at::Tensor& z, const char* op) {
  TORCH_CHECK(z.device().is_cpu(), "gkdfast.", op, ": CPU kernel called with tensors on ", z.device());
  TORCH_CHECK(z.scalar_type() == at::kFloat || z.scalar_type() == at::kDouble, "gkdfast.", op,
              ": the CPU kernel supports float32 and float64, got ", z.scalar_type());
}

at::Tensor gram_lse_cpu(const at::Tensor& z, double inv_tau, bool exclude_self) {
  check_gram_lse(z, "gram_lse");
  check_cpu(z, "gram_lse");
  return gram_lse_tiled(z, inv_tau, exclude_self);
}

at::Tensor gram_lse_backward_cpu(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, double inv_tau,
                                 bool exclude_self) {
  check_gram_lse_backward(z, lse, grad, "gram_lse_backward");
  check_cpu(z, "gram_lse_backward");
  return gram_lse_tiled_backward(z, lse, grad, inv_tau, exclude_self);
}

}  // namespace

TORCH_LIBRARY_IMPL(gkdfast, CPU, m) {
  m.impl("gram_lse", &gram_lse_cpu);
  m.impl("gram_lse_backward", &gram_lse_backward_cpu);
}

}  // namespace gkdfast
