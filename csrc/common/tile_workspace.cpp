#include "common/tile_workspace.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace gkdfast {

int64_t tile_workspace_env_bytes() {
  const char* v = std::getenv("GKDFAST_TILE_WORKSPACE_MB");
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const double mb = std::strtod(v, &end);
  TORCH_CHECK_VALUE(end != v && *end == '\0' && std::isfinite(mb) && mb > 0,
                    "gkdfast: GKDFAST_TILE_WORKSPACE_MB must be a positive number of MiB, got '", v, "'");
  return std::max<int64_t>(1, static_cast<int64_t>(mb * 1024.0 * 1024.0));
}

int64_t tile_workspace_bytes(bool is_cuda, int64_t host_default) {
  const int64_t env = tile_workspace_env_bytes();
  if (env > 0) return env;
  return is_cuda ? static_cast<int64_t>(kDefaultCudaTileWorkspaceMB * 1024 * 1024) : host_default;
}

namespace {
int64_t round_tile(int64_t x) { return x > 256 ? x / 128 * 128 : x; }
}  // namespace

TileShape tile_shape_for_budget(int64_t total_rows, int64_t total_cols, int64_t budget_bytes, int64_t elem_bytes,
                                int num_tiles, int64_t max_cols) {
  const int64_t elems = std::max<int64_t>(1, budget_bytes / std::max<int64_t>(1, elem_bytes * num_tiles));
  const int64_t n_cols = std::max<int64_t>(1, total_cols);
  int64_t cols = std::min({n_cols, max_cols, elems});
  // Balance: keep the number of column tiles, make them as equal as possible (no sliver at the end).
  const int64_t col_tiles = (n_cols + cols - 1) / cols;
  cols = (n_cols + col_tiles - 1) / col_tiles;
  int64_t rows = std::max<int64_t>(1, std::min(std::max<int64_t>(1, total_rows), elems / cols));
  if (rows < total_rows) rows = std::max<int64_t>(1, round_tile(rows));
  return {rows, cols};
}

bool cuda_legacy_impl() {
  const char* v = std::getenv("GKDFAST_CUDA_IMPL");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "fast") == 0) return false;
  if (std::strcmp(v, "legacy") == 0) return true;
  TORCH_CHECK_VALUE(false, "gkdfast: GKDFAST_CUDA_IMPL must be 'fast' (default) or 'legacy', got '", v, "'");
}

}  // namespace gkdfast
