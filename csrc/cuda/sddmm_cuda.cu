// CUDA SDDMM: out[e] = a[i] . b[col[e]] for every edge e = (j -> i), one warp per destination row
// (hub rows on whole blocks), see edge_dot.cuh.  Argument handling mirrors csrc/cpu/sddmm_cpu.cpp.

#include "cuda/cuda_kernels.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/edge_dot.cuh"
#include "ops/graph_checks.h"
#include "ops/sddmm.h"
#include <ATen/ops/empty.h>

namespace gkdfast {
namespace cuda {
namespace {

template <typename scalar_t, typename index_t>
struct SddmmOp {
  using acc_t = acc_type<scalar_t>;
  const index_t* col;
  const scalar_t* a;
  const scalar_t* b;
  scalar_t* out;
  int64_t d;

  __device__ __forceinline__ int64_t src(int64_t e) const { return static_cast<int64_t>(col[e]); }
  template <int V>
  __device__ __forceinline__ acc_t dot(int64_t row, int64_t, int64_t j, int64_t f) const {
    const auto av = load_vec<V>(a + row * d + f);
    const auto bv = load_vec<V>(b + j * d + f);
    acc_t s = acc_t(0);
#pragma unroll
    for (int t = 0; t < V; ++t) s += static_cast<acc_t>(av.v[t]) * static_cast<acc_t>(bv.v[t]);
    return s;
  }
  __device__ __forceinline__ void write(int64_t e, acc_t s) const { out[e] = static_cast<scalar_t>(s); }
};

}  // namespace

at::Tensor sddmm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                      const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& a_in,
                      const at::Tensor& b_in) {
  check_sddmm(rowptr_in, col_in, t_rowptr, t_col, t_eid, a_in, b_in);
  GKD_CUDA_SETUP(a_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto a = a_in.contiguous();
  const auto b = b_in.contiguous();
  const int64_t n = csr_num_rows(rowptr), d = a.size(1), num_edges = col.size(0);
  auto out = at::empty({num_edges}, a.options());
  if (num_edges == 0 || n == 0) return out;
  GKD_DISPATCH_FLOATING(a.scalar_type(), "gkdfast_sddmm_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_sddmm_cuda_index", [&] {
      constexpr int V = vec16<scalar_t>();
      SddmmOp<scalar_t, index_t> op{col.data_ptr<index_t>(), a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
                                    out.data_ptr<scalar_t>(), d};
      const index_t* rp = rowptr.data_ptr<index_t>();
      const bool vec = d % V == 0 && aligned_to(op.a, sizeof(scalar_t) * V) && aligned_to(op.b, sizeof(scalar_t) * V);
      if (vec) launch_edge_dot<V>(op, rp, n, num_edges, d, a.options(), stream);
      else launch_edge_dot<1>(op, rp, n, num_edges, d, a.options(), stream);
    });
  });
  return out;
}
}  // namespace cuda

}  // namespace gkdfast
