#include "ops/deepwalk.h"

#include <algorithm>
#include <cmath>

#include "common/philox.h"
#include "ops/graph_checks.h"

namespace gkdfast {

void check_deepwalk(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& starts, int64_t dim,
                    int64_t walk_length, int64_t window, int64_t negative, double lr, int64_t seed) {
  check_csr(rowptr, col, "deepwalk");
  check_node_ids(starts, rowptr, "deepwalk", "starts");
  TORCH_CHECK_VALUE(csr_num_rows(rowptr) < philox::kRangeLimit, "gkdfast.deepwalk: at most 2^32 - 1 nodes, got ",
                    csr_num_rows(rowptr));
  TORCH_CHECK_VALUE(dim >= 1 && dim <= kDeepWalkMaxDim, "gkdfast.deepwalk: dim must be in [1, ", kDeepWalkMaxDim,
                    "], got ", dim);
  // The two [N, dim] float32 matrices are sized in bytes: keep N * dim * 4 far from overflow.
  const int64_t n = std::max<int64_t>(csr_num_rows(rowptr), 1);
  TORCH_CHECK_VALUE(dim <= (int64_t{1} << 40) / n, "gkdfast.deepwalk: ", n, " nodes x dim ", dim,
                    " is too large an embedding matrix");
  TORCH_CHECK_VALUE(walk_length >= 1 && walk_length <= kDeepWalkMaxLength, "gkdfast.deepwalk: walk_length must be in [1, ",
                    kDeepWalkMaxLength, "], got ", walk_length);
  TORCH_CHECK_VALUE(window >= 1 && window <= kDeepWalkMaxWindow, "gkdfast.deepwalk: window must be in [1, ",
                    kDeepWalkMaxWindow, "], got ", window);
  TORCH_CHECK_VALUE(negative >= 0 && negative <= kDeepWalkMaxNegative, "gkdfast.deepwalk: negative must be in [0, ",
                    kDeepWalkMaxNegative, "], got ", negative);
  TORCH_CHECK_VALUE(lr > 0.0 && std::isfinite(lr), "gkdfast.deepwalk: lr must be positive and finite, got ", lr);
  TORCH_CHECK_VALUE(seed >= 0, "gkdfast.deepwalk: seed must be >= 0, got ", seed);
}

}  // namespace gkdfast
