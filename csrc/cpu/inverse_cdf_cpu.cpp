// CPU guided inverse-CDF search (see ops/inverse_cdf.h, common/cdf_buckets.h).
//
// Random queries into a cumulative array that has outgrown the caches miss on nearly every step
// of a binary search over the whole array.  Here a query costs two reads: its bucket's guide entry
// and the few entries of that bucket.  Queries go in blocks of kBlock, each step of the block
// issued for every query before the next step starts (bucket -> prefetch guide, guide -> prefetch
// cdf, then the search), so a core keeps that many misses in flight instead of one.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "common/cdf_buckets.h"
#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "ops/inverse_cdf.h"

namespace gkdfast {
namespace {

constexpr int64_t kBlock = 32;

template <typename scalar_t>
void search_range(const scalar_t* cdf, int64_t n, const int64_t* guide, const CdfBuckets& bk, const scalar_t* v,
                  int64_t* out, int64_t begin, int64_t end) {
  int64_t b[kBlock], lo[kBlock], hi[kBlock];
  for (int64_t q0 = begin; q0 < end; q0 += kBlock) {
    const int64_t m = std::min(kBlock, end - q0);
    for (int64_t j = 0; j < m; ++j) {
      b[j] = bk(static_cast<double>(v[q0 + j]));
      __builtin_prefetch(guide + b[j]);
    }
    for (int64_t j = 0; j < m; ++j) {
      guide_range(guide, b[j], n, &lo[j], &hi[j]);
      if (lo[j] < n) __builtin_prefetch(cdf + lo[j]);
    }
    for (int64_t j = 0; j < m; ++j) out[q0 + j] = first_not_below(cdf, lo[j], hi[j], v[q0 + j]);
  }
}

}  // namespace

at::Tensor cdf_guide_cpu(const at::Tensor& cdf_in, int64_t num_buckets) {
  check_cdf_guide(cdf_in, num_buckets);
  const at::Tensor cdf = cdf_in.contiguous();
  const int64_t n = cdf.numel();
  at::Tensor guide = at::empty({num_buckets + 1}, cdf.options().dtype(at::kLong));
  int64_t* g = guide.data_ptr<int64_t>();
  if (n == 0) {
    std::fill(g, g + num_buckets + 1, int64_t(0));
    return guide;
  }
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  GKD_DISPATCH_CPU_FLOATS(cdf.scalar_type(), "gkdfast_cdf_guide_cpu", [&] {
    const scalar_t* c = cdf.data_ptr<scalar_t>();
    const CdfBuckets bk = cdf_buckets_of(c, n, num_buckets);
    // Entry i owns the buckets (bucket(cdf[i-1]), bucket(cdf[i])]: disjoint ranges for a sorted cdf, no
    // atomics (an unsorted one may overlap them, but is refused below and its guide dropped).
    at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
      int64_t bad = std::numeric_limits<int64_t>::max();
      int64_t prev = i0 == 0 ? -1 : bk(static_cast<double>(c[i0 - 1]));
      for (int64_t i = i0; i < i1; ++i) {
        if (cdf_entry_out_of_order(c, i)) bad = std::min(bad, i);
        const int64_t cur = bk(static_cast<double>(c[i]));
        for (int64_t q = prev + 1; q <= cur; ++q) g[q] = i;
        prev = std::max(prev, cur);
      }
      int64_t seen = first_bad.load();
      while (bad < seen && !first_bad.compare_exchange_weak(seen, bad)) {
      }
    });
    const int64_t last = bk(static_cast<double>(c[n - 1]));
    std::fill(g + last + 1, g + num_buckets + 1, n);
  });
  if (first_bad.load() != std::numeric_limits<int64_t>::max()) fail_unsorted_cdf(first_bad.load());
  return guide;
}

at::Tensor cdf_search_cpu(const at::Tensor& cdf_in, const at::Tensor& guide_in, const at::Tensor& values_in) {
  check_cdf_search(cdf_in, guide_in, values_in);
  const at::Tensor cdf = cdf_in.contiguous(), guide = guide_in.contiguous(), values = values_in.contiguous();
  at::Tensor out = at::empty(values.sizes(), values.options().dtype(at::kLong));
  const int64_t n = cdf.numel(), q = values.numel();
  if (q == 0) return out;
  int64_t* o = out.data_ptr<int64_t>();
  if (n == 0) {
    std::fill(o, o + q, int64_t(0));
    return out;
  }
  const int64_t num_buckets = guide.numel() - 1;
  const int64_t* g = guide.data_ptr<int64_t>();
  GKD_DISPATCH_CPU_FLOATS(cdf.scalar_type(), "gkdfast_cdf_search_cpu", [&] {
    const scalar_t* c = cdf.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    const CdfBuckets bk = cdf_buckets_of(c, n, num_buckets);
    at::parallel_for(0, q, 1 << 13, [&](int64_t a, int64_t b) { search_range(c, n, g, bk, v, o, a, b); });
  });
  return out;
}

}  // namespace gkdfast
