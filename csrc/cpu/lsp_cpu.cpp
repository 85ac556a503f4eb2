// CPU local-structure-preserving loss (LSP), fused per destination row.
//
// Forward, one pass per row i (degree-balanced parallel chunks): for each in-edge e = (j -> i) the
// kernel values k(s_i, s_j), k(t_i, t_j) are computed from the two rows (never stored), fed to a
// streaming log-sum-exp for the student and a streaming softmax-weighted mean for the teacher,
// which give KL(alpha^T_i || alpha^S_i) at the end of the row.  Saved for backward: the two
// log-sum-exps per row (O(N)).
//
// Backward, two passes and no atomics:
//   1. rows of the CSR: recompute the edge's kernel values, form dL/dk per edge, add the
//      destination-side gradient to grad[i] (row-local) and keep two scalars per edge (O(E)) for
//      the source side;
//   2. rows of the transposed CSR: grad[j] += those scalars times s_i (or a sign term for laplace).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <cmath>
#include <algorithm>
#include <vector>

#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "common/cpu_parallel.h"
#include "common/cpu_vec.h"
#include "common/pairwise_tiles.h"
#include "common/similarity_kernels.h"
#include "ops/graph_checks.h"
#include "ops/lsp.h"

namespace gkdfast {
namespace {

template <typename T>
struct ModelRows {
  const T* x;
  int64_t d;
  const double* sqn;  // ||x_i||^2 (only for cosine), else nullptr
  const T* row(int64_t i) const { return x + i * d; }
};

template <typename T>
PairStats<double> edge_stats(SimKernel k, const ModelRows<T>& m, int64_t i, int64_t j) {
  PairStats<double> s;
  const T* u = m.row(i);
  const T* v = m.row(j);
  if (kernel_needs_dot(k)) s.g = vec::dot(u, v, m.d);
  if (kernel_needs_norms(k)) { s.na = m.sqn[i]; s.nb = m.sqn[j]; }
  if (kernel_needs_d2(k)) s.d2 = simk_cpu::sq_dist(u, v, m.d);
  if (kernel_needs_l1(k)) s.l1 = simk_cpu::l1_dist(u, v, m.d);
  return s;
}

std::vector<double> row_sq_norms(const at::Tensor& x, SimKernel k) {
  std::vector<double> out;
  if (!kernel_needs_norms(k)) return out;
  auto n = tiles::sq_norms_cpu(x).to(at::kDouble).contiguous();
  out.assign(n.data_ptr<double>(), n.data_ptr<double>() + n.numel());
  return out;
}

// Source-side pass over the transposed CSR: grad[j] += sum_{e=(j->i)} a_e x_i + b_e x_j (or, for
// laplace, a_e * sign(x_j - x_i)).  coef is [E, 2] in forward-CSR order.
template <typename T, typename index_t>
void scatter_source_side(SimKernel kind, const index_t* trp, const index_t* tcl, const index_t* teid, int64_t n,
                         const T* x, int64_t d, const T* coef, T* grad) {
  parallel_rows(trp, n, d, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      T* gj = grad + j * d;
      const T* xj = x + j * d;
      double self = 0;
      for (int64_t p = trp[j]; p < trp[j + 1]; ++p) {
        const int64_t i = tcl[p], e = teid[p];
        if (kind == SimKernel::Laplace) {
          simk_cpu::sign_axpy(gj, xj, x + i * d, coef[2 * e], d);
        } else {
          vec::axpy(gj, x + i * d, coef[2 * e], d);
          self += coef[2 * e + 1];
        }
      }
      if (self != 0) vec::axpy(gj, xj, static_cast<T>(self), d);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> lsp_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                           const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                           const at::Tensor& t_eid, const at::Tensor& s_in, const at::Tensor& t_in,
                                           c10::string_view kname, double gamma, double tau) {
  const SimKernel kind =
      check_lsp(rowptr_in, col_in, t_rowptr, t_col, t_eid, s_in, t_in, std::string(kname), tau, "lsp");
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  const int64_t n = csr_num_rows(rowptr);
  // Per-node KL and log-sum-exps in float64, the precision they are computed in: the backward forms
  // p = exp(x - lse) in float64, and an lse rounded to float32 cost float32 inputs up to 1% of their
  // gradient at tau = 0.1 (about 400x the float32 reference's error).
  auto per_node = at::zeros({n}, s.options().dtype(at::kDouble));
  auto lse = at::zeros({n, 2}, s.options().dtype(at::kDouble));
  const auto sn = row_sq_norms(s, kind), tn = row_sq_norms(t, kind);
  const double inv_tau = 1.0 / tau;
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_lsp_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_lsp_cpu_index", [&] {
      const index_t* rp = rowptr.data_ptr<index_t>();
      const index_t* cl = col.data_ptr<index_t>();
      const ModelRows<scalar_t> ms{s.data_ptr<scalar_t>(), s.size(1), sn.data()};
      const ModelRows<scalar_t> mt{t.data_ptr<scalar_t>(), t.size(1), tn.data()};
      double* out = per_node.data_ptr<double>();
      double* lp = lse.data_ptr<double>();
      parallel_rows(rp, n, s.size(1) + t.size(1), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          if (rp[i] == rp[i + 1]) continue;  // no in-edge: 0 by definition
          tiles::OnlineKL<double> row;
          for (int64_t e = rp[i]; e < rp[i + 1]; ++e) {
            const int64_t j = cl[e];
            const double xs = kernel_value(kind, edge_stats(kind, ms, i, j), gamma) * inv_tau;
            const double xt = kernel_value(kind, edge_stats(kind, mt, i, j), gamma) * inv_tau;
            row.add(xs, xt);
          }
          const double kl = row.kl();  // >= 0; rounding may leave -1e-16: clamp
          out[i] = kl < 0 ? 0.0 : kl;  // NaN stays NaN
          lp[2 * i] = row.lse_s();
          lp[2 * i + 1] = row.lse_t();
        }
      });
    });
  });
  return {per_node, lse};
}

std::tuple<at::Tensor, at::Tensor> lsp_backward_cpu(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in, const at::Tensor& t_col_in,
    const at::Tensor& t_eid_in, const at::Tensor& s_in, const at::Tensor& t_in, const at::Tensor& per_node_in,
    const at::Tensor& lse_in, const at::Tensor& grad_in, c10::string_view kname, double gamma, double tau,
    bool need_s, bool need_t) {
  const SimKernel kind = check_lsp(rowptr_in, col_in, t_rowptr_in, t_col_in, t_eid_in, s_in, t_in,
                                   std::string(kname), tau, "lsp_backward");
  check_lsp_backward_state(rowptr_in, col_in, t_rowptr_in, per_node_in, lse_in, grad_in);
  const int64_t n = csr_num_rows(rowptr_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto s = s_in.contiguous();
  const auto t = t_in.contiguous();
  const auto per_node = per_node_in.to(at::kDouble).contiguous();
  const auto lse = lse_in.to(at::kDouble).contiguous();
  const auto gnode = grad_in.to(at::kDouble).contiguous();
  const int64_t num_e = col.numel();
  auto grad_s = need_s ? at::zeros_like(s) : at::empty({0}, s.options());
  auto grad_t = need_t ? at::zeros_like(t) : at::empty({0}, t.options());
  if (!need_s && !need_t) return {grad_s, grad_t};
  auto coef_s = at::empty({need_s ? num_e : 0, 2}, s.options());
  auto coef_t = at::empty({need_t ? num_e : 0, 2}, s.options());
  const auto sn = row_sq_norms(s, kind), tn = row_sq_norms(t, kind);
  const double inv_tau = 1.0 / tau;
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_lsp_backward_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_lsp_backward_cpu_index", [&] {
      using T = scalar_t;
      const index_t* rp = rowptr.data_ptr<index_t>();
      const index_t* cl = col.data_ptr<index_t>();
      const ModelRows<T> ms{s.data_ptr<T>(), s.size(1), sn.data()};
      const ModelRows<T> mt{t.data_ptr<T>(), t.size(1), tn.data()};
      const double* kl = per_node.data_ptr<double>();
      const double* lp = lse.data_ptr<double>();
      const double* gp = gnode.data_ptr<double>();
      T* cs = need_s ? coef_s.data_ptr<T>() : nullptr;
      T* ct = need_t ? coef_t.data_ptr<T>() : nullptr;
      T* gs = need_s ? grad_s.data_ptr<T>() : nullptr;
      T* gt = need_t ? grad_t.data_ptr<T>() : nullptr;
      // Destination side of one model's gradient for edge (j -> i) with dL/dk = c, summed into the row's
      // float64 accumulator: a hub's terms nearly cancel against its self term (cosine), and summed in
      // float32 over 100k in-edges they lost two digits against the reference (helper 119).
      auto dest_part = [&](const ModelRows<T>& m, const PairStats<double>& st, double kval, double c, int64_t i,
                           int64_t j, double* acc, double& self, T* coef_e) {
        const KernelGrad<double> kg = kernel_grad(kind, st, kval, gamma);
        const T* ri = m.row(i);
        const T* rj = m.row(j);
        if (kind == SimKernel::Laplace) {
          const double w = c * kg.sgn;
          for (int64_t f = 0; f < m.d; ++f) acc[f] += ri[f] > rj[f] ? w : (ri[f] < rj[f] ? -w : 0.0);
          coef_e[0] = static_cast<T>(c * kg.sgn);
          coef_e[1] = T(0);
        } else {
          const double w = c * kg.other;
          for (int64_t f = 0; f < m.d; ++f) acc[f] += w * static_cast<double>(rj[f]);
          self += c * kg.self_u;
          coef_e[0] = static_cast<T>(c * kg.other);
          coef_e[1] = static_cast<T>(c * kg.self_v);
        }
      };
      // grow = acc + self * row_i, rounded once (grow is still 0: the source side comes later).
      auto store_row = [](T* grow, const double* acc, double self, const T* ri, int64_t d) {
        for (int64_t f = 0; f < d; ++f) grow[f] = static_cast<T>(acc[f] + self * static_cast<double>(ri[f]));
      };
      parallel_rows(rp, n, s.size(1) + t.size(1), [&](int64_t begin, int64_t end) {
        std::vector<double> acc_s(need_s ? ms.d : 0), acc_t(need_t ? mt.d : 0);
        for (int64_t i = begin; i < end; ++i) {
          const double g = gp[i] * inv_tau;
          const double lse_s = lp[2 * i], lse_t = lp[2 * i + 1], kl_i = kl[i];
          double self_s = 0, self_t = 0;
          if (rp[i] == rp[i + 1]) continue;
          std::fill(acc_s.begin(), acc_s.end(), 0.0);
          std::fill(acc_t.begin(), acc_t.end(), 0.0);
          for (int64_t e = rp[i]; e < rp[i + 1]; ++e) {
            const int64_t j = cl[e];
            const auto st_s = edge_stats(kind, ms, i, j);
            const auto st_t = edge_stats(kind, mt, i, j);
            const double ks = kernel_value(kind, st_s, gamma), kt = kernel_value(kind, st_t, gamma);
            const double xs = ks * inv_tau, xt = kt * inv_tau;
            const double ls = xs - lse_s, lt = xt - lse_t;  // log alpha
            const double ps = std::exp(ls), pt = std::exp(lt);
            // d KL_i / d x^S_e = p^S - p^T;  d KL_i / d x^T_e = p^T (log p^T - log p^S - KL_i).
            if (need_s) dest_part(ms, st_s, ks, g * (ps - pt), i, j, acc_s.data(), self_s, cs + 2 * e);
            if (need_t) dest_part(mt, st_t, kt, g * pt * (lt - ls - kl_i), i, j, acc_t.data(), self_t, ct + 2 * e);
          }
          if (need_s) store_row(gs + i * ms.d, acc_s.data(), self_s, ms.row(i), ms.d);
          if (need_t) store_row(gt + i * mt.d, acc_t.data(), self_t, mt.row(i), mt.d);
        }
      });
      if (num_e > 0) {
        const auto trp_t = t_rowptr_in.contiguous(), tcl_t = t_col_in.contiguous(), teid_t = t_eid_in.contiguous();
        TORCH_CHECK_TYPE(trp_t.scalar_type() == col.scalar_type() && teid_t.scalar_type() == col.scalar_type(),
                         "gkdfast.lsp_backward: the transposed CSR must use the graph's index dtype");
        const index_t* trp = trp_t.data_ptr<index_t>();
        const index_t* tcl = tcl_t.data_ptr<index_t>();
        const index_t* teid = teid_t.data_ptr<index_t>();
        if (need_s) scatter_source_side(kind, trp, tcl, teid, n, ms.x, ms.d, static_cast<const T*>(cs), gs);
        if (need_t) scatter_source_side(kind, trp, tcl, teid, n, mt.x, mt.d, static_cast<const T*>(ct), gt);
      }
    });
  });
  return {grad_s, grad_t};
}

}  // namespace gkdfast
