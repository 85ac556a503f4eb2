// Streaming DeepWalk: skip-gram with negative sampling trained on uniform random walks that are
// generated on the fly (never stored), as word2vec trains on each sentence as it reads it.
// Argument checks shared by every backend, and the exact update order the reference reproduces.
//
// Op semantics (gkdfast::deepwalk(rowptr, col, starts, dim, walk_length, window, negative, lr, seed,
// deterministic)); W = len(starts), L = walk_length, K = negative, word_i(k) the k-th Philox word of
// walk i (common/philox.h, domain "dw"):
//   walk i:   w_0 = starts[i]; for t = 1 .. L: stop if w_{t-1} has no in-edge, else
//             w_t = col[rowptr[w_{t-1}] + (word_i(t-1) * deg) >> 32]; m = nodes reached (1 .. L+1).
//   noise:    c_v = occurrences of v in all W walks; negatives are drawn from c_v^0.75 through a
//             Vose alias table (prob, alias) built in index order, in double.
//   init:     in[v, j] = (word(v, j) / 2^32 - 0.5) / dim (domain "di"); out = 0.
//   training: walks in index order; walk i uses a = lr * max(1e-4, 1 - i / W).  For p = 0 .. m-1
//             (centre w_p), omega = 1 + word_i(L + p) % window; for q = p - omega .. p + omega,
//             0 <= q < m, q != p (context w_q, in index order): e = 0; targets are (w_p, label 1)
//             then K draws, each from words k, k+1 (k starting at 2L + 1 and advancing by 2 per draw
//             across the whole walk): t = (word_k * N) >> 32, t = alias[t] unless word_{k+1} / 2^32 <
//             prob[t]; a draw equal to w_p is skipped.  Per target: g = a * (label - sigmoid(in[w_q] .
//             out[t])); e += g * out[t]; out[t] += g * in[w_q].  Then in[w_q] += e.
//   Returns in, [N, dim] float32.
// CUDA tensors: trained on the host, the result returns to the device.
// With deterministic = true the walks run in that order on one thread; otherwise threads take
// interleaved blocks of walks (so the learning rate follows the global progress) and update the
// shared matrices without locks (Hogwild, as word2vec), so the result depends on the timing.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// Limits that keep a walk's Philox word count below 2^34 and a node's initial vector within its own
// stream (block counters in 32 bits); gkdfast/distill/positional.py repeats them for its messages.
constexpr int64_t kDeepWalkMaxLength = 10000, kDeepWalkMaxWindow = 100, kDeepWalkMaxNegative = 100;
constexpr int64_t kDeepWalkMaxDim = int64_t{1} << 24;

// rowptr/col a valid CSR (int32/int64); starts 1-D int32/int64 on its device (range checked by the
// kernel, and every in-degree < 2^32 for the multiply-shift step draw); 1 <= dim <= 2^24 with
// N * dim <= 2^40; 1 <= walk_length <= 10^4; 1 <= window <= 100; 0 <= negative <= 100; lr > 0 and
// finite; seed >= 0; N < 2^32 (the multiply-shift noise draw).
void check_deepwalk(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& starts, int64_t dim,
                    int64_t walk_length, int64_t window, int64_t negative, double lr, int64_t seed);

}  // namespace gkdfast
