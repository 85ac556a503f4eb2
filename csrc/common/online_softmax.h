// Online (streaming) log-sum-exp, FlashAttention / Milakov-Gimelshein style: one pass, a running
// maximum and a rescaled running sum.  Used by edge_softmax, LSP and every tiled pairwise loss.
#pragma once

#include <cmath>
#include <limits>

#include "common/macros.h"

namespace gkdfast {

template <typename acc_t>
struct OnlineLSE {
  acc_t max = -std::numeric_limits<acc_t>::infinity();
  acc_t sum = acc_t(0);

  GKD_HD void add(acc_t x) {
    // exp(-inf) = 0 adds nothing; taken on its own, since with max still -inf, x - max is NaN.
    if (x == -std::numeric_limits<acc_t>::infinity()) return;
    if (x > max) {
      sum = sum * std::exp(max - x) + acc_t(1);
      max = x;
    } else {
      sum += std::exp(x - max);
    }
  }
  // Merge another partial state (for tiles processed separately).
  GKD_HD void merge(const OnlineLSE& o) {
    if (o.sum == acc_t(0)) return;
    if (sum == acc_t(0)) { *this = o; return; }
    if (o.max > max) {
      sum = sum * std::exp(max - o.max) + o.sum;
      max = o.max;
    } else {
      sum += o.sum * std::exp(o.max - max);
    }
  }
  // log(sum_k exp(x_k)); -inf for an empty set.
  GKD_HD acc_t value() const {
    return sum == acc_t(0) ? -std::numeric_limits<acc_t>::infinity() : max + std::log(sum);
  }
};

}  // namespace gkdfast
