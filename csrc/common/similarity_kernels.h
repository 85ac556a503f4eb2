// The six similarity kernels k(u, v) of the structure losses (docs/ops.md, "Exact definitions"), written
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
#include <limits>
#include <string>
#include <type_traits>

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

// ------------------------------------------------------------------ SIMD row helpers
// Tile loops of the pairwise losses are written once over a "lane type" V: either a GCC vector of
// T (8 floats / 4 doubles, 32 bytes) for the main loop or T itself for the tail.  Vector types
// lower to AVX2 inside a GKD_CPU_CLONES function and to SSE2 pairs in the baseline clone, with
// identical IEEE results (no fma contraction: setup.py builds with -ffp-contract=off), so results do not
// depend on the CPU.
#if defined(__GNUC__)
#define GKD_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GKD_ALWAYS_INLINE inline
#endif

// Clones for the tile loops: AVX-512, AVX2 (+FMA, BMI2: x86-64-v3) and the baseline, chosen at
// load time.  No fma contraction happens (-ffp-contract=off; g++ contracts by default even with
// -std=c++17), so all clones give identical results.
#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GKD_TILE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GKD_TILE_CLONES
#endif
// Vector arguments of these always-inline helpers never cross an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x16 __attribute__((vector_size(64)));
typedef double f64x4 __attribute__((vector_size(32)));
typedef double f64x8 __attribute__((vector_size(64)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint64_t u64x4 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint64_t u64x8 __attribute__((vector_size(64)));

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  using V = f32x16;  // lanes: one AVX-512 register, two AVX2 registers (two independent chains)
  using U = u32x16;  // same-size unsigned lanes (bit tricks)
  static constexpr int W = 16;
};
template <>
struct Simd<double> {
  using V = f64x8;
  using U = u64x8;
  static constexpr int W = 8;
};

template <typename To, typename From>
GKD_ALWAYS_INLINE To bit_as(const From& x) {
  static_assert(sizeof(To) == sizeof(From), "bit_as: size mismatch");
  To y;
  __builtin_memcpy(&y, &x, sizeof(To));
  return y;
}
template <typename V, typename T>
GKD_ALWAYS_INLINE V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
GKD_ALWAYS_INLINE void store(T* p, const V& v) { __builtin_memcpy(p, &v, sizeof(V)); }
// scalar -> lanes (for V == T the identity)
template <typename V, typename T>
GKD_ALWAYS_INLINE V splat(T s) { return V{} + s; }

// exp(x) over lanes without a libm call: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2),
// exp(r) by its Taylor polynomial (float: degree 7, truncation < 1e-8 relative; double: degree 13,
// < 1e-17), 2^n written straight into the exponent bits.  Within ~2 ulp of exp(x); below the
// smallest normal -> 0, above ~88.3 (float) / 709 (double) -> inf, NaN stays NaN.
template <typename T>
struct VexpTraits;
template <>
struct VexpTraits<float> {
  using U = uint32_t;
  static constexpr float lo = -87.3f, hi = 88.3f;        // 2^n stays a normal float
  static constexpr float shift = 12582912.0f;            // 1.5 * 2^23: rounds x log2e to an integer
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr int mant = 23;
  static constexpr U bias = 127;
};
template <>
struct VexpTraits<double> {
  using U = uint64_t;
  static constexpr double lo = -708.0, hi = 709.0;
  static constexpr double shift = 6755399441055744.0;    // 1.5 * 2^52
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  static constexpr int mant = 52;
  static constexpr U bias = 1023;
};

// NoOverflow: the caller guarantees x <= hi (e.g. x - max, x - logsumexp), which skips two selects.
template <typename T, typename V, bool NoOverflow = false>
GKD_ALWAYS_INLINE V vexp(V x) {
  using C = VexpTraits<T>;
  using U = typename std::conditional<std::is_same<V, T>::value, typename C::U, typename Simd<T>::U>::type;
  const V lo = splat<V>(C::lo), hi = splat<V>(C::hi);
  V xc = x < lo ? lo : x;  // written so that NaN passes through
  if constexpr (!NoOverflow) xc = xc > hi ? hi : xc;
  const V t = xc * C::log2e + C::shift;  // n sits in the low mantissa bits of t
  const V n = t - C::shift;
  const V r = (xc - n * C::ln2_hi) - n * C::ln2_lo;
  V p;
  if constexpr (sizeof(T) == 4) {
    p = splat<V>(T(1.0 / 5040));
    p = p * r + T(1.0 / 720); p = p * r + T(1.0 / 120); p = p * r + T(1.0 / 24);
    p = p * r + T(1.0 / 6);   p = p * r + T(0.5);       p = p * r + T(1);  p = p * r + T(1);
  } else {
    p = splat<V>(T(1.0 / 6227020800.0));
    p = p * r + T(1.0 / 479001600.0); p = p * r + T(1.0 / 39916800.0); p = p * r + T(1.0 / 3628800.0);
    p = p * r + T(1.0 / 362880.0);    p = p * r + T(1.0 / 40320.0);    p = p * r + T(1.0 / 5040.0);
    p = p * r + T(1.0 / 720.0);       p = p * r + T(1.0 / 120.0);      p = p * r + T(1.0 / 24.0);
    p = p * r + T(1.0 / 6.0);         p = p * r + T(0.5);              p = p * r + T(1);
    p = p * r + T(1);
  }
  // (n + bias) << mant, n taken mod 2^(bits - mant): the low mantissa bits of t hold n
  const U bits = (bit_as<U>(t) << C::mant) + (C::bias << C::mant);
  V y = p * bit_as<V>(bits);
  y = x < lo ? splat<V>(T(0)) : y;
  if constexpr (!NoOverflow) y = x > hi ? splat<V>(std::numeric_limits<T>::infinity()) : y;
  return y;
}

// Row reductions in a fixed order (vector lanes, then lanes combined in index order, then the
// tail): the order depends only on n, never on the thread count or the CPU.
// max_j x[j] (NaN entries are skipped; -inf for n == 0).
template <typename T>
GKD_ALWAYS_INLINE T row_max(const T* x, int64_t n) {
  using V = typename Simd<T>::V;
  constexpr int W = Simd<T>::W;
  const T ninf = -std::numeric_limits<T>::infinity();
  V m = splat<V>(ninf);
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    const V v = load<V>(x + j);
    m = v > m ? v : m;
  }
  T r = ninf;
  for (int l = 0; l < W; ++l) r = m[l] > r ? m[l] : r;
  for (; j < n; ++j) r = x[j] > r ? x[j] : r;
  return r;
}
// sum_j x[j] (or x[j]^2) accumulated in double: four independent 4-lane double accumulators
// (16 entries per step) keep the add latency hidden and everything in registers.
template <bool Square, typename T>
GKD_ALWAYS_INLINE double row_sum_impl(const T* x, int64_t n) {
  using H = typename std::conditional<sizeof(T) == 4, f32x4, f64x4>::type;  // 4 lanes of T
  f64x4 acc[4] = {splat<f64x4>(0.0), splat<f64x4>(0.0), splat<f64x4>(0.0), splat<f64x4>(0.0)};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int q = 0; q < 4; ++q) {
      const f64x4 v = __builtin_convertvector(load<H>(x + j + 4 * q), f64x4);
      acc[q] += Square ? v * v : v;
    }
  }
  const f64x4 t = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  double r = (t[0] + t[1]) + (t[2] + t[3]);
  for (; j < n; ++j) r += Square ? double(x[j]) * double(x[j]) : double(x[j]);
  return r;
}
template <typename T>
GKD_ALWAYS_INLINE double row_sum(const T* x, int64_t n) { return row_sum_impl<false>(x, n); }
template <typename T>
GKD_ALWAYS_INLINE double row_sum_sq(const T* x, int64_t n) { return row_sum_impl<true>(x, n); }
}  // namespace simk_cpu
#endif

}  // namespace gkdfast
