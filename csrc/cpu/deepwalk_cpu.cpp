// CPU streaming DeepWalk (see ops/deepwalk.h).  Memory is O(N * dim) for the two embedding matrices
// plus O(N) for the corpus counts and the alias table: the walks are regenerated from their Philox
// words instead of being stored, once to count the corpus and once to train on it.
//
// Training is Hogwild (word2vec's scheme): threads take interleaved blocks of walks and update the
// shared rows without locks.  Rows are 4*dim bytes and the graph has many more nodes than threads,
// so collisions are rare and harmless to SGD; `deterministic` runs the walks in order on one thread.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include <sys/mman.h>

#include "common/philox.h"
#include "cpu/cpu_kernels.h"
#include "ops/deepwalk.h"

namespace gkdfast {
namespace {

constexpr int64_t kWalkBlock = 16;  // walks per scheduling block (interleaved over the threads)

// Sequential words of one Philox stream, four per block (the stream of walk i or of node v's init).
class WordStream {
 public:
  WordStream(uint64_t seed, int64_t id, uint32_t domain) : seed_(seed), id_(id), domain_(domain) {}
  uint32_t operator()(int64_t k) {
    const int64_t b = k >> 2;
    if (b != block_) {
      words_ = philox::stream_words(seed_, id_, b, domain_);
      block_ = b;
    }
    return philox::pick_word(words_, k);
  }

 private:
  uint64_t seed_;
  int64_t id_;
  uint32_t domain_;
  int64_t block_ = -1;
  philox::U4 words_{0, 0, 0, 0};
};

// Walk from `start` into nodes[0 .. m), m returned; step t uses the walk's word t - 1.
template <typename index_t>
int64_t draw_walk(const index_t* rp, const index_t* cp, int64_t start, int64_t length, WordStream& words,
                  int64_t* nodes) {
  nodes[0] = start;
  int64_t m = 1;
  for (int64_t t = 1; t <= length; ++t) {
    const int64_t v = nodes[t - 1];
    const int64_t deg = static_cast<int64_t>(rp[v + 1]) - static_cast<int64_t>(rp[v]);
    if (deg == 0) break;
    nodes[m++] = static_cast<int64_t>(cp[static_cast<int64_t>(rp[v]) + philox::word_to_range(words(t - 1), deg)]);
  }
  return m;
}

// Vose's alias table over weights w (in index order, double): draw t uniform, keep it with
// probability prob[t], else take alias[t].  Each entry holds both, so a draw costs one cache miss.
class AliasTable {
 public:
  explicit AliasTable(const std::vector<double>& w) : entries_(w.size()) {
    const int64_t n = static_cast<int64_t>(w.size());
    double total = 0.0;
    for (double x : w) total += x;
    std::vector<double> scaled(n);
    std::vector<int64_t> small, large;
    for (int64_t i = 0; i < n; ++i) {
      entries_[i] = {1.0, i};
      scaled[i] = total > 0.0 ? w[i] * static_cast<double>(n) / total : 1.0;
      (scaled[i] < 1.0 ? small : large).push_back(i);
    }
    while (!small.empty() && !large.empty()) {
      const int64_t s = small.back(), l = large.back();
      small.pop_back();
      large.pop_back();
      entries_[s] = {scaled[s], l};
      scaled[l] = (scaled[l] + scaled[s]) - 1.0;
      (scaled[l] < 1.0 ? small : large).push_back(l);
    }
  }

  // A draw in two steps, so a caller can prefetch many entries before resolving any.
  int64_t candidate(uint32_t w_index) const {
    return philox::word_to_range(w_index, static_cast<int64_t>(entries_.size()));
  }
  void prefetch(int64_t t) const { __builtin_prefetch(&entries_[t], 0, 1); }
  int64_t resolve(int64_t t, uint32_t w_keep) const {
    return static_cast<double>(w_keep) * 0x1p-32 < entries_[t].prob ? t : entries_[t].alias;
  }

 private:
  struct Entry {
    double prob;
    int64_t alias;
  };
  std::vector<Entry> entries_;
};

// An [n, dim] float matrix on 2 MiB-aligned memory that the kernel is asked to back with huge pages:
// the updates hit random rows of two N x dim matrices, and with 4 KiB pages nearly every one of
// them also misses the TLB.
struct HugeMatrix {
  static constexpr size_t kAlign = size_t{1} << 21;
  float* data = nullptr;
  size_t bytes = 0;

  HugeMatrix(int64_t n, int64_t dim) {
    bytes = (static_cast<size_t>(n) * static_cast<size_t>(dim) * sizeof(float) + kAlign - 1) / kAlign * kAlign;
    if (bytes == 0) return;
    data = static_cast<float*>(std::aligned_alloc(kAlign, bytes));
    TORCH_CHECK(data != nullptr, "gkdfast.deepwalk: could not allocate ", bytes, " bytes");
    madvise(data, bytes, MADV_HUGEPAGE);  // advice only: without huge pages it still works
  }
  ~HugeMatrix() { std::free(data); }
  HugeMatrix(const HugeMatrix&) = delete;
  HugeMatrix& operator=(const HugeMatrix&) = delete;

  // Hands the memory to a tensor, which frees it.
  at::Tensor release(int64_t n, int64_t dim) {
    float* p = data;
    data = nullptr;
    if (p == nullptr) return at::empty({n, dim}, at::kFloat);
    return at::from_blob(p, {n, dim}, [](void* q) { std::free(q); }, at::TensorOptions().dtype(at::kFloat));
  }
};

inline void prefetch_row(const float* row, int64_t dim) {
  for (int64_t j = 0; j < dim; j += 16) __builtin_prefetch(row + j, 1, 1);
}

// One skip-gram target: g = a * (label - sigmoid(v . u)); e += g * u; u += g * v.
inline void sgns_update(float* v, float* u, float* e, int64_t dim, float label, float a) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < dim; ++j) dot += v[j] * u[j];
  const float g = a * (label - 1.0f / (1.0f + std::exp(-dot)));
#pragma omp simd
  for (int64_t j = 0; j < dim; ++j) {
    e[j] += g * u[j];
    u[j] += g * v[j];
  }
}

template <typename index_t, typename start_t>
at::Tensor run(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& starts, int64_t dim,
               int64_t length, int64_t window, int64_t negative, double lr, uint64_t seed, bool deterministic) {
  const int64_t n = rowptr.size(0) - 1;
  const int64_t walks = starts.size(0);
  const index_t* rp = rowptr.data_ptr<index_t>();
  const index_t* cp = col.data_ptr<index_t>();
  const start_t* sp = starts.data_ptr<start_t>();
  for (int64_t i = 0; i < walks; ++i) {
    const int64_t v = static_cast<int64_t>(sp[i]);
    TORCH_CHECK_VALUE(v >= 0 && v < n, "gkdfast.deepwalk: start node ", v, " is out of range [0, ", n, ")");
  }
  for (int64_t v = 0; v < n; ++v) {  // the step draw maps a 32-bit word onto [0, deg)
    const int64_t deg = static_cast<int64_t>(rp[v + 1]) - static_cast<int64_t>(rp[v]);
    TORCH_CHECK_VALUE(deg < philox::kRangeLimit, "gkdfast.deepwalk: node ", v, " has ", deg,
                      " in-edges; at most 2^32 - 1 are supported");
  }
  HugeMatrix in(n, dim);
  float* inp = in.data;
  const int threads = deterministic ? 1 : std::max(1, at::get_num_threads());

  // Initial input vectors (Philox per node, so any thread count writes the same values).
  at::parallel_for(0, n, 1024, [&](int64_t b, int64_t e) {
    for (int64_t v = b; v < e; ++v) {
      WordStream words(seed, v, philox::kWalkInitDomain);
      for (int64_t j = 0; j < dim; ++j)
        inp[v * dim + j] = static_cast<float>((static_cast<double>(words(j)) * 0x1p-32 - 0.5) / static_cast<double>(dim));
    }
  });
  if (walks == 0 || n == 0) return in.release(n, dim);

  // Pass 1: corpus counts (integer atomics: the same counts for any thread count).
  std::vector<int64_t> counts(n, 0);
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t> nodes(length + 1);
#pragma omp for schedule(static, kWalkBlock)
    for (int64_t i = 0; i < walks; ++i) {
      WordStream words(seed, i, philox::kWalkDomain);
      const int64_t m = draw_walk(rp, cp, static_cast<int64_t>(sp[i]), length, words, nodes.data());
      for (int64_t p = 0; p < m; ++p) __atomic_fetch_add(&counts[nodes[p]], int64_t{1}, __ATOMIC_RELAXED);
    }
  }
  std::vector<double> weight(n);
  for (int64_t v = 0; v < n; ++v) weight[v] = std::pow(static_cast<double>(counts[v]), 0.75);
  std::vector<int64_t>().swap(counts);
  const AliasTable noise(weight);
  std::vector<double>().swap(weight);

  // Pass 2: skip-gram with negative sampling, walk by walk.  A walk's (context, centre) pairs are
  // listed, then trained on in chunks of kChunk pairs: the chunk's noise draws are made first (the
  // alias lookups are independent loads the CPU overlaps), and the noise rows of a later pair are
  // prefetched while the current one updates.  Chunks keep the per-thread buffers at a fixed size
  // whatever the walk length, window and negative count; the words are still used in order.
  HugeMatrix out(n, dim);
  float* outp = out.data;
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) { std::fill(outp + b * dim, outp + e * dim, 0.0f); });
  constexpr int64_t kAhead = 2;    // pairs whose noise rows are prefetched ahead
  constexpr int64_t kChunk = 256;  // pairs whose noise draws are made at once
  // Raw OpenMP instead of at::parallel_for: schedule(static, kWalkBlock) interleaves blocks of walks
  // over the threads, so every thread's learning rate follows the global progress.  Nothing in the
  // region throws (its buffers are sized before the loop).
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t> nodes(length + 1), pairs, noise_nodes(kChunk * negative);
    std::vector<uint32_t> keep_words(kChunk * negative);
    std::vector<float> e(dim);
    pairs.reserve(static_cast<size_t>(4 * (length + 1) * window));
#pragma omp for schedule(static, kWalkBlock)
    for (int64_t i = 0; i < walks; ++i) {
      WordStream words(seed, i, philox::kWalkDomain);
      const int64_t m = draw_walk(rp, cp, static_cast<int64_t>(sp[i]), length, words, nodes.data());
      const float a = static_cast<float>(lr * std::max(1e-4, 1.0 - static_cast<double>(i) / static_cast<double>(walks)));
      pairs.clear();  // (q, p) = (context, centre) positions, in training order
      for (int64_t p = 0; p < m; ++p) {
        const int64_t omega = 1 + static_cast<int64_t>(words(length + p) % static_cast<uint32_t>(window));
        const int64_t q_end = std::min(m - 1, p + omega);
        for (int64_t q = std::max<int64_t>(0, p - omega); q <= q_end; ++q) {
          if (q != p) {
            pairs.push_back(q);
            pairs.push_back(p);
          }
        }
      }
      const int64_t num_pairs = static_cast<int64_t>(pairs.size()) / 2;
      int64_t k = 2 * length + 1;  // the next noise draw's first word
      for (int64_t c0 = 0; c0 < num_pairs; c0 += kChunk) {
        const int64_t c1 = std::min(num_pairs, c0 + kChunk);
        const int64_t draws = (c1 - c0) * negative;
        for (int64_t r = 0; r < draws; ++r, k += 2) {
          noise_nodes[r] = noise.candidate(words(k));
          keep_words[r] = words(k + 1);
          noise.prefetch(noise_nodes[r]);
        }
        for (int64_t r = 0; r < draws; ++r) noise_nodes[r] = noise.resolve(noise_nodes[r], keep_words[r]);
        for (int64_t j = c0; j < c1; ++j) {
          const int64_t* noise_of_j = noise_nodes.data() + (j - c0) * negative;
          if (j + kAhead < c1) {
            for (int64_t r = 0; r < negative; ++r) prefetch_row(outp + noise_of_j[kAhead * negative + r] * dim, dim);
          }
          const int64_t centre = nodes[pairs[2 * j + 1]];
          float* v = inp + nodes[pairs[2 * j]] * dim;
          std::fill(e.begin(), e.end(), 0.0f);
          sgns_update(v, outp + centre * dim, e.data(), dim, 1.0f, a);
          for (int64_t r = 0; r < negative; ++r) {
            if (noise_of_j[r] != centre) sgns_update(v, outp + noise_of_j[r] * dim, e.data(), dim, 0.0f, a);
          }
#pragma omp simd
          for (int64_t d = 0; d < dim; ++d) v[d] += e[d];
        }
      }
    }
  }
  return in.release(n, dim);
}

}  // namespace

at::Tensor deepwalk_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& starts_in,
                        int64_t dim, int64_t walk_length, int64_t window, int64_t negative, double lr, int64_t seed,
                        bool deterministic) {
  check_deepwalk(rowptr_in, col_in, starts_in, dim, walk_length, window, negative, lr, seed);
  const at::Tensor rowptr = rowptr_in.contiguous(), col = col_in.contiguous(), starts = starts_in.contiguous();
  const uint64_t s = static_cast<uint64_t>(seed);
  const bool col32 = col.scalar_type() == at::kInt, starts32 = starts.scalar_type() == at::kInt;
  if (col32) {
    return starts32 ? run<int32_t, int32_t>(rowptr, col, starts, dim, walk_length, window, negative, lr, s, deterministic)
                    : run<int32_t, int64_t>(rowptr, col, starts, dim, walk_length, window, negative, lr, s, deterministic);
  }
  return starts32 ? run<int64_t, int32_t>(rowptr, col, starts, dim, walk_length, window, negative, lr, s, deterministic)
                  : run<int64_t, int64_t>(rowptr, col, starts, dim, walk_length, window, negative, lr, s, deterministic);
}

}  // namespace gkdfast
