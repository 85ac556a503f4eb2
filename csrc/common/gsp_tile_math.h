// Per-element math of the GSP GEMM-tile path, written once for the host epilogue
// (csrc/ops/gsp_tiles.cpp) and the CUDA epilogue kernels (csrc/cuda/gsp_tiles_cuda.cu), so the CPU
// tests of the portable driver check the very formulas the GPU runs.
//
// A tile holds dot products g = x_a . x_b of rows a (tile rows) and b (tile columns) of one model;
// cosine rows are normalised beforehand, so its g is already the kernel value.  l2/rbf turn g into
// the squared distance ||a||^2 + ||b||^2 - 2g, clamped at 0 and exactly 0 on the diagonal (a == b).
//
// Backward coefficient of pair (a, b), both orders counted (k is symmetric; w = upstream weight of
// a row's loss, from gsp_full_state):
//   mse: C = 2 (K^S - K^T)(w_a + w_b)
//   kl : C = (w_a (p^S_ab - p^T_ab) + w_b (p^S_ba - p^T_ba)) / tau,   p_ab = exp(x_ab - lse_a)
// and dk/dx_a = other * x_b + self * x_a (cosine: on the normalised rows, self carrying k; the
// driver maps it back through the normalisation).
#pragma once

#include <cmath>

#include "common/macros.h"
#include "common/rounding.h"
#include "common/similarity_kernels.h"

namespace gkdfast {
namespace gsp_tile {

// Kernel value from the dot g and the squared norms na, nb (l2/rbf only); `same` for a == b.
template <typename T>
GKD_HD T kernel_from_dot(SimKernel kind, T g, T na, T nb, bool same, T gamma) {
  switch (kind) {
    case SimKernel::Poly: return (g + T(1)) * (g + T(1));
    case SimKernel::L2:
    case SimKernel::Rbf: {
      T d2 = same ? T(0) : na + nb - T(2) * g;
      d2 = d2 < T(0) ? T(0) : d2;  // NaN stays NaN
      return kind == SimKernel::L2 ? -d2 : std::exp(-gamma * d2);
    }
    default: return g;  // linear; cosine (normalised rows)
  }
}

// dk/dx_a = other * x_b + self * x_a for the value k at dot g.
template <typename T>
GKD_HD void kernel_grad_from_dot(SimKernel kind, T g, T k, T gamma, T& other, T& self) {
  switch (kind) {
    case SimKernel::Cosine: other = T(1); self = k; break;  // finished by the driver (normalisation)
    case SimKernel::Poly: other = T(2) * (g + T(1)); self = T(0); break;
    case SimKernel::L2: other = T(2); self = T(-2); break;
    case SimKernel::Rbf: other = T(2) * gamma * k; self = -other; break;
    default: other = T(1); self = T(0); break;  // linear
  }
}

// Per-row statistics of one side of a pair, read by the kl coefficient.
template <typename T>
struct RowStats {
  T lse_s, lse_t, kl, w;
};

// Student / teacher coefficients of one pair (see the header comment); ct only when need_t.
template <typename T>
GKD_HD void pair_coef(bool kl_loss, T ks, T kt, T inv_tau, const RowStats<T>& a, const RowStats<T>& b, bool need_t,
                      T& cs, T& ct) {
  if (!kl_loss) {
    cs = T(2) * (ks - kt) * (a.w + b.w);
    ct = -cs;
    return;
  }
  const T xs = mul_rn(ks, inv_tau), xt = mul_rn(kt, inv_tau);  // as the forward rounded them
  const T ls_a = xs - a.lse_s, lt_a = xt - a.lse_t, ls_b = xs - b.lse_s, lt_b = xt - b.lse_t;
  const T pt_a = std::exp(lt_a), pt_b = std::exp(lt_b);
  cs = (a.w * (std::exp(ls_a) - pt_a) + b.w * (std::exp(ls_b) - pt_b)) * inv_tau;
  ct = need_t ? (a.w * pt_a * (lt_a - ls_a - a.kl) + b.w * pt_b * (lt_b - ls_b - b.kl)) * inv_tau : T(0);
}

}  // namespace gsp_tile
}  // namespace gkdfast
