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

// The buckets of a cdf of n >= 1 entries (the guide's build and every search derive them alike).
template <typename scalar_t>
GKD_HD CdfBuckets cdf_buckets_of(const scalar_t* cdf, int64_t n, int64_t buckets) {
  return make_cdf_buckets(static_cast<double>(cdf[0]), static_cast<double>(cdf[n - 1]), buckets);
}

// Entry i breaks the order a guide needs: NaN, or below its predecessor (a NaN predecessor too).
template <typename scalar_t>
GKD_HD bool cdf_entry_out_of_order(const scalar_t* cdf, int64_t i) {
  return i == 0 ? cdf[0] != cdf[0] : !(cdf[i - 1] <= cdf[i]);
}

// The index range [lo, hi] of bucket b from a guide, clamped to [0, n]: a guide of another array
// gives a wrong range (widened to the whole array when inverted), never one outside cdf.
GKD_HD void guide_range(const int64_t* guide, int64_t b, int64_t n, int64_t* lo, int64_t* hi) {
  const int64_t l = guide[b], h = guide[b + 1];
  *lo = l < 0 ? 0 : (l > n ? n : l);
  *hi = h < 0 ? 0 : (h > n ? n : h);
  if (*lo > *hi) {
    *lo = 0;
    *hi = n;
  }
}

// The first i in [lo, hi) with cdf[i] >= v, else hi.  "Not >=" moves right, so NaN goes past every
// entry, as in torch.searchsorted.
template <typename scalar_t>
GKD_HD int64_t first_not_below(const scalar_t* cdf, int64_t lo, int64_t hi, scalar_t v) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (!(cdf[mid] >= v)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace gkdfast
