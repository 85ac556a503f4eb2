// The per-node draw of the neighbour sampler, shared by the CPU and CUDA kernels so both pick the
// same neighbours (see ops/sample_neighbors.h for the op's semantics).
#pragma once

#include <cstdint>

#include "common/macros.h"
#include "common/philox.h"

namespace gkdfast {

// Fills m sampled in-edges of node v: out_eid[s] = the chosen CSR positions in ascending order,
// out_col[s] = their source nodes.  m == deg takes every edge; otherwise Floyd's algorithm over the
// Philox words of (seed, v, hop) picks m distinct positions in [0, deg).  The chosen positions are
// kept sorted in out_eid itself (insertion; m is a fan-out, tens), so no scratch memory is needed
// and the result does not depend on how the search is done.
template <typename index_t>
GKD_HD void draw_neighbors(const index_t* rp, const index_t* cp, int64_t v, int64_t m, uint64_t seed, int64_t hop,
                           index_t* out_col, index_t* out_eid) {
  const int64_t begin = static_cast<int64_t>(rp[v]);
  const int64_t deg = static_cast<int64_t>(rp[v + 1]) - begin;
  index_t* pos = out_eid;
  if (m == deg) {
    for (int64_t p = 0; p < deg; ++p) pos[p] = static_cast<index_t>(p);
  } else {
    philox::U4 words{0, 0, 0, 0};
    for (int64_t s = 0; s < m; ++s) {
      if ((s & 3) == 0) words = philox::neighbor_words(seed, v, hop, s >> 2);
      const int64_t j = deg - m + s;
      const int64_t r = philox::word_to_range(philox::pick_word(words, s), j + 1);
      // Lower bound of r among the s sorted picks.
      int64_t lo = 0, hi = s;
      while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (static_cast<int64_t>(pos[mid]) < r) lo = mid + 1; else hi = mid;
      }
      if (lo < s && static_cast<int64_t>(pos[lo]) == r) {
        pos[s] = static_cast<index_t>(j);  // j exceeds every earlier pick: appending keeps the order
      } else {
        for (int64_t k = s; k > lo; --k) pos[k] = pos[k - 1];
        pos[lo] = static_cast<index_t>(r);
      }
    }
  }
  for (int64_t s = 0; s < m; ++s) {
    const int64_t e = begin + static_cast<int64_t>(pos[s]);
    pos[s] = static_cast<index_t>(e);
    out_col[s] = cp[e];
  }
}

}  // namespace gkdfast
