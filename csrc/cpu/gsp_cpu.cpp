// CPU global-structure-preserving loss (GSP) over all N^2 pairs, tiled: never an N x N tensor.
//
// Row blocks I run in parallel (each owns its output rows: deterministic, no atomics).  For each
// column block J the dot-product tile S_I S_J^T (and T_I T_J^T) comes from at::mm (BLAS); kernel
// values are formed per element from the tile and the rows' squared norms, and folded into
// per-row state: a double sum of squared differences (mse) or a streaming log-sum-exp for the
// student and a streaming softmax-weighted mean for the teacher (kl).  laplace needs the L1
// distance, which no GEMM gives, so its tiles are computed directly.
//
// Backward recomputes the tiles.  For the loss L = sum_i w_i * per_row_i, the coefficient of pair
// (a, j) is C_aj = dL/dk(s_a, s_j) counting both ordered pairs (a, j) and (j, a) (k is symmetric):
//   mse: C_aj = 2 (K^S_aj - K^T_aj)(w_a + w_j)
//   kl : C_aj = (w_a (p^S_aj - p^T_aj) + w_j (p^S_ja - p^T_ja)) / tau, p^S_ja from row j's saved lse
// and grad s_a = sum_j C_aj (other_aj s_j + self_aj s_a [+ sgn_aj sign(s_a - s_j)]): the first term
// is a GEMM (C .* other) @ S_J, the second a per-row scalar.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cmath>
#include <vector>

#include "common/online_softmax.h"
#include "common/pairwise_tiles.h"
#include "common/similarity_kernels.h"

namespace gkdfast {
namespace {

enum class GspLoss { Mse, Kl };

GspLoss parse_loss(const std::string& name, const char* op) {
  if (name == "mse") return GspLoss::Mse;
  if (name == "kl") return GspLoss::Kl;
  TORCH_CHECK_VALUE(false, "gkdfast.", op, ": unknown loss '", name, "'; expected 'mse' or 'kl'");
}

void check_pair(const at::Tensor& s, const at::Tensor& t, double tau, const char* op) {
  TORCH_CHECK_VALUE(s.dim() == 2 && t.dim() == 2, "gkdfast.", op, ": student and teacher must be 2-D, got ",
                    s.sizes(), " and ", t.sizes());
  TORCH_CHECK_VALUE(s.size(0) == t.size(0), "gkdfast.", op, ": student has ", s.size(0), " rows but teacher has ",
                    t.size(0));
  TORCH_CHECK_TYPE(at::isFloatingType(s.scalar_type()) && s.scalar_type() == t.scalar_type(), "gkdfast.", op,
                   ": student and teacher must share one floating dtype, got ", s.scalar_type(), " and ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(s.device() == t.device(), "gkdfast.", op, ": student on ", s.device(), ", teacher on ",
                    t.device());
  TORCH_CHECK_VALUE(tau > 0, "gkdfast.", op, ": tau must be > 0, got ", tau);
}

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

std::tuple<at::Tensor, at::Tensor> gsp_tiled_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                 c10::string_view kname, c10::string_view lname, double gamma,
                                                 double tau) {
  check_pair(s_in, t_in, tau, "gsp");
  const SimKernel kind = parse_sim_kernel(std::string(kname), "gsp");
  const GspLoss loss = parse_loss(std::string(lname), "gsp");
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  const int64_t n = s.size(0);
  auto per_row = at::zeros({n}, s.options());
  auto stats = at::zeros({n, 2}, s.options());
  const double inv_tau = 1.0 / tau;
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gkdfast_gsp_cpu", [&] {
    using T = scalar_t;
    const Side<T> S(s, kind), Tt(t, kind);
    T* pr = per_row.data_ptr<T>();
    T* sp = stats.data_ptr<T>();
    tiles::for_each_row_block(n, tiles::kCpuRowBlock, [&](int64_t i0, int64_t i1) {
      const int64_t bi = i1 - i0;
      auto bufS = tiles::tile_buffer(s, tiles::kCpuRowBlock, tiles::kCpuColBlock);
      auto bufT = tiles::tile_buffer(t, tiles::kCpuRowBlock, tiles::kCpuColBlock);
      std::vector<double> sq(bi, 0.0);
      std::vector<OnlineLSE<double>> ls(loss == GspLoss::Kl ? bi : 0);
      std::vector<tiles::OnlineWeightedLSE<double>> lt(loss == GspLoss::Kl ? bi : 0);
      for (int64_t j0 = 0; j0 < n; j0 += tiles::kCpuColBlock) {
        const int64_t j1 = std::min(n, j0 + tiles::kCpuColBlock);
        for_each_pair(kind, gamma, S, Tt, i0, i1, j0, j1, bufS, bufT,
                      [&](int64_t a, int64_t, double ks, double kt, const auto&, const auto&) {
                        if (loss == GspLoss::Mse) {
                          sq[a - i0] += (ks - kt) * (ks - kt);
                        } else {
                          const double xs = ks * inv_tau, xt = kt * inv_tau;
                          ls[a - i0].add(xs);
                          lt[a - i0].add(xt, xt - xs);
                        }
                      });
      }
      for (int64_t a = i0; a < i1; ++a) {
        if (loss == GspLoss::Mse) {
          pr[a] = static_cast<T>(sq[a - i0]);
        } else {
          const double lse_s = ls[a - i0].value(), lse_t = lt[a - i0].lse();
          const double kl = lt[a - i0].mean() - lse_t + lse_s;  // >= 0 up to rounding: clamp
          pr[a] = static_cast<T>(kl > 0 ? kl : 0.0);
          sp[2 * a] = static_cast<T>(lse_s);
          sp[2 * a + 1] = static_cast<T>(lse_t);
        }
      }
    });
  });
  return {per_row, stats};
}

std::tuple<at::Tensor, at::Tensor> gsp_tiled_backward_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                          const at::Tensor& per_row_in, const at::Tensor& stats_in,
                                                          const at::Tensor& grad_in, c10::string_view kname,
                                                          c10::string_view lname, double gamma, double tau,
                                                          bool need_s, bool need_t) {
  check_pair(s_in, t_in, tau, "gsp_backward");
  const SimKernel kind = parse_sim_kernel(std::string(kname), "gsp_backward");
  const GspLoss loss = parse_loss(std::string(lname), "gsp_backward");
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  const int64_t n = s.size(0);
  TORCH_CHECK_VALUE(per_row_in.numel() == n && stats_in.numel() == 2 * n && grad_in.numel() == n,
                    "gkdfast.gsp_backward: per_row, stats and grad must have N, 2N and N entries (N = ", n, ")");
  const auto per_row = per_row_in.to(at::kDouble).contiguous();
  const auto stats = stats_in.to(at::kDouble).contiguous();
  const auto w = grad_in.to(at::kDouble).contiguous();
  auto grad_s = need_s ? at::zeros_like(s) : at::empty({0}, s.options());
  auto grad_t = need_t ? at::zeros_like(t) : at::empty({0}, t.options());
  if (!need_s && !need_t) return {grad_s, grad_t};
  const double inv_tau = 1.0 / tau;
  const bool gemm = kernel_is_gemm_friendly(kind);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gkdfast_gsp_backward_cpu", [&] {
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
      for (int64_t j0 = 0; j0 < n; j0 += tiles::kCpuColBlock) {
        const int64_t j1 = std::min(n, j0 + tiles::kCpuColBlock);
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

}  // namespace

TORCH_LIBRARY_IMPL(gkdfast, CPU, m) {
  m.impl("gsp_tiled", &gsp_tiled_cpu);
  m.impl("gsp_tiled_backward", &gsp_tiled_backward_cpu);
}

}  // namespace gkdfast
