// Generic per-edge dot product over a CSR on the GPU: out[e] = sum_f P(row, e, f) for every edge e of
// every row.  SDDMM (a[i] . b[col[e]]) and the edge-weight gradient of max/min SpMM are instances;
// an Op supplies the V-wide partial dot and the write.
//
// One warp per row: lanes are split into lanes_f feature lanes times 32 / lanes_f edge groups, each
// group handling every groups-th edge of the row; a group's feature lanes reduce with a fixed
// butterfly (deterministic).  Rows longer than kHeavyDegree are handled by a block whose warps
// interleave over the row's edges; every edge is still reduced by exactly one group, so no partial
// results need combining and nothing is atomic.
#pragma once

#include "cuda/cuda_utils.cuh"
#include "cuda/heavy_rows.cuh"

namespace gkdfast {
namespace cuda {

// Edges e_begin + gidx, + stride, ... below e_end.  All lanes of the warp must call with the same
// e_begin / e_end / stride (shuffles); gidx differs only between edge groups.
template <int V, class Op>
__device__ __forceinline__ void dot_edges(const Op& op, int64_t row, int64_t e_begin, int64_t e_end, int64_t gidx,
                                          int64_t stride, int lf, int lanes_f, int64_t d) {
  using acc_t = typename Op::acc_t;
  for (int64_t base = e_begin; base < e_end; base += stride) {
    const int64_t e = base + gidx;
    const bool ok = e < e_end;
    acc_t s = acc_t(0);
    if (ok) {
      const int64_t src = op.src(e);
      for (int64_t f = static_cast<int64_t>(lf) * V; f < d; f += static_cast<int64_t>(lanes_f) * V)
        s += op.template dot<V>(row, e, src, f);
    }
    s = warp_sum(s, lanes_f);  // offsets < lanes_f stay inside the edge group
    if (ok && lf == 0) op.write(e, s);
  }
}

template <int V, class Op, typename index_t>
__global__ void __launch_bounds__(256) edge_dot_light(const Op op, const index_t* __restrict__ rowptr,
                                                      int64_t num_rows, int64_t d, int lanes_f, HeavyRows heavy) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= num_rows) return;
  const int64_t e0 = rowptr[row], e1 = rowptr[row + 1];
  if (heavy.is_heavy(e1 - e0)) {
    if (lane == 0) heavy.push(row);
    return;
  }
  dot_edges<V>(op, row, e0, e1, lane / lanes_f, kWarp / lanes_f, lane % lanes_f, lanes_f, d);
}

template <int V, class Op, typename index_t>
__global__ void __launch_bounds__(kHeavyWarps* kWarp)
    edge_dot_heavy(const Op op, const index_t* __restrict__ rowptr, int64_t d, int lanes_f, HeavyRows heavy) {
  const int64_t row = heavy.row(blockIdx.x);
  if (row < 0) return;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int groups = kWarp / lanes_f;
  const int64_t e0 = rowptr[row], e1 = rowptr[row + 1];
  dot_edges<V>(op, row, e0, e1, static_cast<int64_t>(warp) * groups + lane / lanes_f,
               static_cast<int64_t>(kHeavyWarps) * groups, lane % lanes_f, lanes_f, d);
}

template <int V, class Op, typename index_t>
void launch_edge_dot(const Op& op, const index_t* rowptr, int64_t num_rows, int64_t num_edges, int64_t d,
                     const at::TensorOptions& opts, cudaStream_t stream) {
  if (num_rows == 0 || num_edges == 0) return;
  // Feature lanes: enough to cover d once with V-wide loads, at most a warp; wide rows loop.
  const int lanes_f = pow2_at_least(ceil_div<int64_t>(d, V), kWarp);
  HeavyRowsBuffer heavy(num_rows, num_edges, opts);
  constexpr int threads = 256;
  edge_dot_light<V><<<num_blocks(num_rows * kWarp, threads), threads, 0, stream>>>(op, rowptr, num_rows, d, lanes_f,
                                                                                     heavy.view);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (heavy.any()) {
    edge_dot_heavy<V><<<static_cast<unsigned int>(heavy.view.capacity), kHeavyWarps * kWarp, 0, stream>>>(
        op, rowptr, d, lanes_f, heavy.view);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace cuda
}  // namespace gkdfast
