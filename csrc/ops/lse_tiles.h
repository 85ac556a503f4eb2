// The per-tile steps of the log-sum-exp losses (infonce / crd all-N, gram_lse -> ncontrast,
// nt_xent) behind one interface, so one tile driver (ops/infonce.cpp, ops/gram_lse.cpp) serves
// every device: the driver forms each tile of logits with one GEMM (inputs scaled by 1/tau once)
// and multiplies coefficient tiles back with addmm; an LseTileOps does the elementwise part.
//
//   * aten_lse_tile_ops(): a few ATen ops per tile (CPU, and the CUDA legacy path);
//   * cuda::fused_lse_tile_ops() (csrc/cuda/lse_tiles_cuda.cu): one fused kernel per tile.
//
// "Self" pairs are the tile entries (r, c) with row0 + r == col0 + c (global row i == column j);
// with exclude_self they take no part in a log-sum-exp and get weight 0.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

class LseTileOps {
 public:
  virtual ~LseTileOps() = default;
  // lse_rows[r] <- logaddexp(lse_rows[r], logsumexp_c tile[r, c]).  May overwrite `tile`.
  virtual void merge_rows(at::Tensor tile, at::Tensor lse_rows, int64_t row0, int64_t col0,
                          bool exclude_self) const = 0;
  // lse_cols[c] <- logaddexp(lse_cols[c], logsumexp_r tile[r, c]).  Leaves `tile` unchanged.
  virtual void merge_cols(at::Tensor tile, at::Tensor lse_cols, int64_t row0, int64_t col0,
                          bool exclude_self) const = 0;
  // tile[r, c] <- g_rows[r] exp(tile[r, c] - lse_rows[r]) (+ g_cols[c] exp(tile[r, c] - lse_cols[c])
  // when lse_cols is defined); self pairs 0 with exclude_self.  An lse of +inf marks a row with an
  // empty set (all its weights 0).
  virtual void softmax_weights(at::Tensor tile, const at::Tensor& lse_rows, const at::Tensor& g_rows,
                               const at::Tensor& lse_cols, const at::Tensor& g_cols, int64_t row0, int64_t col0,
                               bool exclude_self) const = 0;
};

const LseTileOps& aten_lse_tile_ops();

// Tile shape (rows, cols) of the logit tiles for inputs like `t` ([rows x cols] problem): CUDA from
// the workspace budget (common/tile_workspace.h, default 256 MiB of logits), CPU the cache-sized
// defaults below unless GKDFAST_TILE_WORKSPACE_MB is set.  `square` asks for rows == cols (gram_lse).
struct LseTileShape {
  int64_t rows, cols;
};
LseTileShape lse_tile_shape(const at::Tensor& t, int64_t rows, int64_t cols, bool square);

}  // namespace gkdfast
