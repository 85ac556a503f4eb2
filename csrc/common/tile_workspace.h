// How big the GEMM tiles of the all-pairs losses (gsp, infonce/crd, gram_lse) may be, and which
// CUDA implementation runs.  Host code only.
//
// Tiles are sized from a workspace budget: the bytes the tile buffers of one call may hold at
// once.  CUDA defaults to 256 MiB (enough to keep cuBLAS at full speed for d >= 32); CPU tiles keep
// their cache-sized constants unless the budget is set explicitly.  GKDFAST_TILE_WORKSPACE_MB (a
// positive number, fractions allowed) overrides both, read at every call so a context manager in
// Python (gkdfast.backend.tile_workspace) can change it.
#pragma once

#include <cstdint>

namespace gkdfast {

constexpr double kDefaultCudaTileWorkspaceMB = 256.0;

// The budget in bytes from GKDFAST_TILE_WORKSPACE_MB, or -1 when the variable is unset or empty.
// Throws a ValueError for anything that is not a positive number.
int64_t tile_workspace_env_bytes();

// The one budget rule of every tile driver: GKDFAST_TILE_WORKSPACE_MB when set, else the CUDA
// default for CUDA tensors, else `host_default` (a driver's cache-sized CPU budget; -1 lets the
// caller keep its own CPU tile constants).
int64_t tile_workspace_bytes(bool is_cuda, int64_t host_default);

// Tile shape for `num_tiles` simultaneous [rows x cols] buffers of `elem_bytes` each within
// `budget_bytes`, for a problem of `total_rows` x `total_cols`: columns first (at most
// `max_cols`, balanced so the last column tile is not a sliver), then as many rows as fit.  Both at
// least 1; a row count above 256 that does not cover all rows is rounded down to a multiple of 128.
struct TileShape {
  int64_t rows, cols;
};
TileShape tile_shape_for_budget(int64_t total_rows, int64_t total_cols, int64_t budget_bytes, int64_t elem_bytes,
                                int num_tiles, int64_t max_cols = 8192);

// True when GKDFAST_CUDA_IMPL=legacy asks for the first-generation CUDA kernels (warp-per-row pair
// loops, gkdfast's own sum/mean spmm, fused-per-row LSP) instead of the tensor-core / cuSPARSE /
// staged ones; "" or "fast" selects the new ones; anything else is a ValueError.  Kept until a GPU
// run has measured both side by side (scripts/device_check.sh).
bool cuda_legacy_impl();

}  // namespace gkdfast
