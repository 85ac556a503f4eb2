#include "ops/csr_validation.h"

#include <ATen/TensorOperators.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/core/StorageImpl.h>
#include <c10/util/intrusive_ptr.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/stack.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <memory>
#include <cstring>
#include <mutex>
#include <vector>

namespace gkdfast {
namespace {

// ------------------------------------------------------------------ remembered successes
// A validated set of tensors is remembered by (storage, offset, size, version) of each; the
// storages are held weakly, so a freed array can never be mistaken for a new one at the same
// address.  A handful of entries covers a training loop (a graph, its transpose, a sampled block).
struct TensorStamp {
  c10::weak_intrusive_ptr<c10::StorageImpl> storage{c10::intrusive_ptr<c10::StorageImpl>()};
  const void* storage_raw = nullptr;
  int64_t offset = 0, numel = 0;
  uint32_t version = 0;
  at::ScalarType dtype = at::kLong;

  static TensorStamp of(const at::Tensor& t) {
    TensorStamp s;
    if (t.has_storage()) {
      s.storage = c10::weak_intrusive_ptr<c10::StorageImpl>(t.storage().getWeakStorageImpl());
      s.storage_raw = t.storage().unsafeGetStorageImpl();
    }
    s.offset = t.storage_offset();
    s.numel = t.numel();
    s.version = t._version();
    s.dtype = t.scalar_type();
    return s;
  }

  bool matches(const at::Tensor& t) const {
    if (!t.has_storage() || t.storage().unsafeGetStorageImpl() != storage_raw) return false;
    auto alive = storage.lock();  // null once the validated storage was freed
    return alive.get() == storage_raw && t.storage_offset() == offset && t.numel() == numel &&
           t._version() == version && t.scalar_type() == dtype && t.is_contiguous();
  }
};

struct Entry {
  int kind = -1;       // which check passed
  int64_t extra = 0;   // its scalar argument (num_cols, num_entries)
  std::vector<TensorStamp> stamps;
};

constexpr size_t kRemembered = 16;
// CPU arrays shorter than this in total are remembered in a ring of their own: a run that makes many
// small graphs (sampled blocks, every step) must not push a large graph out of its 16 entries and have
// its check repeated each step (spmm 8.2 -> 10.8 ms on 4M edges, d = 4).  Not remembering them at all
// cost a Cora-sized graph's every call a CSR and a transpose check, about two thirds of a small spmm's
// time (96.7 against 36.1 us).  (On other devices every check goes to the main ring: there it costs
// kernel launches and a synchronisation.)
constexpr int64_t kMinRememberedElements = int64_t{1} << 16;

struct Ring {
  std::vector<Entry> entries;
  size_t next = 0;
  void add(Entry e) {
    if (entries.size() < kRemembered) {
      entries.push_back(std::move(e));
    } else {
      entries[next] = std::move(e);
      next = (next + 1) % kRemembered;
    }
  }
};
std::mutex g_mutex;
Ring g_large, g_small;
std::atomic<int64_t> g_checks_run{0};  // checks run in full (not remembered): read by the tests

// Tensors made under torch.inference_mode() have no version counter (reading it throws), so a change
// to them cannot be detected: they are validated on every call instead of remembered.
bool any_inference(std::initializer_list<at::Tensor> ts) {
  for (const auto& t : ts) {
    if (t.is_inference()) return true;
  }
  return false;
}

bool remembered(int kind, int64_t extra, std::initializer_list<at::Tensor> ts) {
  if (any_inference(ts)) return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  for (const Ring* ring : {&g_large, &g_small}) {
    for (const auto& e : ring->entries) {
      if (e.kind != kind || e.extra != extra || e.stamps.size() != ts.size()) continue;
      bool all = true;
      size_t i = 0;
      for (const auto& t : ts) all = all && e.stamps[i++].matches(t);
      if (all) return true;
    }
  }
  return false;
}

void remember(int kind, int64_t extra, std::initializer_list<at::Tensor> ts) {
  if (any_inference(ts)) return;
  int64_t elements = 0;
  bool on_cpu = true;
  for (const auto& t : ts) {
    elements += t.numel();
    on_cpu = on_cpu && t.device().is_cpu();
  }
  Entry e;
  e.kind = kind;
  e.extra = extra;
  for (const auto& t : ts) {
    if (!t.is_contiguous()) return;  // stamps describe contiguous arrays only
    e.stamps.push_back(TensorStamp::of(t));
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  (on_cpu && elements < kMinRememberedElements ? g_small : g_large).add(std::move(e));
}

enum Kind { kCsr = 0, kRowptr = 1, kTranspose = 2 };

// Tests force the ATen (non-CPU) path on CPU tensors to exercise it without a GPU.
bool use_aten_path(const at::Tensor& t) {
  if (!t.device().is_cpu()) return true;
  const char* env = std::getenv("GKDFAST_VALIDATE_ATEN");
  return env != nullptr && env[0] == '1';
}

constexpr int64_t kNone = std::numeric_limits<int64_t>::max();

// First index in [0, n) for which bad(i) holds, or kNone; parallel, deterministic result.
template <typename F>
int64_t first_bad(int64_t n, F bad) {
  if (n <= 0) return kNone;
  const int64_t grain = 1 << 15;
  const int64_t chunks = (n + grain - 1) / grain;
  std::vector<int64_t> first(chunks, kNone);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t end = std::min(n, (c + 1) * grain);
      for (int64_t i = c * grain; i < end; ++i) {
        if (bad(i)) {
          first[c] = i;
          break;
        }
      }
    }
  });
  for (int64_t v : first)
    if (v != kNone) return v;
  return kNone;
}

// What a rowptr's last entry counts, by the caller's name for it: a graph's edges, for a pooling `ptr`
// the rows of x, for edge_softmax's "scores' graph" the edges its scores have one row each for.
const char* counted(const char* what) {
  if (std::strcmp(what, "ptr") == 0) return "rows of x";
  return std::strcmp(what, "scores' graph") == 0 ? "edges (one per row of scores)" : "edges";
}

// How to get a transposed CSR that agrees with its graph (both transposed-CSR checks end with it).
constexpr const char* kRebuildTranspose =
    "build it with gkdfast.Graph.transpose_csr() of a Graph whose rowptr / col were not edited after it was "
    "made (a Graph caches its transpose: build a new Graph instead; a Graph made with Graph.from_csr keeps the "
    "rowptr and col it was given, so editing those tensors edits the graph)";

// ------------------------------------------------------------------ CPU passes
template <typename index_t>
void rowptr_cpu(const index_t* rp, int64_t rows, int64_t num_entries, const char* op, const char* what) {
  TORCH_CHECK_VALUE(rp[0] == 0, "gkdfast.", op, ": ", what, " rowptr[0] must be 0, got ", int64_t(rp[0]));
  const int64_t bad = first_bad(rows, [&](int64_t i) { return rp[i + 1] < rp[i]; });
  TORCH_CHECK_VALUE(bad == kNone, "gkdfast.", op, ": ", what, " rowptr must not decrease, but rowptr[", bad + 1,
                    "] = ", bad == kNone ? 0 : int64_t(rp[bad + 1]), " < rowptr[", bad, "] = ",
                    bad == kNone ? 0 : int64_t(rp[bad]));
  TORCH_CHECK_VALUE(int64_t(rp[rows]) == num_entries, "gkdfast.", op, ": ", what, " rowptr[-1] = ",
                    int64_t(rp[rows]), " must equal the number of ", counted(what), ", ", num_entries);
}

template <typename index_t>
void col_cpu(const index_t* cl, int64_t e, int64_t num_cols, const char* op, const char* what) {
  const int64_t bad = first_bad(e, [&](int64_t k) { return cl[k] < 0 || int64_t(cl[k]) >= num_cols; });
  TORCH_CHECK_VALUE(bad == kNone, "gkdfast.", op, ": ", what, " col[", bad, "] = ",
                    bad == kNone ? 0 : int64_t(cl[bad]), " is outside [0, ", num_cols, ")");
}

template <typename index_t>
void transpose_cpu(const index_t* rp, const index_t* cl, const index_t* trp, const index_t* tcl,
                   const index_t* teid, int64_t n, int64_t e, const char* op) {  // n: rows of the transpose
  // rows of the transposed CSR are the forward CSR's columns: a k -> row lookup per entry would
  // need a search, so walk rows and test each entry of the row.
  std::unique_ptr<std::atomic<uint8_t>[]> seen(new std::atomic<uint8_t>[e > 0 ? e : 1]);
  at::parallel_for(0, e, 1 << 16, [&](int64_t a, int64_t b) {
    for (int64_t k = a; k < b; ++k) seen[k].store(0, std::memory_order_relaxed);
  });
  std::vector<int64_t> first(n > 0 ? n : 1, kNone);
  at::parallel_for(0, n, 1 << 12, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      for (int64_t k = trp[j]; k < trp[j + 1]; ++k) {
        const int64_t eid = teid[k], i = tcl[k];
        const bool ok = eid >= 0 && eid < e && int64_t(cl[eid]) == j && rp[i] <= eid && eid < rp[i + 1] &&
                        seen[eid].exchange(1, std::memory_order_relaxed) == 0;
        if (!ok) {
          first[j] = k;
          break;
        }
      }
    }
  });
  int64_t bad = kNone;
  for (int64_t v : first) bad = std::min(bad, v);
  TORCH_CHECK_VALUE(bad == kNone, "gkdfast.", op, ": the transposed CSR disagrees with the graph at entry ", bad,
                    " (t_eid must be a permutation of the edges with col[t_eid[k]] == the transposed row of k "
                    "and t_eid[k] inside row t_col[k]); ", kRebuildTranspose);
}

// ------------------------------------------------------------------ ATen passes (any device)
// Each returns a 0-dim bool "ok" tensor on the input's device; callers read them back at once.
at::Tensor rowptr_ok_aten(const at::Tensor& rp, int64_t num_entries) {
  auto r = rp.to(at::kLong);
  auto ok = (r.select(0, 0) == 0).logical_and(r.select(0, r.size(0) - 1) == num_entries);
  if (r.size(0) > 1) ok = ok.logical_and((r.slice(0, 1) >= r.slice(0, 0, -1)).all());
  return ok;
}

at::Tensor col_ok_aten(const at::Tensor& cl, int64_t num_cols) {
  if (cl.numel() == 0) return at::ones({}, cl.options().dtype(at::kBool));
  auto c = cl.to(at::kLong);
  return (c.min() >= 0).logical_and(c.max() < num_cols);
}

}  // namespace

void validate_rowptr(const at::Tensor& rowptr, int64_t num_entries, const char* op, const char* what) {
  if (remembered(kRowptr, num_entries, {rowptr})) return;
  g_checks_run.fetch_add(1, std::memory_order_relaxed);
  const int64_t rows = rowptr.size(0) - 1;
  if (use_aten_path(rowptr)) {
    TORCH_CHECK_VALUE(rowptr_ok_aten(rowptr, num_entries).item<bool>(), "gkdfast.", op, ": ", what,
                      " rowptr must start at 0, never decrease and end at the number of ", counted(what), ", ",
                      num_entries);
  } else {
    const auto rp = rowptr.contiguous();
    AT_DISPATCH_INDEX_TYPES(rp.scalar_type(), "gkdfast_validate_rowptr",
                            [&] { rowptr_cpu(rp.data_ptr<index_t>(), rows, num_entries, op, what); });
  }
  remember(kRowptr, num_entries, {rowptr});
}

void validate_csr(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_cols, const char* op,
                  const char* what) {
  if (remembered(kCsr, num_cols, {rowptr, col})) return;
  g_checks_run.fetch_add(1, std::memory_order_relaxed);
  const int64_t rows = rowptr.size(0) - 1, e = col.size(0);
  if (use_aten_path(rowptr)) {
    auto flags = at::stack({rowptr_ok_aten(rowptr, e), col_ok_aten(col, num_cols)}).cpu();
    const bool* f = flags.data_ptr<bool>();
    TORCH_CHECK_VALUE(f[0], "gkdfast.", op, ": ", what, " rowptr must start at 0, never decrease and end at the "
                      "number of edges ", e);
    TORCH_CHECK_VALUE(f[1], "gkdfast.", op, ": ", what, " col has an index outside [0, ", num_cols, ")");
  } else {
    const auto rp = rowptr.contiguous();
    const auto cl = col.contiguous();
    AT_DISPATCH_INDEX_TYPES(rp.scalar_type(), "gkdfast_validate_csr", [&] {
      rowptr_cpu(rp.data_ptr<index_t>(), rows, e, op, what);
      col_cpu(cl.data_ptr<index_t>(), e, num_cols, op, what);
    });
  }
  remember(kCsr, num_cols, {rowptr, col});
}

void validate_transpose(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                        const at::Tensor& t_col, const at::Tensor& t_eid, const char* op) {
  // n rows and nt columns (the transpose's rows): equal for a graph, not for a feature matrix (csr_mm)
  const int64_t n = rowptr.size(0) - 1, nt = t_rowptr.size(0) - 1, e = col.size(0);
  if (remembered(kTranspose, n, {rowptr, col, t_rowptr, t_col, t_eid})) return;
  g_checks_run.fetch_add(1, std::memory_order_relaxed);
  validate_csr(t_rowptr, t_col, n, op, "transposed graph");
  if (use_aten_path(rowptr)) {
    auto ok = at::ones({}, rowptr.options().dtype(at::kBool));
    if (e > 0) {
      auto eid = t_eid.to(at::kLong);
      auto in_range = (eid.min() >= 0).logical_and(eid.max() < e);
      auto safe = eid.clamp(0, e - 1);  // gathers below stay in bounds even when in_range is false
      auto ids = at::arange(n, rowptr.options().dtype(at::kLong));
      auto t_ids = at::arange(nt, rowptr.options().dtype(at::kLong));
      auto t_row = at::repeat_interleave(t_ids, (t_rowptr.slice(0, 1) - t_rowptr.slice(0, 0, -1)).to(at::kLong), 0, e);
      auto dst = at::repeat_interleave(ids, (rowptr.slice(0, 1) - rowptr.slice(0, 0, -1)).to(at::kLong), 0, e);
      auto perm = at::bincount(safe, {}, e).eq(1).all();
      auto src_ok = col.to(at::kLong).index_select(0, safe).eq(t_row).all();
      auto dst_ok = dst.index_select(0, safe).eq(t_col.to(at::kLong)).all();
      ok = in_range.logical_and(perm).logical_and(src_ok).logical_and(dst_ok);
    }
    TORCH_CHECK_VALUE(ok.item<bool>(), "gkdfast.", op, ": the transposed CSR disagrees with the graph (t_eid "
                      "must be a permutation of the edges consistent with col and rowptr); ", kRebuildTranspose);
  } else {
    const auto rp = rowptr.contiguous(), cl = col.contiguous(), trp = t_rowptr.contiguous(),
               tcl = t_col.contiguous(), teid = t_eid.contiguous();
    AT_DISPATCH_INDEX_TYPES(rp.scalar_type(), "gkdfast_validate_transpose", [&] {
      transpose_cpu(rp.data_ptr<index_t>(), cl.data_ptr<index_t>(), trp.data_ptr<index_t>(),
                    tcl.data_ptr<index_t>(), teid.data_ptr<index_t>(), nt, e, op);
    });
  }
  remember(kTranspose, n, {rowptr, col, t_rowptr, t_col, t_eid});
}

void validate_arg_edges(const at::Tensor& arg, const at::Tensor& rowptr, const char* op, const char* producer) {
  const int64_t n = arg.size(0), d = arg.dim() == 2 ? arg.size(1) : 1;
  if (n == 0 || d == 0) return;
  if (use_aten_path(arg)) {
    auto r = rowptr.to(at::kLong);
    auto lo = r.slice(0, 0, -1).unsqueeze(1), hi = r.slice(0, 1).unsqueeze(1);
    auto ok = arg.eq(-1).logical_or(arg.ge(lo).logical_and(arg.lt(hi))).all();
    TORCH_CHECK_VALUE(ok.item<bool>(), "gkdfast.", op, ": arg holds an entry outside its row (each arg[i, f] must "
                      "be -1 or in [rowptr[i], rowptr[i+1])); pass the arg returned by ", producer);
    return;
  }
  const auto a = arg.contiguous();
  const int64_t* ap = a.data_ptr<int64_t>();
  AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "gkdfast_validate_arg", [&] {
    const auto rp_t = rowptr.contiguous();
    const index_t* rp = rp_t.data_ptr<index_t>();
    const int64_t bad = first_bad(n, [&](int64_t i) {
      const int64_t lo = rp[i], hi = rp[i + 1];
      for (int64_t f = 0; f < d; ++f) {
        const int64_t v = ap[i * d + f];
        if (v != -1 && (v < lo || v >= hi)) return true;
      }
      return false;
    });
    TORCH_CHECK_VALUE(bad == kNone, "gkdfast.", op, ": arg row ", bad, " holds an edge outside [rowptr[", bad,
                      "], rowptr[", bad, "+1]) (each entry must be -1 or an entry of its row); pass the arg "
                      "returned by ", producer);
  });
}

int64_t csr_checks_run() { return g_checks_run.load(std::memory_order_relaxed); }

}  // namespace gkdfast
