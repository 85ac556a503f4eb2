#include "ops/dropout.h"

#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/zeros.h>

#include <cmath>

namespace gkdfast {

DropoutCall prepare_dropout(const at::Tensor& x, double p, int64_t seed) {
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "gkdfast.dropout: x must be floating, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(p >= 0.0 && p <= 1.0, "gkdfast.dropout: p must be in [0, 1], got ", p);
  DropoutCall c;
  c.in = x.contiguous();
  c.out = at::empty_like(c.in, at::MemoryFormat::Contiguous);
  c.seed = static_cast<uint64_t>(seed);
  c.scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  // floor(p * 2^32) is exact in double; p < 1 keeps it below 2^32 (the largest double below 1 gives 2^32 - 1).
  c.threshold = p < 1.0 ? static_cast<uint32_t>(std::floor(p * 4294967296.0)) : 0u;
  c.mode = p == 0.0 ? DropoutCall::Mode::Copy : (p == 1.0 ? DropoutCall::Mode::Zero : DropoutCall::Mode::Mask);
  return c;
}

bool dropout_without_mask(DropoutCall& c) {
  if (c.numel() == 0) return true;
  if (c.mode == DropoutCall::Mode::Copy) {
    c.out.copy_(c.in);
    return true;
  }
  if (c.mode == DropoutCall::Mode::Zero) {
    at::mul_out(c.out, c.in, at::zeros({}, c.in.options()));
    return true;
  }
  return false;
}

}  // namespace gkdfast
