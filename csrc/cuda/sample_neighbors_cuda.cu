// CUDA neighbour sampler: the CPU kernel's three passes on the device — per-seed counts (with the
// seed range check), an exclusive scan (ATen), one thread per seed filling its own output slice with
// the shared Philox draw (common/neighbor_draw.h).  The same words are drawn as on the CPU, so CPU
// and CUDA pick bit-identical neighbours; no atomics on the outputs.
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "cuda/cuda_kernels.h"
#include "common/neighbor_draw.h"
#include "cuda/cuda_utils.cuh"
#include "ops/sample_neighbors.h"

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename index_t, typename seed_t>
__global__ void count_kernel(const index_t* __restrict__ rp, const seed_t* __restrict__ sp, int64_t s_count,
                             int64_t n, int64_t fanout, int64_t* __restrict__ counts,
                             unsigned long long* __restrict__ bad) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= s_count) return;
  const int64_t v = static_cast<int64_t>(sp[t]);
  if (v < 0 || v >= n) {  // reported by the host; this seed samples nothing
    atomicMin(bad, static_cast<unsigned long long>(t));  // the first bad seed, as the CPU names it
    counts[t] = 0;
    return;
  }
  const int64_t deg = static_cast<int64_t>(rp[v + 1]) - static_cast<int64_t>(rp[v]);
  counts[t] = (fanout < 0 || deg <= fanout) ? deg : fanout;
}

template <typename index_t, typename seed_t>
__global__ void fill_kernel(const index_t* __restrict__ rp, const index_t* __restrict__ cp,
                            const seed_t* __restrict__ sp, const int64_t* __restrict__ orp, int64_t s_count,
                            uint64_t seed, int64_t hop, index_t* __restrict__ ocp, index_t* __restrict__ oep) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= s_count) return;
  const int64_t o = orp[t];
  draw_neighbors<index_t>(rp, cp, static_cast<int64_t>(sp[t]), orp[t + 1] - o, seed, hop, ocp + o, oep + o);
}

template <typename index_t, typename seed_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run(const at::Tensor& rowptr, const at::Tensor& col,
                                                   const at::Tensor& seeds, int64_t fanout, uint64_t seed,
                                                   int64_t hop, cudaStream_t stream) {
  const int64_t n = rowptr.size(0) - 1;
  const int64_t s_count = seeds.size(0);
  auto long_opts = rowptr.options().dtype(at::kLong);
  at::Tensor counts = at::empty({s_count}, long_opts);
  at::Tensor bad = at::full({1}, std::numeric_limits<int64_t>::max(), long_opts);  // none yet
  if (s_count > 0) {
    count_kernel<index_t, seed_t><<<num_blocks(s_count, kThreads), kThreads, 0, stream>>>(
        rowptr.data_ptr<index_t>(), seeds.data_ptr<seed_t>(), s_count, n, fanout, counts.data_ptr<int64_t>(),
        reinterpret_cast<unsigned long long*>(bad.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor out_rowptr = at::zeros({s_count + 1}, long_opts);
  if (s_count > 0) out_rowptr.slice(0, 1).copy_(counts.cumsum(0));
  // one sync for both: the first bad seed (a bad seed fails before any output) and the sample count
  const at::Tensor host = at::cat({bad, out_rowptr.slice(0, s_count)}).cpu();
  const int64_t first_bad = host.data_ptr<int64_t>()[0], nnz = host.data_ptr<int64_t>()[1];
  if (first_bad != std::numeric_limits<int64_t>::max()) {
    const int64_t value = seeds[first_bad].item<int64_t>();
    TORCH_CHECK_INDEX(false, "gkdfast.sample_neighbors: seed node ", value, " is out of range [0, ", n, ")");
  }
  at::Tensor out_col = at::empty({nnz}, col.options());
  at::Tensor out_eid = at::empty({nnz}, col.options());
  if (s_count > 0 && nnz > 0) {
    fill_kernel<index_t, seed_t><<<num_blocks(s_count, kThreads), kThreads, 0, stream>>>(
        rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), seeds.data_ptr<seed_t>(),
        out_rowptr.data_ptr<int64_t>(), s_count, seed, hop, out_col.data_ptr<index_t>(),
        out_eid.data_ptr<index_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {out_rowptr, out_col, out_eid};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_neighbors_cuda(const at::Tensor& rowptr_in,
                                                                     const at::Tensor& col_in,
                                                                     const at::Tensor& seeds_in, int64_t fanout,
                                                                     int64_t seed, int64_t hop) {
  check_sample_neighbors(rowptr_in, col_in, seeds_in, fanout, seed, hop);
  GKD_CUDA_SETUP(rowptr_in);
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), seeds = seeds_in.contiguous();
  const uint64_t s = static_cast<uint64_t>(seed);
  return dispatch_sample_types(col, seeds, [&](auto i, auto sd) {
    return run<decltype(i), decltype(sd)>(rowptr, col, seeds, fanout, s, hop, stream);
  });
}
}  // namespace cuda

}  // namespace gkdfast
