// Tiling helpers for exact all-pairs losses (GSP, CRD, NT-Xent, N-contrast, top-k) without an
// N x N tensor.  Shared by every pairwise loss; keep this API stable.
//
//   * RowBlocks / for_each_row_block: cut [0, n) into row blocks and run them in parallel
//     (at::parallel_for, so a BLAS call inside a block runs single-threaded and blocks never
//     race: each block owns its output rows -> deterministic, no atomics).
//   * dot_tile_cpu: one [Bi x Bj] tile of a_i . b_j through at::mm into a reused buffer.
//   * sq_norms_cpu: ||x_i||^2 per row, accumulated in double (used to turn dot tiles into squared
//     distances: ||u - v||^2 = ||u||^2 + ||v||^2 - 2 u.v, clamped at 0).
//   * OnlineLSE (common/online_softmax.h) and OnlineKL (below): per-row streaming log-sum-exp, and
//     the KL between two rows' softmaxes (with both log-sum-exps) in one pass over the tiles.
//
// Device code (CUDA) uses the GKD_HD state structs; the at::mm helpers are host-only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/macros.h"
#include "common/online_softmax.h"

#ifndef __CUDACC__
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/Parallel.h>
#endif

namespace gkdfast {
namespace tiles {

// Default CPU tile sizes: a [64 x 512] float tile is 128 KiB (fits L2 with its two operands at d<=256).
constexpr int64_t kCpuRowBlock = 64;
constexpr int64_t kCpuColBlock = 512;

// ----------------------------------------------------------------------------------- online states
// Streaming KL(p_T || p_S) between the softmaxes of two logit rows x^S and x^T, fed pair by pair
// (add) or as partial states of tiles (merge).  Each side keeps its running max m and
// s = sum_j exp(x_j - m); w = sum_j exp(x^T_j - m^T) ((x^T_j - m^T) - (x^S_j - m^S)).  Then
//   KL = E_pT[x^T - x^S] - lse_T + lse_S = w / s^T - log s^T + log s^S,
// in which the terms of the size of x (m^T - m^S) cancel before rounding.  The direct form
// E[x^T - x^S] - lse_T + lse_S subtracts numbers of the size of x: at x ~ 1e4 (a poly kernel at
// tau = 0.05) one float ulp is 1e-3, and a one-hot row whose KL is 0 came out at 4e-3.  The entries
// near the maxima, which carry the weight, are differenced exactly (Sterbenz).
template <typename acc_t>
struct OnlineKL {
  acc_t ms = -std::numeric_limits<acc_t>::infinity(), ss = acc_t(0);  // student: max, sum exp(x - max)
  acc_t mt = -std::numeric_limits<acc_t>::infinity(), st = acc_t(0);  // teacher
  acc_t w = acc_t(0);

  GKD_HD void add(acc_t xs, acc_t xt) {
    const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
    // Student first, so that the new pair's (x^S - m^S) is taken against the updated max.  exp(-inf)
    // adds nothing (and with the max still -inf, x - max would be NaN).
    if (xs != ninf) {
      if (xs > ms) {
        if (st != acc_t(0)) w += (xs - ms) * st;  // every stored (x^S_j - m^S) drops by the rise
        ss = ss * std::exp(ms - xs) + acc_t(1);
        ms = xs;
      } else {
        ss += std::exp(xs - ms);
      }
    }
    if (xt == ninf) return;  // teacher weight 0
    // a student -inf where the teacher has weight: KL = +inf (before any finite student logit, ms is
    // still -inf and xs - ms would be NaN)
    const acc_t ds = xs == ninf ? ninf : xs - ms;
    if (xt > mt) {
      const acc_t r = std::exp(mt - xt);  // 0 on the first pair
      w = st != acc_t(0) ? (w - (xt - mt) * st) * r - ds : -ds;
      st = st * r + acc_t(1);
      mt = xt;
    } else {
      const acc_t e = std::exp(xt - mt);
      st += e;
      w += e * ((xt - mt) - ds);
    }
  }
  GKD_HD void merge(const OnlineKL& o) {
    if (o.ss == acc_t(0) && o.st == acc_t(0)) return;
    if (ss == acc_t(0) && st == acc_t(0)) { *this = o; return; }
    const acc_t nms = o.ms > ms ? o.ms : ms, nmt = o.mt > mt ? o.mt : mt;
    w = rebased_w(nms, nmt) + o.rebased_w(nms, nmt);
    ss = scaled(ss, ms, nms) + scaled(o.ss, o.ms, nms);
    st = scaled(st, mt, nmt) + scaled(o.st, o.mt, nmt);
    ms = nms;
    mt = nmt;
  }
  // A tile's partial state from its own maxima and sums (w against those maxima).
  static GKD_HD OnlineKL of(acc_t ms, acc_t ss, acc_t mt, acc_t st, acc_t w) {
    OnlineKL k;
    k.ms = ms; k.ss = ss; k.mt = mt; k.st = st; k.w = w;
    return k;
  }
  // Five slots per row in a state tensor: (m^S, s^S, m^T, s^T, w); an empty state is
  // (-inf, 0, -inf, 0, 0).
  static GKD_HD OnlineKL load(const acc_t* r) { return of(r[0], r[1], r[2], r[3], r[4]); }
  GKD_HD void save(acc_t* r) const { r[0] = ms; r[1] = ss; r[2] = mt; r[3] = st; r[4] = w; }
  GKD_HD acc_t lse_s() const { return ss == acc_t(0) ? -std::numeric_limits<acc_t>::infinity() : ms + std::log(ss); }
  GKD_HD acc_t lse_t() const { return st == acc_t(0) ? -std::numeric_limits<acc_t>::infinity() : mt + std::log(st); }
  // KL(p_T || p_S) >= 0 up to rounding (the caller clamps); NaN when the teacher row has no weight at
  // all (every logit -inf: p_T is 0 / 0, as the dense reference says), like w / s^T - log s^T there.
  GKD_HD acc_t kl() const {
    return st == acc_t(0) ? std::numeric_limits<acc_t>::quiet_NaN() : w / st - std::log(st) + std::log(ss);
  }

 private:
  static GKD_HD acc_t scaled(acc_t s, acc_t m, acc_t to) { return s == acc_t(0) ? acc_t(0) : s * std::exp(m - to); }
  // this state's w against the maxima (nms, nmt) >= its own, in the scale of the new teacher max
  GKD_HD acc_t rebased_w(acc_t nms, acc_t nmt) const {
    return st == acc_t(0) ? acc_t(0) : (w + ((mt - nmt) - (ms - nms)) * st) * std::exp(mt - nmt);
  }
};

GKD_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

#ifndef __CUDACC__
// ----------------------------------------------------------------------------------- CPU helpers
// Calls body(i0, i1) for row blocks [i0, i1) of size `block` (the last may be shorter), in parallel.
// Each block runs on one thread; a body that writes only rows [i0, i1) is race-free.
template <typename F>
void for_each_row_block(int64_t n, int64_t block, const F& body) {
  const int64_t nb = ceil_div(n, block);
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) body(b * block, std::min(n, (b + 1) * block));
  });
}

// out[0:i1-i0, 0:j1-j0] = a[i0:i1] @ b[j0:j1]^T.  `out` is a [>=Bi, >=Bj] contiguous buffer reused
// across tiles (allocated once per thread/block); returns the narrowed view that was written.
inline at::Tensor dot_tile_cpu(const at::Tensor& a, int64_t i0, int64_t i1, const at::Tensor& b, int64_t j0,
                               int64_t j1, at::Tensor& out) {
  auto view = out.narrow(0, 0, i1 - i0).narrow(1, 0, j1 - j0);
  at::mm_out(view, a.narrow(0, i0, i1 - i0), b.narrow(0, j0, j1 - j0).t());
  return view;
}

// Allocates a tile buffer for dot_tile_cpu (row-major [bi, bj], same dtype/device as `like`).
inline at::Tensor tile_buffer(const at::Tensor& like, int64_t bi, int64_t bj) {
  return at::empty({bi, bj}, like.options());
}

// ||x_i||^2 for every row, accumulated in double, returned in x's dtype ([N]).
inline at::Tensor sq_norms_cpu(const at::Tensor& x) {
  return x.to(at::kDouble).pow(2).sum(1).to(x.scalar_type());
}

// Tile sizes for kernels that post-process whole GEMM tiles with vectorised row loops: larger tiles
// keep the per-call overhead of at::mm small; one [128 x 512] float tile is 256 KiB, so a pair of
// them (student and teacher) plus the column operands stays within a 1 MiB L2.
constexpr int64_t kCpuGemmRowBlock = 128;
constexpr int64_t kCpuGemmColBlock = 512;

// Squared distance from a dot product and the two squared norms, clamped at 0 (rounding can make
// it slightly negative when u ~ v).
template <typename T>
inline T sq_dist_from_dot(T dot, T na, T nb) {
  const T d = na + nb - T(2) * dot;
  return d < T(0) ? T(0) : d;  // NaN stays NaN
}
#endif

}  // namespace tiles
}  // namespace gkdfast
