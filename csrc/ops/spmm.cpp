#include "ops/spmm.h"

#include "ops/csr_validation.h"
#include "ops/graph_checks.h"

namespace gkdfast {

Reduce check_spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                  const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& x, const std::string& reduce) {
  check_csr(rowptr, col, "spmm");
  check_transpose(rowptr, col, t_rowptr, t_col, t_eid, "spmm");
  check_node_features(x, rowptr, "spmm", "x");
  return parse_reduce(reduce);
}

void check_spmm_gcn(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                    const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& dinv, const at::Tensor& x) {
  check_csr(rowptr, col, "spmm_gcn");
  check_transpose(rowptr, col, t_rowptr, t_col, t_eid, "spmm_gcn");
  check_node_features(x, rowptr, "spmm_gcn", "x");
  TORCH_CHECK_VALUE(dinv.dim() == 1 && dinv.size(0) == csr_num_rows(rowptr), "gkdfast.spmm_gcn: dinv must have "
                    "shape [", csr_num_rows(rowptr), "] (one coefficient per node), got ", dinv.sizes());
  TORCH_CHECK_TYPE(dinv.scalar_type() == x.scalar_type(), "gkdfast.spmm_gcn: dinv has dtype ", dinv.scalar_type(),
                   " but x has ", x.scalar_type());
  check_same_device(dinv, x, "spmm_gcn", "dinv");
}

at::Tensor spmm_edge_weight(const c10::optional<at::Tensor>& weight, const at::Tensor& col, const at::Tensor& x,
                            const char* op) {
  if (!weight.has_value() || !weight->defined()) return at::Tensor();
  check_edge_values(*weight, col, x, op, "edge_weight");
  return weight->contiguous();
}

void check_csr_mm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                  const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& values, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.dim() == 2, "gkdfast.csr_mm: x must be 2-D [num_cols, d], got shape ", x.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "gkdfast.csr_mm: x must be a floating tensor, got ",
                   x.scalar_type());
  check_csr_matrix(rowptr, col, x.size(0), "csr_mm", "sparse matrix");
  check_transpose_matrix(rowptr, col, t_rowptr, t_col, t_eid, x.size(0), "csr_mm");
  TORCH_CHECK_VALUE(x.device() == rowptr.device(), "gkdfast.csr_mm: x is on ", x.device(),
                    " but the sparse matrix is on ", rowptr.device());
  check_edge_values(values, col, x, "csr_mm", "values");
}

void check_spmm_arg_backward(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                             const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& x,
                             const at::Tensor& arg, const at::Tensor& grad, bool need_transpose) {
  check_csr(rowptr, col, "spmm_arg_backward");
  check_transpose(rowptr, col, t_rowptr, t_col, t_eid, "spmm_arg_backward");
  if (need_transpose) {
    TORCH_CHECK_VALUE(t_rowptr.numel() == rowptr.numel() || col.numel() == 0,
                      "gkdfast.spmm_arg_backward needs the transposed CSR");
  }
  check_node_features(x, rowptr, "spmm_arg_backward", "x");
  check_node_features(grad, rowptr, "spmm_arg_backward", "grad_out");
  TORCH_CHECK_VALUE(arg.sizes() == grad.sizes() && arg.scalar_type() == at::kLong,
                    "gkdfast.spmm_arg_backward: arg must be int64 with the shape of grad_out");
  TORCH_CHECK_VALUE(arg.device() == x.device(), "gkdfast.spmm_arg_backward: arg is on ", arg.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_VALUE(grad.size(1) == x.size(1), "gkdfast.spmm_arg_backward: feature sizes differ");
  validate_arg_edges(arg, rowptr, "spmm_arg_backward");
}

}  // namespace gkdfast
