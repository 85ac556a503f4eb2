#include "ops/inverse_cdf.h"

namespace gkdfast {

namespace {

void check_cdf(const at::Tensor& cdf, const char* op) {
  TORCH_CHECK_VALUE(cdf.dim() == 1, "gkdfast.", op, ": cdf must be 1-D, got ", cdf.dim(), "-D");
  TORCH_CHECK_TYPE(cdf.scalar_type() == at::kFloat || cdf.scalar_type() == at::kDouble, "gkdfast.", op,
                   ": cdf must be float32 or float64, got ", cdf.scalar_type());
}

}  // namespace

void check_cdf_guide(const at::Tensor& cdf, int64_t num_buckets) {
  check_cdf(cdf, "cdf_guide");
  TORCH_CHECK_VALUE(num_buckets >= 1 && num_buckets < (int64_t(1) << 62),
                    "gkdfast.cdf_guide: num_buckets must be in [1, 2^62), got ", num_buckets);
}

void check_cdf_search(const at::Tensor& cdf, const at::Tensor& guide, const at::Tensor& values) {
  check_cdf(cdf, "cdf_search");
  TORCH_CHECK_VALUE(guide.dim() == 1 && guide.numel() >= 2, "gkdfast.cdf_search: guide must be 1-D with at "
                    "least 2 entries (from cdf_guide), got shape ", guide.sizes());
  TORCH_CHECK_TYPE(guide.scalar_type() == at::kLong, "gkdfast.cdf_search: guide must be int64 (from cdf_guide), got ",
                   guide.scalar_type());
  TORCH_CHECK_TYPE(values.scalar_type() == cdf.scalar_type(), "gkdfast.cdf_search: values must have cdf's dtype (",
                   cdf.scalar_type(), "), got ", values.scalar_type());
  TORCH_CHECK_VALUE(cdf.device() == guide.device() && cdf.device() == values.device(),
                    "gkdfast.cdf_search: cdf, guide and values must be on one device, got ", cdf.device(), ", ",
                    guide.device(), " and ", values.device());
}

void fail_unsorted_cdf(int64_t index) {
  TORCH_CHECK_VALUE(false, "gkdfast.cdf_guide: cdf must be non-decreasing and free of NaN; entry ", index,
                    index == 0 ? " is NaN" : " is smaller than the one before it (or NaN)");
}

}  // namespace gkdfast
