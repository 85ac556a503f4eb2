// The six similarity kernels k(u, v) of the structure losses (DESIGN.md, "Public ops"), written
// once for the CPU and CUDA kernels as functions of a few pair statistics:
//
//   g = u.v,  na = ||u||^2,  nb = ||v||^2,  d2 = ||u - v||^2,  l1 = ||u - v||_1
//
//   linear  g                      cosine  g / (max(sqrt na, eps) max(sqrt nb, eps)), eps = 1e-8
//   poly    (g + 1)^2              l2      -d2
//   rbf     exp(-gamma d2)         laplace exp(-gamma l1)
//
// Callers compute only the statistics a kernel needs (kernel_needs_*), then get the value and the
// coefficients of its gradient in the form
//
//   dk/du = other * v + self_u * u + sgn * sign(u - v)
//   dk/dv = other * u + self_v * v - sgn * sign(u - v)
//
// so a backward pass is a weighted sum of rows (a GEMM for the dot-product kernels) plus, for
// laplace only, a sign term.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "common/macros.h"

#include <c10/util/Exception.h>

namespace gkdfast {

enum class SimKernel : int { Linear = 0, Cosine = 1, Poly = 2, L2 = 3, Rbf = 4, Laplace = 5 };

constexpr double kCosineEps = 1e-8;

// Parses a kernel name (host code); throws a ValueError naming the valid choices.
inline SimKernel parse_sim_kernel(const std::string& name, const char* op) {
  if (name == "linear") return SimKernel::Linear;
  if (name == "cosine") return SimKernel::Cosine;
  if (name == "poly") return SimKernel::Poly;
  if (name == "l2") return SimKernel::L2;
  if (name == "rbf") return SimKernel::Rbf;
  if (name == "laplace") return SimKernel::Laplace;
  TORCH_CHECK_VALUE(false, "gkdfast.", op, ": unknown kernel '", name,
                    "'; expected one of linear, cosine, poly, l2, rbf, laplace");
}

GKD_HD bool kernel_needs_dot(SimKernel k) {
  return k == SimKernel::Linear || k == SimKernel::Cosine || k == SimKernel::Poly;
}
GKD_HD bool kernel_needs_norms(SimKernel k) { return k == SimKernel::Cosine; }
GKD_HD bool kernel_needs_d2(SimKernel k) { return k == SimKernel::L2 || k == SimKernel::Rbf; }
GKD_HD bool kernel_needs_l1(SimKernel k) { return k == SimKernel::Laplace; }
// True when the kernel (and its gradient) is a function of dot products and norms only, so tiles
// can come from a GEMM; laplace needs the L1 distance, which no GEMM gives.
GKD_HD bool kernel_is_gemm_friendly(SimKernel k) { return k != SimKernel::Laplace; }

template <typename T>
struct PairStats {
  T g = T(0), na = T(0), nb = T(0), d2 = T(0), l1 = T(0);
};

template <typename T>
struct KernelGrad {
  T other = T(0), self_u = T(0), self_v = T(0), sgn = T(0);
};

template <typename T>
GKD_HD T kernel_value(SimKernel kind, const PairStats<T>& s, T gamma) {
  switch (kind) {
    case SimKernel::Linear: return s.g;
    case SimKernel::Cosine: {
      const T eps = T(kCosineEps);
      const T ra = std::sqrt(s.na), rb = std::sqrt(s.nb);
      return s.g / ((ra > eps ? ra : eps) * (rb > eps ? rb : eps));
    }
    case SimKernel::Poly: return (s.g + T(1)) * (s.g + T(1));
    case SimKernel::L2: return -s.d2;
    case SimKernel::Rbf: return std::exp(-gamma * s.d2);
    case SimKernel::Laplace: return std::exp(-gamma * s.l1);
  }
  return T(0);
}

// Gradient coefficients of k at this pair (value k passed in to avoid recomputing exp).
template <typename T>
GKD_HD KernelGrad<T> kernel_grad(SimKernel kind, const PairStats<T>& s, T k, T gamma) {
  KernelGrad<T> r;
  switch (kind) {
    case SimKernel::Linear: r.other = T(1); break;
    case SimKernel::Cosine: {
      const T eps = T(kCosineEps);
      const T ra = std::sqrt(s.na), rb = std::sqrt(s.nb);
      r.other = T(1) / ((ra > eps ? ra : eps) * (rb > eps ? rb : eps));
      // d max(||u||, eps)/du = u/||u|| above eps, 0 below (the clamp is flat there).
      r.self_u = ra > eps ? -k / s.na : T(0);
      r.self_v = rb > eps ? -k / s.nb : T(0);
      break;
    }
    case SimKernel::Poly: r.other = T(2) * (s.g + T(1)); break;
    case SimKernel::L2: {  // k = -d2, dd2/du = 2(u - v)
      r.other = T(2); r.self_u = T(-2); r.self_v = T(-2);
      break;
    }
    case SimKernel::Rbf: {  // dk/dd2 = -gamma k
      const T c = T(2) * gamma * k;
      r.other = c; r.self_u = -c; r.self_v = -c;
      break;
    }
    case SimKernel::Laplace: r.sgn = -gamma * k; break;
  }
  return r;
}

template <typename T>
GKD_HD T sign_of(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }

#ifdef __CUDACC__
// Pair statistics of rows u, v (length d) computed by one warp: lanes stride the features, then a
// butterfly (fixed order: deterministic) gives every lane the same totals.  Only the statistics
// the kernel needs are accumulated.
template <typename acc_t, typename T>
__device__ __forceinline__ PairStats<acc_t> warp_pair_stats(SimKernel kind, const T* u, const T* v, int64_t d) {
  acc_t g = 0, na = 0, nb = 0, d2 = 0, l1 = 0;
  const bool dot = kernel_needs_dot(kind), nrm = kernel_needs_norms(kind), sq = kernel_needs_d2(kind),
             ab = kernel_needs_l1(kind);
  for (int64_t f = threadIdx.x % 32; f < d; f += 32) {
    const acc_t a = static_cast<acc_t>(u[f]), b = static_cast<acc_t>(v[f]);
    if (dot) g += a * b;
    if (nrm) { na += a * a; nb += b * b; }
    if (sq) d2 += (a - b) * (a - b);
    if (ab) l1 += fabs(a - b);
  }
  for (int off = 16; off > 0; off >>= 1) {
    g += __shfl_xor_sync(0xffffffffu, g, off);
    na += __shfl_xor_sync(0xffffffffu, na, off);
    nb += __shfl_xor_sync(0xffffffffu, nb, off);
    d2 += __shfl_xor_sync(0xffffffffu, d2, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  PairStats<acc_t> s;
  s.g = g; s.na = na; s.nb = nb; s.d2 = d2; s.l1 = l1;
  return s;
}

// grad_u[f] += w_other * v[f] + w_self * u[f] + w_sgn * sign(u[f] - v[f]) over the warp's lanes.
template <typename acc_t, typename T>
__device__ __forceinline__ void warp_pair_grad(acc_t* grad_u, const T* u, const T* v, int64_t d, acc_t w_other,
                                               acc_t w_self, acc_t w_sgn) {
  for (int64_t f = threadIdx.x % 32; f < d; f += 32) {
    const acc_t a = static_cast<acc_t>(u[f]), b = static_cast<acc_t>(v[f]);
    grad_u[f] += w_other * b + w_self * a + w_sgn * sign_of(a - b);
  }
}
#endif

#ifndef __CUDACC__
// CPU row primitives the dot-product helpers in cpu_vec.h do not cover.  `static` so that every
// translation unit gets its own target_clones copy (AVX2 / baseline).
namespace simk_cpu {
// target_clones does not apply to templates, so the float and double versions come from a macro.
#define GKD_SIMK_CPU_DEFS(T)                                                                       \
  GKD_CPU_CLONES static double sq_dist(const T* a, const T* b, int64_t d) {                       \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* independent lanes so the loop vectorises */           \
    int64_t f = 0;                                                                                  \
    for (; f + 8 <= d; f += 8)                                                                      \
      for (int k = 0; k < 8; ++k) { const T t = a[f + k] - b[f + k]; acc[k] += t * t; }            \
    double r = 0;                                                                                   \
    for (int k = 0; k < 8; ++k) r += acc[k];                                                        \
    for (; f < d; ++f) { const double t = double(a[f]) - double(b[f]); r += t * t; }               \
    return r;                                                                                       \
  }                                                                                                 \
  GKD_CPU_CLONES static double l1_dist(const T* a, const T* b, int64_t d) {                       \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                            \
    int64_t f = 0;                                                                                  \
    for (; f + 8 <= d; f += 8)                                                                      \
      for (int k = 0; k < 8; ++k) acc[k] += std::fabs(a[f + k] - b[f + k]);                        \
    double r = 0;                                                                                   \
    for (int k = 0; k < 8; ++k) r += acc[k];                                                        \
    for (; f < d; ++f) r += std::fabs(double(a[f]) - double(b[f]));                                \
    return r;                                                                                       \
  }                                                                                                 \
  /* acc[f] += w * sign(a[f] - b[f]): the laplace kernel's gradient direction */                   \
  GKD_CPU_CLONES static void sign_axpy(T* acc, const T* a, const T* b, T w, int64_t d) {          \
    for (int64_t f = 0; f < d; ++f) {                                                               \
      const T t = a[f] - b[f];                                                                      \
      acc[f] += t > T(0) ? w : (t < T(0) ? -w : T(0));                                              \
    }                                                                                               \
  }
GKD_SIMK_CPU_DEFS(float)
GKD_SIMK_CPU_DEFS(double)
#undef GKD_SIMK_CPU_DEFS
}  // namespace simk_cpu
#endif

}  // namespace gkdfast
