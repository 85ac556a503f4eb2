// CPU neighbour sampler: counts -> prefix sum -> fill, each pass parallel over the seed nodes
// (at::parallel_for, OpenMP).  Each seed writes only its own output slice and draws its own Philox
// words, so the result is bitwise identical for any thread count and any batch composition.
// The per-seed draw (common/neighbor_draw.h) is shared with the CUDA kernel.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "cpu/cpu_kernels.h"
#include "common/neighbor_draw.h"
#include "ops/sample_neighbors.h"

namespace gkdfast {
namespace {

template <typename index_t, typename seed_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run(const at::Tensor& rowptr, const at::Tensor& col,
                                                   const at::Tensor& seeds, int64_t fanout, uint64_t seed,
                                                   int64_t hop) {
  const int64_t n = rowptr.size(0) - 1;
  const int64_t s_count = seeds.size(0);
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* cp = col.data_ptr<index_t>();
  const seed_t* sp = seeds.data_ptr<seed_t>();
  at::Tensor out_rowptr = at::empty({s_count + 1}, rowptr.options().dtype(at::kLong));
  int64_t* orp = out_rowptr.data_ptr<int64_t>();
  orp[0] = 0;
  // Pass 1: per-seed counts (and the range check, so a bad seed fails before any output is written).
  bool bad = false;
  int64_t bad_value = 0;
  for (int64_t t = 0; t < s_count; ++t) {
    const int64_t v = static_cast<int64_t>(sp[t]);
    if (v < 0 || v >= n) {
      bad = true;
      bad_value = v;
      break;
    }
  }
  TORCH_CHECK_INDEX(!bad, "gkdfast.sample_neighbors: seed node ", bad_value, " is out of range [0, ", n, ")");
  at::parallel_for(0, s_count, 2048, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t v = static_cast<int64_t>(sp[t]);
      const int64_t deg = static_cast<int64_t>(rp[v + 1]) - static_cast<int64_t>(rp[v]);
      orp[t + 1] = (fanout < 0 || deg <= fanout) ? deg : fanout;
    }
  });
  // Pass 2: prefix sum (serial; S is a batch, memory-bound and tiny next to the fill).
  for (int64_t t = 0; t < s_count; ++t) orp[t + 1] += orp[t];
  const int64_t nnz = orp[s_count];
  at::Tensor out_col = at::empty({nnz}, col.options());
  at::Tensor out_eid = at::empty({nnz}, col.options());
  index_t* ocp = out_col.data_ptr<index_t>();
  index_t* oep = out_eid.data_ptr<index_t>();
  // Pass 3: fill.
  at::parallel_for(0, s_count, 256, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = orp[t];
      draw_neighbors<index_t>(rp, cp, static_cast<int64_t>(sp[t]), orp[t + 1] - o, seed, hop, ocp + o, oep + o);
    }
  });
  return {out_rowptr, out_col, out_eid};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_neighbors_cpu(const at::Tensor& rowptr_in,
                                                                    const at::Tensor& col_in,
                                                                    const at::Tensor& seeds_in, int64_t fanout,
                                                                    int64_t seed, int64_t hop) {
  check_sample_neighbors(rowptr_in, col_in, seeds_in, fanout, seed, hop);
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), seeds = seeds_in.contiguous();
  const uint64_t s = static_cast<uint64_t>(seed);
  return dispatch_sample_types(col, seeds, [&](auto i, auto sd) {
    return run<decltype(i), decltype(sd)>(rowptr, col, seeds, fanout, s, hop);
  });
}

}  // namespace gkdfast
