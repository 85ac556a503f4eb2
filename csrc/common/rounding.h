// Products that round exactly as written, on the host and on the GPU.
//
// A backward pass recomputes logits x = k / tau and subtracts the log-sum-exp its forward reduced
// them into; the largest entry must then give exp(x - lse) = exp(0 - tail) exactly as the forward
// saw it.  A compiler that fuses `x = k * inv_tau; y = x - lse` into fma(k, inv_tau, -lse) skips the
// rounding of x, and the backward then works with a logit one rounding away from the forward's: at
// x ~ 600 (float, tau = 0.05) that is 3e-5 in every probability, times 1 / tau in the gradient (GSP's
// float32 gradient was off by 2% before).  Host code is built with -ffp-contract=off (setup.py);
// nvcc fuses by default (--fmad=true) and keeps doing so for the rest of the device code, so logits
// that are recomputed are formed through mul_rn.
#pragma once

#include <type_traits>

#include "common/macros.h"

namespace gkdfast {

template <typename T>
GKD_HD T mul_rn(T x, T y) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value) return __fmul_rn(x, y);
  else if constexpr (std::is_same<T, double>::value) return __dmul_rn(x, y);
  else return x * y;
#else
  return x * y;
#endif
}

}  // namespace gkdfast
