// Inverse-CDF search with a bucket guide: argument checks shared by every backend.
//
// Op semantics:
//   cdf_guide(cdf, num_buckets) -> guide [num_buckets + 1] int64
//     cdf: 1-D float32/float64, non-decreasing, no NaN (checked; the first offending index is
//     named).  guide[b] = the first index i whose entry lies in bucket >= b of the equal-width
//     buckets over [cdf[0], cdf[-1]] (common/cdf_buckets.h); guide[num_buckets] = len(cdf).
//   cdf_search(cdf, guide, values) -> index, values' shape, int64
//     index = the first i with cdf[i] >= value (len(cdf) when there is none; NaN: len(cdf)):
//     torch.searchsorted(cdf, values), found within the value's bucket instead of over the whole
//     array.  A guide built from another array gives wrong indices, never a read out of bounds.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// cdf: 1-D float32/float64; 1 <= num_buckets < 2^62 (the guide has num_buckets + 1 entries).  The order
// and NaN check is the kernel's (one pass).
void check_cdf_guide(const at::Tensor& cdf, int64_t num_buckets);

// cdf as above; guide: 1-D int64 with at least 2 entries; values: cdf's dtype; all on one device.
void check_cdf_search(const at::Tensor& cdf, const at::Tensor& guide, const at::Tensor& values);

// The error of a cdf that is not sorted (or holds a NaN) at `index`, shared by the backends.
[[noreturn]] void fail_unsorted_cdf(int64_t index);

}  // namespace gkdfast
