// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11), written once for CPU and
// CUDA so both backends draw bit-identical sampled negatives from (seed, row, k) alone: no
// index tensor is ever stored between forward and backward, the backward simply re-draws.
//
// Negative k of row i: counter = (lo32(i), hi32(i), k / 4, 0x6E656700 "neg"), key = (lo32(seed),
// hi32(seed)); word k % 4 of the output, r, becomes an index in [0, n-1) by the multiply-shift
// map (r * (n-1)) >> 32, and indices >= i are shifted up by one so that i itself is never drawn.
// (The multiply-shift map has a relative bias below n / 2^32, negligible for n < 2^31.)
// gkdfast/reference/contrastive.py holds a pure-Python copy (the reference and the tests use it).
//
// Neighbour sampling (ops/sample_neighbors.h) uses its own domain so its stream never overlaps the
// negatives': draw s of node v at hop h: counter = (lo32(v), hi32(v), s / 4, 0x6E620000 | h) ("nb"),
// same key; gkdfast/reference/sampling.py holds its pure-Python copy.
//
// Dropout (ops/dropout.h) has a third domain: element e of the flattened tensor takes word e % 4 of
// the block with counter = (lo32(e / 4), hi32(e / 4), 0, 0x64720000 "dr"), same key;
// gkdfast/reference/dropout.py holds its vectorised copy.
//
// DeepWalk (ops/deepwalk.h) has two: walk i's k-th word is word k % 4 of the block with counter
// (lo32(i), hi32(i), k / 4, 0x64770000 "dw"); the initial input vector entry (v, j) is word j % 4 of
// the block with counter (lo32(v), hi32(v), j / 4, 0x64690000 "di"), same key;
// gkdfast/reference/deepwalk.py holds its pure-Python copy.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace gkdfast {
namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
constexpr uint32_t kNegDomain = 0x6E656700u;
constexpr uint32_t kNeighborDomain = 0x6E620000u;  // | hop (hop < 2^16)
constexpr uint32_t kDropoutDomain = 0x64720000u;
constexpr uint32_t kWalkDomain = 0x64770000u;
constexpr uint32_t kWalkInitDomain = 0x64690000u;

struct U4 {
  uint32_t x, y, z, w;
};

GKD_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

GKD_HD U4 philox4x32_10(U4 c, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c.x, hi0, lo0);
    mulhilo(kM1, c.z, hi1, lo1);
    c = U4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// Four raw words for negatives 4*q .. 4*q+3 of row i.
GKD_HD U4 negative_words(uint64_t seed, int64_t row, int64_t q) {
  const uint64_t r = static_cast<uint64_t>(row);
  return philox4x32_10(U4{static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32), static_cast<uint32_t>(q),
                          kNegDomain},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

GKD_HD uint32_t pick_word(const U4& u, int64_t k) {
  switch (k & 3) {
    case 0: return u.x;
    case 1: return u.y;
    case 2: return u.z;
    default: return u.w;
  }
}

// The draws below map one 32-bit word onto a range by multiply-shift: uniform only over fewer than
// kRangeLimit values (node counts, degrees, candidate counts are checked against it by the ops).
constexpr int64_t kRangeLimit = int64_t{1} << 32;

// Maps a raw word to an index in [0, n) \ {row}; needs n >= 2.
GKD_HD int64_t word_to_index(uint32_t word, int64_t n, int64_t row) {
  const int64_t j = static_cast<int64_t>((static_cast<uint64_t>(word) * static_cast<uint64_t>(n - 1)) >> 32);
  return j + (j >= row ? 1 : 0);
}

// Negative k of row i among n nodes (n >= 2).
GKD_HD int64_t negative_index(uint64_t seed, int64_t row, int64_t k, int64_t n) {
  return word_to_index(pick_word(negative_words(seed, row, k >> 2), k), n, row);
}

// Four raw words for draws 4*q .. 4*q+3 of node v's neighbour sample at hop `hop`.
GKD_HD U4 neighbor_words(uint64_t seed, int64_t node, int64_t hop, int64_t q) {
  const uint64_t r = static_cast<uint64_t>(node);
  return philox4x32_10(U4{static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32), static_cast<uint32_t>(q),
                          kNeighborDomain | static_cast<uint32_t>(hop & 0xFFFF)},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Four raw words for elements 4*block .. 4*block+3 of a dropout mask.
GKD_HD U4 dropout_words(uint64_t seed, int64_t block) {
  const uint64_t b = static_cast<uint64_t>(block);
  return philox4x32_10(U4{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0u, kDropoutDomain},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Four raw words 4*block .. 4*block+3 of the stream keyed by (id, domain): a DeepWalk walk's
// words (domain kWalkDomain, id = walk) or a node's initial vector (kWalkInitDomain, id = node).
GKD_HD U4 stream_words(uint64_t seed, int64_t id, int64_t block, uint32_t domain) {
  const uint64_t r = static_cast<uint64_t>(id);
  return philox4x32_10(U4{static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32), static_cast<uint32_t>(block),
                          domain},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Maps a raw word to [0, n) by multiply-shift (n <= 2^32).
GKD_HD int64_t word_to_range(uint32_t word, int64_t n) {
  return static_cast<int64_t>((static_cast<uint64_t>(word) * static_cast<uint64_t>(n)) >> 32);
}

}  // namespace philox
}  // namespace gkdfast
