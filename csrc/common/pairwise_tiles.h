// Tiling helpers for exact all-pairs losses (GSP, CRD, NT-Xent, N-contrast, top-k) without an
// N x N tensor.  Shared by every pairwise loss; keep this API stable.
//
//   * RowBlocks / for_each_row_block: cut [0, n) into row blocks and run them in parallel
//     (at::parallel_for, so a BLAS call inside a block runs single-threaded and blocks never
//     race: each block owns its output rows -> deterministic, no atomics).
//   * dot_tile_cpu: one [Bi x Bj] tile of a_i . b_j through at::mm into a reused buffer.
//   * sq_norms_cpu: ||x_i||^2 per row, accumulated in double (used to turn dot tiles into squared
//     distances: ||u - v||^2 = ||u||^2 + ||v||^2 - 2 u.v, clamped at 0).
//   * OnlineLSE (common/online_softmax.h) and OnlineWeightedLSE (below): per-row streaming
//     log-sum-exp; the weighted form also carries sum_j softmax_j * v_j, which is what a KL or
//     a cross-entropy needs, in one pass over the tiles.
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
// Streaming softmax-weighted average: tracks m = max x, s = sum exp(x - m), w = sum exp(x - m) * v.
// Then logsumexp = m + log s and E_softmax[v] = w / s.  Merge() combines partial states.
template <typename acc_t>
struct OnlineWeightedLSE {
  acc_t max = -std::numeric_limits<acc_t>::infinity();
  acc_t sum = acc_t(0);
  acc_t wsum = acc_t(0);

  GKD_HD void add(acc_t x, acc_t v) {
    // weight exp(-inf) = 0: nothing to add (with max still -inf, x - max would be NaN)
    if (x == -std::numeric_limits<acc_t>::infinity()) return;
    if (x > max) {
      const acc_t r = std::exp(max - x);  // 0 on the first element (max = -inf)
      sum = sum * r + acc_t(1);
      wsum = wsum * r + v;
      max = x;
    } else {
      const acc_t p = std::exp(x - max);
      sum += p;
      wsum += p * v;
    }
  }
  GKD_HD void merge(const OnlineWeightedLSE& o) {
    if (o.sum == acc_t(0)) return;
    if (sum == acc_t(0)) { *this = o; return; }
    if (o.max > max) {
      const acc_t r = std::exp(max - o.max);
      sum = sum * r + o.sum;
      wsum = wsum * r + o.wsum;
      max = o.max;
    } else {
      const acc_t r = std::exp(o.max - max);
      sum += o.sum * r;
      wsum += o.wsum * r;
    }
  }
  GKD_HD acc_t lse() const {
    return sum == acc_t(0) ? -std::numeric_limits<acc_t>::infinity() : max + std::log(sum);
  }
  // softmax-weighted mean of v; 0 for an empty set.
  GKD_HD acc_t mean() const { return sum == acc_t(0) ? acc_t(0) : wsum / sum; }
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
