// Device-agnostic tiled gram_lse and its backward (see gram_lse.h).  Square tiles (I, J) with
// J >= I: an off-diagonal tile holds l_IJ and, transposed, l_JI, so it feeds the running
// log-sum-exp of rows I (reduced along its rows) and of rows J (reduced along its columns).
#include "ops/gram_lse.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/isneginf.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <limits>

#include "ops/infonce.h"
#include "ops/lse_tiles.h"

namespace gkdfast {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

void check_gram_lse(const at::Tensor& z, const char* op) {
  TORCH_CHECK(z.dim() == 2, "gkdfast.", op, ": z must be 2-D, got ", z.sizes());
  TORCH_CHECK(at::isFloatingType(z.scalar_type()), "gkdfast.", op, ": z must be a floating tensor, got ",
              z.scalar_type());
}

void check_gram_lse_backward(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, const char* op) {
  check_gram_lse(z, op);
  const int64_t n = z.size(0);
  for (const at::Tensor* t : {&lse, &grad}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == n, "gkdfast.", op, ": lse and grad must have shape [", n, "], got ",
                t->sizes());
    TORCH_CHECK(t->device() == z.device(), "gkdfast.", op, ": per-row tensor on ", t->device(), ", z on ",
                z.device());
    TORCH_CHECK(at::isFloatingType(t->scalar_type()), "gkdfast.", op, ": lse and grad must be floating, got ",
                t->scalar_type());
  }
}

at::Tensor gram_lse_tiled(const at::Tensor& z_in, double inv_tau, bool exclude_self, const LseTileOps& ops) {
  const auto acc = infonce_acc_type(z_in.scalar_type());
  const at::Tensor z = z_in.to(acc).contiguous();
  const at::Tensor zs = z * inv_tau;
  const int64_t n = z.size(0), t = lse_tile_shape(z, n, n, /*square=*/true).rows;
  at::Tensor lse = at::full({n}, -kInf, z.options());
  at::Tensor buf = at::empty({std::min(t, n), std::min(t, n)}, z.options());
  for (int64_t i0 = 0; i0 < n; i0 += t) {
    const int64_t bi = std::min(t, n - i0);
    for (int64_t j0 = i0; j0 < n; j0 += t) {
      const int64_t bj = std::min(t, n - j0);
      at::Tensor tile = buf.narrow(0, 0, bi).narrow(1, 0, bj);
      at::mm_out(tile, zs.narrow(0, i0, bi), z.narrow(0, j0, bj).t());
      // Columns first: merge_rows may overwrite the tile.
      if (j0 != i0) ops.merge_cols(tile, lse.narrow(0, j0, bj), i0, j0, exclude_self);
      ops.merge_rows(tile, lse.narrow(0, i0, bi), i0, j0, exclude_self);
    }
  }
  return lse;
}

at::Tensor gram_lse_tiled_backward(const at::Tensor& z_in, const at::Tensor& lse_in, const at::Tensor& grad_in,
                                   double inv_tau, bool exclude_self, const LseTileOps& ops) {
  const auto acc = infonce_acc_type(z_in.scalar_type());
  const at::Tensor z = z_in.to(acc).contiguous();
  const at::Tensor zs = z * inv_tau;
  const at::Tensor l = lse_in.to(acc);
  // An empty set (lse = -inf) has no probabilities: +inf makes exp(l_ij - lse_i) = 0 there.
  const at::Tensor lse = at::where(at::isneginf(l), at::full_like(l, kInf), l).contiguous();
  const at::Tensor gw = (grad_in.to(acc) * inv_tau).contiguous();  // W_ij = gw_i * p_ij
  const int64_t n = z.size(0), t = lse_tile_shape(z, n, n, /*square=*/true).rows;
  at::Tensor dz = at::zeros_like(z);
  at::Tensor buf = at::empty({std::min(t, n), std::min(t, n)}, z.options());
  for (int64_t i0 = 0; i0 < n; i0 += t) {
    const int64_t bi = std::min(t, n - i0);
    const at::Tensor z_i = z.narrow(0, i0, bi);
    at::Tensor dz_i = dz.narrow(0, i0, bi);
    for (int64_t j0 = i0; j0 < n; j0 += t) {
      const int64_t bj = std::min(t, n - j0);
      at::Tensor tile = buf.narrow(0, 0, bi).narrow(1, 0, bj);
      at::mm_out(tile, zs.narrow(0, i0, bi), z.narrow(0, j0, bj).t());
      // M = W_IJ + (W_JI)^T: the weight of z_J in dz_I and, transposed, of z_I in dz_J.
      ops.softmax_weights(tile, lse.narrow(0, i0, bi), gw.narrow(0, i0, bi), lse.narrow(0, j0, bj),
                          gw.narrow(0, j0, bj), i0, j0, exclude_self);
      dz_i.addmm_(tile, z.narrow(0, j0, bj));
      if (j0 != i0) dz.narrow(0, j0, bj).addmm_(tile.t(), z_i);
    }
  }
  return dz.to(z_in.scalar_type());
}

}  // namespace gkdfast
