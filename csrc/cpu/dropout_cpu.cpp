// CPU dropout with a Philox mask (see ops/dropout.h).  Elements go in groups of kLanes Philox blocks
// (4 elements each), then one branch-free scale writes the group.  The words come from one of two
// places: on AVX2 machines without AVX-512, common/philox_avx2.h (hand-written, eight blocks per
// register; float32 groups are masked without leaving the registers); elsewhere the ten rounds run
// lane-parallel over plain arrays, which the compiler vectorises (well with AVX-512, see
// GKD_CPU_CLONES_AVX512).  Both give the same words.  Each thread owns a contiguous range of groups:
// deterministic, and the mask does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <type_traits>

#include "common/macros.h"
#include "common/philox.h"
#include "common/philox_avx2.h"
#include "cpu/cpu_kernels.h"
#include "ops/dropout.h"

namespace gkdfast {
namespace {

// Philox blocks per group.  32 lanes give each round more independent multiplies to overlap their
// latency: in a standalone copy of this loop, 0.54 / 0.75 ns per element with AVX-512 at 32 / 16
// lanes, 1.26 / 1.39 with AVX2 (one thread, CPU time).  The mask does not depend on the group size.
constexpr int64_t kLanes = 32;
constexpr int64_t kGroup = 4 * kLanes;      // elements per group

// The 4 * kLanes words of blocks first .. first + kLanes - 1, word j of block l at w[4 * l + j].
GKD_CPU_CLONES_AVX512 void group_words(uint64_t seed, int64_t first, uint32_t* w) {
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) {
    const uint64_t b = static_cast<uint64_t>(first + l);
    c0[l] = static_cast<uint32_t>(b);
    c1[l] = static_cast<uint32_t>(b >> 32);
    c2[l] = 0u;
    c3[l] = philox::kDropoutDomain;
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    // Without the pragma GCC leaves the widening multiplies scalar (5x slower).
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) {
      const uint64_t p0 = static_cast<uint64_t>(philox::kM0) * c0[l];
      const uint64_t p1 = static_cast<uint64_t>(philox::kM1) * c2[l];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = static_cast<uint32_t>(p1);
      c3[l] = static_cast<uint32_t>(p0);
      c0[l] = n0;
      c2[l] = n2;
    }
    k0 += philox::kW0;
    k1 += philox::kW1;
  }
  for (int64_t l = 0; l < kLanes; ++l) {
    w[4 * l] = c0[l];
    w[4 * l + 1] = c1[l];
    w[4 * l + 2] = c2[l];
    w[4 * l + 3] = c3[l];
  }
}

// Which Philox words the kernel uses, chosen once per process: the hand-written AVX2 words where they
// are the fastest we have (AVX2 present, and not the full AVX-512 set that the x86-64-v4 clone of
// group_words uses, when this compiler built that clone), else the generic ones.
// GKDFAST_CPU_PHILOX=avx2 / generic forces one (tests check both against the reference on one machine).
bool choose_avx2_words() {
  const char* env = std::getenv("GKDFAST_CPU_PHILOX");
  const std::string_view force = env != nullptr ? env : "";
#if defined(GKD_PHILOX_AVX2)
  const bool avx2 = philox::cpu_has_avx2();
#else
  const bool avx2 = false;
#endif
  if (force == "generic") return false;
  if (force == "avx2") {
    TORCH_CHECK(avx2, "GKDFAST_CPU_PHILOX=avx2: this CPU or build has no AVX2 (unset it, or set it to 'generic')");
    return true;
  }
  TORCH_CHECK(force.empty(), "GKDFAST_CPU_PHILOX must be 'avx2', 'generic' or unset, got '", force, "'");
#if defined(GKD_HAS_V4_CLONE)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return false;
#endif
  return avx2;
}

bool use_avx2_words() {
  static const bool use = choose_avx2_words();  // (a throw leaves it unset: the next call checks again)
  return use;
}

#if defined(GKD_PHILOX_AVX2)
// The dropout words of blocks b .. b + 7 in stream order (philox::in_stream_order).  Callers pass b a
// multiple of 8 (groups start at multiples of kLanes), so the low counter word never wraps among them.
__attribute__((target("avx2"))) inline void dropout_words8(uint64_t seed, uint64_t b, __m256i o[4]) {
  philox::in_stream_order(philox::philox8(static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0u,
                                          philox::kDropoutDomain, static_cast<uint32_t>(seed),
                                          static_cast<uint32_t>(seed >> 32)),
                          o);
}

// group_words' output from the AVX2 rounds.
__attribute__((target("avx2"))) void group_words_avx2(uint64_t seed, int64_t first, uint32_t* w) {
  for (int64_t v = 0; v < kLanes / 8; ++v) {
    __m256i o[4];
    dropout_words8(seed, static_cast<uint64_t>(first + 8 * v), o);
    for (int q = 0; q < 4; ++q) _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + 32 * v + 8 * q), o[q]);
  }
}

// A whole float32 group from the AVX2 words, kept in registers: out = x * (w >= threshold ? scale : 0),
// the same product as scale_group's.
__attribute__((target("avx2"))) void mask_group_f32_avx2(const float* x, float* out, uint64_t seed, int64_t first,
                                                         uint32_t threshold, float scale) {
  const __m256i thr = _mm256_set1_epi32(static_cast<int>(threshold));
  const __m256 sc = _mm256_set1_ps(scale);
  for (int64_t v = 0; v < kLanes / 8; ++v) {
    __m256i o[4];
    dropout_words8(seed, static_cast<uint64_t>(first + 8 * v), o);
    for (int q = 0; q < 4; ++q) {
      const __m256i keep = _mm256_cmpeq_epi32(_mm256_max_epu32(o[q], thr), o[q]);  // unsigned w >= threshold
      const int64_t e = 32 * v + 8 * q;
      _mm256_storeu_ps(out + e, _mm256_mul_ps(_mm256_loadu_ps(x + e), _mm256_and_ps(_mm256_castsi256_ps(keep), sc)));
    }
  }
}
#endif

// One group: x times 1 / (1 - p) where kept, times 0 where dropped (so a dropped NaN stays NaN, as
// in torch's dropout).  The factor is chosen between two constants, which the compiler if-converts;
// a select of the product it would not (the multiply may trap), and at p = 0.5 a branch mispredicts
// every other element.
template <typename scalar_t, typename acc_t>
inline void scale_group(const scalar_t* __restrict x, scalar_t* __restrict out, const uint32_t* __restrict w,
                        int64_t m, uint32_t threshold, acc_t scale) {
#pragma omp simd
  for (int64_t k = 0; k < m; ++k) {
    const acc_t f = w[k] >= threshold ? scale : acc_t(0);
    out[k] = static_cast<scalar_t>(static_cast<acc_t>(x[k]) * f);
  }
}

// Half types and float scale in float, double in double (as torch's dropout computes).
template <typename scalar_t>
void mask_range(const scalar_t* x, scalar_t* out, int64_t n, int64_t g0, int64_t g1, uint64_t seed,
                uint32_t threshold, double scale_d, [[maybe_unused]] bool avx2) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  const acc_t scale = static_cast<acc_t>(scale_d);
  uint32_t w[kGroup];
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t e0 = g * kGroup;
#if defined(GKD_PHILOX_AVX2)
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (avx2 && n - e0 >= kGroup) {
        mask_group_f32_avx2(x + e0, out + e0, seed, g * kLanes, threshold, scale);
        continue;
      }
    }
    if (avx2)
      group_words_avx2(seed, g * kLanes, w);
    else
      group_words(seed, g * kLanes, w);
#else
    group_words(seed, g * kLanes, w);
#endif
    if (n - e0 >= kGroup)  // a full group: constant trip count, vectorised
      scale_group<scalar_t, acc_t>(x + e0, out + e0, w, kGroup, threshold, scale);
    else
      scale_group<scalar_t, acc_t>(x + e0, out + e0, w, n - e0, threshold, scale);
  }
}

}  // namespace

at::Tensor dropout_cpu(const at::Tensor& x, double p, int64_t seed) {
  DropoutCall c = prepare_dropout(x, p, seed);
  if (dropout_without_mask(c)) return c.out;
  const int64_t n = c.numel();
  const int64_t groups = (n + kGroup - 1) / kGroup;
  const bool avx2 = use_avx2_words();  // outside the parallel region: it may throw on a bad setting
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "gkdfast_dropout_cpu", [&] {
    const scalar_t* xp = c.in.data_ptr<scalar_t>();
    scalar_t* op = c.out.data_ptr<scalar_t>();
    // ~64k elements per task: the Philox rounds make each element cost about a nanosecond.
    at::parallel_for(0, groups, 512, [&](int64_t g0, int64_t g1) {
      mask_range<scalar_t>(xp, op, n, g0, g1, c.seed, c.threshold, c.scale, avx2);
    });
  });
  return c.out;
}

const char* cpu_dropout_words() { return use_avx2_words() ? "avx2" : "generic"; }

}  // namespace gkdfast
