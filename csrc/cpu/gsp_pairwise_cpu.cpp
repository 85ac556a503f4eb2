// CPU GSP, per-pair path: the laplace kernel needs the L1 distance, which no GEMM gives, so its
// pairs are evaluated one by one (the dot-product kernels use the GEMM tiles of gsp_cpu.cpp).
// Row blocks run in parallel and own their output rows (deterministic, no atomics).  The backward
// coefficients are those derived in gsp_cpu.cpp's header comment.
#include "cpu/cpu_dispatch.h"
#include "cpu/gsp_pairwise_cpu.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/Dispatch.h>

#include <cmath>
#include <vector>

#include "common/pairwise_tiles.h"

namespace gkdfast {
namespace cpu {
namespace {

// One model's view for tile evaluation.
template <typename T>
struct Side {
  const T* x;
  int64_t d;
  std::vector<double> sqn;  // ||x_i||^2 when the kernel needs norms or squared distances
  at::Tensor tensor;

  Side(const at::Tensor& t, SimKernel k) : x(t.data_ptr<T>()), d(t.size(1)), tensor(t) {
    if (kernel_needs_norms(k) || kernel_needs_d2(k)) {
      auto n = tiles::sq_norms_cpu(t).to(at::kDouble).contiguous();
      sqn.assign(n.data_ptr<double>(), n.data_ptr<double>() + n.numel());
    }
  }
  // Pair statistics for (a, b) given the dot tile value g (unused for laplace).
  PairStats<double> stats(SimKernel k, int64_t a, int64_t b, double g) const {
    PairStats<double> s;
    s.g = g;
    if (!sqn.empty()) {
      s.na = sqn[a];
      s.nb = sqn[b];
      if (kernel_needs_d2(k)) s.d2 = tiles::sq_dist_from_dot(g, s.na, s.nb);
    }
    if (kernel_needs_l1(k)) s.l1 = simk_cpu::l1_dist(x + a * d, x + b * d, d);
    return s;
  }
};

// ------------------------------------------------------------------------- per-pair path (laplace)
// Calls f(a, b, ks, kt, st_s, st_t) for every pair of the tile [i0, i1) x [j0, j1).
template <typename T, typename F>
void for_each_pair(SimKernel kind, double gamma, const Side<T>& S, const Side<T>& Tt, int64_t i0, int64_t i1,
                   int64_t j0, int64_t j1, at::Tensor& bufS, at::Tensor& bufT, const F& f) {
  const bool gemm = kernel_is_gemm_friendly(kind);
  const T* gs = nullptr;
  const T* gt = nullptr;
  int64_t lds = 0, ldt = 0;
  at::Tensor vs, vt;
  if (gemm) {
    vs = tiles::dot_tile_cpu(S.tensor, i0, i1, S.tensor, j0, j1, bufS);
    vt = tiles::dot_tile_cpu(Tt.tensor, i0, i1, Tt.tensor, j0, j1, bufT);
    gs = vs.data_ptr<T>();
    gt = vt.data_ptr<T>();
    lds = vs.stride(0);
    ldt = vt.stride(0);
  }
  for (int64_t a = i0; a < i1; ++a) {
    for (int64_t b = j0; b < j1; ++b) {
      const double g_s = gemm ? double(gs[(a - i0) * lds + (b - j0)]) : 0.0;
      const double g_t = gemm ? double(gt[(a - i0) * ldt + (b - j0)]) : 0.0;
      const auto st_s = S.stats(kind, a, b, g_s);
      const auto st_t = Tt.stats(kind, a, b, g_t);
      f(a, b, kernel_value(kind, st_s, gamma), kernel_value(kind, st_t, gamma), st_s, st_t);
    }
  }
}

}  // namespace

// Rows [r0, r1) against all N columns (the caller has checked the arguments and the range).
std::tuple<at::Tensor, at::Tensor> gsp_direct_cpu(const at::Tensor& s_in, const at::Tensor& t_in, SimKernel kind,
                                                 GspLoss loss, double gamma, double tau, int64_t r0, int64_t r1) {
  const auto s = s_in.detach().contiguous();
  const auto t = t_in.detach().contiguous();
  const int64_t n = s.size(0);
  auto per_row = at::zeros({r1 - r0}, s.options());
  auto stats = at::zeros({r1 - r0, 2}, s.options());
  const double inv_tau = 1.0 / tau;
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_gsp_cpu", [&] {
    using T = scalar_t;
    const Side<T> S(s, kind), Tt(t, kind);
    T* pr = per_row.data_ptr<T>();
    T* sp = stats.data_ptr<T>();
    tiles::for_each_row_block(r1 - r0, tiles::kCpuRowBlock, [&](int64_t b0, int64_t b1) {
      const int64_t i0 = r0 + b0, i1 = r0 + b1, bi = i1 - i0;
      auto bufS = tiles::tile_buffer(s, tiles::kCpuRowBlock, tiles::kCpuColBlock);
      auto bufT = tiles::tile_buffer(t, tiles::kCpuRowBlock, tiles::kCpuColBlock);
      std::vector<double> sq(bi, 0.0);
      std::vector<tiles::OnlineKL<double>> rows(loss == GspLoss::Kl ? bi : 0);
      for (int64_t j0 = 0; j0 < n; j0 += tiles::kCpuColBlock) {
        const int64_t j1 = std::min(n, j0 + tiles::kCpuColBlock);
        for_each_pair(kind, gamma, S, Tt, i0, i1, j0, j1, bufS, bufT,
                      [&](int64_t a, int64_t, double ks, double kt, const auto&, const auto&) {
                        if (loss == GspLoss::Mse) {
                          sq[a - i0] += (ks - kt) * (ks - kt);
                        } else {
                          rows[a - i0].add(ks * inv_tau, kt * inv_tau);
                        }
                      });
      }
      for (int64_t a = i0; a < i1; ++a) {
        const int64_t o = a - r0;  // output row
        if (loss == GspLoss::Mse) {
          pr[o] = static_cast<T>(sq[a - i0]);
        } else {
          const tiles::OnlineKL<double>& row = rows[a - i0];
          const double kl = row.kl();  // >= 0 up to rounding: clamp
          pr[o] = static_cast<T>(kl < 0 ? 0.0 : kl);  // NaN stays NaN
          sp[2 * o] = static_cast<T>(row.lse_s());
          sp[2 * o + 1] = static_cast<T>(row.lse_t());
        }
      }
    });
  });
  return {per_row, stats};
}

// Gradients of all N rows from full-N state (gsp_full_state when the forward had a row range
// [r0, r1)); row blocks outside the range only visit the range's columns, the only pairs with a
// nonzero coefficient there.
std::tuple<at::Tensor, at::Tensor> gsp_direct_backward_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                          const at::Tensor& per_row_in, const at::Tensor& stats_in,
                                                          const at::Tensor& grad_in, SimKernel kind, GspLoss loss,
                                                          double gamma, double tau, bool need_s, bool need_t,
                                                          int64_t r0, int64_t r1) {
  const auto s = s_in.detach().contiguous();
  const auto t = t_in.detach().contiguous();
  const int64_t n = s.size(0);
  const auto per_row = per_row_in.to(at::kDouble).contiguous();
  const auto stats = stats_in.to(at::kDouble).contiguous();
  const auto w = grad_in.to(at::kDouble).contiguous();
  auto grad_s = need_s ? at::zeros_like(s) : at::empty({0}, s.options());
  auto grad_t = need_t ? at::zeros_like(t) : at::empty({0}, t.options());
  if (!need_s && !need_t) return {grad_s, grad_t};
  const double inv_tau = 1.0 / tau;
  const bool gemm = kernel_is_gemm_friendly(kind);
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_gsp_backward_cpu", [&] {
    using T = scalar_t;
    const Side<T> S(s, kind), Tt(t, kind);
    const double* kl = per_row.data_ptr<double>();
    const double* st = stats.data_ptr<double>();
    const double* wp = w.data_ptr<double>();
    tiles::for_each_row_block(n, tiles::kCpuRowBlock, [&](int64_t i0, int64_t i1) {
      const int64_t bi = i1 - i0;
      auto bufS = tiles::tile_buffer(s, tiles::kCpuRowBlock, tiles::kCpuColBlock);
      auto bufT = tiles::tile_buffer(t, tiles::kCpuRowBlock, tiles::kCpuColBlock);
      // M tiles: C_aj * other_aj, multiplied into the block's gradient with one GEMM per tile.
      auto mS = at::zeros({bi, tiles::kCpuColBlock}, s.options());
      auto mT = at::zeros({bi, tiles::kCpuColBlock}, t.options());
      auto accS = need_s ? at::zeros({bi, S.d}, s.options()) : at::Tensor();
      auto accT = need_t ? at::zeros({bi, Tt.d}, t.options()) : at::Tensor();
      std::vector<double> selfS(bi, 0.0), selfT(bi, 0.0);
      T* ms = mS.data_ptr<T>();
      T* mt = mT.data_ptr<T>();
      const int64_t ldm = tiles::kCpuColBlock;
      const bool overlaps = i1 > r0 && i0 < r1;
      const int64_t jb = overlaps ? 0 : r0, je = overlaps ? n : r1;
      for (int64_t j0 = jb; j0 < je; j0 += tiles::kCpuColBlock) {
        const int64_t j1 = std::min(je, j0 + tiles::kCpuColBlock);
        for_each_pair(kind, gamma, S, Tt, i0, i1, j0, j1, bufS, bufT,
                      [&](int64_t a, int64_t b, double ks, double kt, const auto& sts, const auto& stt) {
                        double cs = 0, ct = 0;
                        if (loss == GspLoss::Mse) {
                          cs = 2.0 * (ks - kt) * (wp[a] + wp[b]);
                          ct = -cs;
                        } else {
                          const double xs = ks * inv_tau, xt = kt * inv_tau;
                          const double ls_a = xs - st[2 * a], lt_a = xt - st[2 * a + 1];
                          const double ls_b = xs - st[2 * b], lt_b = xt - st[2 * b + 1];
                          const double ps_a = std::exp(ls_a), pt_a = std::exp(lt_a);
                          const double ps_b = std::exp(ls_b), pt_b = std::exp(lt_b);
                          cs = (wp[a] * (ps_a - pt_a) + wp[b] * (ps_b - pt_b)) * inv_tau;
                          if (need_t)
                            ct = (wp[a] * pt_a * (lt_a - ls_a - kl[a]) + wp[b] * pt_b * (lt_b - ls_b - kl[b])) * inv_tau;
                        }
                        const int64_t r = a - i0, c = b - j0;
                        if (need_s) {
                          const auto g = kernel_grad(kind, sts, ks, gamma);
                          if (gemm) {
                            ms[r * ldm + c] = static_cast<T>(cs * g.other);
                            selfS[r] += cs * g.self_u;
                          } else {
                            T* row = accS.data_ptr<T>() + r * S.d;
                            simk_cpu::sign_axpy(row, S.x + a * S.d, S.x + b * S.d, static_cast<T>(cs * g.sgn), S.d);
                          }
                        }
                        if (need_t) {
                          const auto g = kernel_grad(kind, stt, kt, gamma);
                          if (gemm) {
                            mt[r * ldm + c] = static_cast<T>(ct * g.other);
                            selfT[r] += ct * g.self_u;
                          } else {
                            T* row = accT.data_ptr<T>() + r * Tt.d;
                            simk_cpu::sign_axpy(row, Tt.x + a * Tt.d, Tt.x + b * Tt.d, static_cast<T>(ct * g.sgn),
                                                Tt.d);
                          }
                        }
                      });
        if (gemm) {
          const int64_t bj = j1 - j0;
          if (need_s) accS.addmm_(mS.narrow(1, 0, bj), s.narrow(0, j0, bj));
          if (need_t) accT.addmm_(mT.narrow(1, 0, bj), t.narrow(0, j0, bj));
        }
      }
      // Add the self terms and write the block's rows (owned by this block only).
      if (need_s) {
        auto sv = at::from_blob(selfS.data(), {bi, 1}, at::kDouble).to(s.scalar_type());
        grad_s.narrow(0, i0, bi).copy_(accS + sv * s.narrow(0, i0, bi));
      }
      if (need_t) {
        auto tv = at::from_blob(selfT.data(), {bi, 1}, at::kDouble).to(t.scalar_type());
        grad_t.narrow(0, i0, bi).copy_(accT + tv * t.narrow(0, i0, bi));
      }
    });
  });
  return {grad_s, grad_t};
}


}  // namespace cpu
}  // namespace gkdfast
