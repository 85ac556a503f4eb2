// Shared CUDA building blocks for every gkdfast kernel file (graph ops and losses alike):
// dtype dispatch with float accumulation for half types, aligned vector loads, deterministic warp
// and block reductions, launch arithmetic and the device guard / stream boilerplate.
//
// Determinism: every reduction here combines values in an order fixed by lane and warp index
// (butterfly shuffles, then warps in ascending order), never by arrival time, so a kernel built
// from these pieces gives bitwise identical results from run to run.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
// Not ATen/cuda/CUDAContext.h: it pulls in cuSPARSE/cuBLAS headers, which minimal toolkits (and the
// CI's) lack.  at::cuda::getCurrentCUDAStream is an alias of the c10 function used below.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>

#include "common/macros.h"

namespace gkdfast {
namespace cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// float for half/bfloat16/float, double for double: half types are loaded narrow and summed wide.
template <typename scalar_t>
using acc_type = at::opmath_type<scalar_t>;

// float32, float64, float16, bfloat16 (the dtypes every gkdfast CUDA kernel accepts).
#define GKD_DISPATCH_FLOATING(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

// Guard + stream for the device of `t`: every host wrapper starts with GKD_CUDA_SETUP(t).
// The check turns a call that mixes devices (e.g. CUDA weights with a CPU graph, which the
// dispatcher still sends here) into a clear error instead of a bad device guard.
#define GKD_CUDA_SETUP(t)                                                                           \
  TORCH_CHECK_VALUE((t).is_cuda(), "gkdfast: the CUDA kernel was called but ", #t, " is on ",       \
                    (t).device(), "; put the graph and every tensor argument on one CUDA device");  \
  const c10::cuda::CUDAGuard gkd_device_guard_((t).device());                                      \
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream((t).get_device()).stream()

template <typename T>
GKD_HD constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

// Blocks for `n` independent work items of `per_block` each (at least 1 so launches are valid;
// callers skip launches for n == 0 anyway).  Grid x is limited to 2^31-1, far above any graph here; a
// count past it is refused rather than cast (above 2^32 the cast wrapped and rows went unprocessed).
inline unsigned int num_blocks(int64_t n, int64_t per_block) {
  const int64_t b = ceil_div<int64_t>(n, per_block);
  TORCH_CHECK(b <= int64_t{2147483647}, "gkdfast: ", n, " work items need ", b,
              " CUDA blocks, more than a grid's 2^31 - 1");
  return static_cast<unsigned int>(b < 1 ? 1 : b);
}

// Smallest power of two >= v (v >= 1), capped at `cap`.
inline int pow2_at_least(int64_t v, int cap) {
  int p = 1;
  while (p < v && p < cap) p <<= 1;
  return p;
}

// ---- vector loads -------------------------------------------------------------------------------
// V consecutive elements moved as one aligned access (16 bytes for the widest case: float4, double2,
// 8 halves), so a warp reading a feature row issues few wide transactions.
template <typename T, int V>
struct alignas(sizeof(T) * V) VecT {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ VecT<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const VecT<T, V>*>(p);
}

template <int V, typename T>
__device__ __forceinline__ void store_vec(T* p, const VecT<T, V>& v) {
  *reinterpret_cast<VecT<T, V>*>(p) = v;
}

// Elements per 16-byte access.
template <typename T>
constexpr int vec16() {
  return sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));
}

inline bool aligned_to(const void* p, int64_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// ---- deterministic warp reductions ---------------------------------------------------------------
// Butterfly over lanes [base, base + width): every lane of the segment ends with the same value,
// combined in a fixed order.  `width` must be a power of two <= 32; all 32 lanes must call.
template <typename T>
__device__ __forceinline__ T warp_sum(T v, int width = kWarp) {
  for (int off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v, int width = kWarp) {
  // NaN-propagating is not wanted here (callers use it for stable softmax maxima): keep the
  // larger of two numbers and ignore a NaN, like std::max(acc, v) in the CPU kernels.
  for (int off = width >> 1; off > 0; off >>= 1) {
    const T o = __shfl_xor_sync(kFullMask, v, off);
    v = (v < o || v != v) ? o : v;
  }
  return v;
}

// Block-wide sum for blockDim.x = 32 * warps (warps <= 32): warps reduce, then warp 0 adds the
// warp results in ascending order.  Every thread gets the result.  `smem` holds >= 33 values.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* smem) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // smem may still be read from a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T t = lane < warps ? smem[lane] : T(0);
    t = warp_sum(t);
    if (lane == 0) smem[32] = t;
  }
  __syncthreads();
  return smem[32];
}

template <typename T>
__device__ __forceinline__ T block_max(T v, T* smem) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T t = lane < warps ? smem[lane] : -std::numeric_limits<T>::infinity();
    t = warp_max(t);
    if (lane == 0) smem[32] = t;
  }
  __syncthreads();
  return smem[32];
}

}  // namespace cuda
}  // namespace gkdfast
