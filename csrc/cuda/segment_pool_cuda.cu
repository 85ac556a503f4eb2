// CUDA global pooling over contiguous segments (see ops/segment_pool.h).  A warp per segment, lanes
// over features, the segment's nodes in order: coalesced row reads, each output row (forward) and
// each node row (backward) written by one warp only.  Deterministic, no atomics.

#include "cuda/cuda_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "ops/segment_pool.h"

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void segment_pool_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ ptr, int64_t b,
                                    int64_t d, PoolReduce reduce, scalar_t* __restrict__ out,
                                    int64_t* __restrict__ arg) {
  using acc_t = acc_type<scalar_t>;
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (g >= b) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t i0 = ptr[g], i1 = ptr[g + 1];
  for (int64_t f = lane; f < d; f += kWarp) {
    if (i0 == i1) {
      out[g * d + f] = scalar_t(0);
      if (arg) arg[g * d + f] = -1;
      continue;
    }
    if (reduce == PoolReduce::Max) {
      acc_t m = static_cast<acc_t>(x[i0 * d + f]);
      int64_t w = i0;
      for (int64_t i = i0 + 1; i < i1; ++i) {
        const acc_t v = static_cast<acc_t>(x[i * d + f]);
        if (v > m || (v != v && m == m)) {  // first maximum wins; a NaN sticks
          m = v;
          w = i;
        }
      }
      out[g * d + f] = static_cast<scalar_t>(m);
      arg[g * d + f] = w;
    } else {
      acc_t s = 0;
      for (int64_t i = i0; i < i1; ++i) s += static_cast<acc_t>(x[i * d + f]);
      if (reduce == PoolReduce::Mean) s *= acc_t(1) / static_cast<acc_t>(i1 - i0);
      out[g * d + f] = static_cast<scalar_t>(s);
    }
  }
}

template <typename scalar_t>
__global__ void segment_pool_backward_kernel(const scalar_t* __restrict__ grad, const int64_t* __restrict__ ptr,
                                             const int64_t* __restrict__ arg, int64_t b, int64_t d,
                                             PoolReduce reduce, scalar_t* __restrict__ gx) {
  using acc_t = acc_type<scalar_t>;
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (g >= b) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t i0 = ptr[g], i1 = ptr[g + 1];
  if (reduce == PoolReduce::Max) {  // gx zero-filled; arg entries of g lie in [i0, i1) (validated)
    for (int64_t f = lane; f < d; f += kWarp) {
      const int64_t i = arg[g * d + f];
      if (i >= 0) gx[i * d + f] = grad[g * d + f];
    }
    return;
  }
  const acc_t scale = reduce == PoolReduce::Mean && i1 > i0 ? acc_t(1) / static_cast<acc_t>(i1 - i0) : acc_t(1);
  for (int64_t f = lane; f < d; f += kWarp) {
    const scalar_t v = static_cast<scalar_t>(static_cast<acc_t>(grad[g * d + f]) * scale);
    for (int64_t i = i0; i < i1; ++i) gx[i * d + f] = v;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> segment_pool_cuda(const at::Tensor& x_in, const at::Tensor& ptr_in,
                                                     c10::string_view reduce_name) {
  GKD_CUDA_SETUP(x_in);
  const SegmentPoolCall c = prepare_segment_pool(x_in, ptr_in, std::string(reduce_name));
  if (c.empty()) return {c.out, c.arg};
  GKD_DISPATCH_FLOATING(c.in.scalar_type(), "gkdfast_segment_pool_cuda", [&] {
    segment_pool_kernel<scalar_t><<<num_blocks(c.segments * kWarp, kThreads), kThreads, 0, stream>>>(
        c.in.data_ptr<scalar_t>(), c.ptr.data_ptr<int64_t>(), c.segments, c.d, c.reduce, c.out.data_ptr<scalar_t>(),
        c.reduce == PoolReduce::Max ? c.arg.data_ptr<int64_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {c.out, c.arg};
}

at::Tensor segment_pool_backward_cuda(const at::Tensor& ptr_in, const at::Tensor& arg_in, const at::Tensor& grad_in,
                                      int64_t num_nodes, c10::string_view reduce_name) {
  GKD_CUDA_SETUP(grad_in);
  const SegmentPoolCall c = prepare_segment_pool_backward(ptr_in, arg_in, grad_in, num_nodes, std::string(reduce_name));
  if (c.empty()) return c.out;
  GKD_DISPATCH_FLOATING(c.in.scalar_type(), "gkdfast_segment_pool_backward_cuda", [&] {
    segment_pool_backward_kernel<scalar_t><<<num_blocks(c.segments * kWarp, kThreads), kThreads, 0, stream>>>(
        c.in.data_ptr<scalar_t>(), c.ptr.data_ptr<int64_t>(),
        c.reduce == PoolReduce::Max ? c.arg.data_ptr<int64_t>() : nullptr, c.segments, c.d, c.reduce,
        c.out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return c.out;
}
}  // namespace cuda

}  // namespace gkdfast
