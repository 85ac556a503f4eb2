// Equal-width buckets over a sorted array, the index behind the guided inverse-CDF search
// (ops/inverse_cdf.h).  One function, used by the guide's build and by every search, on the CPU
// and on the GPU.
//
// Why the search is exact whatever the rounding: bucket() is non-decreasing in its argument (NaN
// last, as torch.searchsorted orders it).  guide[b] is the first index whose entry lies in a bucket
// >= b.  For a value v in bucket b, every entry before guide[b] lies in a lower bucket, so it is
// smaller than v; the entry at guide[b + 1] lies in a higher bucket, so it is larger.  The first
// index with cdf[i] >= v is therefore in [guide[b], guide[b + 1]].  Only monotonicity is used,
// and both sides compute the bucket with the same double arithmetic.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace gkdfast {

struct CdfBuckets {
  double lo = 0, hi = 0, scale = 0;  // first and last entry; buckets per unit of value
  int64_t buckets = 1;

  GKD_HD int64_t operator()(double v) const {
    if (!(v > lo)) return v != v ? buckets - 1 : 0;  // NaN sorts last; at or below the first entry
    if (!(v < hi)) return buckets - 1;
    // >= 0, or NaN (v - lo infinite with scale 0); too large, infinite and NaN all fail the test below.
    const double t = (v - lo) * scale;
    return t < static_cast<double>(buckets) ? static_cast<int64_t>(t) : buckets - 1;
  }
};

// first, last: the array's first and last entries (as doubles); buckets >= 1.
GKD_HD CdfBuckets make_cdf_buckets(double first, double last, int64_t buckets) {
  CdfBuckets b;
  b.lo = first;
  b.hi = last;
  b.buckets = buckets;
  const double width = last - first;
  b.scale = width > 0 ? static_cast<double>(buckets) / width : 0.0;  // inf width: scale 0, still monotone
  return b;
}

}  // namespace gkdfast
