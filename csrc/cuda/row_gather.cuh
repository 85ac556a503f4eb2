// Generic CSR row gather-reduce on the GPU: out[row, f] = reduce over the row's edges of a per-edge
// feature vector.  SpMM forward (x[col[e]] * w[e]) and the max/min backward (grad rows masked by
// the recorded arg, over the transposed CSR) are both instances; an Op supplies the per-edge
// values and the output write.
//
// Layout of the work: one warp per (row, feature chunk).  The warp's lanes are split into
// `lanes_f` feature lanes (each owning V consecutive features, loaded as one aligned vector) times
// 32 / lanes_f edge groups, so narrow feature rows still keep all 32 lanes busy.  A chunk of 32
// edges' metadata (source index, edge id, weight) is loaded coalesced by the warp and broadcast by
// shuffles.  Edge groups are then combined by butterfly shuffles in a fixed order.  Rows longer
// than kHeavyDegree go to a block of kHeavyWarps warps, each taking a contiguous slice of the row;
// the slices' partials are combined in shared memory in warp order.  No atomics on values: the
// result is bitwise reproducible.
//
// max/min semantics match the CPU kernels exactly: among equal values the first edge in CSR order
// wins; NaN values are skipped except that a NaN on the row's first edge sticks (the CPU kernels
// start from the first edge and only replace on a strict comparison); empty rows give 0 / arg -1.
#pragma once

#include "common/reducers.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/heavy_rows.cuh"

namespace gkdfast {
namespace cuda {

template <typename acc_t, int V, bool kArg>
struct RowPartial {
  acc_t v[V];
  int64_t a[kArg ? V : 1];
};

// Reduce::Mean is run as Sum and scaled by the op's write.
template <Reduce R>
constexpr bool has_arg() { return R == Reduce::Max || R == Reduce::Min; }

template <Reduce R, typename acc_t, int V>
__device__ __forceinline__ void partial_init(RowPartial<acc_t, V, has_arg<R>()>& p) {
#pragma unroll
  for (int t = 0; t < V; ++t) {
    p.v[t] = acc_t(0);
    if constexpr (has_arg<R>()) p.a[t] = -1;
  }
}

// Does candidate (ov, oa) beat the current (mv, ma)?  NaN beats every number (the row's first NaN
// message wins, as torch.amax propagates NaN; between two NaNs the earlier edge); otherwise the
// better value, then the earlier edge.
template <Reduce R, typename acc_t>
__device__ __forceinline__ bool arg_better(acc_t ov, int64_t oa, acc_t mv, int64_t ma) {
  if (oa < 0) return false;
  if (ma < 0) return true;
  const bool on = ov != ov, mn = mv != mv;
  if (on || mn) return on && (!mn || oa < ma);
  const bool strictly = R == Reduce::Max ? (ov > mv) : (ov < mv);
  return strictly || (ov == mv && oa < ma);
}

template <Reduce R, typename acc_t, int V>
__device__ __forceinline__ void partial_update(RowPartial<acc_t, V, has_arg<R>()>& p, const acc_t (&v)[V],
                                               int64_t eid) {
#pragma unroll
  for (int t = 0; t < V; ++t) {
    if constexpr (has_arg<R>()) {
      // Edges reach a partial in increasing order, so "first wins" is a strict comparison here.
      bool take;
      // A NaN message is taken once and then sticks (the first NaN of the row wins).
      if (p.a[t] < 0) take = true;
      else take = (p.v[t] == p.v[t]) && (v[t] != v[t] || (R == Reduce::Max ? v[t] > p.v[t] : v[t] < p.v[t]));
      if (take) { p.v[t] = v[t]; p.a[t] = eid; }
    } else {
      p.v[t] += v[t];
    }
  }
}

template <Reduce R, typename acc_t, int V>
__device__ __forceinline__ void partial_merge(RowPartial<acc_t, V, has_arg<R>()>& p, acc_t ov, int64_t oa, int t) {
  if constexpr (has_arg<R>()) {
    if (arg_better<R>(ov, oa, p.v[t], p.a[t])) { p.v[t] = ov; p.a[t] = oa; }
  } else {
    p.v[t] += ov;
  }
}

// Accumulates edges [e_begin, e_end) into p.  Every lane of the warp must call (shuffles);
// lanes whose feature offset f is past the row width pass fvalid = false.
template <Reduce R, int V, class Op, typename acc_t>
__device__ __forceinline__ void gather_edges(const Op& op, int64_t e_begin, int64_t e_end,
                                             int lane, int lanes_f, int64_t f, bool fvalid,
                                             RowPartial<acc_t, V, has_arg<R>()>& p) {
  const int grp = lane / lanes_f, groups = kWarp / lanes_f;
  for (int64_t base = e_begin; base < e_end; base += kWarp) {
    const int n = static_cast<int>(e_end - base < kWarp ? e_end - base : kWarp);
    int64_t src = 0, eid = -1;
    acc_t w = acc_t(1);
    if (lane < n) op.meta(base + lane, src, eid, w);
#pragma unroll 4
    for (int k = 0; k < n; k += groups) {
      const int kk = k + grp;  // < 32 always
      const int64_t s = __shfl_sync(kFullMask, src, kk);
      const int64_t id = __shfl_sync(kFullMask, eid, kk);
      const acc_t ww = __shfl_sync(kFullMask, w, kk);
      if (kk < n && fvalid) {
        acc_t v[V];
        op.template value<V>(s, id, ww, f, v);
        partial_update<R>(p, v, id);
      }
    }
  }
}

// Combines the edge groups of a warp (lanes with equal lane % lanes_f); all lanes end equal.
template <Reduce R, typename acc_t, int V>
__device__ __forceinline__ void combine_groups(RowPartial<acc_t, V, has_arg<R>()>& p, int lanes_f) {
  for (int off = lanes_f; off < kWarp; off <<= 1) {
#pragma unroll
    for (int t = 0; t < V; ++t) {
      const acc_t ov = __shfl_xor_sync(kFullMask, p.v[t], off);
      int64_t oa = 0;
      if constexpr (has_arg<R>()) oa = __shfl_xor_sync(kFullMask, p.a[t], off);
      partial_merge<R>(p, ov, oa, t);
    }
  }
}

template <Reduce R, int V, class Op, typename index_t>
__global__ void __launch_bounds__(256) row_gather_light(const Op op, const index_t* __restrict__ rowptr,
                                                        int64_t num_rows, int64_t d, int64_t chunks, int lanes_f,
                                                        HeavyRows heavy) {
  using acc_t = typename Op::acc_t;
  const int64_t warp_id = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (warp_id >= num_rows * chunks) return;  // uniform over the warp
  const int64_t row = warp_id / chunks, chunk = warp_id % chunks;
  const int64_t e0 = rowptr[row], e1 = rowptr[row + 1];
  if (heavy.is_heavy(e1 - e0)) {
    if (chunk == 0 && lane == 0) heavy.push(row);
    return;
  }
  const int lf = lane % lanes_f;
  const int64_t f = (chunk * kWarp + lf) * V;
  const bool fvalid = f < d;
  RowPartial<acc_t, V, has_arg<R>()> p;
  partial_init<R>(p);
  gather_edges<R, V>(op, e0, e1, lane, lanes_f, f, fvalid, p);
  combine_groups<R>(p, lanes_f);
  if (lane < lanes_f && fvalid) op.template write<V>(row, f, p, e1 - e0);
}

template <Reduce R, int V, class Op, typename index_t>
__global__ void __launch_bounds__(kHeavyWarps* kWarp)
    row_gather_heavy(const Op op, const index_t* __restrict__ rowptr, int64_t d, int lanes_f, HeavyRows heavy) {
  using acc_t = typename Op::acc_t;
  constexpr bool kArg = has_arg<R>();
  __shared__ acc_t s_val[kHeavyWarps][kWarp * V];
  __shared__ int64_t s_arg[kHeavyWarps][kArg ? kWarp * V : 1];
  const int64_t row = heavy.row(blockIdx.x);
  if (row < 0) return;  // uniform over the block
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t e0 = rowptr[row], e1 = rowptr[row + 1];
  const int64_t slice = ceil_div<int64_t>(e1 - e0, kHeavyWarps);
  const int64_t b = e0 + warp * slice < e1 ? e0 + warp * slice : e1;
  const int64_t e = b + slice < e1 ? b + slice : e1;
  const int lf = lane % lanes_f;
  const int64_t f = (static_cast<int64_t>(blockIdx.y) * kWarp + lf) * V;
  const bool fvalid = f < d;
  RowPartial<acc_t, V, kArg> p;
  partial_init<R>(p);
  gather_edges<R, V>(op, b, e, lane, lanes_f, f, fvalid, p);
  combine_groups<R>(p, lanes_f);
  if (lane < lanes_f) {
#pragma unroll
    for (int t = 0; t < V; ++t) {
      s_val[warp][lane * V + t] = p.v[t];
      if constexpr (kArg) s_arg[warp][lane * V + t] = p.a[t];
    }
  }
  __syncthreads();
  if (warp == 0 && lane < lanes_f && fvalid) {
    for (int w = 1; w < kHeavyWarps; ++w) {
#pragma unroll
      for (int t = 0; t < V; ++t)
        partial_merge<R>(p, s_val[w][lane * V + t], kArg ? s_arg[w][kArg ? lane * V + t : 0] : int64_t(0), t);
    }
    op.template write<V>(row, f, p, e1 - e0);
  }
}

// Runs op over every row of a CSR with `num_rows` rows and `num_edges` edges, features [0, d).
template <Reduce R, int V, class Op, typename index_t>
void launch_row_gather(const Op& op, const index_t* rowptr, int64_t num_rows, int64_t num_edges, int64_t d,
                       const at::TensorOptions& opts, cudaStream_t stream) {
  if (num_rows == 0 || d == 0) return;
  const int64_t vecs = ceil_div<int64_t>(d, V);
  const int lanes_f = pow2_at_least(vecs, kWarp);
  const int64_t chunks = ceil_div<int64_t>(vecs, kWarp);  // > 1 only when lanes_f == 32
  HeavyRowsBuffer heavy(num_rows, num_edges, opts);
  constexpr int threads = 256;
  row_gather_light<R, V><<<num_blocks(num_rows * chunks * kWarp, threads), threads, 0, stream>>>(
      op, rowptr, num_rows, d, chunks, lanes_f, heavy.view);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (heavy.any()) {
    // grid.y holds the feature chunks; CUDA caps it at 65,535
    TORCH_CHECK_VALUE(chunks <= 65535, "gkdfast: feature width ", d, " is too wide for the CUDA row kernels on rows "
                      "with more than 512 edges (at most ", int64_t(65535) * kWarp * V, " at this alignment)");
    const dim3 grid(static_cast<unsigned int>(heavy.view.capacity), static_cast<unsigned int>(chunks));
    row_gather_heavy<R, V><<<grid, kHeavyWarps * kWarp, 0, stream>>>(op, rowptr, d, lanes_f, heavy.view);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace cuda
}  // namespace gkdfast
