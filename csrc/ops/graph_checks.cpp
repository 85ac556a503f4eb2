#include "ops/graph_checks.h"

#include "common/reducers.h"
#include "ops/csr_validation.h"

namespace gkdfast {

Reduce parse_reduce(const std::string& name) {
  if (name == "sum" || name == "add") return Reduce::Sum;
  if (name == "mean") return Reduce::Mean;
  if (name == "max" || name == "amax") return Reduce::Max;
  if (name == "min" || name == "amin") return Reduce::Min;
  TORCH_CHECK_VALUE(false, "gkdfast: unknown reduce '", name, "'; expected one of sum, mean, max, min");
}

const char* reduce_name(Reduce r) {
  switch (r) {
    case Reduce::Sum: return "sum";
    case Reduce::Mean: return "mean";
    case Reduce::Max: return "max";
    case Reduce::Min: return "min";
  }
  return "?";
}

int64_t csr_num_rows(const at::Tensor& rowptr) { return rowptr.size(0) - 1; }

void check_csr(const at::Tensor& rowptr, const at::Tensor& col, const char* op, const char* what) {
  check_csr_matrix(rowptr, col, -1, op, what);
}

void check_csr_matrix(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_cols, const char* op,
                      const char* what) {
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.size(0) >= 1, "gkdfast.", op, ": ", what,
                    " rowptr must be 1-D with at least one entry, got shape ", rowptr.sizes());
  TORCH_CHECK_VALUE(col.dim() == 1, "gkdfast.", op, ": ", what, " col must be 1-D, got shape ", col.sizes());
  TORCH_CHECK_TYPE(col.scalar_type() == at::kInt || col.scalar_type() == at::kLong, "gkdfast.", op, ": ", what,
                   " indices must be int32 or int64, got ", col.scalar_type());
  TORCH_CHECK_TYPE(rowptr.scalar_type() == col.scalar_type(), "gkdfast.", op, ": ", what,
                   " rowptr and col must share one index dtype, got ", rowptr.scalar_type(), " and ",
                   col.scalar_type());
  TORCH_CHECK_VALUE(rowptr.device() == col.device(), "gkdfast.", op, ": ", what,
                    " rowptr and col are on different devices (", rowptr.device(), ", ", col.device(), ")");
  validate_csr(rowptr, col, num_cols < 0 ? csr_num_rows(rowptr) : num_cols, op, what);
}

void check_rowptr(const at::Tensor& rowptr, const char* op, const char* what) {
  TORCH_CHECK_VALUE(rowptr.dim() == 1 && rowptr.size(0) >= 1, "gkdfast.", op, ": ", what,
                    " rowptr must be 1-D with at least one entry, got shape ", rowptr.sizes());
  TORCH_CHECK_TYPE(rowptr.scalar_type() == at::kInt || rowptr.scalar_type() == at::kLong, "gkdfast.", op, ": ",
                   what, " rowptr must be int32 or int64, got ", rowptr.scalar_type());
}

void check_transpose(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                     const at::Tensor& t_col, const at::Tensor& t_eid, const char* op) {
  check_transpose_matrix(rowptr, col, t_rowptr, t_col, t_eid, csr_num_rows(rowptr), op);
}

void check_transpose_matrix(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                            const at::Tensor& t_col, const at::Tensor& t_eid, int64_t num_cols, const char* op) {
  if (t_rowptr.numel() == 0 && t_col.numel() == 0 && t_eid.numel() == 0) return;  // not needed
  TORCH_CHECK_VALUE(t_rowptr.device() == rowptr.device() && t_col.device() == rowptr.device() &&
                        t_eid.device() == rowptr.device(),
                    "gkdfast.", op, ": the transposed CSR is on ", t_rowptr.device(), "/", t_col.device(), "/",
                    t_eid.device(), " but the graph is on ", rowptr.device());
  TORCH_CHECK_VALUE(t_rowptr.dim() == 1 && t_col.dim() == 1 && t_rowptr.size(0) == num_cols + 1 &&
                        t_col.size(0) == col.size(0) && t_eid.dim() == 1 && t_eid.size(0) == col.size(0),
                    "gkdfast.", op, ": transposed CSR does not match the graph (", t_rowptr.sizes(), ", ",
                    t_col.sizes(), ", ", t_eid.sizes(), "; expected [", num_cols + 1, "], [", col.size(0), "], [",
                    col.size(0), "])");
  TORCH_CHECK_TYPE(t_rowptr.scalar_type() == rowptr.scalar_type() && t_col.scalar_type() == rowptr.scalar_type() &&
                       t_eid.scalar_type() == rowptr.scalar_type(),
                   "gkdfast.", op, ": the transposed CSR must use the graph's index dtype ", rowptr.scalar_type());
  validate_transpose(rowptr, col, t_rowptr, t_col, t_eid, op);
}

void check_same_device(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device() == like.device(), "gkdfast.", op, ": ", name, " is on ", t.device(),
                    " but the inputs are on ", like.device());
}

void check_node_ids(const at::Tensor& ids, const at::Tensor& rowptr, const char* op, const char* name) {
  TORCH_CHECK_VALUE(ids.dim() == 1, "gkdfast.", op, ": ", name, " must be 1-D, got shape ", ids.sizes());
  TORCH_CHECK_TYPE(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, "gkdfast.", op, ": ", name,
                   " must be int32 or int64, got ", ids.scalar_type());
  TORCH_CHECK_VALUE(ids.device() == rowptr.device(), "gkdfast.", op, ": ", name, " are on ", ids.device(),
                    " but the graph is on ", rowptr.device());
}

void check_node_features(const at::Tensor& x, const at::Tensor& rowptr, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 2, "gkdfast.", op, ": ", name, " must be 2-D [num_nodes, features], got shape ",
                    x.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "gkdfast.", op, ": ", name,
                   " must be a floating tensor, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.device() == rowptr.device(), "gkdfast.", op, ": ", name, " is on ", x.device(),
                    " but the graph is on ", rowptr.device());
  TORCH_CHECK_VALUE(x.size(0) == csr_num_rows(rowptr), "gkdfast.", op, ": ", name, " has ", x.size(0),
                    " rows but the graph has ", csr_num_rows(rowptr), " nodes");
}

void check_edge_values(const at::Tensor& w, const at::Tensor& col, const at::Tensor& like, const char* op,
                       const char* name, bool allow_heads) {
  const bool shape_ok = (w.dim() == 1 || (allow_heads && w.dim() == 2)) && w.size(0) == col.size(0);
  TORCH_CHECK_VALUE(shape_ok, "gkdfast.", op, ": ", name, " must have shape [num_edges=", col.size(0), "]",
                    allow_heads ? " or [num_edges, heads]" : "", ", got ", w.sizes());
  TORCH_CHECK_TYPE(w.scalar_type() == like.scalar_type(), "gkdfast.", op, ": ", name, " has dtype ",
                   w.scalar_type(), " but the features have ", like.scalar_type());
  TORCH_CHECK_VALUE(w.device() == col.device(), "gkdfast.", op, ": ", name, " is on ", w.device(),
                    " but the graph is on ", col.device());
}

}  // namespace gkdfast
