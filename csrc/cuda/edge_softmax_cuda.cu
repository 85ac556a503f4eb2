// CUDA edge softmax over each destination's in-edges (scores [E] or [E, H], heads independent)
// and its backward.  One warp per (row, head); rows longer than kHeavyDegree get a whole block per
// (row, head).  Same arithmetic as csrc/cpu/edge_softmax_cpu.cpp: max (NaN ignored, all -inf
// treated as 0), sum of exp(s - max), then exp(s - max) * (1 / sum) (0 when the sum is 0).
// Reductions use fixed shuffle trees: bitwise reproducible, no atomics on values.

#include "cuda/cuda_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/heavy_rows.cuh"
#include "ops/edge_softmax.h"
#include "ops/graph_checks.h"
#include <ATen/ops/empty_like.h>

namespace gkdfast {
namespace cuda {
namespace {

// A group of threads working on one (row, head): a warp or a block.
struct WarpTeam {
  int rank, size;
  template <typename T> __device__ T sum(T v) const { return warp_sum(v); }
  template <typename T> __device__ T max(T v) const { return warp_max(v); }
};

template <typename acc_t>
struct BlockTeam {
  int rank, size;
  acc_t* smem;  // >= 33 entries
  __device__ acc_t sum(acc_t v) const { return block_sum(v, smem); }
  __device__ acc_t max(acc_t v) const { return block_max(v, smem); }
};

template <typename acc_t>
__device__ __forceinline__ acc_t gkd_exp(acc_t v) { return exp(v); }

template <typename scalar_t, class Team>
__device__ __forceinline__ void softmax_row(const Team& team, const scalar_t* __restrict__ s, scalar_t* __restrict__ out,
                                            int64_t e0, int64_t e1, int64_t heads, int64_t h) {
  using acc_t = acc_type<scalar_t>;
  acc_t mx = -std::numeric_limits<acc_t>::infinity();
  for (int64_t e = e0 + team.rank; e < e1; e += team.size) {
    const acc_t v = static_cast<acc_t>(s[e * heads + h]);
    mx = mx < v ? v : mx;  // like std::max(mx, v): a NaN score never becomes the maximum
  }
  mx = team.max(mx);
  if (isinf(mx) && mx < 0) mx = acc_t(0);  // all -inf: avoid (-inf) - (-inf)
  acc_t sum = acc_t(0);
  for (int64_t e = e0 + team.rank; e < e1; e += team.size) sum += gkd_exp(static_cast<acc_t>(s[e * heads + h]) - mx);
  sum = team.sum(sum);
  // an all -inf row sums to 0 (all weights 0); a NaN score makes the sum, hence the row, NaN
  const acc_t inv = sum == acc_t(0) ? acc_t(0) : acc_t(1) / sum;
  for (int64_t e = e0 + team.rank; e < e1; e += team.size)
    out[e * heads + h] = static_cast<scalar_t>(gkd_exp(static_cast<acc_t>(s[e * heads + h]) - mx) * inv);
}

// d s_e = y_e (g_e - sum_{e' in row} y_e' g_e')
template <typename scalar_t, class Team>
__device__ __forceinline__ void softmax_backward_row(const Team& team, const scalar_t* __restrict__ y,
                                                     const scalar_t* __restrict__ g, scalar_t* __restrict__ out,
                                                     int64_t e0, int64_t e1, int64_t heads, int64_t h) {
  using acc_t = acc_type<scalar_t>;
  acc_t dot = acc_t(0);
  for (int64_t e = e0 + team.rank; e < e1; e += team.size)
    dot += static_cast<acc_t>(y[e * heads + h]) * static_cast<acc_t>(g[e * heads + h]);
  dot = team.sum(dot);
  for (int64_t e = e0 + team.rank; e < e1; e += team.size) {
    const int64_t k = e * heads + h;
    out[k] = static_cast<scalar_t>(static_cast<acc_t>(y[k]) * (static_cast<acc_t>(g[k]) - dot));
  }
}

template <bool kBackward, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(256)
    softmax_light(const index_t* __restrict__ rowptr, const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                  scalar_t* __restrict__ out, int64_t num_rows, int64_t heads, HeavyRows heavy) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (w >= num_rows * heads) return;
  const int64_t row = w / heads, h = w % heads;
  const int64_t e0 = rowptr[row], e1 = rowptr[row + 1];
  const int lane = threadIdx.x % kWarp;
  if (heavy.is_heavy(e1 - e0)) {
    if (h == 0 && lane == 0) heavy.push(row);
    return;
  }
  const WarpTeam team{lane, kWarp};
  if constexpr (kBackward) softmax_backward_row(team, a, b, out, e0, e1, heads, h);
  else softmax_row(team, a, out, e0, e1, heads, h);
}

template <bool kBackward, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kHeavyWarps* kWarp)
    softmax_heavy(const index_t* __restrict__ rowptr, const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                  scalar_t* __restrict__ out, int64_t heads, HeavyRows heavy) {
  using acc_t = acc_type<scalar_t>;
  __shared__ acc_t smem[33];
  const int64_t row = heavy.row(blockIdx.x);
  if (row < 0) return;
  const int64_t h = blockIdx.y;
  const BlockTeam<acc_t> team{static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), smem};
  if constexpr (kBackward) softmax_backward_row(team, a, b, out, rowptr[row], rowptr[row + 1], heads, h);
  else softmax_row(team, a, out, rowptr[row], rowptr[row + 1], heads, h);
}

template <bool kBackward>
void softmax_launch(const at::Tensor& rowptr, const at::Tensor& a, const at::Tensor& b, at::Tensor& out,
                    cudaStream_t stream) {
  const int64_t n = csr_num_rows(rowptr), num_edges = a.size(0);
  const int64_t heads = a.dim() == 2 ? a.size(1) : 1;
  if (n == 0 || num_edges == 0 || heads == 0) return;
  HeavyRowsBuffer heavy(n, num_edges, a.options());
  GKD_DISPATCH_FLOATING(a.scalar_type(), "gkdfast_edge_softmax_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "gkdfast_edge_softmax_cuda_index", [&] {
      const index_t* rp = rowptr.data_ptr<index_t>();
      const scalar_t* bp = kBackward ? b.data_ptr<scalar_t>() : nullptr;
      constexpr int threads = 256;
      softmax_light<kBackward><<<num_blocks(n * heads * kWarp, threads), threads, 0, stream>>>(
          rp, a.data_ptr<scalar_t>(), bp, out.data_ptr<scalar_t>(), n, heads, heavy.view);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (heavy.any()) {
        // grid.y holds the heads; CUDA caps it at 65,535
        TORCH_CHECK_VALUE(heads <= 65535, "gkdfast.edge_softmax: ", heads, " heads is more than the CUDA kernel's "
                          "65,535 on rows with more than 512 edges");
        const dim3 grid(static_cast<unsigned int>(heavy.view.capacity), static_cast<unsigned int>(heads));
        softmax_heavy<kBackward><<<grid, kHeavyWarps * kWarp, 0, stream>>>(rp, a.data_ptr<scalar_t>(), bp,
                                                                            out.data_ptr<scalar_t>(), heads,
                                                                            heavy.view);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  });
}

}  // namespace

at::Tensor edge_softmax_cuda(const at::Tensor& rowptr_in, const at::Tensor& s_in) {
  check_rowptr(rowptr_in, "edge_softmax");
  GKD_CUDA_SETUP(s_in);
  check_edge_scores(rowptr_in, s_in, "edge_softmax", "scores");
  const auto rowptr = rowptr_in.contiguous();
  const auto s = s_in.contiguous();
  auto out = at::empty_like(s);
  softmax_launch<false>(rowptr, s, s, out, stream);
  return out;
}

at::Tensor edge_softmax_backward_cuda(const at::Tensor& rowptr_in, const at::Tensor& y_in, const at::Tensor& g_in) {
  check_rowptr(rowptr_in, "edge_softmax_backward");
  GKD_CUDA_SETUP(y_in);
  check_edge_scores(rowptr_in, y_in, "edge_softmax_backward", "out");
  check_edge_softmax_grad(y_in, g_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto y = y_in.contiguous();
  const auto g = g_in.contiguous().to(y.scalar_type());
  auto grad = at::empty_like(y);
  softmax_launch<true>(rowptr, y, g, grad, stream);
  return grad;
}
}  // namespace cuda

}  // namespace gkdfast
