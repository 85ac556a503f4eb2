#include "ops/symmetric_csr.h"

#include <limits>

namespace gkdfast {

void check_symmetric_csr(const at::Tensor& src, const at::Tensor& dst, int64_t num_nodes) {
  TORCH_CHECK_VALUE(src.dim() == 1 && dst.dim() == 1, "gkdfast.symmetric_csr: src and dst must be 1-D, got ",
                    src.dim(), "-D and ", dst.dim(), "-D");
  TORCH_CHECK_VALUE(src.numel() == dst.numel(), "gkdfast.symmetric_csr: src and dst differ in length (",
                    src.numel(), " vs ", dst.numel(), ")");
  TORCH_CHECK_TYPE(src.scalar_type() == at::kInt || src.scalar_type() == at::kLong,
                   "gkdfast.symmetric_csr: src must be int32 or int64, got ", src.scalar_type());
  TORCH_CHECK_TYPE(dst.scalar_type() == src.scalar_type(), "gkdfast.symmetric_csr: dst must have src's dtype (",
                   src.scalar_type(), "), got ", dst.scalar_type());
  TORCH_CHECK_VALUE(src.device() == dst.device(), "gkdfast.symmetric_csr: src and dst must be on one device, got ",
                    src.device(), " and ", dst.device());
  TORCH_CHECK_VALUE(num_nodes >= 0, "gkdfast.symmetric_csr: num_nodes must be >= 0, got ", num_nodes);
  TORCH_CHECK_VALUE(src.scalar_type() == at::kLong || num_nodes <= std::numeric_limits<int32_t>::max(),
                    "gkdfast.symmetric_csr: num_nodes ", num_nodes, " does not fit int32 ids; pass int64 src/dst");
}

}  // namespace gkdfast
