// CUDA guided inverse-CDF search (see ops/inverse_cdf.h, common/cdf_buckets.h): a thread per bucket
// finds its guide entry, a thread per value searches its bucket.  Every thread derives the buckets
// from cdf's first and last entries itself, so a search never waits on the host; the guide's build
// syncs once, for its order check.
#include <ATen/ops/empty.h>

#include <limits>

#include "common/cdf_buckets.h"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "ops/inverse_cdf.h"

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// A thread per bucket b in [0, num_buckets]: guide[b] = the first i with bucket(cdf[i]) >= b, by
// binary search (bucket(cdf[i]) is non-decreasing for a sorted cdf; an unsorted one is refused).
// O(B log n) work, and no thread fills a long run of buckets alone.
template <typename scalar_t>
__global__ void cdf_guide_kernel(const scalar_t* __restrict__ cdf, int64_t n, int64_t num_buckets,
                                 int64_t* __restrict__ guide) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b > num_buckets) return;
  const CdfBuckets bk = cdf_buckets_of(cdf, n, num_buckets);  // each thread: no host round trip
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (bk(static_cast<double>(cdf[mid])) < b) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  guide[b] = lo;
}

// A thread per entry: the first entry that is NaN or below its predecessor.
template <typename scalar_t>
__global__ void cdf_order_kernel(const scalar_t* __restrict__ cdf, int64_t n, long long* __restrict__ first_bad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (cdf_entry_out_of_order(cdf, i)) atomicMin(first_bad, static_cast<long long>(i));
}

template <typename scalar_t>
__global__ void cdf_search_kernel(const scalar_t* __restrict__ cdf, int64_t n, const int64_t* __restrict__ guide,
                                  int64_t num_buckets, const scalar_t* __restrict__ values, int64_t q,
                                  int64_t* __restrict__ out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= q) return;
  const scalar_t v = values[j];
  const int64_t b = cdf_buckets_of(cdf, n, num_buckets)(static_cast<double>(v));
  int64_t lo, hi;
  guide_range(guide, b, n, &lo, &hi);
  out[j] = first_not_below(cdf, lo, hi, v);
}

}  // namespace

at::Tensor cdf_guide_cuda(const at::Tensor& cdf_in, int64_t num_buckets) {
  GKD_CUDA_SETUP(cdf_in);
  check_cdf_guide(cdf_in, num_buckets);
  const at::Tensor cdf = cdf_in.contiguous();
  const int64_t n = cdf.numel();
  at::Tensor guide = at::empty({num_buckets + 1}, cdf.options().dtype(at::kLong));
  if (n == 0) return guide.zero_();
  at::Tensor first_bad = at::empty({1}, cdf.options().dtype(at::kLong)).fill_(std::numeric_limits<int64_t>::max());
  AT_DISPATCH_FLOATING_TYPES(cdf.scalar_type(), "gkdfast_cdf_guide_cuda", [&] {
    cdf_order_kernel<scalar_t><<<num_blocks(n, kThreads), kThreads, 0, stream>>>(
        cdf.data_ptr<scalar_t>(), n, reinterpret_cast<long long*>(first_bad.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    cdf_guide_kernel<scalar_t><<<num_blocks(num_buckets + 1, kThreads), kThreads, 0, stream>>>(
        cdf.data_ptr<scalar_t>(), n, num_buckets, guide.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t bad = first_bad.item<int64_t>();  // the one host sync: the error must be raised here
  if (bad != std::numeric_limits<int64_t>::max()) fail_unsorted_cdf(bad);
  return guide;
}

at::Tensor cdf_search_cuda(const at::Tensor& cdf_in, const at::Tensor& guide_in, const at::Tensor& values_in) {
  GKD_CUDA_SETUP(cdf_in);
  check_cdf_search(cdf_in, guide_in, values_in);
  const at::Tensor cdf = cdf_in.contiguous(), guide = guide_in.contiguous(), values = values_in.contiguous();
  at::Tensor out = at::empty(values.sizes(), values.options().dtype(at::kLong));
  const int64_t n = cdf.numel(), q = values.numel();
  if (q == 0) return out;
  if (n == 0) return out.zero_();
  AT_DISPATCH_FLOATING_TYPES(cdf.scalar_type(), "gkdfast_cdf_search_cuda", [&] {
    cdf_search_kernel<scalar_t><<<num_blocks(q, kThreads), kThreads, 0, stream>>>(
        cdf.data_ptr<scalar_t>(), n, guide.data_ptr<int64_t>(), guide.numel() - 1, values.data_ptr<scalar_t>(), q,
        out.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace gkdfast
