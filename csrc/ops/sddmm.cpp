#include "ops/sddmm.h"

#include "ops/graph_checks.h"

namespace gkdfast {

void check_sddmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr, const at::Tensor& t_col,
                 const at::Tensor& t_eid, const at::Tensor& a, const at::Tensor& b) {
  check_csr(rowptr, col, "sddmm");
  check_transpose(rowptr, col, t_rowptr, t_col, t_eid, "sddmm");
  check_node_features(a, rowptr, "sddmm", "a");
  check_node_features(b, rowptr, "sddmm", "b");
  TORCH_CHECK_VALUE(a.size(1) == b.size(1), "gkdfast.sddmm: a and b must have the same width, got ", a.size(1),
                    " and ", b.size(1));
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "gkdfast.sddmm: a and b have different dtypes (",
                   a.scalar_type(), ", ", b.scalar_type(), ")");
}

}  // namespace gkdfast
