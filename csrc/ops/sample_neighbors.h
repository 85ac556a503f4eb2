// Uniform neighbour sampling over the destination CSR (GraphSAGE-style fan-outs): argument checks
// shared by every backend, and the Philox draw that fixes which neighbours are chosen.
//
// Op semantics (gkdfast::sample_neighbors(rowptr, col, seeds, fanout, seed, hop)):
//   for each seed node v (deg = rowptr[v+1] - rowptr[v] < 2^31) pick m = deg if fanout == -1 or deg <= fanout,
//   else m = fanout, distinct in-edge positions p in [0, deg) uniformly without replacement, by
//   Floyd's algorithm: for s = 0 .. m-1, j = deg - m + s, r = philox word s of (seed, v, hop) mapped
//   to [0, j] by (word * (j + 1)) >> 32 (bias < deg / 2^32); take r unless already taken, else j.
//   The chosen positions are returned in ascending order.  Because the words depend only on
//   (seed, v, hop, s), a node's sample never depends on the thread count or on the other seeds.
// Returns (out_rowptr [S+1] int64, out_col [nnz] = sampled source ids, out_eid [nnz] = their CSR
// positions rowptr[v] + p), out_col / out_eid in col's index dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace gkdfast {

// rowptr/col a CSR sharing int32/int64; seeds 1-D int32/int64 on its device; fanout > 0 or -1;
// 0 <= hop < 65536; seed >= 0.
// Seed ranges are checked by the kernel itself (one pass).
void check_sample_neighbors(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& seeds, int64_t fanout,
                            int64_t seed, int64_t hop);

// Calls fn(index_t{}, seed_t{}) with the C++ types of col's and seeds' dtypes (int32 / int64 each),
// so a backend writes its run<index_t, seed_t> once: fn = [&](auto i, auto s) {
// return run<decltype(i), decltype(s)>(...); }.
template <typename F>
auto dispatch_sample_types(const at::Tensor& col, const at::Tensor& seeds, F&& fn) {
  const bool seeds32 = seeds.scalar_type() == at::kInt;
  if (col.scalar_type() == at::kInt) return seeds32 ? fn(int32_t{}, int32_t{}) : fn(int32_t{}, int64_t{});
  return seeds32 ? fn(int64_t{}, int32_t{}) : fn(int64_t{}, int64_t{});
}

}  // namespace gkdfast
