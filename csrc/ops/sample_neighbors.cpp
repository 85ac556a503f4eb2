#include "ops/sample_neighbors.h"

#include "common/philox.h"
#include "ops/graph_checks.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>

namespace gkdfast {

void check_sample_neighbors(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& seeds, int64_t fanout,
                            int64_t seed, int64_t hop) {
  check_csr(rowptr, col, "sample_neighbors");
  check_node_ids(seeds, rowptr, "sample_neighbors", "seeds");
  TORCH_CHECK_VALUE(fanout > 0 || fanout == -1,
                    "gkdfast.sample_neighbors: fanout must be positive (or -1 for all neighbours), got ", fanout);
  TORCH_CHECK_VALUE(seed >= 0, "gkdfast.sample_neighbors: seed must be >= 0, got ", seed);
  TORCH_CHECK_VALUE(hop >= 0 && hop < 65536, "gkdfast.sample_neighbors: hop must be in [0, 65536), got ", hop);
  // The draw maps a 32-bit Philox word onto [0, deg): a degree of 2^32 or more would not be drawn uniformly.
  // Only a graph with that many edges can hold such a node, so only there are the seeds' degrees read
  // (O(seeds) per call).
  if (col.numel() >= philox::kRangeLimit && seeds.numel() > 0) {
    const at::Tensor s = seeds.to(at::kLong), rp = rowptr.to(at::kLong);
    const int64_t max_deg = (rp.index_select(0, s + 1) - rp.index_select(0, s)).max().item<int64_t>();
    TORCH_CHECK_VALUE(max_deg < philox::kRangeLimit, "gkdfast.sample_neighbors: a seed node has ", max_deg,
                      " in-edges; at most 2^32 - 1 are supported");
  }
}

}  // namespace gkdfast
