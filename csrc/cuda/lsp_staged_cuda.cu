// Staged CUDA LSP (dot-product kernels, float32 / float64).  The fused warp-per-row kernel of
// lsp_cuda.cu walks a row's edges one after another; here every stage is parallel over what it
// touches, and the heavy part of the backward is two cuSPARSE SpMMs:
//
//   forward   1. edge stage: a group of lanes per edge computes k^S(s_i, s_j) / tau and
//                k^T(t_i, t_j) / tau (only the statistics the kernel needs, reduced inside the
//                group); two scalars per edge.
//             2. segment stage (the edge_softmax pattern): a warp per destination row turns its
//                edges' scalars into lse^S_i, lse^T_i and KL_i with fixed-order warp reductions.
//   backward  3. edge stage: the pair statistics again, then per edge the coefficient
//                c = g_i / tau (p^S - p^T) (student) or g_i / tau p^T (log p^T - log p^S - KL_i)
//                (teacher), log p = x - lse_i
//                times the kernel's gradient terms: w_e = c * other (weight of x_j in grad x_i and
//                of x_i in grad x_j), u_e = c * self_u, v_e = c * self_v.
//             4. grad x = A_w x + A_w^T x + (sum_row u + sum_col v) * x: the two weighted SpMMs over
//                the CSR and the transposed CSR (csr_matmul: cuSPARSE), the per-row sums by a warp
//                per row.
// Memory: a few scalars per edge, never E x d.  Deterministic: no atomics; fixed reductions.
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/Dispatch.h>

#include "common/pairwise_tiles.h"
#include "common/rounding.h"
#include "common/similarity_kernels.h"
#include "cuda/csr_matmul.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/lsp_staged_cuda.h"
#include "ops/graph_checks.h"

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Pair statistics of rows u, v (length d) over the G lanes of one group (G a power of two <= 32,
// the group aligned inside its warp); only the statistics `kind` needs.  All 32 lanes must call.
template <int G, typename T>
__device__ __forceinline__ PairStats<T> group_pair_stats(SimKernel kind, const T* u, const T* v, int64_t d,
                                                         bool active) {
  const int lane = threadIdx.x % G;
  T g = 0, na = 0, nb = 0, d2 = 0;
  const bool dot = kernel_needs_dot(kind), nrm = kernel_needs_norms(kind), sq = kernel_needs_d2(kind);
  if (active) {
    for (int64_t f = lane; f < d; f += G) {
      const T a = u[f], b = v[f];
      if (dot) g += a * b;
      if (nrm) { na += a * a; nb += b * b; }
      if (sq) d2 += (a - b) * (a - b);
    }
  }
  for (int off = G >> 1; off > 0; off >>= 1) {  // butterfly inside the group: fixed order
    if (dot) g += __shfl_xor_sync(kFullMask, g, off);
    if (nrm) {
      na += __shfl_xor_sync(kFullMask, na, off);
      nb += __shfl_xor_sync(kFullMask, nb, off);
    }
    if (sq) d2 += __shfl_xor_sync(kFullMask, d2, off);
  }
  PairStats<T> s;
  s.g = g; s.na = na; s.nb = nb; s.d2 = d2;
  return s;
}

// Stage 1 (forward) and 3 (backward): one group of G lanes per edge.  The loop bound is uniform
// per warp (edges are taken 32 / G at a time), so every lane reaches the shuffles.
template <int G, bool kBackward, typename T, typename index_t>
__global__ void lsp_edge_stage(const index_t* __restrict__ dst, const index_t* __restrict__ col, int64_t num_edges,
                               const T* __restrict__ s, int64_t ds, const T* __restrict__ t, int64_t dt,
                               SimKernel kind, T gamma, T inv_tau, T* __restrict__ xs_out, T* __restrict__ xt_out,
                               const T* __restrict__ lse, const T* __restrict__ kl, const T* __restrict__ gnode,
                               bool need_s, bool need_t, T* __restrict__ coef_s, T* __restrict__ coef_t) {
  constexpr int kGroups = kWarp / G;  // edges per warp per round
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
  const int group = (threadIdx.x % kWarp) / G, lane = threadIdx.x % G;
  for (int64_t base = warp * kGroups; base < num_edges; base += warps * kGroups) {
    const int64_t e = base + group;
    const bool active = e < num_edges;
    const int64_t i = active ? static_cast<int64_t>(dst[e]) : 0, j = active ? static_cast<int64_t>(col[e]) : 0;
    const PairStats<T> ps = group_pair_stats<G, T>(kind, s + i * ds, s + j * ds, ds, active);
    const PairStats<T> pt = group_pair_stats<G, T>(kind, t + i * dt, t + j * dt, dt, active);
    if (!active || lane != 0) continue;
    const T ks = kernel_value(kind, ps, gamma), kt = kernel_value(kind, pt, gamma);
    const T xs = mul_rn(ks, inv_tau), xt = mul_rn(kt, inv_tau);  // rounded alike in both passes
    if constexpr (!kBackward) {
      xs_out[e] = xs;
      xt_out[e] = xt;
    } else {
      const T ls = xs - lse[2 * i], lt = xt - lse[2 * i + 1];
      const T pts = exp(lt), gi = gnode[i] * inv_tau;
      if (need_s) {
        const T c = gi * (exp(ls) - pts);
        const KernelGrad<T> kg = kernel_grad(kind, ps, ks, gamma);
        coef_s[3 * e] = c * kg.other;
        coef_s[3 * e + 1] = c * kg.self_u;
        coef_s[3 * e + 2] = c * kg.self_v;
      }
      if (need_t) {
        const T c = gi * pts * (lt - ls - kl[i]);
        const KernelGrad<T> kg = kernel_grad(kind, pt, kt, gamma);
        coef_t[3 * e] = c * kg.other;
        coef_t[3 * e + 1] = c * kg.self_u;
        coef_t[3 * e + 2] = c * kg.self_v;
      }
    }
  }
}

// Stage 2: a warp per destination row i reduces its edges' x^S, x^T into KL_i and the two lse.
template <typename T, typename index_t>
__global__ void lsp_segment_stage(const index_t* __restrict__ rowptr, int64_t n, const T* __restrict__ xs,
                                  const T* __restrict__ xt, T* __restrict__ per_node, T* __restrict__ lse) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (i >= n) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
  if (e0 == e1) {
    if (lane == 0) { per_node[i] = T(0); lse[2 * i] = T(0); lse[2 * i + 1] = T(0); }
    return;
  }
  T ms = -std::numeric_limits<T>::infinity(), mt = ms;
  for (int64_t e = e0 + lane; e < e1; e += kWarp) {
    ms = xs[e] > ms ? xs[e] : ms;
    mt = xt[e] > mt ? xt[e] : mt;
  }
  ms = warp_max(ms);
  mt = warp_max(mt);
  T ss = 0, st = 0, wt = 0;
  for (int64_t e = e0 + lane; e < e1; e += kWarp) {
    ss += exp(xs[e] - ms);
    const T p = exp(xt[e] - mt);
    st += p;
    wt += p * ((xt[e] - mt) - (xs[e] - ms));  // against the maxima, as tiles::OnlineKL keeps it
  }
  ss = warp_sum(ss);
  st = warp_sum(st);
  wt = warp_sum(wt);
  if (lane == 0) {
    const tiles::OnlineKL<T> row = tiles::OnlineKL<T>::of(ms, ss, mt, st, wt);
    const T k = row.kl();  // >= 0 up to rounding: clamp (NaN stays NaN)
    per_node[i] = k < T(0) ? T(0) : k;
    lse[2 * i] = row.lse_s();
    lse[2 * i + 1] = row.lse_t();
  }
}

// out[r] = sum over row r's positions p of vals[stride * (perm ? perm[p] : p) + offset]: the
// per-row self terms (over the CSR for u, over the transposed CSR for v).  A warp per row.
template <typename T, typename index_t>
__global__ void row_sums(const index_t* __restrict__ rowptr, const index_t* __restrict__ perm, int64_t n,
                         const T* __restrict__ vals, int stride, int offset, T* __restrict__ out) {
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (r >= n) return;
  const int lane = threadIdx.x % kWarp;
  T acc = 0;
  // (widened before the add: with int32 indices rowptr[r] + lane wrapped for E within 31 of 2^31; helper 123)
  for (int64_t p = static_cast<int64_t>(rowptr[r]) + lane; p < rowptr[r + 1]; p += kWarp) {
    const int64_t e = perm ? static_cast<int64_t>(perm[p]) : p;
    acc += vals[stride * e + offset];
  }
  acc = warp_sum(acc);
  if (lane == 0) out[r] = acc;
}

// Lanes per edge: enough that each lane handles >= 4 features, at most a warp.
int group_size(int64_t d) {
  int g = 1;
  while (g < 32 && g * 4 < d) g <<= 1;
  return g;
}

template <bool kBackward, typename T, typename index_t>
void launch_edge_stage(int64_t d, const index_t* dst, const index_t* col, int64_t num_edges, const T* s, int64_t ds,
                       const T* t, int64_t dt, SimKernel kind, T gamma, T inv_tau, T* xs, T* xt, const T* lse,
                       const T* kl, const T* gnode, bool need_s, bool need_t, T* coef_s, T* coef_t,
                       cudaStream_t stream) {
  const int g = group_size(d);
  const int64_t warps = ceil_div<int64_t>(num_edges, kWarp / g);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div<int64_t>(warps * kWarp, kThreads), 1 << 20));
#define GKD_LSP_EDGE(G)                                                                                      \
  lsp_edge_stage<G, kBackward, T, index_t><<<blocks, kThreads, 0, stream>>>(                                 \
      dst, col, num_edges, s, ds, t, dt, kind, gamma, inv_tau, xs, xt, lse, kl, gnode, need_s, need_t, coef_s, \
      coef_t)
  switch (g) {
    case 1: GKD_LSP_EDGE(1); break;
    case 2: GKD_LSP_EDGE(2); break;
    case 4: GKD_LSP_EDGE(4); break;
    case 8: GKD_LSP_EDGE(8); break;
    case 16: GKD_LSP_EDGE(16); break;
    default: GKD_LSP_EDGE(32); break;
  }
#undef GKD_LSP_EDGE
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Destination row of every edge (the CSR's rows expanded), in the index dtype.
at::Tensor edge_rows(const at::Tensor& rowptr, int64_t n, int64_t num_edges) {
  const at::Tensor deg = rowptr.narrow(0, 1, n) - rowptr.narrow(0, 0, n);
  // The (repeats, output_size) overload: an int64 second argument would select (self, repeats).
  // output_size given: no device sync.
  return at::repeat_interleave(deg, std::optional<int64_t>(num_edges));
}

}  // namespace

bool lsp_staged_supported(SimKernel kind, at::ScalarType dtype) {
  return kind != SimKernel::Laplace && (dtype == at::kFloat || dtype == at::kDouble);
}

std::tuple<at::Tensor, at::Tensor> lsp_staged_forward(const at::Tensor& rowptr, const at::Tensor& col,
                                                      const at::Tensor& s, const at::Tensor& t, SimKernel kind,
                                                      double gamma, double tau) {
  const int64_t n = csr_num_rows(rowptr), num_edges = col.size(0);
  auto per_node = at::zeros({n}, s.options());
  auto lse = at::zeros({n, 2}, s.options());
  if (n == 0 || num_edges == 0) return {per_node, lse};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(s.get_device()).stream();
  const at::Tensor dst = edge_rows(rowptr, n, num_edges);
  at::Tensor xs = at::empty({num_edges}, s.options()), xt = at::empty({num_edges}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gkdfast_lsp_staged_forward", [&] {
    using T = scalar_t;
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_lsp_staged_forward_index", [&] {
      launch_edge_stage<false, T, index_t>(std::max(s.size(1), t.size(1)), dst.data_ptr<index_t>(),
                                           col.data_ptr<index_t>(), num_edges, s.data_ptr<T>(), s.size(1),
                                           t.data_ptr<T>(), t.size(1), kind, static_cast<T>(gamma),
                                           static_cast<T>(1.0 / tau), xs.data_ptr<T>(), xt.data_ptr<T>(), nullptr,
                                           nullptr, nullptr, false, false, nullptr, nullptr, stream);
      lsp_segment_stage<T, index_t><<<num_blocks(n * kWarp, kThreads), kThreads, 0, stream>>>(
          rowptr.data_ptr<index_t>(), n, xs.data_ptr<T>(), xt.data_ptr<T>(), per_node.data_ptr<T>(),
          lse.data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {per_node, lse};
}

std::tuple<at::Tensor, at::Tensor> lsp_staged_backward(const at::Tensor& rowptr, const at::Tensor& col,
                                                       const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                                       const at::Tensor& t_eid, const at::Tensor& s,
                                                       const at::Tensor& t, const at::Tensor& per_node,
                                                       const at::Tensor& lse, const at::Tensor& grad, SimKernel kind,
                                                       double gamma, double tau, bool need_s, bool need_t) {
  const int64_t n = csr_num_rows(rowptr), num_edges = col.size(0);
  at::Tensor out_s = need_s ? at::zeros_like(s) : at::empty({0}, s.options());
  at::Tensor out_t = need_t ? at::zeros_like(t) : at::empty({0}, t.options());
  if (n == 0 || num_edges == 0 || (!need_s && !need_t)) return {out_s, out_t};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(s.get_device()).stream();
  const at::Tensor dst = edge_rows(rowptr, n, num_edges);
  const at::Tensor lse_c = lse.to(s.scalar_type()).contiguous(), kl_c = per_node.to(s.scalar_type()).contiguous(),
                   g_c = grad.to(s.scalar_type()).contiguous();
  at::Tensor coef_s = at::empty({need_s ? num_edges : 0, 3}, s.options());
  at::Tensor coef_t = at::empty({need_t ? num_edges : 0, 3}, s.options());
  const at::Tensor teid = t_eid.to(col.scalar_type()).contiguous();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "gkdfast_lsp_staged_backward", [&] {
    using T = scalar_t;
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_lsp_staged_backward_index", [&] {
      launch_edge_stage<true, T, index_t>(std::max(s.size(1), t.size(1)), dst.data_ptr<index_t>(),
                                          col.data_ptr<index_t>(), num_edges, s.data_ptr<T>(), s.size(1),
                                          t.data_ptr<T>(), t.size(1), kind, static_cast<T>(gamma),
                                          static_cast<T>(1.0 / tau), nullptr, nullptr, lse_c.data_ptr<T>(),
                                          kl_c.data_ptr<T>(), g_c.data_ptr<T>(), need_s, need_t,
                                          need_s ? coef_s.data_ptr<T>() : nullptr,
                                          need_t ? coef_t.data_ptr<T>() : nullptr, stream);
      // grad x = A_w x + A_w^T x + (row sums of u over the CSR + of v over the transposed CSR) * x
      auto finish = [&](const at::Tensor& coef, const at::Tensor& x, at::Tensor& out) {
        const at::Tensor w = coef.select(1, 0).contiguous();
        at::Tensor self_u = at::empty({n}, x.options()), self_v = at::empty({n}, x.options());
        const unsigned blocks = num_blocks(n * kWarp, kThreads);
        row_sums<T, index_t><<<blocks, kThreads, 0, stream>>>(rowptr.data_ptr<index_t>(), nullptr, n,
                                                              coef.data_ptr<T>(), 3, 1, self_u.data_ptr<T>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        row_sums<T, index_t><<<blocks, kThreads, 0, stream>>>(t_rowptr.data_ptr<index_t>(), teid.data_ptr<index_t>(),
                                                              n, coef.data_ptr<T>(), 3, 2, self_v.data_ptr<T>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        out = csr_matmul(rowptr, col, w, x);
        out.add_(csr_matmul(t_rowptr, t_col, w.index_select(0, teid), x));
        out.add_((self_u + self_v).unsqueeze(1) * x);
      };
      if (need_s) finish(coef_s, s, out_s);
      if (need_t) finish(coef_t, t, out_t);
    });
  });
  return {out_s, out_t};
}

}  // namespace cuda
}  // namespace gkdfast
