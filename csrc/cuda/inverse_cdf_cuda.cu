// CUDA guided inverse-CDF search (see ops/inverse_cdf.h, common/cdf_buckets.h): a thread per cdf
// entry builds the guide (entry i fills the buckets (bucket(cdf[i-1]), bucket(cdf[i])], disjoint, no
// atomics but the error flag), a thread per value searches its bucket.
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

template <typename scalar_t>
__global__ void cdf_guide_kernel(const scalar_t* __restrict__ cdf, int64_t n, CdfBuckets bk,
                                 int64_t* __restrict__ guide, long long* __restrict__ first_bad) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const scalar_t x = cdf[i];
  if (i == 0 ? x != x : !(cdf[i - 1] <= x)) atomicMin(first_bad, static_cast<long long>(i));
  const int64_t prev = i == 0 ? -1 : bk(static_cast<double>(cdf[i - 1]));
  const int64_t cur = bk(static_cast<double>(x));
  for (int64_t q = prev + 1; q <= cur; ++q) guide[q] = i;
  if (i == n - 1)
    for (int64_t q = cur + 1; q <= bk.buckets; ++q) guide[q] = n;  // past the last entry's bucket
}

template <typename scalar_t>
__global__ void cdf_search_kernel(const scalar_t* __restrict__ cdf, int64_t n, const int64_t* __restrict__ guide,
                                  CdfBuckets bk, const scalar_t* __restrict__ values, int64_t q,
                                  int64_t* __restrict__ out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= q) return;
  const scalar_t v = values[j];
  const int64_t b = bk(static_cast<double>(v));
  int64_t lo = min(max(guide[b], int64_t(0)), n), hi = min(max(guide[b + 1], int64_t(0)), n);
  if (lo > hi) lo = 0, hi = n;  // a guide from another array: wrong, but in bounds
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (!(cdf[mid] >= v)) lo = mid + 1; else hi = mid;
  }
  out[j] = lo;
}

template <typename scalar_t>
CdfBuckets device_buckets(const at::Tensor& cdf, int64_t num_buckets) {
  // The first and last entries, read on the host once per call (two scalars).
  const double first = cdf.select(0, 0).item<double>(), last = cdf.select(0, cdf.numel() - 1).item<double>();
  return make_cdf_buckets(first, last, num_buckets);
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
    const CdfBuckets bk = device_buckets<scalar_t>(cdf, num_buckets);
    cdf_guide_kernel<scalar_t><<<num_blocks(n, kThreads), kThreads, 0, stream>>>(
        cdf.data_ptr<scalar_t>(), n, bk, guide.data_ptr<int64_t>(),
        reinterpret_cast<long long*>(first_bad.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t bad = first_bad.item<int64_t>();
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
    const CdfBuckets bk = device_buckets<scalar_t>(cdf, guide.numel() - 1);
    cdf_search_kernel<scalar_t><<<num_blocks(q, kThreads), kThreads, 0, stream>>>(
        cdf.data_ptr<scalar_t>(), n, guide.data_ptr<int64_t>(), bk, values.data_ptr<scalar_t>(), q,
        out.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace gkdfast
