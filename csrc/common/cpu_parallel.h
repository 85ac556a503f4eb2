// Degree-aware parallel loops over CSR rows for the CPU kernels.
//
// Power-law graphs put a large share of the edges on a few rows, so a plain
// `omp for` over rows leaves threads idle.  We cut the rows into chunks of about equal
// *edge* count (binary search on rowptr) and hand the chunks out dynamically; a row is never
// split, so every output row is written by exactly one thread (no atomics, deterministic).
#pragma once

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace gkdfast {

// Returns chunk boundaries b[0]=0 < ... < b[k]=num_rows, each chunk holding roughly
// (nnz + rows) / k work units (an empty row still costs one unit: it is written).
template <typename index_t>
std::vector<int64_t> balanced_row_chunks(const index_t* rowptr, int64_t num_rows, int64_t num_chunks) {
  std::vector<int64_t> bounds{0};
  if (num_rows == 0) return bounds;
  const int64_t nnz = static_cast<int64_t>(rowptr[num_rows]);
  const int64_t total = nnz + num_rows;
  num_chunks = std::max<int64_t>(1, std::min<int64_t>(num_chunks, num_rows));
  for (int64_t c = 1; c < num_chunks; ++c) {
    const int64_t target = total * c / num_chunks;
    // smallest row r with rowptr[r] + r >= target
    int64_t lo = bounds.back(), hi = num_rows;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (static_cast<int64_t>(rowptr[mid]) + mid < target) lo = mid + 1; else hi = mid;
    }
    if (lo > bounds.back() && lo < num_rows) bounds.push_back(lo);
  }
  bounds.push_back(num_rows);
  return bounds;
}

// Calls body(row_begin, row_end) for balanced chunks of rows, in parallel with torch's intra-op
// thread count.  Small problems run inline to avoid the OpenMP fork cost.
template <typename index_t, typename F>
void parallel_rows(const index_t* rowptr, int64_t num_rows, int64_t work_per_unit, const F& body) {
  const int64_t nnz = num_rows > 0 ? static_cast<int64_t>(rowptr[num_rows]) : 0;
  const int threads = at::get_num_threads();
  if (threads <= 1 || (nnz + num_rows) * std::max<int64_t>(work_per_unit, 1) < (1 << 15)) {
    body(int64_t(0), num_rows);
    return;
  }
  const auto bounds = balanced_row_chunks(rowptr, num_rows, int64_t(threads) * 16);
  const int64_t chunks = static_cast<int64_t>(bounds.size()) - 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t c = 0; c < chunks; ++c) body(bounds[c], bounds[c + 1]);
}

// Plain parallel-for over [0, n) in blocks (for dense, uniform work).
template <typename F>
void parallel_blocks(int64_t n, int64_t grain, const F& body) {
  at::parallel_for(0, n, grain, body);
}

}  // namespace gkdfast
