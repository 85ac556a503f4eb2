// CPU build of an undirected graph's CSR from an edge list (see ops/symmetric_csr.h), in O(E) work:
// every directed entry (both directions of every pair) is moved into its row, and each row is sorted
// and deduplicated on its own.
//
// Why not a sort of all 2E (destination, source) keys: that is O(E log E) over 16 bytes per key
// (32 GB at 10^9 directed edges), where the rows here are sorted one at a time in cache.
//
// Why the move goes through two partitions: counting each row's entries and writing each source to
// its row's next free slot straight from the pairs is one cache and TLB miss per entry once the CSR
// outgrows the caches (measured ~100 ns per entry at 5 * 10^8 entries, 2 threads).  Instead the rows
// are cut into groups of fixed node ranges; per group, each thread appends its pairs' entries of that
// group to a scratch list (sequential writes), the list is partitioned by sub-range of rows (a few
// hundred sequential write streams), and one thread lays out each sub-range: counts its rows, fills
// them, sorts and deduplicates them, all within a cache-sized span of the CSR.  The scratch holds one
// group at a time (twice): about a quarter of the CSR when the entries spread over the node ids, more
// when hubs crowd one node range.  There are at most kMaxGroups groups, so the pairs are read at most
// that many times (O(E) work).  Every result is independent of the thread count: each row's entries
// end up sorted.
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

#include "cpu/cpu_kernels.h"
#include "ops/symmetric_csr.h"

namespace gkdfast {
namespace {

// Below this many pairs a single thread is faster than forking.
constexpr int64_t kParallelPairs = 1 << 16;
// Scratch per group: a group's entries take about a quarter of the CSR's ids, within these bounds
// (two such lists live at once): small graphs need no more than a fraction of their CSR on top, large
// ones are not cut into more groups than needed (each group reads all pairs once).
constexpr int64_t kMinGroupBytes = int64_t(64) << 20;
constexpr int64_t kMaxGroupBytes = int64_t(512) << 20;
// At most this many row groups (each reads all pairs once): past it the groups grow instead.
constexpr int64_t kMaxGroups = 16;
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
  // The pairs are cut into `chunks` fixed chunks; every pass below walks the same chunks, handed out
  // by `omp for`, so the work does not depend on how many threads OpenMP actually starts.
  const int64_t chunks = threads;
  auto chunk_begin = [&](int64_t c) { return m * c / chunks; };

  // Row groups (2^group_shift nodes) and sub-ranges (2^sub_shift nodes), sized from the upper bound
  // 2m on the entries: a group's entries fill about group_bytes, a sub-range's about kSubEntries.
  // Past kMaxGroupBytes the groups grow so that there are at most kMaxGroups (passes over the pairs).
  const int64_t list_bytes = 2 * m * int64_t(sizeof(Entry<id_t>));
  const int64_t group_bytes = size_setting(
      "GKDFAST_CSR_GROUP_BYTES",
      std::max(std::clamp<int64_t>(2 * m * int64_t(sizeof(id_t)) / 4, kMinGroupBytes, kMaxGroupBytes),
               list_bytes / kMaxGroups + 1));
  const double sub_entries = static_cast<double>(size_setting("GKDFAST_CSR_SUB_ENTRIES", kSubEntries));
  const uint64_t nodes = static_cast<uint64_t>(std::max<int64_t>(n, 1));
  const uint64_t groups_wanted = static_cast<uint64_t>(list_bytes / group_bytes + 1);
  const int group_shift = ceil_log2((nodes + groups_wanted - 1) / groups_wanted);
  const int64_t num_groups = static_cast<int64_t>(((nodes - 1) >> group_shift) + 1);
  const double entries_per_node = std::max(2.0 * static_cast<double>(m) / static_cast<double>(nodes), 1.0);
  const int sub_shift = std::min(ceil_log2(static_cast<uint64_t>(sub_entries / entries_per_node)), group_shift);
  const int64_t subs_per_group = int64_t(1) << (group_shift - sub_shift);

  // 1. Ids checked, and the entries (both directions of every pair but self-loops) counted per
  //    chunk and row group.
  std::vector<int64_t> group_count(static_cast<size_t>(chunks) * num_groups, 0);
  bool bad = false;
#pragma omp parallel for schedule(static, 1) num_threads(threads) if (threads > 1) reduction(|| : bad)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t* mine = group_count.data() + c * num_groups;
    for (int64_t e = chunk_begin(c), end = chunk_begin(c + 1); e < end; ++e) {
      const int64_t u = src[e], v = dst[e];
      if (u < 0 || u >= n || v < 0 || v >= n) {
        bad = true;
        continue;
      }
      if (u == v) continue;
      mine[v >> group_shift]++;
      mine[u >> group_shift]++;
    }
  }
  if (bad) report_out_of_range(src, dst, m, n);
  std::vector<int64_t> group_begin(num_groups + 1, 0);
  int64_t largest = 0;
  for (int64_t g = 0; g < num_groups; ++g) {
    int64_t size = 0;
    for (int64_t c = 0; c < chunks; ++c) size += group_count[c * num_groups + g];
    group_begin[g + 1] = group_begin[g] + size;
    largest = std::max(largest, size);
  }
  const int64_t cap = group_begin[num_groups];

  // 2. One group at a time: its entries listed, partitioned by sub-range of rows, and each sub-range
  //    laid out from its own first slot: rows counted, filled, sorted and deduplicated while its
  //    span of the CSR is in cache.  Kept entries per row go to rowptr[r + 1]; each sub-range's kept
  //    entries are packed at its start (span_begin) with length span_kept.
  at::Tensor rowptr_t = at::zeros({n + 1}, src_t.options().dtype(at::kLong));
  int64_t* rowptr = rowptr_t.data_ptr<int64_t>();
  at::Tensor col_t = at::empty({cap}, src_t.options());
  id_t* col = col_t.data_ptr<id_t>();
  const int64_t num_spans = num_groups * subs_per_group;
  std::vector<int64_t> span_begin(num_spans, 0), span_kept(num_spans, 0);
  // (not value-initialised: every slot of a group is written before it is read)
  // (a slot of slack per chunk: the branch-free append below writes one entry past its part)
  std::unique_ptr<Entry<id_t>[]> listed(new Entry<id_t>[largest + chunks]), sorted(new Entry<id_t>[largest]);
  std::vector<int64_t> sub_count(static_cast<size_t>(chunks) * subs_per_group);
  std::vector<int64_t> sub_begin(subs_per_group + 1);
  // Per thread: a sub-range's rows' counts, then their next free slots.
  const int64_t sub_rows = int64_t(1) << sub_shift;
  std::vector<int64_t> row_slots(static_cast<size_t>(threads) * sub_rows);
  for (int64_t g = 0; g < num_groups; ++g) {
    const int64_t lo = g << group_shift;
    std::vector<int64_t> offset(chunks + 1, 0);
    for (int64_t c = 0; c < chunks; ++c) offset[c + 1] = offset[c] + group_count[c * num_groups + g];
    if (offset[chunks] == 0) continue;
    std::fill(sub_count.begin(), sub_count.end(), 0);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      // (a) each chunk's entries of group g, appended in pair order to the chunk's part of the list,
      //     and counted per sub-range of rows
#pragma omp for schedule(static, 1)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t part_lo = offset[c] + c, part_hi = offset[c + 1] + c;  // parts a slot apart
        Entry<id_t>* out = listed.get() + part_lo;
        // Branch-free: both entries are always written and the end advances only past the kept
        // ones (whether a pair has an entry in g is a coin flip the branch predictor would lose).
        for (int64_t e = chunk_begin(c), end = chunk_begin(c + 1); e < end; ++e) {
          const id_t u = src[e], v = dst[e];
          const bool loop = u == v;
          *out = {v, u};
          out += !loop && (static_cast<int64_t>(v) >> group_shift) == g;
          *out = {u, v};
          out += !loop && (static_cast<int64_t>(u) >> group_shift) == g;
        }
        int64_t* mine = sub_count.data() + c * subs_per_group;
        for (int64_t i = part_lo; i < part_hi; ++i) mine[(static_cast<int64_t>(listed[i].row) - lo) >> sub_shift]++;
      }  // implicit barrier
      // (b) partitioned by sub-range: every chunk's counts become its write positions (sub-range-major,
      //     chunk-minor), then each chunk scatters its part
#pragma omp single
      {
        int64_t at = 0;
        for (int64_t s = 0; s < subs_per_group; ++s) {
          sub_begin[s] = at;
          for (int64_t c = 0; c < chunks; ++c) {
            int64_t& slot = sub_count[c * subs_per_group + s];
            const int64_t k = slot;
            slot = at;
            at += k;
          }
        }
        sub_begin[subs_per_group] = at;
      }  // implicit barrier
#pragma omp for schedule(static, 1)
      for (int64_t c = 0; c < chunks; ++c) {
        int64_t* mine = sub_count.data() + c * subs_per_group;
        for (int64_t i = offset[c] + c, end = offset[c + 1] + c; i < end; ++i) {
          const Entry<id_t> x = listed[i];
          sorted[mine[(static_cast<int64_t>(x.row) - lo) >> sub_shift]++] = x;
        }
      }  // implicit barrier
      // (c) each sub-range laid out by one thread
      int64_t* cursor = row_slots.data() + (threads > 1 ? omp_get_thread_num() : 0) * sub_rows;
#pragma omp for schedule(dynamic, 4)
      for (int64_t s = 0; s < subs_per_group; ++s) {
        const int64_t r0 = lo + (s << sub_shift), r1 = std::min(n, r0 + (int64_t(1) << sub_shift));
        const int64_t base = group_begin[g] + sub_begin[s];
        const Entry<id_t>* first = sorted.get() + sub_begin[s];
        const Entry<id_t>* last = sorted.get() + sub_begin[s + 1];
        span_begin[g * subs_per_group + s] = base;
        if (first == last) continue;
        int64_t* size = cursor;  // per row: its entry count, then its next free slot
        std::fill(size, size + (r1 - r0), 0);
        for (const Entry<id_t>* x = first; x != last; ++x) size[static_cast<int64_t>(x->row) - r0]++;
        for (int64_t r = r0, at = base; r < r1; ++r) {
          const int64_t k = size[r - r0];
          size[r - r0] = at;
          at += k;
        }
        for (const Entry<id_t>* x = first; x != last; ++x) col[size[static_cast<int64_t>(x->row) - r0]++] = x->src;
        int64_t write = base;
        for (int64_t r = r0, begin = base; r < r1; ++r) {
          const int64_t end = size[r - r0];
          std::sort(col + begin, col + end);
          const int64_t kept = std::unique(col + begin, col + end) - (col + begin);
          if (write != begin) std::memmove(col + write, col + begin, sizeof(id_t) * kept);
          rowptr[r + 1] = kept;
          write += kept;
          begin = end;
        }
        span_kept[g * subs_per_group + s] = write - base;
      }
    }
  }
  listed.reset();
  sorted.reset();

  // 3. The sub-ranges moved down to their final offsets, in order (each lands at or before its own
  //    start, after every earlier one's end), and the row offsets summed from the kept counts.
  int64_t total = 0;
  for (int64_t i = 0; i < num_spans; ++i) {
    if (span_begin[i] != total && span_kept[i] > 0) {
      std::memmove(col + total, col + span_begin[i], sizeof(id_t) * span_kept[i]);
    }
    total += span_kept[i];
  }
  for (int64_t r = 0; r < n; ++r) rowptr[r + 1] += rowptr[r];
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
