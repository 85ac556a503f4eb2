// CUDA SpMM over the destination CSR (sum / mean / max / min, optional edge weight) and the
// max/min backward.  The row machinery (warp per row, vector loads, hub rows on whole blocks,
// no atomics on values) lives in row_gather.cuh / edge_dot.cuh; this file supplies the per-edge
// values and the argument handling, which mirrors csrc/cpu/spmm_cpu.cpp.
//
// sum / mean in float32 / float64 go through ATen's CSR matmul instead (cuSPARSE SpMM, no
// cuSPARSE headers here), forward and, since the backward is spmm over the cached transposed CSR,
// backward too; gkdfast's own kernel keeps float16 / bfloat16 (float accumulation), max / min, and
// everything under GKDFAST_CUDA_IMPL=legacy.

#include "cuda/cuda_kernels.h"
#include "common/reducers.h"
#include "common/tile_workspace.h"
#include "cuda/csr_matmul.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/edge_dot.cuh"
#include "cuda/row_gather.cuh"
#include "ops/graph_checks.h"
#include "ops/spmm.h"
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

namespace gkdfast {
namespace cuda {
namespace {

// out[i] = reduce_e w_e * x[col[e]]; arg records the winning edge position for max/min.
template <typename scalar_t, typename index_t, bool kArg>
struct SpmmForwardOp {
  using acc_t = acc_type<scalar_t>;
  const index_t* col;
  const scalar_t* weight;  // nullable
  const scalar_t* x;
  scalar_t* out;
  int64_t* arg;  // only used when kArg
  int64_t d;
  bool mean;

  __device__ __forceinline__ void meta(int64_t e, int64_t& src, int64_t& eid, acc_t& w) const {
    src = static_cast<int64_t>(col[e]);
    eid = e;
    w = weight ? static_cast<acc_t>(weight[e]) : acc_t(1);
  }
  template <int V>
  __device__ __forceinline__ void value(int64_t src, int64_t, acc_t w, int64_t f, acc_t (&v)[V]) const {
    const auto xv = load_vec<V>(x + src * d + f);
#pragma unroll
    for (int t = 0; t < V; ++t) v[t] = w * static_cast<acc_t>(xv.v[t]);
  }
  template <int V, class P>
  __device__ __forceinline__ void write(int64_t row, int64_t f, const P& p, int64_t degree) const {
    VecT<scalar_t, V> o;
    // Same scaling as the CPU kernel: multiply by 1/deg computed in the accumulation type.
    const acc_t scale = (mean && degree > 0) ? acc_t(1) / static_cast<acc_t>(degree) : acc_t(1);
#pragma unroll
    for (int t = 0; t < V; ++t) o.v[t] = static_cast<scalar_t>(degree == 0 ? acc_t(0) : p.v[t] * scale);
    store_vec<V>(out + row * d + f, o);
    if constexpr (kArg) {
      VecT<int64_t, V> a;
#pragma unroll
      for (int t = 0; t < V; ++t) a.v[t] = degree == 0 ? int64_t(-1) : p.a[t];
      store_vec<V>(arg + row * d + f, a);
    }
  }
};

// grad_x[j] = sum over transposed edges (j -> i, forward edge e) of [arg[i] == e] * w_e * g[i].
template <typename scalar_t, typename index_t>
struct ArgGradXOp {
  using acc_t = acc_type<scalar_t>;
  const index_t* t_col;
  const index_t* t_eid;
  const scalar_t* weight;  // nullable, indexed by forward edge
  const scalar_t* grad;
  const int64_t* arg;
  scalar_t* grad_x;
  int64_t d;

  __device__ __forceinline__ void meta(int64_t te, int64_t& src, int64_t& eid, acc_t& w) const {
    src = static_cast<int64_t>(t_col[te]);
    eid = static_cast<int64_t>(t_eid[te]);
    w = weight ? static_cast<acc_t>(weight[eid]) : acc_t(1);
  }
  template <int V>
  __device__ __forceinline__ void value(int64_t i, int64_t eid, acc_t w, int64_t f, acc_t (&v)[V]) const {
    const auto av = load_vec<V>(arg + i * d + f);
    const auto gv = load_vec<V>(grad + i * d + f);
#pragma unroll
    for (int t = 0; t < V; ++t) v[t] = av.v[t] == eid ? w * static_cast<acc_t>(gv.v[t]) : acc_t(0);
  }
  template <int V, class P>
  __device__ __forceinline__ void write(int64_t row, int64_t f, const P& p, int64_t degree) const {
    VecT<scalar_t, V> o;
#pragma unroll
    for (int t = 0; t < V; ++t) o.v[t] = static_cast<scalar_t>(degree == 0 ? acc_t(0) : p.v[t]);
    store_vec<V>(grad_x + row * d + f, o);
  }
};

// grad_w[e] = sum_f [arg[i, f] == e] * x[col[e], f] * g[i, f] for e in row i (forward CSR).
template <typename scalar_t, typename index_t>
struct ArgGradWOp {
  using acc_t = acc_type<scalar_t>;
  const index_t* col;
  const scalar_t* x;
  const scalar_t* grad;
  const int64_t* arg;
  scalar_t* grad_w;
  int64_t d;

  __device__ __forceinline__ int64_t src(int64_t e) const { return static_cast<int64_t>(col[e]); }
  template <int V>
  __device__ __forceinline__ acc_t dot(int64_t row, int64_t e, int64_t j, int64_t f) const {
    const auto av = load_vec<V>(arg + row * d + f);
    bool hit = false;
#pragma unroll
    for (int t = 0; t < V; ++t) hit |= av.v[t] == e;
    if (!hit) return acc_t(0);  // most features were won by other edges: skip the x load
    const auto gv = load_vec<V>(grad + row * d + f);
    const auto xv = load_vec<V>(x + j * d + f);
    acc_t s = acc_t(0);
#pragma unroll
    for (int t = 0; t < V; ++t)
      s += av.v[t] == e ? static_cast<acc_t>(xv.v[t]) * static_cast<acc_t>(gv.v[t]) : acc_t(0);
    return s;
  }
  __device__ __forceinline__ void write(int64_t e, acc_t s) const { grad_w[e] = static_cast<scalar_t>(s); }
};

// Widest vector access allowed for these pointers and row width (16 bytes, or scalar).
template <typename scalar_t>
bool can_vectorise(int64_t d, std::initializer_list<const void*> feature_ptrs,
                   std::initializer_list<const void*> int64_ptrs) {
  constexpr int V = vec16<scalar_t>();
  if (V == 1 || d % V != 0) return V == 1;
  for (const void* p : feature_ptrs)
    if (!aligned_to(p, sizeof(scalar_t) * V)) return false;
  for (const void* p : int64_ptrs)
    if (!aligned_to(p, sizeof(int64_t) * V)) return false;
  return true;
}

template <Reduce R, typename scalar_t, typename index_t>
void spmm_launch(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight, const at::Tensor& x,
                 at::Tensor& out, at::Tensor& arg, bool mean, cudaStream_t stream) {
  constexpr bool kArg = has_arg<R>();
  const int64_t n = csr_num_rows(rowptr), d = x.size(1);
  SpmmForwardOp<scalar_t, index_t, kArg> op{col.data_ptr<index_t>(),
                                            weight.defined() ? weight.data_ptr<scalar_t>() : nullptr,
                                            x.data_ptr<scalar_t>(),
                                            out.data_ptr<scalar_t>(),
                                            kArg ? arg.data_ptr<int64_t>() : nullptr,
                                            d,
                                            mean};
  const index_t* rp = rowptr.data_ptr<index_t>();
  if (can_vectorise<scalar_t>(d, {op.x, op.out}, {op.arg}))
    launch_row_gather<R, vec16<scalar_t>()>(op, rp, n, col.size(0), d, x.options(), stream);
  else
    launch_row_gather<R, 1>(op, rp, n, col.size(0), d, x.options(), stream);
}

// out = A x through cuSPARSE (csr_matmul.h); mean scales each row by 1/deg afterwards (rows
// without edges are 0 either way).
at::Tensor spmm_sum_cusparse(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
                             const at::Tensor& x, bool mean) {
  at::Tensor out = csr_matmul(rowptr, col, weight, x);
  if (mean) {
    const int64_t n = csr_num_rows(rowptr);
    const at::Tensor deg = (rowptr.narrow(0, 1, n) - rowptr.narrow(0, 0, n)).to(x.scalar_type());
    out.mul_(at::where(deg > 0, deg.reciprocal(), at::zeros_like(deg)).unsqueeze(1));
  }
  return out;
}

// The weighted sum of csr_mm (x may have any number of rows: the kernels read it through col only):
// cuSPARSE where spmm's sum takes it, else gkdfast's row kernel.
at::Tensor weighted_sum(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& values, const at::Tensor& x,
                        cudaStream_t stream) {
  const int64_t rows = csr_num_rows(rowptr), d = x.size(1);
  const bool cusparse_dtype = x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble;
  if (cusparse_dtype && rows > 0 && d > 0 && csr_matmul_enabled(col.size(0))) return csr_matmul(rowptr, col, values, x);
  auto out = at::empty({rows, d}, x.options());
  auto no_arg = at::empty({0}, x.options().dtype(at::kLong));
  if (rows == 0 || d == 0) return out;
  GKD_DISPATCH_FLOATING(x.scalar_type(), "gkdfast_csr_mm_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_csr_mm_cuda_index", [&] {
      spmm_launch<Reduce::Sum, scalar_t, index_t>(rowptr, col, values, x, out, no_arg, false, stream);
    });
  });
  return out;
}

}  // namespace

at::Tensor csr_mm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                       const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& values_in,
                       const at::Tensor& x_in) {
  check_csr_mm(rowptr_in, col_in, t_rowptr, t_col, t_eid, values_in, x_in);
  GKD_CUDA_SETUP(x_in);
  return weighted_sum(rowptr_in.contiguous(), col_in.contiguous(), values_in.contiguous(), x_in.contiguous(), stream);
}

std::tuple<at::Tensor, at::Tensor> spmm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                             const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                             const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight_in,
                                             const at::Tensor& x_in, c10::string_view reduce_name) {
  const Reduce reduce = check_spmm(rowptr_in, col_in, t_rowptr, t_col, t_eid, x_in, std::string(reduce_name));
  GKD_CUDA_SETUP(x_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto x = x_in.contiguous();
  const at::Tensor weight = spmm_edge_weight(weight_in, col, x, "spmm");
  const int64_t n = csr_num_rows(rowptr), d = x.size(1);
  const bool cusparse_dtype = x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble;
  if ((reduce == Reduce::Sum || reduce == Reduce::Mean) && cusparse_dtype && n > 0 && d > 0 &&
      csr_matmul_enabled(col.size(0)))
    return {spmm_sum_cusparse(rowptr, col, weight, x, reduce == Reduce::Mean),
            at::empty({0}, x.options().dtype(at::kLong))};
  auto out = at::empty({n, d}, x.options());
  auto arg = reduce_has_arg(reduce) ? at::empty({n, d}, x.options().dtype(at::kLong))
                                    : at::empty({0}, x.options().dtype(at::kLong));
  if (n == 0 || d == 0) return {out, arg};
  GKD_DISPATCH_FLOATING(x.scalar_type(), "gkdfast_spmm_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_spmm_cuda_index", [&] {
      switch (reduce) {
        case Reduce::Sum:
        case Reduce::Mean:
          spmm_launch<Reduce::Sum, scalar_t, index_t>(rowptr, col, weight, x, out, arg, reduce == Reduce::Mean,
                                                      stream);
          break;
        case Reduce::Max: spmm_launch<Reduce::Max, scalar_t, index_t>(rowptr, col, weight, x, out, arg, false, stream); break;
        case Reduce::Min: spmm_launch<Reduce::Min, scalar_t, index_t>(rowptr, col, weight, x, out, arg, false, stream); break;
      }
    });
  });
  return {out, arg};
}

// GCN propagation as the composite dinv * (spmm(x * dinv) + x * dinv) on the device: the sum goes
// through spmm_cuda (cuSPARSE for float32 / float64), which a fused row kernel of our own would not
// beat; the composite's Python-side passes and autograd nodes are what this op saves on CUDA.
at::Tensor spmm_gcn_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                         const at::Tensor& t_col, const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight,
                         const at::Tensor& dinv, const at::Tensor& x) {
  check_spmm_gcn(rowptr, col, t_rowptr, t_col, t_eid, dinv, x);
  const at::Tensor scale = dinv.unsqueeze(1);
  const at::Tensor h = x * scale;
  const at::Tensor s = std::get<0>(spmm_cuda(rowptr, col, t_rowptr, t_col, t_eid, weight, h, "sum"));
  return scale * (s + h);
}

// Max/min backward.  grad_x runs over the transposed CSR so each source row has one writer;
// grad_w runs over the forward CSR, where every edge belongs to exactly one destination row.
std::tuple<at::Tensor, at::Tensor> spmm_arg_backward_cuda(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in,
    const at::Tensor& t_col_in, const at::Tensor& t_eid_in, const c10::optional<at::Tensor>& weight_in,
    const at::Tensor& x_in, const at::Tensor& arg_in, const at::Tensor& grad_in) {
  check_spmm_arg_backward(rowptr_in, col_in, t_rowptr_in, t_col_in, t_eid_in, x_in, arg_in, grad_in,
                          /*need_transpose=*/true);
  GKD_CUDA_SETUP(x_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto x = x_in.contiguous();
  const auto arg = arg_in.contiguous();
  const auto grad = grad_in.contiguous().to(x.scalar_type());
  const at::Tensor weight = spmm_edge_weight(weight_in, col, x, "spmm_arg_backward");
  const int64_t n = csr_num_rows(rowptr), d = x.size(1), num_edges = col.size(0);
  if (num_edges == 0 || n == 0 || d == 0) {
    return {at::zeros({n, d}, x.options()),
            weight.defined() ? at::zeros({num_edges}, x.options()) : at::empty({0}, x.options())};
  }
  // Both kernels write every element they own (rows with no edges get 0), so no zero-fill.
  auto grad_x = at::empty({n, d}, x.options());
  auto grad_w = weight.defined() ? at::empty({num_edges}, x.options()) : at::empty({0}, x.options());
  const auto t_rowptr = t_rowptr_in.contiguous();
  const auto t_col = t_col_in.contiguous();
  const auto t_eid = t_eid_in.contiguous().to(col.scalar_type());
  GKD_DISPATCH_FLOATING(x.scalar_type(), "gkdfast_spmm_arg_backward_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_spmm_arg_backward_cuda_index", [&] {
      constexpr int V = vec16<scalar_t>();
      const bool vec = can_vectorise<scalar_t>(d, {x.data_ptr(), grad.data_ptr(), grad_x.data_ptr()},
                                               {arg.data_ptr()});
      ArgGradXOp<scalar_t, index_t> gx_op{t_col.data_ptr<index_t>(),
                                          t_eid.data_ptr<index_t>(),
                                          weight.defined() ? weight.data_ptr<scalar_t>() : nullptr,
                                          grad.data_ptr<scalar_t>(),
                                          arg.data_ptr<int64_t>(),
                                          grad_x.data_ptr<scalar_t>(),
                                          d};
      const index_t* trp = t_rowptr.data_ptr<index_t>();
      if (vec) launch_row_gather<Reduce::Sum, V>(gx_op, trp, n, num_edges, d, x.options(), stream);
      else launch_row_gather<Reduce::Sum, 1>(gx_op, trp, n, num_edges, d, x.options(), stream);
      if (weight.defined()) {
        ArgGradWOp<scalar_t, index_t> gw_op{col.data_ptr<index_t>(), x.data_ptr<scalar_t>(),
                                            grad.data_ptr<scalar_t>(), arg.data_ptr<int64_t>(),
                                            grad_w.data_ptr<scalar_t>(), d};
        const index_t* rp = rowptr.data_ptr<index_t>();
        if (vec) launch_edge_dot<V>(gw_op, rp, n, num_edges, d, x.options(), stream);
        else launch_edge_dot<1>(gw_op, rp, n, num_edges, d, x.options(), stream);
      }
    });
  });
  return {grad_x, grad_w};
}
}  // namespace cuda

}  // namespace gkdfast
