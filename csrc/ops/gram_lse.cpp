// Device-agnostic tiled gram_lse and its backward (see gram_lse.h).  Square tiles (I, J) with
// J >= I: an off-diagonal tile holds l_IJ and, transposed, l_JI, so it feeds the running
// log-sum-exp of rows I (reduced along its rows) and of rows J (reduced along its columns).
#include "ops/gram_lse.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "ops/infonce.h"

namespace gkdfast {
namespace {

// CUDA tiles fill the GPU (256 MiB of float32 logits each); CPU tiles give the BLAS a multi-threaded
// GEMM while the few elementwise passes per tile stay in the last-level cache range.
int64_t tile_size(const at::Tensor& t) { return t.is_cuda() ? 8192 : 1024; }

constexpr double kInf = std::numeric_limits<double>::infinity();

// Logits of tile (i0, j0): zs_I . z_J^T with zs = inv_tau * z; self pairs masked when asked.
at::Tensor logits_tile(const at::Tensor& zs, const at::Tensor& z, int64_t i0, int64_t bi, int64_t j0, int64_t bj,
                       bool exclude_self) {
  at::Tensor tile = at::mm(zs.narrow(0, i0, bi), z.narrow(0, j0, bj).t());
  if (exclude_self && i0 == j0) tile.diagonal().fill_(-kInf);
  return tile;
}

}  // namespace

void check_gram_lse(const at::Tensor& z, const char* op) {
  TORCH_CHECK(z.dim() == 2, "gkdfast.", op, ": z must be 2-D, got ", z.sizes());
  TORCH_CHECK(at::isFloatingType(z.scalar_type()), "gkdfast.", op, ": expected a floating tensor, got ",
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

at::Tensor gram_lse_tiled(const at::Tensor& z_in, double inv_tau, bool exclude_self) {
  const auto acc = infonce_acc_type(z_in.scalar_type());
  const at::Tensor z = z_in.to(acc).contiguous();
  const at::Tensor zs = z * inv_tau;
  const int64_t n = z.size(0), t = tile_size(z);
  at::Tensor lse = at::full({n}, -kInf, z.options());
  for (int64_t i0 = 0; i0 < n; i0 += t) {
    const int64_t bi = std::min(t, n - i0);
    at::Tensor lse_i = lse.narrow(0, i0, bi);
    for (int64_t j0 = i0; j0 < n; j0 += t) {
      const int64_t bj = std::min(t, n - j0);
      const at::Tensor tile = logits_tile(zs, z, i0, bi, j0, bj, exclude_self);
      lse_i.copy_(at::logaddexp(lse_i, at::logsumexp(tile, {1})));
      if (j0 != i0) {
        at::Tensor lse_j = lse.narrow(0, j0, bj);
        lse_j.copy_(at::logaddexp(lse_j, at::logsumexp(tile, {0})));
      }
    }
  }
  return lse;
}

at::Tensor gram_lse_tiled_backward(const at::Tensor& z_in, const at::Tensor& lse_in, const at::Tensor& grad_in,
                                   double inv_tau, bool exclude_self) {
  const auto acc = infonce_acc_type(z_in.scalar_type());
  const at::Tensor z = z_in.to(acc).contiguous();
  const at::Tensor zs = z * inv_tau;
  const at::Tensor l = lse_in.to(acc);
  // An empty set (lse = -inf) has no probabilities: +inf makes exp(l_ij - lse_i) = 0 there.
  const at::Tensor lse = at::where(at::isneginf(l), at::full_like(l, kInf), l);
  const at::Tensor gw = grad_in.to(acc) * inv_tau;  // W_ij = gw_i * p_ij
  const int64_t n = z.size(0), t = tile_size(z);
  at::Tensor dz = at::zeros_like(z);
  for (int64_t i0 = 0; i0 < n; i0 += t) {
    const int64_t bi = std::min(t, n - i0);
    const at::Tensor z_i = z.narrow(0, i0, bi);
    at::Tensor dz_i = dz.narrow(0, i0, bi);
    const at::Tensor lse_i = lse.narrow(0, i0, bi).unsqueeze(1), gw_i = gw.narrow(0, i0, bi).unsqueeze(1);
    for (int64_t j0 = i0; j0 < n; j0 += t) {
      const int64_t bj = std::min(t, n - j0);
      at::Tensor tile = logits_tile(zs, z, i0, bi, j0, bj, exclude_self);
      // M = W_IJ + (W_JI)^T: the weight of z_J in dz_I and, transposed, of z_I in dz_J.
      at::Tensor m = (tile - lse.narrow(0, j0, bj).unsqueeze(0)).exp_().mul_(gw.narrow(0, j0, bj).unsqueeze(0));
      m.add_(tile.sub_(lse_i).exp_().mul_(gw_i));
      const at::Tensor z_j = z.narrow(0, j0, bj);
      dz_i.addmm_(m, z_j);
      if (j0 != i0) dz.narrow(0, j0, bj).addmm_(m.t(), z_i);
    }
  }
  return dz.to(z_in.scalar_type());
}

}  // namespace gkdfast
