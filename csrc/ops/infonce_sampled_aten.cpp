// The sampled-negative InfoNCE backward from ATen ops, chunked over anchor rows (see infonce.h).
//
// Why it exists: the CUDA kernel scatters each candidate's gradient with atomicAdd (a candidate can
// be drawn by any anchor row), so its float sums land in a varying order.  Under
// torch.use_deterministic_algorithms(True) the CUDA registration runs this instead: the negatives
// are re-drawn by the sample_negatives op (the kernels' own Philox draws), their logits come from a
// batched product, and the candidate-side gradient is added with index_add_, which PyTorch makes
// deterministic in that mode (it sorts the indices instead of using atomics).  Chunks are visited
// in order, so the sums do not depend on scheduling.  Memory: O(N * d) plus one chunk of
// [rows, K, d] gathered candidates, sized by the tile workspace budget.
#include "ops/infonce.h"

#include "common/tile_workspace.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/isinf.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

namespace gkdfast {
namespace {

// The registered sampler of the tensors' device: the same (seed, row, k) -> index map as the kernels.
at::Tensor draw_negatives(const at::Tensor& rows, int64_t num_nodes, int64_t k_neg, int64_t seed) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("gkdfast::sample_negatives", "")
                             .typed<at::Tensor(const at::Tensor&, int64_t, int64_t, int64_t)>();
  return op.call(rows, num_nodes, k_neg, seed);
}

constexpr int64_t kHostChunkBytes = int64_t(64) << 20;  // a CPU caller (the tests) without a budget set

}  // namespace

std::tuple<at::Tensor, at::Tensor> infonce_sampled_backward_chunked(const at::Tensor& a_in, const at::Tensor& c_in,
                                                                    const at::Tensor& lse_in, const at::Tensor& g_in,
                                                                    const at::Tensor& gl_in, double inv_tau,
                                                                    int64_t pos_offset, int64_t num_negatives,
                                                                    int64_t seed, int64_t row_begin) {
  check_infonce(a_in, c_in, pos_offset, num_negatives, row_begin, "infonce_backward");
  check_infonce_backward(a_in, c_in, lse_in, g_in, gl_in, "infonce_backward");
  TORCH_CHECK(num_negatives > 0, "gkdfast.infonce_backward: the chunked path is for sampled negatives (K > 0)");
  const auto acc = infonce_acc_type(a_in.scalar_type());
  const auto a = a_in.to(acc).contiguous(), c = c_in.to(acc).contiguous();
  const auto lse = lse_in.to(acc), g = g_in.to(acc), gl = gl_in.to(acc);
  const int64_t n = a.size(0), n_c = c.size(0), d = a.size(1), k = num_negatives;
  const bool has_pos = pos_offset == 0;
  auto da = at::zeros({n, d}, a.options()), dc = at::zeros({n_c, d}, a.options());
  // Two [rows, K, d] temporaries per chunk (the gathered candidates and their gradient rows).
  const int64_t budget = tile_workspace_bytes(a.is_cuda(), kHostChunkBytes);
  const int64_t per_row = std::max<int64_t>(1, 2 * k * d * static_cast<int64_t>(a.element_size()));
  const int64_t chunk = std::clamp<int64_t>(budget / per_row, 1, std::max<int64_t>(n, 1));
  const auto index_opts = a.options().dtype(at::kLong);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t r1 = std::min(n, r0 + chunk), m = r1 - r0;
    const auto ai = a.slice(0, r0, r1), li = lse.slice(0, r0, r1);
    const auto gi = g.slice(0, r0, r1), gli = gl.slice(0, r0, r1);
    // The kernels skip a row with an empty set (lse = -inf) or no incoming gradient.
    const auto skip = at::isinf(li).logical_or_((gi == 0).logical_and_(gli == 0));
    const auto li_safe = at::where(skip, at::zeros({}, li.options()), li).unsqueeze(1);
    const auto rows = at::arange(row_begin + r0, row_begin + r1, index_opts);
    auto dai = da.slice(0, r0, r1);
    const auto j = draw_negatives(rows, n_c, k, seed).reshape({-1});
    const auto cj = c.index_select(0, j).view({m, k, d});
    const auto logits = at::bmm(cj, ai.unsqueeze(2)).squeeze(2) * inv_tau;  // [m, K]
    const auto p = at::where(skip.unsqueeze(1), at::zeros({}, li.options()), at::exp(logits - li_safe));
    const auto coef = ((gi + gli) * inv_tau).unsqueeze(1) * p;
    dai.copy_(at::bmm(coef.unsqueeze(1), cj).squeeze(1));
    dc.index_add_(0, j, (coef.unsqueeze(2) * ai.unsqueeze(1)).reshape({-1, d}));
    if (has_pos) {
      // g (p - 1) / tau + gl p / tau, with p - 1 taken as minus the negatives' probabilities (summed in
      // float64), as the kernels do: p rounds to 1 on a row whose positive dominates.
      const auto cp = c.index_select(0, rows);
      const auto pp = at::where(skip, at::zeros({}, li.options()),
                                at::exp((ai * cp).sum(1) * inv_tau - li_safe.squeeze(1)));
      const auto neg_p = p.to(at::kDouble).sum(1);
      auto pc = (gi.to(at::kDouble) * (-inv_tau) * neg_p).to(acc) + gli * inv_tau * pp;
      pc = at::where(skip, at::zeros({}, pc.options()), pc).unsqueeze(1);
      dai.add_(pc * cp);
      dc.index_add_(0, rows, pc * ai);
    }
  }
  return {da.to(a_in.scalar_type()), dc.to(c_in.scalar_type())};
}

}  // namespace gkdfast
