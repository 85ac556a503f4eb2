// Degree split for CSR row kernels: rows up to kHeavyDegree in-edges are handled by one warp
// each; longer rows (the hubs of power-law graphs) are pushed on a worklist by the warp kernel and
// handled afterwards by a whole block each, so one hub never leaves a single warp running long
// after the rest of the grid has finished.
//
// The worklist counter is the only atomic: it decides *which block* handles a hub, never how any
// value is computed, so outputs stay bitwise reproducible.  The host needs no synchronisation:
// at most E / (kHeavyDegree + 1) rows can be heavy, and the heavy kernel is launched with that many
// blocks, the surplus ones returning at once.
#pragma once

#include "cuda/cuda_utils.cuh"
#include <ATen/ops/zeros.h>

namespace gkdfast {
namespace cuda {

constexpr int64_t kHeavyDegree = 512;  // longest row a single warp takes on
constexpr int kHeavyWarps = 8;         // warps per block on a heavy row

// Device view of the worklist: list[0] is the counter, list[1..] the heavy rows.
struct HeavyRows {
  int64_t* list = nullptr;  // nullptr: no row can be heavy, the warp kernel takes every row
  int64_t capacity = 0;     // blocks the heavy kernel is launched with

  __device__ __forceinline__ bool is_heavy(int64_t degree) const {
    return list != nullptr && degree > kHeavyDegree;
  }
  __device__ __forceinline__ void push(int64_t row) const {
    const auto slot = atomicAdd(reinterpret_cast<unsigned long long*>(list), 1ull);
    // Cannot overflow for a consistent CSR (rowptr[N] == E); the guard keeps a malformed one in bounds.
    if (static_cast<int64_t>(slot) < capacity) list[1 + slot] = row;
  }
  // Row for heavy block b, or -1 when there are fewer heavy rows than blocks.
  __device__ __forceinline__ int64_t row(int64_t b) const {
    const int64_t count = *reinterpret_cast<volatile int64_t*>(list);
    return b < count && b < capacity ? list[1 + b] : -1;
  }
};

// Owns the worklist storage for one op call (the tensor must outlive the launches; the caching
// allocator makes that cheap).
struct HeavyRowsBuffer {
  at::Tensor storage;
  HeavyRows view;

  HeavyRowsBuffer(int64_t num_rows, int64_t num_edges, const at::TensorOptions& like) {
    const int64_t cap = std::min<int64_t>(num_rows, num_edges / (kHeavyDegree + 1));
    if (cap <= 0) return;
    storage = at::zeros({cap + 1}, like.dtype(at::kLong));
    view.list = storage.data_ptr<int64_t>();
    view.capacity = cap;
  }
  bool any() const { return view.capacity > 0; }
};

}  // namespace cuda
}  // namespace gkdfast
