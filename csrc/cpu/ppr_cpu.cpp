// CPU top-k personalised PageRank by forward push (see ops/ppr.h): sources in parallel, each thread
// with its own dense scratch (estimates, residuals, flags) of N entries, reset through the list of
// nodes the source touched, so a source costs O(nodes touched + pushes), never O(N).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "ops/ppr.h"

namespace gkdfast {
namespace {

template <typename index_t>
struct PushScratch {
  std::vector<double> p, r;
  std::vector<uint8_t> seen, queued;
  std::vector<int64_t> touched, queue;
  explicit PushScratch(int64_t n) : p(n, 0.0), r(n, 0.0), seen(n, 0), queued(n, 0) {}

  void touch(int64_t v) {
    if (!seen[v]) {
      seen[v] = 1;
      touched.push_back(v);
    }
  }

  // Forward push from s until every residual is at or below its threshold.
  void push_from(const index_t* rp, const index_t* cp, int64_t s, double alpha, double eps) {
    auto degree = [&](int64_t u) { return static_cast<int64_t>(rp[u + 1]) - static_cast<int64_t>(rp[u]); };
    touch(s);
    r[s] = 1.0;
    queue.push_back(s);
    queued[s] = 1;
    for (size_t head = 0; head < queue.size(); ++head) {  // FIFO; the vector only grows per source
      const int64_t u = queue[head];
      queued[u] = 0;
      const int64_t d = degree(u);
      const double ru = r[u];
      if (!(ru > eps * static_cast<double>(std::max<int64_t>(d, 1)))) continue;
      p[u] += alpha * ru;
      r[u] = 0.0;
      if (d == 0) continue;  // a node without out-edges loses the walk's remaining mass
      const double share = (1.0 - alpha) * ru / static_cast<double>(d);
      for (int64_t e = rp[u]; e < static_cast<int64_t>(rp[u + 1]); ++e) {
        const int64_t v = static_cast<int64_t>(cp[e]);
        touch(v);
        r[v] += share;
        if (!queued[v] && r[v] > eps * static_cast<double>(std::max<int64_t>(degree(v), 1))) {
          queued[v] = 1;
          queue.push_back(v);
        }
      }
    }
  }

  // The k largest estimates other than s into idx/val (padded with (s, 0)), then a clean scratch.
  void take_topk(int64_t s, int64_t k, int64_t* idx, float* val) {
    std::vector<int64_t>& cand = queue;  // reuse: the queue is spent
    cand.clear();
    for (int64_t v : touched)
      if (v != s && p[v] > 0.0) cand.push_back(v);
    auto better = [&](int64_t a, int64_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); };
    const int64_t m = std::min<int64_t>(k, static_cast<int64_t>(cand.size()));
    std::partial_sort(cand.begin(), cand.begin() + m, cand.end(), better);
    for (int64_t j = 0; j < m; ++j) {
      idx[j] = cand[j];
      val[j] = static_cast<float>(p[cand[j]]);
    }
    for (int64_t j = m; j < k; ++j) {
      idx[j] = s;
      val[j] = 0.0f;
    }
    for (int64_t v : touched) {
      p[v] = r[v] = 0.0;
      seen[v] = queued[v] = 0;
    }
    touched.clear();
    queue.clear();
  }
};

template <typename index_t, typename source_t>
std::tuple<at::Tensor, at::Tensor> run(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& sources,
                                       int64_t k, double alpha, double eps) {
  const int64_t n = rowptr.size(0) - 1;
  const int64_t count = sources.size(0);
  const source_t* sp = sources.data_ptr<source_t>();
  for (int64_t t = 0; t < count; ++t) {
    const int64_t s = static_cast<int64_t>(sp[t]);
    TORCH_CHECK_VALUE(s >= 0 && s < n, "gkdfast.ppr_topk: source node ", s, " is out of range [0, ", n, ")");
  }
  at::Tensor index = at::empty({count, k}, rowptr.options().dtype(at::kLong));
  at::Tensor value = at::empty({count, k}, rowptr.options().dtype(at::kFloat));
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* cp = col.data_ptr<index_t>();
  int64_t* ip = index.data_ptr<int64_t>();
  float* vp = value.data_ptr<float>();
  at::parallel_for(0, count, 16, [&](int64_t b, int64_t e) {
    PushScratch<index_t> scratch(n);  // one per task: O(N) per thread, reused across its sources
    for (int64_t t = b; t < e; ++t) {
      const int64_t s = static_cast<int64_t>(sp[t]);
      scratch.push_from(rp, cp, s, alpha, eps);
      scratch.take_topk(s, k, ip + t * k, vp + t * k);
    }
  });
  return {index, value};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> ppr_topk_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                                                const at::Tensor& sources, int64_t k, double alpha, double eps) {
  check_ppr_topk(rowptr, col, sources, k, alpha, eps);
  const at::Tensor rp = rowptr.contiguous(), cp = col.contiguous(), sp = sources.contiguous();
  const bool col32 = cp.scalar_type() == at::kInt, src32 = sp.scalar_type() == at::kInt;
  if (col32) return src32 ? run<int32_t, int32_t>(rp, cp, sp, k, alpha, eps) : run<int32_t, int64_t>(rp, cp, sp, k, alpha, eps);
  return src32 ? run<int64_t, int32_t>(rp, cp, sp, k, alpha, eps) : run<int64_t, int64_t>(rp, cp, sp, k, alpha, eps);
}

}  // namespace gkdfast
