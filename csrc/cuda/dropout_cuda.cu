// CUDA dropout with a Philox mask (see ops/dropout.h): one thread per Philox block of 4 elements,
// grid-stride; the words are those of csrc/cpu/dropout_cpu.cpp, so both devices draw the same mask.

#include "common/philox.h"
#include "cuda/cuda_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "ops/dropout.h"

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void dropout_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t n,
                               uint64_t seed, uint32_t threshold, acc_type<scalar_t> scale) {
  using acc_t = acc_type<scalar_t>;
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const philox::U4 w = philox::dropout_words(seed, b);
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
    const int64_t e0 = 4 * b;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (e0 + j < n) {
        const acc_t f = words[j] >= threshold ? scale : acc_t(0);  // x * 0 where dropped, as on CPU
        out[e0 + j] = static_cast<scalar_t>(static_cast<acc_t>(x[e0 + j]) * f);
      }
    }
  }
}

}  // namespace

at::Tensor dropout_cuda(const at::Tensor& x, double p, int64_t seed) {
  GKD_CUDA_SETUP(x);
  DropoutCall c = prepare_dropout(x, p, seed);
  if (dropout_without_mask(c)) return c.out;
  const int64_t n = c.numel();
  // Enough blocks to fill the device several times over; the grid-stride loop covers the rest.
  const int64_t philox_blocks = (n + 3) / 4;
  const unsigned grid = num_blocks(std::min<int64_t>(philox_blocks, int64_t(1) << 24), kThreads);
  GKD_DISPATCH_FLOATING(c.in.scalar_type(), "gkdfast_dropout_cuda", [&] {
    dropout_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(c.in.data_ptr<scalar_t>(), c.out.data_ptr<scalar_t>(), n,
                                                            c.seed, c.threshold,
                                                            static_cast<acc_type<scalar_t>>(c.scale));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return c.out;
}

}  // namespace cuda
}  // namespace gkdfast
