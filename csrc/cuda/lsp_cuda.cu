// CUDA local-structure-preserving loss (LSP): one warp per destination row, same algorithm as
// csrc/cpu/lsp_cpu.cpp.  Per in-edge the warp computes the pair statistics of both models with a
// butterfly reduction (every lane holds the totals), so every lane advances an identical
// streaming-softmax state; nothing per edge is stored in forward.
//
// Backward: kernel 1 (warp per CSR row) recomputes the edge, accumulates the destination-side
// gradient into the row it owns and writes two scalars per edge; kernel 2 (warp per transposed
// row = source node) adds the source side.  No atomics: bitwise deterministic.
// Gradients are accumulated in acc_t (float for half types) and cast at the end.
//
// This is the legacy path for the dot-product kernels in float32 / float64: those run the staged
// version (lsp_staged_cuda.cu: edge stage, segment log-sum-exp, cuSPARSE SpMMs for the gradients)
// unless GKDFAST_CUDA_IMPL=legacy.  laplace and half types always run here.

#include "cuda/csr_matmul.h"
#include "cuda/cuda_kernels.h"
#include "common/pairwise_tiles.h"
#include "common/rounding.h"
#include "common/similarity_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "common/tile_workspace.h"
#include "cuda/lsp_staged_cuda.h"
#include "ops/graph_checks.h"
#include "ops/lsp.h"
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

template <typename scalar_t, typename index_t>
__global__ void lsp_forward_kernel(const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
                                   const scalar_t* __restrict__ s, int64_t ds, const scalar_t* __restrict__ t,
                                   int64_t dt, int64_t n, SimKernel kind, double gamma, double inv_tau,
                                   acc_type<scalar_t>* __restrict__ per_node, acc_type<scalar_t>* __restrict__ lse) {
  using acc_t = acc_type<scalar_t>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (i >= n) return;
  const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
  const int lane = threadIdx.x % kWarp;
  if (e0 == e1) {
    if (lane == 0) { per_node[i] = acc_t(0); lse[2 * i] = acc_t(0); lse[2 * i + 1] = acc_t(0); }
    return;
  }
  tiles::OnlineKL<acc_t> row;
  const acc_t g = static_cast<acc_t>(gamma), it = static_cast<acc_t>(inv_tau);
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t j = col[e];
    const auto ss = warp_pair_stats<acc_t>(kind, s + i * ds, s + j * ds, ds);
    const auto st = warp_pair_stats<acc_t>(kind, t + i * dt, t + j * dt, dt);
    row.add(mul_rn(kernel_value(kind, ss, g), it), mul_rn(kernel_value(kind, st, g), it));
  }
  if (lane == 0) {
    const acc_t kl = row.kl();
    per_node[i] = kl < acc_t(0) ? acc_t(0) : kl;  // NaN stays NaN
    lse[2 * i] = row.lse_s();
    lse[2 * i + 1] = row.lse_t();
  }
}

template <typename scalar_t, typename index_t>
__global__ void lsp_backward_rows_kernel(const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
                                         const scalar_t* __restrict__ s, int64_t ds, const scalar_t* __restrict__ t,
                                         int64_t dt, int64_t n, SimKernel kind, double gamma, double inv_tau,
                                         const acc_type<scalar_t>* __restrict__ per_node,
                                         const acc_type<scalar_t>* __restrict__ lse,
                                         const acc_type<scalar_t>* __restrict__ gnode, bool need_s, bool need_t,
                                         acc_type<scalar_t>* __restrict__ gs, acc_type<scalar_t>* __restrict__ gt,
                                         acc_type<scalar_t>* __restrict__ cs, acc_type<scalar_t>* __restrict__ ct) {
  using acc_t = acc_type<scalar_t>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (i >= n) return;
  const int lane = threadIdx.x % kWarp;
  const acc_t g = static_cast<acc_t>(gamma), it = static_cast<acc_t>(inv_tau);
  const acc_t gi = gnode[i] * it;
  const acc_t lse_s = lse[2 * i], lse_t = lse[2 * i + 1], kl = per_node[i];
  acc_t self_s = 0, self_t = 0;
  for (int64_t e = rowptr[i]; e < rowptr[i + 1]; ++e) {
    const int64_t j = col[e];
    const auto ss = warp_pair_stats<acc_t>(kind, s + i * ds, s + j * ds, ds);
    const auto st = warp_pair_stats<acc_t>(kind, t + i * dt, t + j * dt, dt);
    const acc_t ks = kernel_value(kind, ss, g), kt = kernel_value(kind, st, g);
    const acc_t ls = mul_rn(ks, it) - lse_s, lt = mul_rn(kt, it) - lse_t;  // logits as the forward rounded them
    const acc_t ps = exp(ls), pt = exp(lt);
    if (need_s) {
      const acc_t c = gi * (ps - pt);
      const auto kg = kernel_grad(kind, ss, ks, g);
      warp_pair_grad(gs + i * ds, s + i * ds, s + j * ds, ds, c * kg.other, acc_t(0), c * kg.sgn);
      self_s += c * kg.self_u;
      if (lane == 0) {
        cs[2 * e] = kind == SimKernel::Laplace ? c * kg.sgn : c * kg.other;
        cs[2 * e + 1] = c * kg.self_v;
      }
    }
    if (need_t) {
      const acc_t c = gi * pt * (lt - ls - kl);
      const auto kg = kernel_grad(kind, st, kt, g);
      warp_pair_grad(gt + i * dt, t + i * dt, t + j * dt, dt, c * kg.other, acc_t(0), c * kg.sgn);
      self_t += c * kg.self_u;
      if (lane == 0) {
        ct[2 * e] = kind == SimKernel::Laplace ? c * kg.sgn : c * kg.other;
        ct[2 * e + 1] = c * kg.self_v;
      }
    }
  }
  for (int64_t f = lane; f < ds && need_s; f += kWarp) gs[i * ds + f] += self_s * static_cast<acc_t>(s[i * ds + f]);
  for (int64_t f = lane; f < dt && need_t; f += kWarp) gt[i * dt + f] += self_t * static_cast<acc_t>(t[i * dt + f]);
}

// Source side: grad[j] += sum over out-edges e = (j -> i) of a_e x_i + b_e x_j (laplace: a_e sign(x_j - x_i)).
template <typename scalar_t, typename index_t>
__global__ void lsp_backward_sources_kernel(const index_t* __restrict__ trp, const index_t* __restrict__ tcl,
                                            const index_t* __restrict__ teid, const scalar_t* __restrict__ x,
                                            int64_t d, int64_t n, SimKernel kind,
                                            const acc_type<scalar_t>* __restrict__ coef,
                                            acc_type<scalar_t>* __restrict__ grad) {
  using acc_t = acc_type<scalar_t>;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (j >= n) return;
  const int lane = threadIdx.x % kWarp;
  acc_t self = 0;
  for (int64_t p = trp[j]; p < trp[j + 1]; ++p) {
    const int64_t i = tcl[p], e = teid[p];
    const acc_t a = coef[2 * e];
    if (kind == SimKernel::Laplace) {
      warp_pair_grad(grad + j * d, x + j * d, x + i * d, d, acc_t(0), acc_t(0), a);
    } else {
      warp_pair_grad(grad + j * d, x + j * d, x + i * d, d, a, acc_t(0), acc_t(0));
      self += coef[2 * e + 1];
    }
  }
  for (int64_t f = lane; f < d; f += kWarp) grad[j * d + f] += self * static_cast<acc_t>(x[j * d + f]);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> lsp_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                            const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                            const at::Tensor& t_eid, const at::Tensor& s_in, const at::Tensor& t_in,
                                            c10::string_view kname, double gamma, double tau) {
  const SimKernel kind =
      check_lsp(rowptr_in, col_in, t_rowptr, t_col, t_eid, s_in, t_in, std::string(kname), tau, "lsp");
  GKD_CUDA_SETUP(s_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  // (the staged backward multiplies through csr_matmul: forward and backward take the same path)
  if (lsp_staged_supported(kind, s.scalar_type()) && !cuda_legacy_impl() && csr_matmul_fits(col.size(0)))
    return lsp_staged_forward(rowptr, col, s, t, kind, gamma, tau);
  const int64_t n = csr_num_rows(rowptr);
  // Per-node KL and log-sum-exps in the accumulation type (float for half inputs): the backward's
  // p = exp(x - lse) needs lse to more than half's 11 bits.
  const auto acc_opts = s.options().dtype(at::toOpMathType(s.scalar_type()));
  auto per_node = at::zeros({n}, acc_opts);
  auto lse = at::zeros({n, 2}, acc_opts);
  if (n == 0) return {per_node, lse};
  GKD_DISPATCH_FLOATING(s.scalar_type(), "gkdfast_lsp_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_lsp_cuda_index", [&] {
      lsp_forward_kernel<scalar_t, index_t><<<num_blocks(n, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, stream>>>(
          rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), s.data_ptr<scalar_t>(), s.size(1),
          t.data_ptr<scalar_t>(), t.size(1), n, kind, gamma, 1.0 / tau, per_node.data_ptr<acc_type<scalar_t>>(),
          lse.data_ptr<acc_type<scalar_t>>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {per_node, lse};
}

std::tuple<at::Tensor, at::Tensor> lsp_backward_cuda(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in, const at::Tensor& t_col_in,
    const at::Tensor& t_eid_in, const at::Tensor& s_in, const at::Tensor& t_in, const at::Tensor& per_node_in,
    const at::Tensor& lse_in, const at::Tensor& grad_in, c10::string_view kname, double gamma, double tau,
    bool need_s, bool need_t) {
  const SimKernel kind = check_lsp(rowptr_in, col_in, t_rowptr_in, t_col_in, t_eid_in, s_in, t_in,
                                   std::string(kname), tau, "lsp_backward");
  check_lsp_backward_state(rowptr_in, col_in, t_rowptr_in, per_node_in, lse_in, grad_in);
  const int64_t n = csr_num_rows(rowptr_in);
  GKD_CUDA_SETUP(s_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  // (the staged forward has no cuSPARSE step, so under the deterministic mode it may pair with the fused
  // backward: both keep KL and the log-sum-exps in the same form)
  if (lsp_staged_supported(kind, s.scalar_type()) && csr_matmul_enabled(col.size(0)))
    return lsp_staged_backward(rowptr, col, t_rowptr_in.contiguous(), t_col_in.contiguous(), t_eid_in.contiguous(), s,
                               t, per_node_in, lse_in, grad_in, kind, gamma, tau, need_s, need_t);
  const auto acc_opts = s.options().dtype(at::toOpMathType(s.scalar_type()));
  const auto per_node = per_node_in.to(acc_opts.dtype()).contiguous();
  const auto lse = lse_in.to(acc_opts.dtype()).contiguous();
  const auto gnode = grad_in.to(acc_opts.dtype()).contiguous();
  const int64_t num_e = col.numel();
  auto gs = at::zeros({need_s ? n : 0, s.size(1)}, acc_opts);
  auto gt = at::zeros({need_t ? n : 0, t.size(1)}, acc_opts);
  auto cs = at::empty({need_s ? num_e : 0, 2}, acc_opts);
  auto ct = at::empty({need_t ? num_e : 0, 2}, acc_opts);
  if (n > 0 && (need_s || need_t)) {
    GKD_DISPATCH_FLOATING(s.scalar_type(), "gkdfast_lsp_backward_cuda", [&] {
      using acc_t = acc_type<scalar_t>;
      AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_lsp_backward_cuda_index", [&] {
        const unsigned blocks = num_blocks(n, kWarpsPerBlock);
        lsp_backward_rows_kernel<scalar_t, index_t><<<blocks, kWarpsPerBlock * kWarp, 0, stream>>>(
            rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), s.data_ptr<scalar_t>(), s.size(1),
            t.data_ptr<scalar_t>(), t.size(1), n, kind, gamma, 1.0 / tau, per_node.data_ptr<acc_t>(),
            lse.data_ptr<acc_t>(), gnode.data_ptr<acc_t>(), need_s, need_t,
            need_s ? gs.data_ptr<acc_t>() : nullptr, need_t ? gt.data_ptr<acc_t>() : nullptr,
            need_s ? cs.data_ptr<acc_t>() : nullptr, need_t ? ct.data_ptr<acc_t>() : nullptr);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (num_e > 0) {
          const auto trp = t_rowptr_in.contiguous(), tcl = t_col_in.contiguous(), teid = t_eid_in.contiguous();
          if (need_s) {
            lsp_backward_sources_kernel<scalar_t, index_t><<<blocks, kWarpsPerBlock * kWarp, 0, stream>>>(
                trp.data_ptr<index_t>(), tcl.data_ptr<index_t>(), teid.data_ptr<index_t>(), s.data_ptr<scalar_t>(),
                s.size(1), n, kind, cs.data_ptr<acc_t>(), gs.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
          if (need_t) {
            lsp_backward_sources_kernel<scalar_t, index_t><<<blocks, kWarpsPerBlock * kWarp, 0, stream>>>(
                trp.data_ptr<index_t>(), tcl.data_ptr<index_t>(), teid.data_ptr<index_t>(), t.data_ptr<scalar_t>(),
                t.size(1), n, kind, ct.data_ptr<acc_t>(), gt.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        }
      });
    });
  }
  auto out_s = need_s ? gs.to(s.scalar_type()) : at::empty({0}, s.options());
  auto out_t = need_t ? gt.to(t.scalar_type()) : at::empty({0}, t.options());
  return {out_s, out_t};
}
}  // namespace cuda

}  // namespace gkdfast
