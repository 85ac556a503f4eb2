// CUDA global-structure-preserving loss (GSP) over all N^2 pairs, never an N x N tensor.
//
// Same math as csrc/cpu/gsp_cpu.cpp (see the coefficient derivation there).  This first version
// gives one warp to each row a, streams the candidate rows j through the warp and reduces the pair
// statistics with a fixed butterfly (deterministic); per-row state lives in registers, backward
// recomputes every pair and writes only the rows it owns (no atomics).  O(N^2 d) work on CUDA
// cores.  It is now the legacy path: the dot-product kernels go through the GEMM-tile driver
// (ops/gsp_tiles.h: cuBLAS tiles + one fused epilogue kernel per tile, gsp_tiles_cuda.cu) unless
// GKDFAST_CUDA_IMPL=legacy; laplace (L1 distances, no GEMM) always runs here.

#include "cuda/cuda_kernels.h"
#include "common/pairwise_tiles.h"
#include "common/rounding.h"
#include "common/similarity_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "common/tile_workspace.h"
#include "cuda/gsp_tiles_cuda.h"
#include "ops/gsp.h"
#include "ops/gsp_tiles.h"
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

template <typename scalar_t>
__global__ void gsp_forward_kernel(const scalar_t* __restrict__ s, int64_t ds, const scalar_t* __restrict__ t,
                                   int64_t dt, int64_t n, int64_t r0, int64_t r1, SimKernel kind, bool kl_loss,
                                   double gamma, double inv_tau, acc_type<scalar_t>* __restrict__ per_row,
                                   acc_type<scalar_t>* __restrict__ stats) {
  using acc_t = acc_type<scalar_t>;
  // rows [r0, r1) only; output row o = a - r0
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (o >= r1 - r0) return;
  const int64_t a = r0 + o;
  const int lane = threadIdx.x % kWarp;
  const acc_t g = static_cast<acc_t>(gamma), it = static_cast<acc_t>(inv_tau);
  tiles::OnlineKL<acc_t> row;
  double sq = 0;  // sum of squared differences: all terms >= 0, accumulated wide
  for (int64_t b = 0; b < n; ++b) {
    const auto ss = warp_pair_stats<acc_t>(kind, s + a * ds, s + b * ds, ds);
    const auto st = warp_pair_stats<acc_t>(kind, t + a * dt, t + b * dt, dt);
    const acc_t ks = kernel_value(kind, ss, g), kt = kernel_value(kind, st, g);
    if (kl_loss) {
      row.add(mul_rn(ks, it), mul_rn(kt, it));
    } else {
      sq += double(ks - kt) * double(ks - kt);
    }
  }
  if (lane == 0) {
    if (kl_loss) {
      const acc_t kl = row.kl();
      per_row[o] = kl < acc_t(0) ? acc_t(0) : kl;  // NaN stays NaN
      stats[2 * o] = row.lse_s();
      stats[2 * o + 1] = row.lse_t();
    } else {
      per_row[o] = static_cast<acc_t>(sq);
      stats[2 * o] = acc_t(0);
      stats[2 * o + 1] = acc_t(0);
    }
  }
}

template <typename scalar_t>
__global__ void gsp_backward_kernel(const scalar_t* __restrict__ s, int64_t ds, const scalar_t* __restrict__ t,
                                    int64_t dt, int64_t n, int64_t r0, int64_t r1, SimKernel kind, bool kl_loss,
                                    double gamma, double inv_tau, const double* __restrict__ kl,
                                    const double* __restrict__ st,
                                    const double* __restrict__ w, bool need_s, bool need_t,
                                    acc_type<scalar_t>* __restrict__ gs, acc_type<scalar_t>* __restrict__ gt) {
  using acc_t = acc_type<scalar_t>;
  const int64_t a = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (a >= n) return;
  const int lane = threadIdx.x % kWarp;
  const acc_t g = static_cast<acc_t>(gamma), it = static_cast<acc_t>(inv_tau);
  acc_t self_s = 0, self_t = 0;
  // kl, st and w are full-N state (gsp_full_state): a row outside [r0, r1) has weight 0, so it
  // pairs nonzero only with the range's columns (a warp-uniform loop bound).
  const bool in_range = a >= r0 && a < r1;
  const int64_t b_begin = in_range ? 0 : r0, b_end = in_range ? n : r1;
  for (int64_t b = b_begin; b < b_end; ++b) {
    const auto pss = warp_pair_stats<acc_t>(kind, s + a * ds, s + b * ds, ds);
    const auto pst = warp_pair_stats<acc_t>(kind, t + a * dt, t + b * dt, dt);
    const acc_t ks = kernel_value(kind, pss, g), kt = kernel_value(kind, pst, g);
    acc_t cs, ct = 0;
    if (!kl_loss) {
      cs = acc_t(2) * (ks - kt) * static_cast<acc_t>(w[a] + w[b]);
      ct = -cs;
    } else {
      const acc_t xs = mul_rn(ks, it), xt = mul_rn(kt, it);  // as the forward rounded them
      const acc_t ls_a = xs - acc_t(st[2 * a]), lt_a = xt - acc_t(st[2 * a + 1]);
      const acc_t ls_b = xs - acc_t(st[2 * b]), lt_b = xt - acc_t(st[2 * b + 1]);
      const acc_t pt_a = exp(lt_a), pt_b = exp(lt_b);
      cs = (acc_t(w[a]) * (exp(ls_a) - pt_a) + acc_t(w[b]) * (exp(ls_b) - pt_b)) * it;
      if (need_t)
        ct = (acc_t(w[a]) * pt_a * (lt_a - ls_a - acc_t(kl[a])) + acc_t(w[b]) * pt_b * (lt_b - ls_b - acc_t(kl[b]))) * it;
    }
    if (need_s) {
      const auto kg = kernel_grad(kind, pss, ks, g);
      warp_pair_grad(gs + a * ds, s + a * ds, s + b * ds, ds, cs * kg.other, acc_t(0), cs * kg.sgn);
      self_s += cs * kg.self_u;
    }
    if (need_t) {
      const auto kg = kernel_grad(kind, pst, kt, g);
      warp_pair_grad(gt + a * dt, t + a * dt, t + b * dt, dt, ct * kg.other, acc_t(0), ct * kg.sgn);
      self_t += ct * kg.self_u;
    }
  }
  for (int64_t f = lane; f < ds && need_s; f += kWarp) gs[a * ds + f] += self_s * static_cast<acc_t>(s[a * ds + f]);
  for (int64_t f = lane; f < dt && need_t; f += kWarp) gt[a * dt + f] += self_t * static_cast<acc_t>(t[a * dt + f]);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gsp_tiled_cuda(const at::Tensor& s_in, const at::Tensor& t_in,
                                                  c10::string_view kname, c10::string_view lname, double gamma,
                                                  double tau, int64_t row_begin, int64_t row_end) {
  const GspArgs args = check_gsp(s_in, t_in, tau, kname, lname, row_begin, row_end);
  const SimKernel kind = args.kind;
  const bool kl_loss = args.loss == GspLoss::Kl;
  const int64_t n = args.n, r0 = args.r0, r1 = args.r1;
  GKD_CUDA_SETUP(s_in);
  if (kernel_is_gemm_friendly(kind) && !cuda_legacy_impl())
    return gsp_tiles_forward(s_in, t_in, kind, args.loss, gamma, tau, r0, r1, cuda_gsp_epilogue());
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  // Row sums and log-sum-exps in the accumulation type (float for half inputs): a row's mse sum
  // overflows half, and the backward's p = exp(x - lse) needs lse to more than half's 11 bits.
  const auto out_opts = s.options().dtype(gsp_output_dtype(s.scalar_type()));
  auto per_row = at::zeros({r1 - r0}, out_opts);
  auto stats = at::zeros({r1 - r0, 2}, out_opts);
  if (r1 == r0) return {per_row, stats};
  GKD_DISPATCH_FLOATING(s.scalar_type(), "gkdfast_gsp_cuda", [&] {
    gsp_forward_kernel<scalar_t><<<num_blocks(r1 - r0, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, stream>>>(
        s.data_ptr<scalar_t>(), s.size(1), t.data_ptr<scalar_t>(), t.size(1), n, r0, r1, kind, kl_loss, gamma,
        1.0 / tau, per_row.data_ptr<acc_type<scalar_t>>(), stats.data_ptr<acc_type<scalar_t>>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {per_row, stats};
}

std::tuple<at::Tensor, at::Tensor> gsp_tiled_backward_cuda(const at::Tensor& s_in, const at::Tensor& t_in,
                                                           const at::Tensor& per_row_in, const at::Tensor& stats_in,
                                                           const at::Tensor& grad_in, c10::string_view kname,
                                                           c10::string_view lname, double gamma, double tau,
                                                           bool need_s, bool need_t, int64_t row_begin,
                                                           int64_t row_end) {
  const GspArgs args = check_gsp_backward(s_in, t_in, per_row_in, stats_in, grad_in, tau, kname, lname, row_begin,
                                          row_end);
  const SimKernel kind = args.kind;
  const bool kl_loss = args.loss == GspLoss::Kl;
  const int64_t n = args.n, r0 = args.r0, r1 = args.r1;
  GKD_CUDA_SETUP(s_in);
  // Full-N state: the range's rows, weight 0 elsewhere (see gsp_full_state in ops/gsp.h).
  const GspFullState full = gsp_full_state(n, r0, r1, per_row_in, stats_in, grad_in);
  if (kernel_is_gemm_friendly(kind) && !cuda_legacy_impl())
    return gsp_tiles_backward(s_in, t_in, full.per_row, full.stats, full.grad, kind, args.loss, gamma, tau, need_s,
                              need_t, r0, r1, cuda_gsp_epilogue());
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  const auto kl = full.per_row.contiguous();
  const auto st = full.stats.contiguous();
  const auto w = full.grad.contiguous();
  const auto acc_opts = s.options().dtype(at::toOpMathType(s.scalar_type()));
  auto gs = at::zeros({need_s ? n : 0, s.size(1)}, acc_opts);
  auto gt = at::zeros({need_t ? n : 0, t.size(1)}, acc_opts);
  if (n > 0 && (need_s || need_t)) {
    GKD_DISPATCH_FLOATING(s.scalar_type(), "gkdfast_gsp_backward_cuda", [&] {
      using acc_t = acc_type<scalar_t>;
      gsp_backward_kernel<scalar_t><<<num_blocks(n, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, stream>>>(
          s.data_ptr<scalar_t>(), s.size(1), t.data_ptr<scalar_t>(), t.size(1), n, r0, r1, kind, kl_loss, gamma,
          1.0 / tau, kl.data_ptr<double>(), st.data_ptr<double>(), w.data_ptr<double>(), need_s, need_t,
          need_s ? gs.data_ptr<acc_t>() : nullptr, need_t ? gt.data_ptr<acc_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  auto out_s = need_s ? gs.to(s.scalar_type()) : at::empty({0}, s.options());
  auto out_t = need_t ? gt.to(t.scalar_type()) : at::empty({0}, t.options());
  return {out_s, out_t};
}
}  // namespace cuda

}  // namespace gkdfast
