// ATen implementation of LseTileOps and the tile shapes (see lse_tiles.h).
#include "ops/lse_tiles.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/logaddexp.h>
#include <ATen/ops/logsumexp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/tile_workspace.h"

namespace gkdfast {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The view of a tile's self pairs (global row == global column), or an undefined tensor.
at::Tensor self_diagonal(const at::Tensor& tile, int64_t row0, int64_t col0) {
  const int64_t off = row0 - col0;  // entry (r, c) is a self pair when c - r == off
  if (off >= tile.size(1) || -off >= tile.size(0)) return at::Tensor();
  return tile.diagonal(off);
}

class AtenLseTileOps final : public LseTileOps {
 public:
  void merge_rows(at::Tensor tile, at::Tensor lse_rows, int64_t row0, int64_t col0, bool exclude_self) const override {
    if (exclude_self) {
      at::Tensor d = self_diagonal(tile, row0, col0);
      if (d.defined()) d.fill_(-kInf);
    }
    lse_rows.copy_(at::logaddexp(lse_rows, at::logsumexp(tile, {1})));
  }
  void merge_cols(at::Tensor tile, at::Tensor lse_cols, int64_t row0, int64_t col0, bool exclude_self) const override {
    at::Tensor t = tile;
    if (exclude_self && self_diagonal(tile, row0, col0).defined()) {
      t = tile.clone();
      self_diagonal(t, row0, col0).fill_(-kInf);
    }
    lse_cols.copy_(at::logaddexp(lse_cols, at::logsumexp(t, {0})));
  }
  void softmax_weights(at::Tensor tile, const at::Tensor& lse_rows, const at::Tensor& g_rows,
                       const at::Tensor& lse_cols, const at::Tensor& g_cols, int64_t row0, int64_t col0,
                       bool exclude_self) const override {
    if (exclude_self) {
      at::Tensor d = self_diagonal(tile, row0, col0);
      if (d.defined()) d.fill_(-kInf);
    }
    if (lse_cols.defined()) {
      at::Tensor col_part = (tile - lse_cols.unsqueeze(0)).exp_().mul_(g_cols.unsqueeze(0));
      tile.sub_(lse_rows.unsqueeze(1)).exp_().mul_(g_rows.unsqueeze(1)).add_(col_part);
    } else {
      tile.sub_(lse_rows.unsqueeze(1)).exp_().mul_(g_rows.unsqueeze(1));
    }
  }
};

}  // namespace

const LseTileOps& aten_lse_tile_ops() {
  static const AtenLseTileOps ops;
  return ops;
}

LseTileShape lse_tile_shape(const at::Tensor& t, int64_t rows, int64_t cols, bool square) {
  const int64_t budget = tile_workspace_bytes(t.is_cuda(), -1);
  if (budget < 0) {
    // CPU: tiles in the last-level cache range that still give the BLAS a multi-threaded GEMM.
    return square ? LseTileShape{1024, 1024} : LseTileShape{512, 4096};
  }
  const int64_t elem = t.scalar_type() == at::kDouble ? 8 : 4;
  if (square) {
    const int64_t side = std::max<int64_t>(1, static_cast<int64_t>(std::sqrt(double(budget / elem))));
    return {side, side};
  }
  const TileShape s = tile_shape_for_budget(rows, cols, budget, elem, 1);
  return {s.rows, s.cols};
}

}  // namespace gkdfast
