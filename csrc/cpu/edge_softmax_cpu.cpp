// CPU edge softmax over each destination's in-edges (scores [E] or [E, H], heads independent).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include <cmath>
#include <limits>

#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "common/cpu_parallel.h"
#include "ops/edge_softmax.h"
#include "ops/graph_checks.h"

namespace gkdfast {
at::Tensor edge_softmax_cpu(const at::Tensor& rowptr_in, const at::Tensor& s_in) {
  check_rowptr(rowptr_in, "edge_softmax");
  check_edge_scores(rowptr_in, s_in, "edge_softmax", "scores");
  const auto rowptr = rowptr_in.contiguous();
  const auto s = s_in.contiguous();
  const int64_t n = csr_num_rows(rowptr);
  const int64_t heads = s.dim() == 2 ? s.size(1) : 1;
  auto out = at::empty_like(s);
  GKD_DISPATCH_CPU_FLOATS(s.scalar_type(), "gkdfast_edge_softmax_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "gkdfast_edge_softmax_cpu_index", [&] {
      const index_t* rp = rowptr.data_ptr<index_t>();
      const scalar_t* sp = s.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      parallel_rows(rp, n, heads, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const int64_t e0 = rp[i], e1 = rp[i + 1];
          for (int64_t h = 0; h < heads; ++h) {
            scalar_t mx = -std::numeric_limits<scalar_t>::infinity();
            for (int64_t e = e0; e < e1; ++e) mx = std::max(mx, sp[e * heads + h]);
            if (std::isinf(mx) && mx < 0) mx = 0;  // all -inf: avoid (-inf) - (-inf)
            scalar_t sum = 0;
            for (int64_t e = e0; e < e1; ++e) {
              const scalar_t v = std::exp(sp[e * heads + h] - mx);
              op[e * heads + h] = v;
              sum += v;
            }
            // an all -inf row sums to 0 (all weights 0); a NaN score makes the sum, hence the row, NaN
            const scalar_t inv = sum == 0 ? scalar_t(0) : scalar_t(1) / sum;
            for (int64_t e = e0; e < e1; ++e) op[e * heads + h] *= inv;
          }
        }
      });
    });
  });
  return out;
}

// d s_e = y_e (g_e - sum_{e' in row} y_e' g_e')
at::Tensor edge_softmax_backward_cpu(const at::Tensor& rowptr_in, const at::Tensor& y_in, const at::Tensor& g_in) {
  check_rowptr(rowptr_in, "edge_softmax_backward");
  check_edge_scores(rowptr_in, y_in, "edge_softmax_backward", "out");
  check_edge_softmax_grad(y_in, g_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto y = y_in.contiguous();
  const auto g = g_in.contiguous().to(y.scalar_type());
  const int64_t n = csr_num_rows(rowptr);
  const int64_t heads = y.dim() == 2 ? y.size(1) : 1;
  auto grad = at::empty_like(y);
  GKD_DISPATCH_CPU_FLOATS(y.scalar_type(), "gkdfast_edge_softmax_backward_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "gkdfast_edge_softmax_backward_cpu_index", [&] {
      const index_t* rp = rowptr.data_ptr<index_t>();
      const scalar_t* yp = y.data_ptr<scalar_t>();
      const scalar_t* gp = g.data_ptr<scalar_t>();
      scalar_t* op = grad.data_ptr<scalar_t>();
      parallel_rows(rp, n, heads, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          for (int64_t h = 0; h < heads; ++h) {
            scalar_t dotp = 0;
            for (int64_t e = rp[i]; e < rp[i + 1]; ++e) dotp += yp[e * heads + h] * gp[e * heads + h];
            for (int64_t e = rp[i]; e < rp[i + 1]; ++e)
              op[e * heads + h] = yp[e * heads + h] * (gp[e * heads + h] - dotp);
          }
        }
      });
    });
  });
  return grad;
}

}  // namespace gkdfast
