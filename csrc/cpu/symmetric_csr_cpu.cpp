// CPU build of an undirected graph's CSR from an edge list (see ops/symmetric_csr.h), in O(E) work:
// count both directions of every pair per row, move the sources into their rows, then sort and
// deduplicate each row on its own and close the gaps.
//
// Why not a sort of all 2E (destination, source) keys: that is O(E log E) over 16 bytes per key
// (32 GB at 10^9 directed edges), where the rows here are sorted one at a time in cache.
//
// Why the move goes through two partitions: writing each source straight to its row's next free
// slot is one cache and TLB miss per entry once the CSR outgrows the caches (measured ~100 ns per
// entry at 5 * 10^8 entries, 2 threads).  Instead the rows are cut into groups of fixed node ranges;
// per group, each thread appends its pairs' entries of that group to a scratch list (sequential
// writes), the list is partitioned by sub-range of rows (a few hundred sequential write streams),
// and each sub-range, whose rows span a cache-sized piece of the CSR, is filled by one thread.
// The scratch holds one group at a time (twice), so memory stays O(E / groups) above the CSR.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/cpu_parallel.h"
#include "cpu/cpu_kernels.h"
#include "ops/symmetric_csr.h"

namespace gkdfast {
namespace {

// Below this many pairs a single thread is faster than forking.
constexpr int64_t kParallelPairs = 1 << 16;
// Scratch per group: a group's entries are at most about this many bytes (two such lists live at once).
constexpr int64_t kGroupBytes = int64_t(512) << 20;
// Entries per sub-range of rows on average: its piece of the CSR (and cursors) stays in cache.
constexpr int64_t kSubEntries = int64_t(1) << 16;

// A positive integer from the environment, else `fallback`: GKDFAST_CSR_GROUP_BYTES and
// GKDFAST_CSR_SUB_ENTRIES override the two sizes above (tests: many groups and sub-ranges on a
// small graph).
int64_t size_setting(const char* name, int64_t fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  TORCH_CHECK_VALUE(end != env && *end == '\0' && v > 0, "gkdfast.symmetric_csr: ", name,
                    " must be a positive integer, got '", env, "'");
  return static_cast<int64_t>(v);
}

int ceil_log2(uint64_t x) {
  int s = 0;
  while ((uint64_t(1) << s) < x) ++s;
  return s;
}

// The first pair with an id outside [0, n), as a one-line error (the slow path of a failed check).
template <typename id_t>
[[noreturn]] void report_out_of_range(const id_t* src, const id_t* dst, int64_t m, int64_t n) {
  for (int64_t e = 0; e < m; ++e) {
    for (const int64_t id : {static_cast<int64_t>(src[e]), static_cast<int64_t>(dst[e])}) {
      TORCH_CHECK_VALUE(id >= 0 && id < n, "gkdfast.symmetric_csr: pair ", e, " has node id ", id,
                        " outside [0, ", n, ")");
    }
  }
  TORCH_CHECK(false, "gkdfast.symmetric_csr: internal error: an out-of-range id was not found again");
}

// One directed entry on its way to the CSR: row (destination) and the source it lists.
template <typename id_t>
struct Entry {
  id_t row, src;
};

template <typename id_t>
std::tuple<at::Tensor, at::Tensor> build(const at::Tensor& src_t, const at::Tensor& dst_t, int64_t n) {
  const id_t* src = src_t.data_ptr<id_t>();
  const id_t* dst = dst_t.data_ptr<id_t>();
  const int64_t m = src_t.numel();
  const int threads = (at::get_num_threads() > 1 && m >= kParallelPairs) ? at::get_num_threads() : 1;
  // Pairs are cut into one fixed chunk per thread; every pass below walks the same chunks.
  auto chunk_begin = [&](int t) { return m * t / threads; };

  // Row groups (2^group_shift nodes) and sub-ranges (2^sub_shift nodes), sized from the upper bound
  // 2m on the entries: a group's entries fill about kGroupBytes, a sub-range's about kSubEntries.
  const int64_t group_bytes = size_setting("GKDFAST_CSR_GROUP_BYTES", kGroupBytes);
  const double sub_entries = static_cast<double>(size_setting("GKDFAST_CSR_SUB_ENTRIES", kSubEntries));
  const uint64_t nodes = static_cast<uint64_t>(std::max<int64_t>(n, 1));
  const uint64_t groups_wanted = static_cast<uint64_t>(2 * m * int64_t(sizeof(Entry<id_t>)) / group_bytes + 1);
  const int group_shift = ceil_log2((nodes + groups_wanted - 1) / groups_wanted);
  const int64_t num_groups = static_cast<int64_t>(((nodes - 1) >> group_shift) + 1);
  const double entries_per_node = std::max(2.0 * static_cast<double>(m) / static_cast<double>(nodes), 1.0);
  const int sub_shift = std::min(ceil_log2(static_cast<uint64_t>(sub_entries / entries_per_node)), group_shift);
  const int64_t subs_per_group = int64_t(1) << (group_shift - sub_shift);

  // 1. Entries per row (both directions of every pair) in rowptr[1..n], and per thread and group;
  //    ids checked on the way.
  at::Tensor rowptr_t = at::zeros({n + 1}, src_t.options().dtype(at::kLong));
  int64_t* rowptr = rowptr_t.data_ptr<int64_t>();
  int64_t* count = rowptr + 1;
  std::vector<int64_t> group_count(static_cast<size_t>(threads) * num_groups, 0);
  bool bad = false;
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(|| : bad)
  {
    const int t = threads > 1 ? omp_get_thread_num() : 0;
    int64_t* mine = group_count.data() + t * num_groups;
    for (int64_t e = chunk_begin(t), end = chunk_begin(t + 1); e < end; ++e) {
      const int64_t u = src[e], v = dst[e];
      if (u < 0 || u >= n || v < 0 || v >= n) {
        bad = true;
        continue;
      }
      if (u == v) continue;
#pragma omp atomic
      count[v]++;
#pragma omp atomic
      count[u]++;
      mine[v >> group_shift]++;
      mine[u >> group_shift]++;
    }
  }
  if (bad) report_out_of_range(src, dst, m, n);
  for (int64_t r = 0; r < n; ++r) rowptr[r + 1] += rowptr[r];
  const int64_t cap = rowptr[n];

  // 2. Move the entries into their rows, one group at a time.
  at::Tensor col_t = at::empty({cap}, src_t.options());
  id_t* col = col_t.data_ptr<id_t>();
  std::vector<int64_t> cursor(rowptr, rowptr + n);
  int64_t largest = 0;
  for (int64_t g = 0; g < num_groups; ++g) {
    int64_t size = 0;
    for (int t = 0; t < threads; ++t) size += group_count[t * num_groups + g];
    largest = std::max(largest, size);
  }
  // (not value-initialised: every slot of a group is written before it is read)
  // (a slot of slack per thread: the branch-free append below writes one entry past its part)
  std::unique_ptr<Entry<id_t>[]> listed(new Entry<id_t>[largest + threads]), sorted(new Entry<id_t>[largest]);
  std::vector<int64_t> sub_count(static_cast<size_t>(threads) * subs_per_group);
  std::vector<int64_t> sub_begin(subs_per_group + 1);
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t lo = g << group_shift;
    std::vector<int64_t> offset(threads + 1, 0);
    for (int t = 0; t < threads; ++t) offset[t + 1] = offset[t] + group_count[t * num_groups + g];
    const int64_t size = offset[threads];
    if (size == 0) continue;
    std::fill(sub_count.begin(), sub_count.end(), 0);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      const int t = threads > 1 ? omp_get_thread_num() : 0;
      // (a) this thread's entries of group g, appended in pair order
      const int64_t part_lo = offset[t] + t, part_hi = offset[t + 1] + t;  // parts a slot apart
      Entry<id_t>* out = listed.get() + part_lo;
      // Branch-free: both entries are always written and the end advances only past the kept
      // ones (whether a pair has an entry in g is a coin flip the branch predictor would lose).
      for (int64_t e = chunk_begin(t), end = chunk_begin(t + 1); e < end; ++e) {
        const id_t u = src[e], v = dst[e];
        const bool loop = u == v;
        *out = {v, u};
        out += !loop && (static_cast<int64_t>(v) >> group_shift) == g;
        *out = {u, v};
        out += !loop && (static_cast<int64_t>(u) >> group_shift) == g;
      }
      // (b) partitioned by sub-range: counts of this thread's part of the list, then (after every
      //     thread's counts) a scatter to sub-range-major, thread-minor positions
      int64_t* mine = sub_count.data() + t * subs_per_group;
      for (int64_t i = part_lo; i < part_hi; ++i) mine[(static_cast<int64_t>(listed[i].row) - lo) >> sub_shift]++;
#pragma omp barrier
#pragma omp single
      {
        int64_t at = 0;
        for (int64_t s = 0; s < subs_per_group; ++s) {
          sub_begin[s] = at;
          for (int u = 0; u < threads; ++u) {
            int64_t& c = sub_count[u * subs_per_group + s];
            const int64_t k = c;
            c = at;  // now this thread's write position in sub-range s
            at += k;
          }
        }
        sub_begin[subs_per_group] = at;
      }  // implicit barrier
      for (int64_t i = part_lo; i < part_hi; ++i) {
        const Entry<id_t> x = listed[i];
        sorted[mine[(static_cast<int64_t>(x.row) - lo) >> sub_shift]++] = x;
      }
#pragma omp barrier
      // (c) each sub-range's entries to their rows: its rows' slots and cursors are a cache-sized span
#pragma omp for schedule(dynamic, 4)
      for (int64_t s = 0; s < subs_per_group; ++s) {
        for (int64_t i = sub_begin[s]; i < sub_begin[s + 1]; ++i) col[cursor[sorted[i].row]++] = sorted[i].src;
      }
    }
  }
  listed.reset();
  sorted.reset();

  // 3. Each row sorted and deduplicated; a chunk of rows packs its rows' distinct entries from its own
  //    first position on (in place: a row's packed start never passes its old start).  The kept
  //    count of row r goes to cursor[r], each chunk's packed length to packed[c].
  const auto bounds = balanced_row_chunks(rowptr, n, threads > 1 ? int64_t(threads) * 16 : 1);
  const int64_t chunks = static_cast<int64_t>(bounds.size()) - 1;
  std::vector<int64_t> packed(std::max<int64_t>(chunks, 0), 0);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t write = rowptr[bounds[c]];
    for (int64_t r = bounds[c]; r < bounds[c + 1]; ++r) {
      id_t* row = col + rowptr[r];
      const int64_t len = rowptr[r + 1] - rowptr[r];
      std::sort(row, row + len);
      const int64_t kept = std::unique(row, row + len) - row;
      if (col + write != row) std::memmove(col + write, row, sizeof(id_t) * kept);
      cursor[r] = kept;
      write += kept;
    }
    packed[c] = write - rowptr[bounds[c]];
  }

  // 4. Chunks moved down to their final offsets, in order (each lands at or before its packed start,
  //    after every earlier chunk's end), and the row offsets rewritten from the kept counts.
  int64_t total = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t from = rowptr[bounds[c]];
    if (from != total) std::memmove(col + total, col + from, sizeof(id_t) * packed[c]);
    total += packed[c];
  }
  for (int64_t r = 0; r < n; ++r) rowptr[r + 1] = rowptr[r] + cursor[r];
  TORCH_CHECK(rowptr[n] == total, "gkdfast.symmetric_csr: internal error: packed ", total, " entries, counted ",
              rowptr[n]);
  // A few duplicates leave the tail unused; many (repeated pairs, hubs) would waste memory the caller keeps.
  at::Tensor out = col_t.narrow(0, 0, total);
  if (total < cap - cap / 8) out = out.clone();
  return {rowptr_t, out};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> symmetric_csr_cpu(const at::Tensor& src, const at::Tensor& dst,
                                                     int64_t num_nodes) {
  check_symmetric_csr(src, dst, num_nodes);
  const at::Tensor s = src.contiguous(), d = dst.contiguous();
  if (s.scalar_type() == at::kInt) return build<int32_t>(s, d, num_nodes);
  return build<int64_t>(s, d, num_nodes);
}

}  // namespace gkdfast
