#include "ops/edge_softmax.h"

#include "ops/csr_validation.h"

namespace gkdfast {

void check_edge_scores(const at::Tensor& rowptr, const at::Tensor& s, const char* op, const char* name) {
  TORCH_CHECK_VALUE(s.dim() == 1 || s.dim() == 2, "gkdfast.", op, ": ", name,
                    " must be [num_edges] or [num_edges, heads], got ", s.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(s.scalar_type()), "gkdfast.", op, ": ", name, " must be floating, got ",
                   s.scalar_type());
  TORCH_CHECK_VALUE(s.device() == rowptr.device(), "gkdfast.", op, ": ", name, " is on ", s.device(),
                    " but the graph is on ", rowptr.device());
  // rowptr must run from 0 to exactly s.size(0), never decreasing: the kernels write s's rows by it.
  validate_rowptr(rowptr, s.size(0), op, "scores' graph");
}

void check_edge_softmax_grad(const at::Tensor& y, const at::Tensor& g) {
  TORCH_CHECK_VALUE(y.sizes() == g.sizes(), "gkdfast.edge_softmax_backward: grad shape ", g.sizes(),
                    " differs from output shape ", y.sizes());
  TORCH_CHECK_VALUE(g.device() == y.device(), "gkdfast.edge_softmax_backward: grad is on ", g.device(),
                    " but out is on ", y.device());
}

}  // namespace gkdfast
