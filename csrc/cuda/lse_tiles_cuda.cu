// Fused CUDA implementation of LseTileOps (ops/lse_tiles.h): the tile driver of infonce / crd
// all-N and gram_lse gets its logits from cuBLAS (tensor cores, TF32 when allowed), then ONE kernel
// per tile does what took four to six ATen passes (mask, max, exp, sum, log, logaddexp):
//   * rows: a block per tile row, two fixed-order block reductions (max, then sum-exp), merged into
//     the row's running log-sum-exp by thread 0;
//   * columns (gram_lse's transposed half): row chunks of 256 reduced per column in parallel, then
//     the chunk partials merged in ascending order;
//   * softmax weights: elementwise, in place, ready for the driver's addmm.
// No atomics anywhere: bitwise deterministic for a given tile shape.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>

#include "common/online_softmax.h"
#include "common/tile_workspace.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/lse_tiles_cuda.h"
#include <ATen/ops/empty.h>

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kColChunk = 256;  // rows per partial in the column reduction

template <typename T>
__device__ __forceinline__ T logaddexp(T a, T b) {
  if (a != a || b != b) return a + b;  // NaN stays visible
  const T inf = std::numeric_limits<T>::infinity();
  if (a == -inf) return b;
  if (b == -inf) return a;
  if (a == inf || b == inf) return inf;
  const T m = a > b ? a : b;
  return m + log1p(exp(-fabs(a - b)));
}

// log(sum) of a (max, sum-exp) pair as at::logsumexp gives it: NaN when any entry was NaN
// (nan_seen), +inf when the max is +inf, -inf for an empty set (or all entries -inf).
template <typename T>
__device__ __forceinline__ T lse_of(T m, T s, bool nan_seen) {
  const T inf = std::numeric_limits<T>::infinity();
  if (nan_seen) return std::numeric_limits<T>::quiet_NaN();
  if (m == inf) return inf;
  if (m == -inf || s == T(0)) return -inf;
  return m + log(s);
}

template <typename T>
__global__ void lse_rows_tile(const T* __restrict__ tile, int64_t ld, int64_t bj, T* __restrict__ lse,
                              int64_t self_off, bool exclude_self) {
  __shared__ T smem[33];
  const int64_t r = blockIdx.x;
  const T* row = tile + r * ld;
  const int64_t skip = exclude_self ? r + self_off : -1;  // column of the self pair (may be out of range)
  T m = -std::numeric_limits<T>::infinity(), nans = 0;
  for (int64_t c = threadIdx.x; c < bj; c += blockDim.x) {
    if (c == skip) continue;
    const T x = row[c];
    m = x > m ? x : m;
    nans += x != x ? T(1) : T(0);
  }
  m = block_max(m, smem);
  nans = block_sum(nans, smem);
  T s = 0;
  if (m != -std::numeric_limits<T>::infinity() && m != std::numeric_limits<T>::infinity() && nans == T(0))
    for (int64_t c = threadIdx.x; c < bj; c += blockDim.x)
      if (c != skip) s += exp(row[c] - m);
  s = block_sum(s, smem);
  if (threadIdx.x == 0) lse[r] = logaddexp(lse[r], lse_of(m, s, nans > T(0)));
}

// Partial (max, sum-exp) of column c over rows [chunk * kColChunk, ...), into part[0 / 1][chunk][c].
template <typename T>
__global__ void lse_cols_partial(const T* __restrict__ tile, int64_t ld, int64_t bi, int64_t bj, T* __restrict__ part,
                                 int64_t self_off, bool exclude_self) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= bj) return;
  const int64_t chunk = blockIdx.y, r0 = chunk * kColChunk, r1 = min(bi, r0 + kColChunk);
  const int64_t skip = exclude_self ? c - self_off : -1;  // row of the self pair in this column
  T m = -std::numeric_limits<T>::infinity();
  bool nan_seen = false;
  for (int64_t r = r0; r < r1; ++r) {
    if (r == skip) continue;
    const T x = tile[r * ld + c];
    m = x > m ? x : m;
    nan_seen |= x != x;
  }
  T s = 0;
  if (m != -std::numeric_limits<T>::infinity() && m != std::numeric_limits<T>::infinity())
    for (int64_t r = r0; r < r1; ++r)
      if (r != skip) s += exp(tile[r * ld + c] - m);
  const int64_t chunks = gridDim.y;
  part[chunk * bj + c] = m;
  // a NaN entry makes the partial's sum NaN, which lse_cols_finish propagates
  part[(chunks + chunk) * bj + c] = nan_seen ? std::numeric_limits<T>::quiet_NaN() : s;
}

template <typename T>
__global__ void lse_cols_finish(const T* __restrict__ part, int64_t chunks, int64_t bj, T* __restrict__ lse) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= bj) return;
  OnlineLSE<T> acc;
  bool nan_seen = false, inf_seen = false;
  for (int64_t k = 0; k < chunks; ++k) {  // ascending: fixed order
    OnlineLSE<T> p;
    p.max = part[k * bj + c];
    p.sum = part[(chunks + k) * bj + c];
    nan_seen |= p.sum != p.sum;
    inf_seen |= p.max == std::numeric_limits<T>::infinity();
    if (!nan_seen && !inf_seen) acc.merge(p);
  }
  if (inf_seen && !nan_seen) acc.max = std::numeric_limits<T>::infinity();
  lse[c] = logaddexp(lse[c], lse_of(acc.max, acc.sum, nan_seen));
}

template <typename T>
__global__ void softmax_weights_tile(T* __restrict__ tile, int64_t ld, int64_t bi, int64_t bj,
                                     const T* __restrict__ lse_r, const T* __restrict__ g_r,
                                     const T* __restrict__ lse_c, const T* __restrict__ g_c, int64_t self_off,
                                     bool exclude_self) {
  const int64_t total = bi * bj;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / bj, c = idx - r * bj;
    T* p = tile + r * ld + c;
    if (exclude_self && c == r + self_off) {
      *p = T(0);
      continue;
    }
    const T x = *p;
    T v = g_r[r] * exp(x - lse_r[r]);
    if (lse_c) v += g_c[c] * exp(x - lse_c[c]);
    *p = v;
  }
}

cudaStream_t stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.get_device()).stream(); }

class FusedLseTileOps final : public LseTileOps {
 public:
  void merge_rows(at::Tensor tile, at::Tensor lse_rows, int64_t row0, int64_t col0, bool exclude_self) const override {
    const int64_t bi = tile.size(0), bj = tile.size(1);
    if (bi == 0 || bj == 0) return;
    AT_DISPATCH_FLOATING_TYPES(tile.scalar_type(), "gkdfast_lse_rows_cuda", [&] {
      lse_rows_tile<scalar_t><<<static_cast<unsigned>(bi), kThreads, 0, stream_of(tile)>>>(
          tile.data_ptr<scalar_t>(), tile.stride(0), bj, lse_rows.data_ptr<scalar_t>(), row0 - col0, exclude_self);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  void merge_cols(at::Tensor tile, at::Tensor lse_cols, int64_t row0, int64_t col0, bool exclude_self) const override {
    const int64_t bi = tile.size(0), bj = tile.size(1);
    if (bi == 0 || bj == 0) return;
    const int64_t chunks = ceil_div<int64_t>(bi, kColChunk);
    TORCH_CHECK(chunks <= 65535, "gkdfast: a tile of ", bi, " rows exceeds the column pass's grid (at most ",
                65535 * kColChunk, " rows); lower GKDFAST_TILE_WORKSPACE_MB");  // gridDim.y limit
    at::Tensor part = at::empty({2, chunks, bj}, tile.options());
    AT_DISPATCH_FLOATING_TYPES(tile.scalar_type(), "gkdfast_lse_cols_cuda", [&] {
      const dim3 grid(num_blocks(bj, kThreads), static_cast<unsigned>(chunks));
      lse_cols_partial<scalar_t><<<grid, kThreads, 0, stream_of(tile)>>>(
          tile.data_ptr<scalar_t>(), tile.stride(0), bi, bj, part.data_ptr<scalar_t>(), row0 - col0, exclude_self);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      lse_cols_finish<scalar_t><<<num_blocks(bj, kThreads), kThreads, 0, stream_of(tile)>>>(
          part.data_ptr<scalar_t>(), chunks, bj, lse_cols.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  void softmax_weights(at::Tensor tile, const at::Tensor& lse_rows, const at::Tensor& g_rows,
                       const at::Tensor& lse_cols, const at::Tensor& g_cols, int64_t row0, int64_t col0,
                       bool exclude_self) const override {
    const int64_t bi = tile.size(0), bj = tile.size(1);
    if (bi == 0 || bj == 0) return;
    const int64_t blocks = std::min<int64_t>(ceil_div<int64_t>(bi * bj, kThreads), 65536);
    AT_DISPATCH_FLOATING_TYPES(tile.scalar_type(), "gkdfast_softmax_weights_cuda", [&] {
      using T = scalar_t;
      const bool cols = lse_cols.defined();
      softmax_weights_tile<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream_of(tile)>>>(
          tile.data_ptr<T>(), tile.stride(0), bi, bj, lse_rows.data_ptr<T>(), g_rows.data_ptr<T>(),
          cols ? lse_cols.data_ptr<T>() : nullptr, cols ? g_cols.data_ptr<T>() : nullptr, row0 - col0,
          exclude_self);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace

const LseTileOps& fused_lse_tile_ops() {
  static const FusedLseTileOps ops;
  return ops;
}

const LseTileOps& cuda_lse_tile_ops() { return cuda_legacy_impl() ? aten_lse_tile_ops() : fused_lse_tile_ops(); }

}  // namespace cuda
}  // namespace gkdfast
