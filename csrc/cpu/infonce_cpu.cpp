// CPU kernels of the InfoNCE family (crd, nt_xent, ncontrast denominator) and of the sampler; the
// all-N paths and gram_lse are the device-agnostic tiles of ops/infonce.cpp and ops/gram_lse.cpp.
// All-N: BLAS tiles with a streaming log-sum-exp (ops/infonce.cpp).  Sampled negatives: one pass
// per anchor row, negatives re-drawn from Philox (common/philox.h) in forward and backward, so
// nothing of size N x K is ever stored.  No atomics: the candidate-side gradient is computed by
// giving each thread a range of candidate rows that it alone writes ("owner computes"); every
// thread re-draws all (i, k) indices (cheap next to a d-long dot) and keeps the ones it owns.
// Accumulation order for each output row is (i ascending, positive first, then k ascending)
// whatever the thread count, so results are bitwise reproducible.  Anchors may be a row range
// [row_begin, row_begin + R) of the N candidates: anchor r draws as global row row_begin + r.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <cmath>
#include <vector>
#include <limits>

#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "common/cpu_vec.h"
#include "common/online_softmax.h"
#include "common/philox.h"
#include "ops/gram_lse.h"
#include "ops/infonce.h"

namespace gkdfast {
namespace {

// n: anchor rows (R), n_c: candidate rows (N); anchor i is global row r0 + i.
template <typename scalar_t>
void sampled_forward(const scalar_t* a, const scalar_t* c, scalar_t* loss, scalar_t* lse, int64_t n, int64_t n_c,
                     int64_t r0, int64_t d, scalar_t inv_tau, bool has_pos, int64_t k_neg, uint64_t seed) {
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t gi = r0 + i;
      const scalar_t* ai = a + i * d;
      // In double: the loss of a well-aligned row is log(1 + sum of K tiny terms), and a float sum
      // near 1 drops every term below half an ulp (K = 1024, tau = 0.05: the loss came out 51% low).
      OnlineLSE<double> st;
      scalar_t lpos = 0;
      if (has_pos) {
        lpos = inv_tau * vec::dot(ai, c + gi * d, d);
        st.add(lpos);
      }
      for (int64_t q = 0; q * 4 < k_neg; ++q) {
        const philox::U4 w = philox::negative_words(seed, gi, q);
        for (int64_t t = 0; t < 4 && q * 4 + t < k_neg; ++t) {
          const int64_t j = philox::word_to_index(philox::pick_word(w, t), n_c, gi);
          st.add(inv_tau * vec::dot(ai, c + j * d, d));
        }
      }
      lse[i] = static_cast<scalar_t>(st.value());
      // (max - lpos) + log(sum), not lse - lpos: the logits' own size (1 / tau) cancels first
      loss[i] = static_cast<scalar_t>((st.max - double(lpos)) + std::log(st.sum));
    }
  });
}

template <typename scalar_t>
void sampled_backward(const scalar_t* a, const scalar_t* c, const scalar_t* lse, const scalar_t* g,
                      const scalar_t* gl, scalar_t* da, scalar_t* dc, int64_t n, int64_t n_c, int64_t r0, int64_t d,
                      scalar_t inv_tau, bool has_pos, int64_t k_neg, uint64_t seed) {
  auto skip = [&](int64_t i) { return std::isinf(lse[i]) || (g[i] == 0 && gl[i] == 0); };
  // The positive's coefficient, g (p - 1) / tau + gl p / tau, per anchor row (read again by the
  // candidate side).  p - 1 is taken as minus the negatives' probabilities: p is 1 - 1e-5 on a row whose
  // positive dominates, and its rounding at the scale of lse (~1 / tau) swamped that difference (the
  // gradient was 1.6% off in norm, a row up to 5.6%).
  std::vector<scalar_t> pos_coef(has_pos ? n : 0, scalar_t(0));
  // Anchor side: row i is written by the thread that owns i.
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* dai = da + i * d;
      std::fill(dai, dai + d, scalar_t(0));
      if (skip(i)) continue;
      const int64_t gi = r0 + i;
      const scalar_t* ai = a + i * d;
      const scalar_t gp = (g[i] + gl[i]) * inv_tau;
      double neg_p = 0;  // sum of the negatives' probabilities: 1 - p_pos without the cancellation
      for (int64_t q = 0; q * 4 < k_neg; ++q) {
        const philox::U4 w = philox::negative_words(seed, gi, q);
        for (int64_t t = 0; t < 4 && q * 4 + t < k_neg; ++t) {
          const scalar_t* cj = c + philox::word_to_index(philox::pick_word(w, t), n_c, gi) * d;
          const scalar_t p = std::exp(inv_tau * vec::dot(ai, cj, d) - lse[i]);
          neg_p += p;
          vec::axpy(dai, cj, gp * p, d);
        }
      }
      if (has_pos) {
        const scalar_t p = std::exp(inv_tau * vec::dot(ai, c + gi * d, d) - lse[i]);
        pos_coef[i] = static_cast<scalar_t>(-double(g[i]) * double(inv_tau) * neg_p) + gl[i] * inv_tau * p;
        vec::axpy(dai, c + gi * d, pos_coef[i], d);
      }
    }
  });
  // Candidate side: thread t owns candidate rows [lo, hi).
  const int64_t owners = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_c));
  std::fill(dc, dc + n_c * d, scalar_t(0));
  at::parallel_for(0, owners, 1, [&](int64_t ob, int64_t oe) {
    for (int64_t o = ob; o < oe; ++o) {
      const int64_t lo = n_c * o / owners, hi = n_c * (o + 1) / owners;
      for (int64_t i = 0; i < n; ++i) {
        if (skip(i)) continue;
        const int64_t gi = r0 + i;
        const scalar_t* ai = a + i * d;
        const scalar_t gp = (g[i] + gl[i]) * inv_tau;
        if (has_pos && gi >= lo && gi < hi) vec::axpy(dc + gi * d, ai, pos_coef[i], d);
        for (int64_t q = 0; q * 4 < k_neg; ++q) {
          const philox::U4 w = philox::negative_words(seed, gi, q);
          for (int64_t t = 0; t < 4 && q * 4 + t < k_neg; ++t) {
            const int64_t j = philox::word_to_index(philox::pick_word(w, t), n_c, gi);
            if (j < lo || j >= hi) continue;
            const scalar_t* cj = c + j * d;
            vec::axpy(dc + j * d, ai, gp * std::exp(inv_tau * vec::dot(ai, cj, d) - lse[i]), d);
          }
        }
      }
    }
  });
}

void check_cpu(const at::Tensor& a, const char* op) {
  TORCH_CHECK(a.device().is_cpu(), "gkdfast.", op, ": CPU kernel called with tensors on ", a.device());
  TORCH_CHECK(a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble, "gkdfast.", op,
              ": the CPU kernel supports float32 and float64, got ", a.scalar_type());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> infonce_cpu(const at::Tensor& a_in, const at::Tensor& c_in, double inv_tau,
                                               int64_t pos_offset, bool exclude_self, int64_t num_negatives,
                                               int64_t seed, int64_t row_begin) {
  check_infonce(a_in, c_in, pos_offset, num_negatives, row_begin, "infonce");
  check_cpu(a_in, "infonce");
  if (num_negatives == 0) return infonce_tiled_forward(a_in, c_in, inv_tau, pos_offset, exclude_self, row_begin);
  const auto a = a_in.contiguous(), c = c_in.contiguous();
  const int64_t n = a.size(0), n_c = c.size(0), d = a.size(1);
  auto loss = at::empty({n}, a.options()), lse = at::empty({n}, a.options());
  GKD_DISPATCH_CPU_FLOATS(a.scalar_type(), "gkdfast_infonce_cpu", [&] {
    sampled_forward<scalar_t>(a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), loss.data_ptr<scalar_t>(),
                              lse.data_ptr<scalar_t>(), n, n_c, row_begin, d, static_cast<scalar_t>(inv_tau),
                              pos_offset == 0,
                              num_negatives, static_cast<uint64_t>(seed));
  });
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor> infonce_backward_cpu(const at::Tensor& a_in, const at::Tensor& c_in,
                                                        const at::Tensor& lse_in, const at::Tensor& g_in,
                                                        const at::Tensor& gl_in, double inv_tau, int64_t pos_offset,
                                                        bool exclude_self, int64_t num_negatives, int64_t seed,
                                                        int64_t row_begin) {
  check_infonce(a_in, c_in, pos_offset, num_negatives, row_begin, "infonce_backward");
  check_infonce_backward(a_in, c_in, lse_in, g_in, gl_in, "infonce_backward");
  check_cpu(a_in, "infonce_backward");
  if (num_negatives == 0)
    return infonce_tiled_backward(a_in, c_in, lse_in, g_in, gl_in, inv_tau, pos_offset, exclude_self, row_begin);
  const auto a = a_in.contiguous(), c = c_in.contiguous();
  const auto st = a.scalar_type();
  const auto lse = lse_in.to(st).contiguous(), g = g_in.to(st).contiguous(), gl = gl_in.to(st).contiguous();
  const int64_t n = a.size(0), n_c = c.size(0), d = a.size(1);
  auto da = at::empty_like(a), dc = at::empty_like(c);
  GKD_DISPATCH_CPU_FLOATS(st, "gkdfast_infonce_backward_cpu", [&] {
    sampled_backward<scalar_t>(a.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(),
                               g.data_ptr<scalar_t>(), gl.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(),
                               dc.data_ptr<scalar_t>(), n, n_c, row_begin, d, static_cast<scalar_t>(inv_tau),
                               pos_offset == 0,
                               num_negatives, static_cast<uint64_t>(seed));
  });
  return {da, dc};
}

at::Tensor sample_negatives_cpu(const at::Tensor& rows_in, int64_t num_nodes, int64_t k_neg, int64_t seed) {
  check_sample_negatives(rows_in, num_nodes, k_neg);
  const auto rows = rows_in.contiguous();
  const int64_t r = rows.size(0);
  const int64_t* rp = rows.data_ptr<int64_t>();
  for (int64_t t = 0; t < r; ++t)
    TORCH_CHECK(rp[t] >= 0 && rp[t] < num_nodes, "gkdfast.sample_negatives: row ", rp[t], " out of range [0, ",
                num_nodes, ")");
  auto out = at::empty({r, k_neg}, rows.options());
  int64_t* op = out.data_ptr<int64_t>();
  at::parallel_for(0, r, 64, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      for (int64_t k = 0; k < k_neg; ++k)
        op[t * k_neg + k] = philox::negative_index(static_cast<uint64_t>(seed), rp[t], k, num_nodes);
  });
  return out;
}

// The device-agnostic tile driver (ATen ops) serves every dtype the op accepts.
std::tuple<at::Tensor, at::Tensor> topk_similar_cpu(const at::Tensor& query, const at::Tensor& keys, int64_t k) {
  return topk_similar_tiled(query, keys, k);
}

at::Tensor gram_lse_cpu(const at::Tensor& z, double inv_tau, bool exclude_self) {
  check_gram_lse(z, "gram_lse");
  check_cpu(z, "gram_lse");
  return gram_lse_tiled(z, inv_tau, exclude_self);
}

at::Tensor gram_lse_backward_cpu(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, double inv_tau,
                                 bool exclude_self) {
  check_gram_lse_backward(z, lse, grad, "gram_lse_backward");
  check_cpu(z, "gram_lse_backward");
  return gram_lse_tiled_backward(z, lse, grad, inv_tau, exclude_self);
}

}  // namespace gkdfast
