// Row-wise log-sum-exp of a scaled Gram matrix, the all-N denominator of ncontrast and nt_xent,
// where anchors and candidates are the same rows:
//
//   lse_i = log sum_{j in set(i)} exp(inv_tau * z_i . z_j),   set(i) = all j (minus j = i when exclude_self)
//
// (-inf for an empty set), in the accumulation dtype (float64 for float64 input, else float32).
// It equals infonce(z, z, ...)'s lse, at half the GEMM work: the logit matrix is symmetric, so only
// the tiles on and above the diagonal are computed, each serving its rows and (transposed) its
// columns.  The backward of sum_i g_i * lse_i is dz = (W + W^T) z with W_ij = g_i * inv_tau * p_ij,
// p_ij = exp(l_ij - lse_i): one recomputed tile and two GEMMs per upper tile, instead of the one
// tile and two GEMMs per tile of the anchors/candidates form (forward + backward: 2 GEMM passes
// over all pairs instead of 4).
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/lse_tiles.h"

namespace gkdfast {

void check_gram_lse(const at::Tensor& z, const char* op);
void check_gram_lse_backward(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, const char* op);

// Device-agnostic tiled implementation (ATen GEMMs on square tiles, a streaming log-sum-exp per
// row; `ops` does each tile's elementwise part, see ops/lse_tiles.h); memory O(tile^2 + N * d)
// whatever N is, tiles visited in a fixed order (deterministic).
at::Tensor gram_lse_tiled(const at::Tensor& z, double inv_tau, bool exclude_self,
                          const LseTileOps& ops = aten_lse_tile_ops());
at::Tensor gram_lse_tiled_backward(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad,
                                   double inv_tau, bool exclude_self, const LseTileOps& ops = aten_lse_tile_ops());

}  // namespace gkdfast
