// CPU global-structure-preserving loss (GSP) over all N^2 pairs, tiled: never an N x N tensor.
//
// Row blocks I run in parallel and each owns its output rows (deterministic, no atomics; the block
// and tile sizes are constants, so the result does not depend on the thread count).  For the
// dot-product kernels (linear, cosine, poly, l2, rbf) every column block J costs:
//   * two GEMMs (at::mm into a per-block buffer): S_I S_J^T and T_I T_J^T (rows pre-normalised for
//     cosine; l2/rbf add the squared norms to get squared distances);
//   * vectorised row loops over the whole [Bi x Bj] tile (GKD_CPU_CLONES: AVX2 where available,
//     exp from simk_cpu::vexp): kernel values, then per row either the sum of squared differences
//     (mse, double accumulators) or, for kl, a two-pass tile max / sum of exponentials merged into
//     the row's running log-sum-exp state (double) once per tile, not once per element.
// laplace needs the L1 distance, which no GEMM gives: it keeps a per-pair scalar path
// (gsp_pairwise_cpu.cpp).  GKDFAST_CPU_GSP_IMPL=portable runs the device-agnostic tile driver of
// ops/gsp_tiles.h instead (the orchestration the CUDA path uses).
//
// Backward recomputes the tiles.  For the loss L = sum_i w_i * per_row_i, the coefficient of pair
// (a, j) is C_aj = dL/dk(s_a, s_j) counting both ordered pairs (a, j) and (j, a) (k is symmetric):
//   mse: C_aj = 2 (K^S_aj - K^T_aj)(w_a + w_j)
//   kl : C_aj = (w_a (p^S_aj - p^T_aj) + w_j (p^S_ja - p^T_ja)) / tau, p^S_ja from row j's saved lse
// and grad s_a = sum_j C_aj (other_aj s_j + self_aj s_a [+ sgn_aj sign(s_a - s_j)]).  Because C
// already holds both orders, row block I gets its complete gradient from its own tiles: the
// column-side contributions never have to be scattered to other blocks.  The first term is one
// GEMM per tile, (C .* other) @ S_J, formed in place in the tile buffer; the second a row sum.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/Dispatch.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "common/pairwise_tiles.h"
#include "common/similarity_kernels.h"
#include "cpu/gsp_pairwise_cpu.h"
#include "ops/gsp.h"
#include "ops/gsp_tiles.h"

namespace gkdfast {
namespace {

// ------------------------------------------------------------------------- GEMM-tile path
// Kernel value from the dot product g (and, for l2/rbf, the squared norms na of the row and nb of
// the column).  Cosine rows are normalised beforehand, so its g is already the kernel value.
// V is a SIMD lane type (simk_cpu::Simd<T>::V) or T itself.
template <SimKernel K, typename T, typename V>
GKD_ALWAYS_INLINE V tile_kval(V g, T na, const T* nb, int64_t j, T ngamma) {
  using simk_cpu::splat;
  if constexpr (K == SimKernel::Linear || K == SimKernel::Cosine) {
    return g;
  } else if constexpr (K == SimKernel::Poly) {
    return (g + T(1)) * (g + T(1));
  } else {
    V d2 = (na + simk_cpu::load<V>(nb + j)) - T(2) * g;  // ||u - v||^2; rounding can make it < 0: clamp
    const V zero = splat<V>(T(0));
    d2 = d2 < zero ? zero : d2;  // NaN (from a NaN input) stays NaN
    if constexpr (K == SimKernel::L2) return -d2;
    else return simk_cpu::vexp<T>(d2 * ngamma);
  }
}

// dk = other * (dot-product direction) + self * (own row); for cosine (normalised rows) `self`
// carries k, combined with the row's norm after the tile loop (see finish_grad).
template <SimKernel K, typename T, typename V>
GKD_ALWAYS_INLINE void tile_kgrad(V g, V k, T gamma2, V& other, V& self) {
  using simk_cpu::splat;
  if constexpr (K == SimKernel::Linear) { other = splat<V>(T(1)); self = splat<V>(T(0)); }
  else if constexpr (K == SimKernel::Cosine) { other = splat<V>(T(1)); self = k; }
  else if constexpr (K == SimKernel::Poly) { other = T(2) * (g + T(1)); self = splat<V>(T(0)); }
  else if constexpr (K == SimKernel::L2) { other = splat<V>(T(2)); self = splat<V>(T(-2)); }
  else { other = k * gamma2; self = -other; }
}

// Everything a row loop needs for one tile; row r of the tile is global row i0 + r, column c is
// global column j0 + c.  Norm / statistics pointers are already offset to i0 (row side) and j0
// (column side); unused ones are null.
template <typename T>
struct TileArgs {
  T* gs;  // [bi x ld] student dot tile (in), overwritten by the loops
  T* gt;  // teacher
  int64_t ld, bi, bj;
  const T *nas, *nbs, *nat, *nbt;  // squared norms (l2, rbf)
  T ngamma, gamma2, inv_tau;       // -gamma, 2 gamma, 1 / tau
  T* buf;                          // scratch, 4 * bj
  // forward outputs, per row of the tile
  T *ms, *mt;                   // kl: tile max of x^S = K^S / tau and x^T
  // kl: sum exp(x^S - ms), sum exp(x^T - mt), sum exp(x^T - mt)((x^T - mt) - (x^S - ms)); mse: sum (K^S - K^T)^2
  double *ss, *st, *sw, *sq;
  // backward inputs (row side _r, column side _c) and outputs
  const T *lse_s_r, *lse_t_r, *w_r, *kl_r, *lse_s_c, *lse_t_c, *w_c, *kl_c;
  // kl backward with a small spread of the log-sum-exps: p_ja = p_aj * e_a * f_j, where
  // e_a = exp(lse_a - c), f_j = exp(c - lse_j) (two exps per pair saved); null otherwise
  const T *es_r, *et_r, *fs_c, *ft_c;
  double *self_s, *self_t;      // += sum_j C_aj self_aj per row
};

// Runs body.template step<V>(j) over j in [0, n): SIMD lanes, then the scalar tail.  The bodies
// hold their scalars by value so that the compiler keeps them in registers across the stores.
template <typename T, typename F>
GKD_ALWAYS_INLINE void for_lanes(int64_t n, const F& body) {
  using V = typename simk_cpu::Simd<T>::V;
  constexpr int W = simk_cpu::Simd<T>::W;
  int64_t j = 0;
  for (; j + W <= n; j += W) body.template step<V>(j);
  for (; j < n; ++j) body.template step<T>(j);
}

template <SimKernel K, typename T>
struct KlForwardX {  // x = K / tau for both models, in place
  T *xs, *xt;
  const T *nbs, *nbt;
  T nas, nat, ngamma, inv_tau;
  template <typename V>
  GKD_ALWAYS_INLINE void step(int64_t j) const {
    using simk_cpu::load;
    using simk_cpu::store;
    store(xs + j, tile_kval<K, T, V>(load<V>(xs + j), nas, nbs, j, ngamma) * inv_tau);
    store(xt + j, tile_kval<K, T, V>(load<V>(xt + j), nat, nbt, j, ngamma) * inv_tau);
  }
};
// Exponentials against the tile maxima, into three scratch rows; the teacher-weighted differences
// are taken against the maxima too, as tiles::OnlineKL keeps them (why: its comment).
template <typename T>
struct KlForwardExp {
  const T *xs, *xt;
  T *es, *et, *ew;
  T ms, mt;
  template <typename V>
  GKD_ALWAYS_INLINE void step(int64_t j) const {
    using simk_cpu::load;
    using simk_cpu::store;
    const V vs = load<V>(xs + j), vt = load<V>(xt + j);
    const V e = simk_cpu::vexp<T, V, true>(vt - mt);
    store(es + j, simk_cpu::vexp<T, V, true>(vs - ms));
    store(et + j, e);
    store(ew + j, e * ((vt - mt) - (vs - ms)));
  }
};

template <SimKernel K, typename T>
GKD_ALWAYS_INLINE void kl_forward_tile(const TileArgs<T>& A) {
  T* es = A.buf;
  T* et = A.buf + A.bj;
  T* ew = A.buf + 2 * A.bj;
  for (int64_t r = 0; r < A.bi; ++r) {
    T* xs = A.gs + r * A.ld;
    T* xt = A.gt + r * A.ld;
    const T nas = A.nas ? A.nas[r] : T(0), nat = A.nat ? A.nat[r] : T(0);
    for_lanes<T>(A.bj, KlForwardX<K, T>{xs, xt, A.nbs, A.nbt, nas, nat, A.ngamma, A.inv_tau});
    const T ms = simk_cpu::row_max(xs, A.bj), mt = simk_cpu::row_max(xt, A.bj);
    for_lanes<T>(A.bj, KlForwardExp<T>{xs, xt, es, et, ew, ms, mt});
    A.ms[r] = ms;
    A.mt[r] = mt;
    A.ss[r] = simk_cpu::row_sum(es, A.bj);
    A.st[r] = simk_cpu::row_sum(et, A.bj);
    A.sw[r] = simk_cpu::row_sum(ew, A.bj);
  }
}

template <SimKernel K, typename T>
struct MseForwardDiff {
  const T *gs, *gt, *nbs, *nbt;
  T* diff;
  T nas, nat, ngamma;
  template <typename V>
  GKD_ALWAYS_INLINE void step(int64_t j) const {
    using simk_cpu::load;
    simk_cpu::store(diff + j, tile_kval<K, T, V>(load<V>(gs + j), nas, nbs, j, ngamma) -
                                  tile_kval<K, T, V>(load<V>(gt + j), nat, nbt, j, ngamma));
  }
};

template <SimKernel K, typename T>
GKD_ALWAYS_INLINE void mse_forward_tile(const TileArgs<T>& A) {
  T* diff = A.buf;
  for (int64_t r = 0; r < A.bi; ++r) {
    const T nas = A.nas ? A.nas[r] : T(0), nat = A.nat ? A.nat[r] : T(0);
    for_lanes<T>(A.bj, MseForwardDiff<K, T>{A.gs + r * A.ld, A.gt + r * A.ld, A.nbs, A.nbt, diff, nas, nat, A.ngamma});
    A.sq[r] = simk_cpu::row_sum_sq(diff, A.bj);
  }
}

// Backward: overwrites gs / gt with (C .* other) for the gradient GEMMs; C .* self into scratch.
template <SimKernel K, bool KL, bool Ratio, typename T>
struct BackwardStep {
  T *gs, *gt, *fs, *ft;
  const T *nbs, *nbt, *w_c, *lse_s_c, *lse_t_c, *kl_c, *fs_c, *ft_c;
  T nas, nat, wa, lsa, lta, kla, esa, eta, ngamma, gamma2, inv_tau;
  template <typename V>
  GKD_ALWAYS_INLINE void step(int64_t j) const {
    using simk_cpu::load;
    using simk_cpu::store;
    const V g_s = load<V>(gs + j), g_t = load<V>(gt + j);
    const V ks = tile_kval<K, T, V>(g_s, nas, nbs, j, ngamma);
    const V kt = tile_kval<K, T, V>(g_t, nat, nbt, j, ngamma);
    const V wb = load<V>(w_c + j);
    V cs, ct;
    if constexpr (KL) {
      const V xs = ks * inv_tau, xt = kt * inv_tau;
      const V las = xs - lsa, lat = xt - lta;                                  // log p_aj
      const V lbs = xs - load<V>(lse_s_c + j), lbt = xt - load<V>(lse_t_c + j);  // log p_ja
      // x - lse <= 0 up to rounding: no overflow handling needed
      const V psa = simk_cpu::vexp<T, V, true>(las), pta = simk_cpu::vexp<T, V, true>(lat);
      V psb, ptb;
      if constexpr (Ratio) {
        psb = psa * (esa * load<V>(fs_c + j));
        ptb = pta * (eta * load<V>(ft_c + j));
      } else {
        psb = simk_cpu::vexp<T, V, true>(lbs);
        ptb = simk_cpu::vexp<T, V, true>(lbt);
      }
      cs = (wa * (psa - pta) + wb * (psb - ptb)) * inv_tau;
      ct = (wa * pta * ((lat - las) - kla) + wb * ptb * ((lbt - lbs) - load<V>(kl_c + j))) * inv_tau;
    } else {
      cs = T(2) * (ks - kt) * (wa + wb);
      ct = -cs;
    }
    V os, ss, ot, st;
    tile_kgrad<K, T, V>(g_s, ks, gamma2, os, ss);
    tile_kgrad<K, T, V>(g_t, kt, gamma2, ot, st);
    store(gs + j, cs * os);
    store(gt + j, ct * ot);
    store(fs + j, cs * ss);
    store(ft + j, ct * st);
  }
};

template <SimKernel K, bool KL, bool Ratio, typename T>
GKD_ALWAYS_INLINE void backward_tile(const TileArgs<T>& A) {
  T* fs = A.buf;
  T* ft = A.buf + A.bj;
  for (int64_t r = 0; r < A.bi; ++r) {
    const T nas = A.nas ? A.nas[r] : T(0), nat = A.nat ? A.nat[r] : T(0);
    const T lsa = KL ? A.lse_s_r[r] : T(0), lta = KL ? A.lse_t_r[r] : T(0), kla = KL ? A.kl_r[r] : T(0);
    const T esa = Ratio ? A.es_r[r] : T(0), eta = Ratio ? A.et_r[r] : T(0);
    for_lanes<T>(A.bj, BackwardStep<K, KL, Ratio, T>{A.gs + r * A.ld, A.gt + r * A.ld, fs, ft, A.nbs, A.nbt, A.w_c,
                                                     A.lse_s_c, A.lse_t_c, A.kl_c, A.fs_c, A.ft_c, nas, nat,
                                                     A.w_r[r], lsa, lta, kla, esa, eta, A.ngamma, A.gamma2,
                                                     A.inv_tau});
    if constexpr (K != SimKernel::Linear && K != SimKernel::Poly) {
      A.self_s[r] += simk_cpu::row_sum(fs, A.bj);
      A.self_t[r] += simk_cpu::row_sum(ft, A.bj);
    }
  }
}

enum class TileOp { KlForward, MseForward, KlBackward, KlBackwardRatio, MseBackward };

template <TileOp Op, SimKernel K, typename T>
GKD_ALWAYS_INLINE void run_tile_k(const TileArgs<T>& A) {
  if constexpr (Op == TileOp::KlForward) kl_forward_tile<K>(A);
  else if constexpr (Op == TileOp::MseForward) mse_forward_tile<K>(A);
  else if constexpr (Op == TileOp::KlBackward) backward_tile<K, true, false>(A);
  else if constexpr (Op == TileOp::KlBackwardRatio) backward_tile<K, true, true>(A);
  else backward_tile<K, false, false>(A);
}

template <TileOp Op, typename T>
GKD_ALWAYS_INLINE void run_tile_impl(SimKernel kind, const TileArgs<T>& A) {
  switch (kind) {
    case SimKernel::Linear: run_tile_k<Op, SimKernel::Linear>(A); break;
    case SimKernel::Cosine: run_tile_k<Op, SimKernel::Cosine>(A); break;
    case SimKernel::Poly: run_tile_k<Op, SimKernel::Poly>(A); break;
    case SimKernel::L2: run_tile_k<Op, SimKernel::L2>(A); break;
    case SimKernel::Rbf: run_tile_k<Op, SimKernel::Rbf>(A); break;
    case SimKernel::Laplace: break;  // not a GEMM kernel: handled by the per-pair path
  }
}

// The cloned entry points (target_clones does not apply to templates: one function per op/dtype).
#define GKD_GSP_TILE_FN(NAME, OP, T) \
  GKD_TILE_CLONES static void NAME(SimKernel kind, const TileArgs<T>& A) { run_tile_impl<OP, T>(kind, A); }
GKD_GSP_TILE_FN(tile_kl_fwd, TileOp::KlForward, float)
GKD_GSP_TILE_FN(tile_kl_fwd, TileOp::KlForward, double)
GKD_GSP_TILE_FN(tile_mse_fwd, TileOp::MseForward, float)
GKD_GSP_TILE_FN(tile_mse_fwd, TileOp::MseForward, double)
GKD_GSP_TILE_FN(tile_kl_bwd, TileOp::KlBackward, float)
GKD_GSP_TILE_FN(tile_kl_bwd, TileOp::KlBackward, double)
GKD_GSP_TILE_FN(tile_kl_bwd_ratio, TileOp::KlBackwardRatio, float)
GKD_GSP_TILE_FN(tile_kl_bwd_ratio, TileOp::KlBackwardRatio, double)
GKD_GSP_TILE_FN(tile_mse_bwd, TileOp::MseBackward, float)
GKD_GSP_TILE_FN(tile_mse_bwd, TileOp::MseBackward, double)
#undef GKD_GSP_TILE_FN

// One model's GEMM operand and per-row constants.
template <typename T>
struct GemmSide {
  at::Tensor x;                // [N, d] contiguous: the rows, normalised for cosine
  std::vector<T> sqn;          // ||x_i||^2 (l2, rbf)
  std::vector<double> den;     // cosine: max(||x_i||, eps)
  std::vector<double> active;  // cosine: 1 where ||x_i|| > eps (the clamp is flat below)

  GemmSide(const at::Tensor& t, SimKernel kind) {
    if (kind == SimKernel::Cosine) {
      const auto xd = t.to(at::kDouble);
      const auto nrm = xd.pow(2).sum(1).sqrt();
      const auto dn = nrm.clamp_min(kCosineEps).contiguous();
      x = (xd / dn.unsqueeze(1)).to(t.scalar_type()).contiguous();
      den.assign(dn.data_ptr<double>(), dn.data_ptr<double>() + dn.numel());
      const auto act = (nrm > kCosineEps).to(at::kDouble).contiguous();
      active.assign(act.data_ptr<double>(), act.data_ptr<double>() + act.numel());
    } else if (kernel_needs_d2(kind)) {
      // Centred rows (mean in float64): squared distances from norms and dots cancel in proportion to
      // the norms; a translation changes no distance and no gradient (see gsp_tiles.cpp's prepare).
      const auto xd = t.to(at::kDouble);
      x = (xd - xd.mean(0, /*keepdim=*/true)).to(t.scalar_type()).contiguous();
    } else {
      x = t;
    }
    if (kernel_needs_d2(kind)) {
      const auto n = x.to(at::kDouble).pow(2).sum(1).to(t.scalar_type()).contiguous();
      sqn.assign(n.data_ptr<T>(), n.data_ptr<T>() + n.numel());
    }
  }
  const T* norms(int64_t off) const { return sqn.empty() ? nullptr : sqn.data() + off; }
};

// l2 / rbf: the dot of a row with itself becomes its squared norm exactly, so that the tile loops'
// na + nb - 2 g is exactly 0 on the diagonal (k(x_i, x_i) = 1 for rbf), as in the portable and CUDA
// tiles.  Computed apart, the GEMM's dot and the norm round differently: on float32 rows of size 1e3
// the diagonal rbf values fell below 1 (a gsp of identical inputs came out 1e-3 instead of 0).
template <typename T>
void exact_self_dots(const GemmSide<T>& side, const at::Tensor& tile, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if (side.sqn.empty()) return;
  T* g = tile.data_ptr<T>();
  const int64_t ld = tile.stride(0);
  for (int64_t k = std::max(i0, j0); k < std::min(i1, j1); ++k) g[(k - i0) * ld + (k - j0)] = side.sqn[k];
}

// grad rows [i0, i0 + bi) = acc + self * x (cosine: (acc - active * self * x_hat) / den).
template <typename T>
void finish_grad(at::Tensor& grad, const at::Tensor& acc, const std::vector<double>& self, const GemmSide<T>& side,
                 SimKernel kind, int64_t i0, int64_t bi) {
  const int64_t d = acc.size(1);
  const T* ap = acc.data_ptr<T>();
  const T* xp = side.x.template data_ptr<T>() + i0 * d;
  T* gp = grad.data_ptr<T>() + i0 * d;
  for (int64_t r = 0; r < bi; ++r) {
    if (kind == SimKernel::Cosine) {
      const double c = side.active[i0 + r] * self[r], inv = 1.0 / side.den[i0 + r];
      for (int64_t f = 0; f < d; ++f) gp[r * d + f] = static_cast<T>((double(ap[r * d + f]) - c * double(xp[r * d + f])) * inv);
    } else {
      const double c = self[r];
      for (int64_t f = 0; f < d; ++f) gp[r * d + f] = static_cast<T>(double(ap[r * d + f]) + c * double(xp[r * d + f]));
    }
  }
}

template <typename T>
void gsp_gemm_forward(const at::Tensor& s, const at::Tensor& t, SimKernel kind, GspLoss loss, double gamma, double tau,
                      int64_t r0, int64_t r1, at::Tensor& per_row, at::Tensor& stats) {
  const int64_t n = s.size(0);
  const GemmSide<T> S(s, kind), Tt(t, kind);
  T* pr = per_row.data_ptr<T>();
  T* sp = stats.data_ptr<T>();
  const int64_t RB = tiles::kCpuGemmRowBlock, CB = tiles::kCpuGemmColBlock;
  tiles::for_each_row_block(r1 - r0, RB, [&](int64_t b0, int64_t b1) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;  // worker threads: plain kernels, no autograd
    const int64_t i0 = r0 + b0, i1 = r0 + b1, bi = i1 - i0;
    auto bufS = tiles::tile_buffer(s, RB, CB), bufT = tiles::tile_buffer(t, RB, CB);
    std::vector<T> scratch(4 * CB), ms(bi), mt(bi);
    std::vector<double> ss(bi), st(bi), sw(bi), sq(bi), total(bi, 0.0);
    std::vector<tiles::OnlineKL<double>> rows(bi);
    TileArgs<T> A{};
    A.gs = bufS.data_ptr<T>();
    A.gt = bufT.data_ptr<T>();
    A.ld = CB;
    A.bi = bi;
    A.nas = S.norms(i0);
    A.nat = Tt.norms(i0);
    A.ngamma = static_cast<T>(-gamma);
    A.inv_tau = static_cast<T>(1.0 / tau);
    A.buf = scratch.data();
    A.ms = ms.data(); A.mt = mt.data();
    A.ss = ss.data(); A.st = st.data(); A.sw = sw.data(); A.sq = sq.data();
    for (int64_t j0 = 0; j0 < n; j0 += CB) {
      const int64_t j1 = std::min(n, j0 + CB);
      exact_self_dots(S, tiles::dot_tile_cpu(S.x, i0, i1, S.x, j0, j1, bufS), i0, i1, j0, j1);
      exact_self_dots(Tt, tiles::dot_tile_cpu(Tt.x, i0, i1, Tt.x, j0, j1, bufT), i0, i1, j0, j1);
      A.bj = j1 - j0;
      A.nbs = S.norms(j0);
      A.nbt = Tt.norms(j0);
      if (loss == GspLoss::Mse) {
        tile_mse_fwd(kind, A);
        for (int64_t r = 0; r < bi; ++r) total[r] += sq[r];
      } else {
        tile_kl_fwd(kind, A);
        for (int64_t r = 0; r < bi; ++r)
          rows[r].merge(tiles::OnlineKL<double>::of(ms[r], ss[r], mt[r], st[r], sw[r]));
      }
    }
    for (int64_t r = 0; r < bi; ++r) {
      const int64_t a = i0 + r - r0;  // output row
      if (loss == GspLoss::Mse) {
        pr[a] = static_cast<T>(total[r]);
      } else {
        const double kl = rows[r].kl();  // >= 0 up to rounding: clamp
        pr[a] = static_cast<T>(kl > 0 ? kl : (std::isnan(kl) ? kl : 0.0));
        sp[2 * a] = static_cast<T>(rows[r].lse_s());
        sp[2 * a + 1] = static_cast<T>(rows[r].lse_t());
      }
    }
  });
}

template <typename T>
void gsp_gemm_backward(const at::Tensor& s, const at::Tensor& t, const at::Tensor& per_row, const at::Tensor& stats,
                       const at::Tensor& w, SimKernel kind, GspLoss loss, double gamma, double tau, bool need_s,
                       bool need_t, int64_t r0, int64_t r1, at::Tensor& grad_s, at::Tensor& grad_t) {
  const int64_t n = s.size(0);
  const GemmSide<T> S(s, kind), Tt(t, kind);
  // Per-row statistics as contiguous T arrays (the column side of the tile loops reads them by j).
  const auto st2 = stats.to(s.scalar_type()).reshape({n, 2});
  const auto lse_s = st2.select(1, 0).contiguous(), lse_t = st2.select(1, 1).contiguous();
  const auto kl = per_row.to(s.scalar_type()).contiguous();
  const auto wv = w.to(s.scalar_type()).contiguous();
  const T *lsp = lse_s.data_ptr<T>(), *ltp = lse_t.data_ptr<T>(), *klp = kl.data_ptr<T>(), *wp = wv.data_ptr<T>();
  // p_ja = exp(x_aj - lse_j) = p_aj * exp(lse_a - c) * exp(c - lse_j): valid when the lse values
  // lie within a narrow band (always for bounded kernels such as rbf/cosine at moderate tau), so
  // that neither factor overflows and an underflowed p_aj stands for a negligible p_ja.
  const double max_spread = sizeof(T) == 4 ? 20.0 : 200.0;
  std::vector<T> ratio[4];  // e_s, e_t (row factors), f_s, f_t (column factors)
  bool use_ratio = false;
  // Not for a partial row range: a row a outside it has p_aj = 0 (gsp_full_state), from which the
  // ratio cannot recover the p_ja of its pairs with the range's rows j.
  if (loss == GspLoss::Kl && n > 0 && r0 == 0 && r1 == n) {
    use_ratio = true;
    const T* lse[2] = {lsp, ltp};
    for (int side = 0; side < 2 && use_ratio; ++side) {
      double lo = double(lse[side][0]), hi = lo;
      for (int64_t i = 1; i < n; ++i) {
        lo = std::min(lo, double(lse[side][i]));
        hi = std::max(hi, double(lse[side][i]));
      }
      if (!(hi - lo <= max_spread)) {  // also false for NaN / inf
        use_ratio = false;
        break;
      }
      const double c = 0.5 * (lo + hi);
      ratio[side].resize(n);
      ratio[2 + side].resize(n);
      for (int64_t i = 0; i < n; ++i) {
        ratio[side][i] = static_cast<T>(std::exp(double(lse[side][i]) - c));
        ratio[2 + side][i] = static_cast<T>(std::exp(c - double(lse[side][i])));
      }
    }
  }
  const int64_t RB = tiles::kCpuGemmRowBlock, CB = tiles::kCpuGemmColBlock;
  tiles::for_each_row_block(n, RB, [&](int64_t i0, int64_t i1) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const int64_t bi = i1 - i0;
    auto bufS = tiles::tile_buffer(s, RB, CB), bufT = tiles::tile_buffer(t, RB, CB);
    auto accS = need_s ? at::zeros({bi, s.size(1)}, s.options()) : at::Tensor();
    auto accT = need_t ? at::zeros({bi, t.size(1)}, t.options()) : at::Tensor();
    std::vector<T> scratch(4 * CB);
    std::vector<double> selfS(bi, 0.0), selfT(bi, 0.0);
    TileArgs<T> A{};
    A.gs = bufS.data_ptr<T>();
    A.gt = bufT.data_ptr<T>();
    A.ld = CB;
    A.bi = bi;
    A.nas = S.norms(i0);
    A.nat = Tt.norms(i0);
    A.ngamma = static_cast<T>(-gamma);
    A.gamma2 = static_cast<T>(2.0 * gamma);
    A.inv_tau = static_cast<T>(1.0 / tau);
    A.buf = scratch.data();
    A.lse_s_r = lsp + i0; A.lse_t_r = ltp + i0; A.kl_r = klp + i0; A.w_r = wp + i0;
    if (use_ratio) {
      A.es_r = ratio[0].data() + i0;
      A.et_r = ratio[1].data() + i0;
    }
    A.self_s = selfS.data();
    A.self_t = selfT.data();
    // Rows outside the range pair nonzero only with the range's columns (gsp_full_state).
    const bool overlaps = i1 > r0 && i0 < r1;
    const int64_t jb = overlaps ? 0 : r0, je = overlaps ? n : r1;
    for (int64_t j0 = jb; j0 < je; j0 += CB) {
      const int64_t j1 = std::min(je, j0 + CB), bj = j1 - j0;
      auto ts = tiles::dot_tile_cpu(S.x, i0, i1, S.x, j0, j1, bufS);
      auto tt = tiles::dot_tile_cpu(Tt.x, i0, i1, Tt.x, j0, j1, bufT);
      exact_self_dots(S, ts, i0, i1, j0, j1);
      exact_self_dots(Tt, tt, i0, i1, j0, j1);
      A.bj = bj;
      A.nbs = S.norms(j0);
      A.nbt = Tt.norms(j0);
      A.lse_s_c = lsp + j0; A.lse_t_c = ltp + j0; A.kl_c = klp + j0; A.w_c = wp + j0;
      if (loss == GspLoss::Kl && use_ratio) {
        A.fs_c = ratio[2].data() + j0;
        A.ft_c = ratio[3].data() + j0;
        tile_kl_bwd_ratio(kind, A);
      } else if (loss == GspLoss::Kl) {
        tile_kl_bwd(kind, A);
      }
      else tile_mse_bwd(kind, A);
      if (need_s) accS.addmm_(ts, S.x.narrow(0, j0, bj));
      if (need_t) accT.addmm_(tt, Tt.x.narrow(0, j0, bj));
    }
    if (need_s) finish_grad(grad_s, accS, selfS, S, kind, i0, bi);
    if (need_t) finish_grad(grad_t, accT, selfT, Tt, kind, i0, bi);
  });
}

bool simd_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gsp_tiled_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                 c10::string_view kname, c10::string_view lname, double gamma,
                                                 double tau, int64_t row_begin, int64_t row_end) {
  const GspArgs args = check_gsp(s_in, t_in, tau, kname, lname, row_begin, row_end);
  const SimKernel kind = args.kind;
  const GspLoss loss = args.loss;
  const int64_t r0 = args.r0, r1 = args.r1;
  // half / bfloat16 run in float32, the dtype of their outputs (gsp_output_dtype): laplace through the
  // per-pair path on float copies, the rest through the portable driver (the SIMD tiles are float / double)
  if (!kernel_is_gemm_friendly(kind))
    return simd_dtype(s_in)
               ? cpu::gsp_direct_cpu(s_in, t_in, kind, loss, gamma, tau, r0, r1)
               : cpu::gsp_direct_cpu(s_in.to(at::kFloat), t_in.to(at::kFloat), kind, loss, gamma, tau, r0, r1);
  if (cpu_gsp_portable() || !simd_dtype(s_in))
    return gsp_tiles_forward(s_in, t_in, kind, loss, gamma, tau, r0, r1, host_gsp_epilogue());
  // detach: the tiles are plain kernels (worker threads do not inherit the caller's grad mode)
  const auto s = s_in.detach().contiguous();
  const auto t = t_in.detach().contiguous();
  auto per_row = at::zeros({r1 - r0}, s.options());
  auto stats = at::zeros({r1 - r0, 2}, s.options());
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_gsp_cpu", [&] {
    gsp_gemm_forward<scalar_t>(s, t, kind, loss, gamma, tau, r0, r1, per_row, stats);
  });
  return {per_row, stats};
}

std::tuple<at::Tensor, at::Tensor> gsp_tiled_backward_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                          const at::Tensor& per_row_in, const at::Tensor& stats_in,
                                                          const at::Tensor& grad_in, c10::string_view kname,
                                                          c10::string_view lname, double gamma, double tau,
                                                          bool need_s, bool need_t, int64_t row_begin,
                                                          int64_t row_end) {
  const GspArgs args = check_gsp_backward(s_in, t_in, per_row_in, stats_in, grad_in, tau, kname, lname, row_begin,
                                          row_end);
  const SimKernel kind = args.kind;
  const GspLoss loss = args.loss;
  const int64_t n = args.n, r0 = args.r0, r1 = args.r1;
  // A partial range runs as the full-N problem with zero weight outside the range.
  const bool partial = r1 - r0 != n;
  GspFullState full;
  if (partial) full = gsp_full_state(n, r0, r1, per_row_in, stats_in, grad_in);
  const at::Tensor& per_row_n = partial ? full.per_row : per_row_in;
  const at::Tensor& stats_n = partial ? full.stats : stats_in;
  const at::Tensor& grad_n = partial ? full.grad : grad_in;
  if (!kernel_is_gemm_friendly(kind)) {
    if (simd_dtype(s_in))
      return cpu::gsp_direct_backward_cpu(s_in, t_in, per_row_n, stats_n, grad_n, kind, loss, gamma, tau, need_s,
                                          need_t, r0, r1);
    auto [gs, gt] = cpu::gsp_direct_backward_cpu(s_in.to(at::kFloat), t_in.to(at::kFloat), per_row_n, stats_n, grad_n,
                                                 kind, loss, gamma, tau, need_s, need_t, r0, r1);
    return {gs.to(s_in.scalar_type()), gt.to(t_in.scalar_type())};
  }
  if (cpu_gsp_portable() || !simd_dtype(s_in))
    return gsp_tiles_backward(s_in, t_in, per_row_n, stats_n, grad_n, kind, loss, gamma, tau, need_s, need_t, r0, r1,
                              host_gsp_epilogue());
  const auto s = s_in.detach().contiguous();
  const auto t = t_in.detach().contiguous();
  auto grad_s = need_s ? at::zeros_like(s) : at::empty({0}, s.options());
  auto grad_t = need_t ? at::zeros_like(t) : at::empty({0}, t.options());
  if (!need_s && !need_t) return {grad_s, grad_t};
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_gsp_backward_cpu", [&] {
    gsp_gemm_backward<scalar_t>(s, t, per_row_n.detach(), stats_n.detach(), grad_n.detach(), kind, loss, gamma, tau,
                                need_s, need_t, r0, r1, grad_s, grad_t);
  });
  return {grad_s, grad_t};
}

}  // namespace gkdfast
