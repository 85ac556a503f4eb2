// CUDA kernels of the InfoNCE family (crd, nt_xent, ncontrast denominator), the Philox sampler and
// streaming top-k.
//
// All-N: cuBLAS tiles of 8192 x 8192 logits with a streaming log-sum-exp (ops/infonce.cpp, shared
// with the CPU), so the extra memory is a fixed 256 MiB however large N is.  Sampled negatives: one
// warp per anchor row; every lane draws the same Philox words (common/philox.h, identical to the
// CPU draws), the warp computes each d-long dot with a shuffle reduction and keeps a running
// log-sum-exp.  The backward re-draws the negatives; the anchor-side gradient is owned by the row's
// warp, the candidate-side gradient is scattered with atomicAdd into an accumulation-dtype buffer
// (a sampled candidate can be hit by any row; the CPU kernel avoids atomics with owner ranges, which
// would cost every GPU warp a scan of all N x K draws).  So the sampled CUDA backward is
// deterministic up to float addition order in the candidate gradient, except under
// torch.use_deterministic_algorithms(True), which runs the chunked ATen backward instead
// (ops/infonce_sampled_aten.cpp).
#include <algorithm>

#include <ATen/AccumulateType.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>

#include "cuda/cuda_kernels.h"
#include "common/online_softmax.h"
#include "common/philox.h"
#include "common/rounding.h"
#include "cuda/lse_tiles_cuda.h"
#include "ops/gram_lse.h"
#include "ops/infonce.h"

namespace gkdfast {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t warp_dot(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y, int64_t d,
                                          int lane) {
  acc_t s = 0;
  for (int64_t f = lane; f < d; f += 32) s += static_cast<acc_t>(x[f]) * static_cast<acc_t>(y[f]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  return s;  // every lane holds the full sum
}

template <typename scalar_t, typename acc_t>
__global__ void sampled_forward_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ c,
                                       acc_t* __restrict__ loss, acc_t* __restrict__ lse, int64_t n, int64_t n_c,
                                       int64_t r0, int64_t d, acc_t inv_tau, bool has_pos, int64_t k_neg,
                                       uint64_t seed) {
  // anchor i (of n) is global row gi = r0 + i of the n_c candidates
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (i >= n) return;  // uniform per warp
  const int64_t gi = r0 + i;
  const scalar_t* ai = a + i * d;
  OnlineLSE<double> st;  // a float sum near 1 drops terms below half an ulp (infonce_cpu.cpp)
  acc_t lpos = 0;
  if (has_pos) {
    lpos = mul_rn(inv_tau, warp_dot<scalar_t, acc_t>(ai, c + gi * d, d, lane));
    st.add(lpos);
  }
  for (int64_t q = 0; q * 4 < k_neg; ++q) {
    const philox::U4 w = philox::negative_words(seed, gi, q);
    for (int t = 0; t < 4 && q * 4 + t < k_neg; ++t) {
      const int64_t j = philox::word_to_index(philox::pick_word(w, t), n_c, gi);
      st.add(mul_rn(inv_tau, warp_dot<scalar_t, acc_t>(ai, c + j * d, d, lane)));
    }
  }
  if (lane == 0) {
    lse[i] = static_cast<acc_t>(st.value());
    loss[i] = static_cast<acc_t>((st.max - double(lpos)) + log(st.sum));  // the size of the logits cancels first
  }
}

template <typename scalar_t, typename acc_t>
__global__ void sampled_backward_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ c,
                                        const acc_t* __restrict__ lse, const acc_t* __restrict__ g,
                                        const acc_t* __restrict__ gl, acc_t* __restrict__ da, acc_t* __restrict__ dc,
                                        int64_t n, int64_t n_c, int64_t r0, int64_t d, acc_t inv_tau, bool has_pos,
                                        int64_t k_neg, uint64_t seed) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (i >= n) return;
  const int64_t gi = r0 + i;  // global row: the positive and the Philox key
  const acc_t li = lse[i];
  if (isinf(li) || (g[i] == acc_t(0) && gl[i] == acc_t(0))) return;  // da, dc start at zero
  const scalar_t* ai = a + i * d;
  acc_t* dai = da + i * d;
  const acc_t gp = (g[i] + gl[i]) * inv_tau;
  auto scatter = [&](int64_t j, acc_t coef) {
    const scalar_t* cj = c + j * d;
    acc_t* dcj = dc + j * d;
    for (int64_t f = lane; f < d; f += 32) {
      dai[f] += coef * static_cast<acc_t>(cj[f]);  // row i belongs to this warp only
      atomicAdd(dcj + f, coef * static_cast<acc_t>(ai[f]));
    }
  };
  double neg_p = 0;  // the negatives' probabilities: 1 - p_pos without the cancellation (infonce_cpu.cpp)
  for (int64_t q = 0; q * 4 < k_neg; ++q) {
    const philox::U4 w = philox::negative_words(seed, gi, q);
    for (int t = 0; t < 4 && q * 4 + t < k_neg; ++t) {
      const int64_t j = philox::word_to_index(philox::pick_word(w, t), n_c, gi);
      const acc_t p = exp(mul_rn(inv_tau, warp_dot<scalar_t, acc_t>(ai, c + j * d, d, lane)) - li);
      neg_p += p;
      scatter(j, gp * p);
    }
  }
  if (has_pos) {  // g (p - 1) / tau + gl p / tau with p - 1 = -neg_p
    const acc_t p = exp(mul_rn(inv_tau, warp_dot<scalar_t, acc_t>(ai, c + gi * d, d, lane)) - li);
    scatter(gi, static_cast<acc_t>(-double(g[i]) * double(inv_tau) * neg_p) + gl[i] * inv_tau * p);
  }
}

__global__ void sample_negatives_kernel(const int64_t* __restrict__ rows, int64_t* __restrict__ out, int64_t r,
                                        int64_t n, int64_t k_neg, uint64_t seed) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= r * k_neg) return;
  const int64_t row = t / k_neg, k = t % k_neg;
  out[t] = philox::negative_index(seed, rows[row], k, n);
}

// At least one block: an empty shard (no anchor rows on this rank) must launch, not fail with
// "invalid configuration argument"; the kernels return at once for i >= n.
unsigned int warp_blocks(int64_t rows) {
  return static_cast<unsigned int>(std::max<int64_t>(1, (rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
}

void check_cuda(const at::Tensor& a, const char* op) {
  TORCH_CHECK(a.is_cuda(), "gkdfast.", op, ": CUDA kernel called with tensors on ", a.device());
}

}  // namespace

namespace cuda {

std::tuple<at::Tensor, at::Tensor> infonce_cuda(const at::Tensor& a_in, const at::Tensor& c_in, double inv_tau,
                                                int64_t pos_offset, bool exclude_self, int64_t num_negatives,
                                                int64_t seed, int64_t row_begin) {
  check_infonce(a_in, c_in, pos_offset, num_negatives, row_begin, "infonce");
  check_cuda(a_in, "infonce");
  c10::cuda::CUDAGuard guard(a_in.device());
  if (num_negatives == 0) return infonce_tiled_forward(a_in, c_in, inv_tau, pos_offset, exclude_self, row_begin,
                                                         cuda::cuda_lse_tile_ops());
  const auto a = a_in.contiguous(), c = c_in.contiguous();
  const int64_t n = a.size(0), n_c = c.size(0), d = a.size(1);
  const auto acc_opts = a.options().dtype(infonce_acc_type(a.scalar_type()));
  auto loss = at::empty({n}, acc_opts), lse = at::empty({n}, acc_opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "gkdfast_infonce_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    sampled_forward_kernel<scalar_t, acc_t><<<warp_blocks(n), kThreads, 0, stream>>>(
        a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), loss.data_ptr<acc_t>(), lse.data_ptr<acc_t>(), n, n_c,
        row_begin, d, static_cast<acc_t>(inv_tau), pos_offset == 0, num_negatives, static_cast<uint64_t>(seed));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor> infonce_backward_cuda(const at::Tensor& a_in, const at::Tensor& c_in,
                                                         const at::Tensor& lse_in, const at::Tensor& g_in,
                                                         const at::Tensor& gl_in, double inv_tau, int64_t pos_offset,
                                                         bool exclude_self, int64_t num_negatives, int64_t seed,
                                                         int64_t row_begin) {
  check_infonce(a_in, c_in, pos_offset, num_negatives, row_begin, "infonce_backward");
  check_infonce_backward(a_in, c_in, lse_in, g_in, gl_in, "infonce_backward");
  check_cuda(a_in, "infonce_backward");
  c10::cuda::CUDAGuard guard(a_in.device());
  if (num_negatives == 0)
    return infonce_tiled_backward(a_in, c_in, lse_in, g_in, gl_in, inv_tau, pos_offset, exclude_self, row_begin,
                                  cuda::cuda_lse_tile_ops());
  if (at::globalContext().deterministicAlgorithms())  // the kernel below scatters with atomicAdd
    return infonce_sampled_backward_chunked(a_in, c_in, lse_in, g_in, gl_in, inv_tau, pos_offset, num_negatives,
                                            seed, row_begin);
  const auto a = a_in.contiguous(), c = c_in.contiguous();
  const auto acc = infonce_acc_type(a.scalar_type());
  const auto lse = lse_in.to(acc).contiguous(), g = g_in.to(acc).contiguous(), gl = gl_in.to(acc).contiguous();
  const int64_t n = a.size(0), n_c = c.size(0), d = a.size(1);
  auto da = at::zeros({n, d}, a.options().dtype(acc)), dc = at::zeros({n_c, d}, a.options().dtype(acc));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "gkdfast_infonce_backward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    sampled_backward_kernel<scalar_t, acc_t><<<warp_blocks(n), kThreads, 0, stream>>>(
        a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), lse.data_ptr<acc_t>(), g.data_ptr<acc_t>(),
        gl.data_ptr<acc_t>(), da.data_ptr<acc_t>(), dc.data_ptr<acc_t>(), n, n_c, row_begin, d,
        static_cast<acc_t>(inv_tau), pos_offset == 0, num_negatives, static_cast<uint64_t>(seed));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {da.to(a.scalar_type()), dc.to(c.scalar_type())};
}

at::Tensor sample_negatives_cuda(const at::Tensor& rows_in, int64_t num_nodes, int64_t k_neg, int64_t seed) {
  check_sample_negatives(rows_in, num_nodes, k_neg);
  check_cuda(rows_in, "sample_negatives");
  c10::cuda::CUDAGuard guard(rows_in.device());
  const auto rows = rows_in.contiguous();
  if (rows.numel()) {  // one sync for both bounds
    const auto [lo, hi] = at::aminmax(rows);
    const at::Tensor host = at::stack({lo, hi}).cpu();
    TORCH_CHECK(host.data_ptr<int64_t>()[0] >= 0 && host.data_ptr<int64_t>()[1] < num_nodes,
                "gkdfast.sample_negatives: rows out of range [0, ", num_nodes, ")");
  }
  const int64_t r = rows.size(0);
  auto out = at::empty({r, k_neg}, rows.options());
  const int64_t total = r * k_neg;
  if (total > 0) {
    const int64_t blocks = (total + kThreads - 1) / kThreads;
    TORCH_CHECK(blocks <= int64_t{2147483647}, "gkdfast.sample_negatives: ", total, " draws need ", blocks,
                " CUDA blocks, more than a grid's 2^31 - 1");  // (the cast below wrapped past 2^32)
    sample_negatives_kernel<<<static_cast<unsigned int>(blocks), kThreads, 0,
                              c10::cuda::getCurrentCUDAStream()>>>(rows.data_ptr<int64_t>(), out.data_ptr<int64_t>(),
                                                                  r, num_nodes, k_neg, static_cast<uint64_t>(seed));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> topk_similar_cuda(const at::Tensor& query, const at::Tensor& keys, int64_t k) {
  check_cuda(query, "topk_similar");
  c10::cuda::CUDAGuard guard(query.device());
  return topk_similar_tiled(query, keys, k);
}

at::Tensor gram_lse_cuda(const at::Tensor& z, double inv_tau, bool exclude_self) {
  check_gram_lse(z, "gram_lse");
  check_cuda(z, "gram_lse");
  c10::cuda::CUDAGuard guard(z.device());
  return gram_lse_tiled(z, inv_tau, exclude_self, cuda::cuda_lse_tile_ops());
}

at::Tensor gram_lse_backward_cuda(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, double inv_tau,
                                  bool exclude_self) {
  check_gram_lse_backward(z, lse, grad, "gram_lse_backward");
  check_cuda(z, "gram_lse_backward");
  c10::cuda::CUDAGuard guard(z.device());
  return gram_lse_tiled_backward(z, lse, grad, inv_tau, exclude_self, cuda::cuda_lse_tile_ops());
}

}  // namespace cuda

}  // namespace gkdfast
