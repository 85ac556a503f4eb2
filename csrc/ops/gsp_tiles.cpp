// GSP GEMM-tile driver and its host epilogue (see gsp_tiles.h).
#include "ops/gsp_tiles.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <limits>

#include "common/gsp_tile_math.h"
#include "common/pairwise_tiles.h"
#include "common/rounding.h"
#include "common/tile_workspace.h"

namespace gkdfast {
namespace {

// Host tiles when no budget is set: 32 MiB keeps a pair of float tiles of a few thousand columns.
constexpr int64_t kHostTileBudget = int64_t(32) << 20;

int64_t tile_budget(const at::Tensor& like) { return tile_workspace_bytes(like.is_cuda(), kHostTileBudget); }

// One model's GEMM operand: rows in the accumulation dtype (normalised for cosine), squared norms
// for l2/rbf, and for cosine the clamped norms and the "above eps" mask the gradient needs.
struct Operand {
  at::Tensor x, sqn, den, active;
};

Operand prepare(const at::Tensor& in, SimKernel kind) {
  Operand o;
  const at::Tensor x = in.detach().to(gsp_output_dtype(in.scalar_type())).contiguous();
  if (kind == SimKernel::Cosine) {
    const at::Tensor nrm = x.to(at::kDouble).pow(2).sum(1).sqrt();
    o.den = nrm.clamp_min(kCosineEps).to(x.scalar_type());
    o.active = (nrm > kCosineEps).to(x.scalar_type());
    o.x = (x / o.den.unsqueeze(1)).contiguous();
  } else if (kernel_needs_d2(kind)) {
    // d2 = |a|^2 + |b|^2 - 2 a.b cancels in proportion to the norms, not the distance (badly so with
    // TF32 tiles): distances do not change under a translation, so the rows are centred first (mean in
    // float64). The gradient, a sum of coefficient * (x_a - x_b), is the same for centred rows.
    const at::Tensor xd = x.to(at::kDouble);
    o.x = (xd - xd.mean(0, /*keepdim=*/true)).to(x.scalar_type()).contiguous();
  } else {
    o.x = x;
  }
  if (kernel_needs_d2(kind)) o.sqn = o.x.to(at::kDouble).pow(2).sum(1).to(x.scalar_type()).contiguous();
  return o;
}

// grad = acc + self * x, or for cosine (acc - active * self * x_hat) / den.
at::Tensor finish_grad(const at::Tensor& acc, const at::Tensor& self, const Operand& o, SimKernel kind) {
  if (kind == SimKernel::Cosine) return (acc - (o.active * self).unsqueeze(1) * o.x) / o.den.unsqueeze(1);
  return acc + self.unsqueeze(1) * o.x;
}

// ------------------------------------------------------------------------------ host epilogue
template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T>
void host_forward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, at::Tensor& state) {
  const int64_t bi = tile.gs.size(0), bj = tile.gs.size(1), lds = tile.gs.stride(0), ldt = tile.gt.stride(0);
  const T* gs = tile.gs.data_ptr<T>();
  const T* gt = tile.gt.data_ptr<T>();
  const T *ns = ptr_or_null<T>(norms.s), *nt = ptr_or_null<T>(norms.t);
  const T gamma = static_cast<T>(k.gamma), inv_tau = static_cast<T>(k.inv_tau);
  at::parallel_for(0, bi, 16, [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const int64_t a = tile.i0 + r;
      tiles::OnlineKL<T> row;
      double sq = 0;
      for (int64_t c = 0; c < bj; ++c) {
        const int64_t b = tile.j0 + c;
        const T ks = gsp_tile::kernel_from_dot<T>(k.kind, gs[r * lds + c], ns ? ns[a] : T(0), ns ? ns[b] : T(0),
                                                   a == b, gamma);
        const T kt = gsp_tile::kernel_from_dot<T>(k.kind, gt[r * ldt + c], nt ? nt[a] : T(0), nt ? nt[b] : T(0),
                                                   a == b, gamma);
        if (k.kl) {
          row.add(mul_rn(ks, inv_tau), mul_rn(kt, inv_tau));
        } else {
          sq += double(ks - kt) * double(ks - kt);
        }
      }
      if (k.kl) {
        T* st = state.data_ptr<T>() + r * state.stride(0);
        tiles::OnlineKL<T> acc = tiles::OnlineKL<T>::load(st);
        acc.merge(row);
        acc.save(st);
      } else {
        state.data_ptr<double>()[r * state.stride(0)] += sq;
      }
    }
  });
}

template <typename T>
void host_backward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, const GspRowState& rows,
                   bool need_t, at::Tensor& self_rows) {
  const int64_t bi = tile.gs.size(0), bj = tile.gs.size(1), lds = tile.gs.stride(0), ldt = tile.gt.stride(0);
  T* gs = tile.gs.data_ptr<T>();
  T* gt = tile.gt.data_ptr<T>();
  const T *ns = ptr_or_null<T>(norms.s), *nt = ptr_or_null<T>(norms.t);
  const T *lse_s = rows.lse_s.data_ptr<T>(), *lse_t = rows.lse_t.data_ptr<T>(), *kl = rows.kl.data_ptr<T>(),
          *w = rows.w.data_ptr<T>();
  const T gamma = static_cast<T>(k.gamma), inv_tau = static_cast<T>(k.inv_tau);
  T* self_p = self_rows.data_ptr<T>();
  const int64_t lds_self = self_rows.stride(0);
  at::parallel_for(0, bi, 16, [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const int64_t a = tile.i0 + r;
      const gsp_tile::RowStats<T> ra{lse_s[a], lse_t[a], kl[a], w[a]};
      T self_s = 0, self_t = 0;
      for (int64_t c = 0; c < bj; ++c) {
        const int64_t b = tile.j0 + c;
        const gsp_tile::RowStats<T> rb{lse_s[b], lse_t[b], kl[b], w[b]};
        const T g_s = gs[r * lds + c], g_t = gt[r * ldt + c];
        const T ks = gsp_tile::kernel_from_dot<T>(k.kind, g_s, ns ? ns[a] : T(0), ns ? ns[b] : T(0), a == b, gamma);
        const T kt = gsp_tile::kernel_from_dot<T>(k.kind, g_t, nt ? nt[a] : T(0), nt ? nt[b] : T(0), a == b, gamma);
        T cs, ct, other, self;
        gsp_tile::pair_coef<T>(k.kl, ks, kt, inv_tau, ra, rb, need_t, cs, ct);
        gsp_tile::kernel_grad_from_dot<T>(k.kind, g_s, ks, gamma, other, self);
        gs[r * lds + c] = cs * other;
        self_s += cs * self;
        gsp_tile::kernel_grad_from_dot<T>(k.kind, g_t, kt, gamma, other, self);
        gt[r * ldt + c] = ct * other;
        self_t += ct * self;
      }
      self_p[r * lds_self] += self_s;
      self_p[r * lds_self + 1] += self_t;
    }
  });
}

class HostGspEpilogue final : public GspTileEpilogue {
 public:
  void forward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, at::Tensor state) const override {
    AT_DISPATCH_FLOATING_TYPES(tile.gs.scalar_type(), "gkdfast_gsp_host_forward",
                               [&] { host_forward<scalar_t>(k, tile, norms, state); });
  }
  void backward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, const GspRowState& rows, bool,
                bool need_t, at::Tensor self_rows) const override {
    AT_DISPATCH_FLOATING_TYPES(tile.gs.scalar_type(), "gkdfast_gsp_host_backward",
                               [&] { host_backward<scalar_t>(k, tile, norms, rows, need_t, self_rows); });
  }
};

}  // namespace

const GspTileEpilogue& host_gsp_epilogue() {
  static const HostGspEpilogue epi;
  return epi;
}

bool cpu_gsp_portable() {
  const char* v = std::getenv("GKDFAST_CPU_GSP_IMPL");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "simd") == 0) return false;
  if (std::strcmp(v, "portable") == 0) return true;
  TORCH_CHECK_VALUE(false, "gkdfast: GKDFAST_CPU_GSP_IMPL must be 'simd' (default) or 'portable', got '", v, "'");
}

std::tuple<at::Tensor, at::Tensor> gsp_tiles_forward(const at::Tensor& s_in, const at::Tensor& t_in, SimKernel kind,
                                                     GspLoss loss, double gamma, double tau, int64_t r0, int64_t r1,
                                                     const GspTileEpilogue& epi) {
  const int64_t n = s_in.size(0), rows = r1 - r0;
  const auto out_opts = s_in.options().dtype(gsp_output_dtype(s_in.scalar_type()));
  auto per_row = at::zeros({rows}, out_opts);
  auto stats = at::zeros({rows, 2}, out_opts);
  if (rows == 0) return {per_row, stats};
  const Operand S = prepare(s_in, kind), Tt = prepare(t_in, kind);
  const auto opts = S.x.options();
  const bool kl = loss == GspLoss::Kl;
  const GspTileConsts k{kind, kl, gamma, 1.0 / tau};
  const GspNorms norms{S.sqn, Tt.sqn};
  at::Tensor state;
  if (kl) {
    state = at::zeros({rows, 5}, opts);
    state.select(1, 0).fill_(-std::numeric_limits<double>::infinity());
    state.select(1, 2).fill_(-std::numeric_limits<double>::infinity());
  } else {
    state = at::zeros({rows}, opts.dtype(at::kDouble));
  }
  const TileShape shape = tile_shape_for_budget(rows, n, tile_budget(S.x), S.x.element_size(), 2);
  at::Tensor buf_s = at::empty({shape.rows, shape.cols}, opts), buf_t = at::empty({shape.rows, shape.cols}, opts);
  for (int64_t i0 = r0; i0 < r1; i0 += shape.rows) {
    const int64_t bi = std::min(shape.rows, r1 - i0);
    for (int64_t j0 = 0; j0 < n; j0 += shape.cols) {
      const int64_t bj = std::min(shape.cols, n - j0);
      at::Tensor vs = buf_s.narrow(0, 0, bi).narrow(1, 0, bj), vt = buf_t.narrow(0, 0, bi).narrow(1, 0, bj);
      at::mm_out(vs, S.x.narrow(0, i0, bi), S.x.narrow(0, j0, bj).t());
      at::mm_out(vt, Tt.x.narrow(0, i0, bi), Tt.x.narrow(0, j0, bj).t());
      epi.forward(k, GspTile{vs, vt, i0, j0}, norms, state.narrow(0, i0 - r0, bi));
    }
  }
  if (kl) {
    const at::Tensor log_ss = state.select(1, 1).log(), log_st = state.select(1, 3).log();
    const at::Tensor lse_s = state.select(1, 0) + log_ss;
    const at::Tensor lse_t = state.select(1, 2) + log_st;
    // KL = w / s^T - log s^T + log s^S (tiles::OnlineKL::kl) >= 0 up to rounding: clamp (NaN stays NaN)
    const at::Tensor kl_rows = (state.select(1, 4) / state.select(1, 3) - log_st + log_ss).clamp_min(0);
    per_row.copy_(kl_rows);
    stats.select(1, 0).copy_(lse_s);
    stats.select(1, 1).copy_(lse_t);
  } else {
    per_row.copy_(state);
  }
  return {per_row, stats};
}

std::tuple<at::Tensor, at::Tensor> gsp_tiles_backward(const at::Tensor& s_in, const at::Tensor& t_in,
                                                      const at::Tensor& per_row_n, const at::Tensor& stats_n,
                                                      const at::Tensor& grad_n, SimKernel kind, GspLoss loss,
                                                      double gamma, double tau, bool need_s, bool need_t, int64_t r0,
                                                      int64_t r1, const GspTileEpilogue& epi) {
  const int64_t n = s_in.size(0);
  if (!need_s && !need_t) return {at::empty({0}, s_in.options()), at::empty({0}, t_in.options())};
  const Operand S = prepare(s_in, kind), Tt = prepare(t_in, kind);
  const auto opts = S.x.options();
  const auto acc = S.x.scalar_type();
  const at::Tensor st = stats_n.detach().to(acc).reshape({n, 2});
  const GspRowState rows{st.select(1, 0).contiguous(), st.select(1, 1).contiguous(),
                         per_row_n.detach().to(acc).reshape({n}).contiguous(),
                         grad_n.detach().to(acc).reshape({n}).contiguous()};
  const GspTileConsts k{kind, loss == GspLoss::Kl, gamma, 1.0 / tau};
  const GspNorms norms{S.sqn, Tt.sqn};
  at::Tensor acc_s = need_s ? at::zeros_like(S.x) : at::Tensor();
  at::Tensor acc_t = need_t ? at::zeros_like(Tt.x) : at::Tensor();
  at::Tensor self_rows = at::zeros({n, 2}, opts);
  const TileShape shape = tile_shape_for_budget(n, n, tile_budget(S.x), S.x.element_size(), 2);
  at::Tensor buf_s = at::empty({shape.rows, shape.cols}, opts), buf_t = at::empty({shape.rows, shape.cols}, opts);
  for (int64_t i0 = 0; i0 < n; i0 += shape.rows) {
    const int64_t bi = std::min(shape.rows, n - i0), i1 = i0 + bi;
    // Rows outside the range have weight 0: they pair nonzero only with the range's columns.
    const bool overlaps = i1 > r0 && i0 < r1;
    const int64_t jb = overlaps ? 0 : r0, je = overlaps ? n : r1;
    for (int64_t j0 = jb; j0 < je; j0 += shape.cols) {
      const int64_t bj = std::min(shape.cols, je - j0);
      at::Tensor vs = buf_s.narrow(0, 0, bi).narrow(1, 0, bj), vt = buf_t.narrow(0, 0, bi).narrow(1, 0, bj);
      at::mm_out(vs, S.x.narrow(0, i0, bi), S.x.narrow(0, j0, bj).t());
      at::mm_out(vt, Tt.x.narrow(0, i0, bi), Tt.x.narrow(0, j0, bj).t());
      epi.backward(k, GspTile{vs, vt, i0, j0}, norms, rows, need_s, need_t, self_rows.narrow(0, i0, bi));
      if (need_s) acc_s.narrow(0, i0, bi).addmm_(vs, S.x.narrow(0, j0, bj));
      if (need_t) acc_t.narrow(0, i0, bi).addmm_(vt, Tt.x.narrow(0, j0, bj));
    }
  }
  at::Tensor gs = need_s ? finish_grad(acc_s, self_rows.select(1, 0), S, kind).to(s_in.scalar_type())
                         : at::empty({0}, s_in.options());
  at::Tensor gt = need_t ? finish_grad(acc_t, self_rows.select(1, 1), Tt, kind).to(t_in.scalar_type())
                         : at::empty({0}, t_in.options());
  return {gs, gt};
}

}  // namespace gkdfast
