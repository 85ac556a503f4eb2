// Dropout with a counter-based mask: argument checks shared by the CPU and CUDA kernels.
//
//   dropout(x, p, seed) -> out, same shape and dtype as x:
//     out[e] = x[e] * (1 / (1 - p)) where word(seed, e) >= floor(p * 2^32), else x[e] * 0
//   with e the row-major (flattened) position and word() the Philox-4x32-10 stream of
//   common/philox.h (dropout_words); the product is formed in float (double for double).  p == 1
//   gives x * 0, p == 0 a copy.
//
// The mask is a pure function of (seed, e, p): CPU and CUDA draw the same one, and the gradient is
// the same op on grad_out (dropout is its own adjoint), so no mask is stored between forward and
// backward: torch's dropout keeps one of x's size (its dtype on CPU) for backward.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace gkdfast {

// A checked call laid out for the kernels: contiguous input, output of the same shape, the keep
// threshold (an element is kept when its 32-bit word >= threshold; p < 1 so threshold < 2^32), the
// scale 1 / (1 - p) and the seed as the 64-bit Philox key.  mode: what the kernels do.
struct DropoutCall {
  enum class Mode { Mask, Copy, Zero };
  Mode mode;
  at::Tensor in, out;
  uint32_t threshold;
  double scale;
  uint64_t seed;
  int64_t numel() const { return in.numel(); }
};

// x floating (any shape, any strides), 0 <= p <= 1 (NaN refused).
DropoutCall prepare_dropout(const at::Tensor& x, double p, int64_t seed);

// Fills c.out for the calls that draw no random numbers (empty input, p == 0: a copy, p == 1:
// x * 0, so NaN and inf stay NaN as in torch) on c's device; false when the kernel has to run.
bool dropout_without_mask(DropoutCall& c);

}  // namespace gkdfast
