// Reductions over the in-edges of one destination row (sum / mean / max / min).
// Shared by the CPU and CUDA SpMM kernels: the semantics (identity, tie rule, empty rows)
// live here once.
#pragma once

#include <limits>
#include <string>

#include "common/macros.h"

namespace gkdfast {

enum class Reduce : int { Sum = 0, Mean = 1, Max = 2, Min = 3 };

// Parses the schema's `str reduce`; the message names the valid choices.
Reduce parse_reduce(const std::string& name);
const char* reduce_name(Reduce r);

inline bool reduce_has_arg(Reduce r) { return r == Reduce::Max || r == Reduce::Min; }

template <Reduce R, typename acc_t>
struct Reducer {
  GKD_HD static acc_t init() {
    if (R == Reduce::Max) return -std::numeric_limits<acc_t>::infinity();
    if (R == Reduce::Min) return std::numeric_limits<acc_t>::infinity();
    return acc_t(0);
  }
  // Strict comparison: among equal candidates the first edge in CSR order wins, so the
  // arg (and therefore the gradient) is deterministic and matches the reference.  The first NaN
  // message wins and sticks (torch.amax propagates NaN).
  GKD_HD static void update(acc_t& acc, acc_t v, int64_t& arg, int64_t e) {
    if (R == Reduce::Max) {
      if (v > acc || arg < 0 || (v != v && acc == acc)) { acc = v; arg = e; }
    } else if (R == Reduce::Min) {
      if (v < acc || arg < 0 || (v != v && acc == acc)) { acc = v; arg = e; }
    } else {
      acc += v;
    }
  }
  // Rows without in-edges give 0 for every reduction.
  GKD_HD static acc_t finalize(acc_t acc, int64_t count) {
    if (count == 0) return acc_t(0);
    if (R == Reduce::Mean) return acc / acc_t(count);
    return acc;
  }
};

}  // namespace gkdfast
