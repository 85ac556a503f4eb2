#include "ops/lsp.h"

#include "ops/graph_checks.h"

namespace gkdfast {

SimKernel check_lsp(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                    const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& s, const at::Tensor& t,
                    const std::string& kernel, double tau, const char* op) {
  check_csr(rowptr, col, op);
  check_node_features(s, rowptr, op, "student");
  check_node_features(t, rowptr, op, "teacher");
  TORCH_CHECK_TYPE(s.scalar_type() == t.scalar_type(), "gkdfast.", op, ": student and teacher dtypes differ (",
                   s.scalar_type(), ", ", t.scalar_type(), ")");
  TORCH_CHECK_VALUE(tau > 0, "gkdfast.", op, ": tau must be > 0, got ", tau);
  check_transpose(rowptr, col, t_rowptr, t_col, t_eid, op);
  return parse_sim_kernel(kernel, op);
}

void check_lsp_backward_state(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                              const at::Tensor& per_node, const at::Tensor& lse, const at::Tensor& grad) {
  const int64_t n = csr_num_rows(rowptr);
  TORCH_CHECK_VALUE(per_node.numel() == n && lse.numel() == 2 * n && grad.numel() == n,
                    "gkdfast.lsp_backward: per_node, lse and grad must have N, 2N and N entries (N = ", n, ")");
  TORCH_CHECK_VALUE(col.numel() == 0 || t_rowptr.numel() > 0, "gkdfast.lsp_backward: the transposed CSR is required");
  check_same_device(per_node, rowptr, "lsp_backward", "per_node");
  check_same_device(lse, rowptr, "lsp_backward", "lse");
  check_same_device(grad, rowptr, "lsp_backward", "grad");
}

}  // namespace gkdfast
