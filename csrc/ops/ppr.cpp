#include "ops/ppr.h"

#include "ops/graph_checks.h"

namespace gkdfast {

void check_ppr_topk(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& sources, int64_t k,
                    double alpha, double eps) {
  check_csr(rowptr, col, "ppr_topk");
  check_node_ids(sources, rowptr, "ppr_topk", "sources");
  TORCH_CHECK_VALUE(k >= 1, "gkdfast.ppr_topk: k must be >= 1, got ", k);
  TORCH_CHECK_VALUE(alpha > 0.0 && alpha < 1.0, "gkdfast.ppr_topk: alpha must be in (0, 1), got ", alpha);
  TORCH_CHECK_VALUE(eps > 0.0, "gkdfast.ppr_topk: eps must be > 0, got ", eps);
}

}  // namespace gkdfast
