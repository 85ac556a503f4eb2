#include "ops/sample_neighbors.h"

#include "ops/graph_checks.h"

namespace gkdfast {

void check_sample_neighbors(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& seeds, int64_t fanout,
                            int64_t seed, int64_t hop) {
  check_csr(rowptr, col, "sample_neighbors");
  check_node_ids(seeds, rowptr, "sample_neighbors", "seeds");
  TORCH_CHECK_VALUE(fanout > 0 || fanout == -1,
                    "gkdfast.sample_neighbors: fanout must be positive (or -1 for all neighbours), got ", fanout);
  TORCH_CHECK_VALUE(seed >= 0, "gkdfast.sample_neighbors: seed must be >= 0, got ", seed);
  TORCH_CHECK_VALUE(hop >= 0 && hop < 65536, "gkdfast.sample_neighbors: hop must be in [0, 65536), got ", hop);
}

}  // namespace gkdfast
