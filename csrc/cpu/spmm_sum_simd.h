// Register-blocked float32 rows for SpMM sum / mean / weighted sum (x86-64, GCC).
//
// The generic kernel keeps a row's output in L1 and calls a vector add per edge, so every edge
// loads *and stores* the whole output row.  Here a row is cut into feature blocks of up to 8
// vectors (128 floats with AVX-512, 64 with AVX2); a block's accumulators live in registers while
// the row's in-edges stream through, and the block is stored once.  The summation order of every
// output element is unchanged (edges in CSR order, the first edge initialises, mean multiplies by
// 1/deg, a weight is a multiply then an add: no FMA, as vec::axpy under ISO C++'s fp-contract=off),
// so results are bitwise the same as the generic kernel on any x86 CPU, for any thread count.
//
// Gcn = true is spmm_gcn (spmm_gcn_cpu.cpp): each gathered row is first scaled by its node's dinv,
// and the row ends as dinv[i] * (acc + dinv[i] * x[i]), the multiplies and adds of spmm(norm="gcn")'s
// composite dinv * (spmm(x * dinv) + x * dinv) in the same order, so the fused op gives its bits.
//
// Both functions are compiled for their ISA with target attributes and picked at run time, so the
// build stays portable; they return false when the CPU (or compiler) has neither ISA.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__CUDACC__)
#define GKD_SPMM_SIMD 1
#include <immintrin.h>
#endif

namespace gkdfast {
namespace spmm_simd {

// How many edges ahead the gather prefetches: measured best among 0/2/4/8/16 on the 200k/4M
// power-law graph (a row is 8 cache lines at d = 128, so 4 rows = 32 lines in flight).
constexpr int64_t kPrefetchEdges = 4;

#ifdef GKD_SPMM_SIMD
inline void prefetch_bytes(const float* p, int64_t bytes) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

// One feature block [f0, f0 + 16*NV) of rows [begin, end), the last vector masked by `tail`.
// NV is a template parameter so the accumulators are a fixed register array; Tail = false when the
// last vector is full (plain loads: AVX2 masked loads are slower).
template <int NV, bool Tail, bool Gcn, typename index_t>
__attribute__((target("avx512f"), optimize("fp-contract=off"))) void block_avx512(const index_t* rowptr, const index_t* col, const float* w,
                                                      const float* dinv, const float* x, float* out, int64_t i,
                                                      int64_t d, int64_t f0, int64_t last, bool mean,
                                                      int64_t pf_bytes, int64_t chunk_end) {
  const __mmask16 tail = static_cast<__mmask16>((1u << last) - 1u);  // lanes of the last vector
  const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
  __m512 acc[NV];
  const float* xr = x + static_cast<int64_t>(col[e0]) * d + f0;
  const __m512 w0 = _mm512_set1_ps(w ? w[e0] : 1.0f);
  const __m512 s0 = _mm512_set1_ps(Gcn ? dinv[col[e0]] : 1.0f);
#pragma GCC unroll 8
  for (int k = 0; k < NV; ++k) {
    __m512 v = k + 1 < NV || !Tail ? _mm512_loadu_ps(xr + 16 * k) : _mm512_maskz_loadu_ps(tail, xr + 16 * k);
    if (Gcn) v = _mm512_mul_ps(v, s0);
    acc[k] = w ? _mm512_mul_ps(w0, v) : v;
  }
  for (int64_t e = e0 + 1; e < e1; ++e) {
    if (pf_bytes && e + kPrefetchEdges < chunk_end)
      prefetch_bytes(x + static_cast<int64_t>(col[e + kPrefetchEdges]) * d + f0, pf_bytes);
    const float* xe = x + static_cast<int64_t>(col[e]) * d + f0;
    const __m512 se = _mm512_set1_ps(Gcn ? dinv[col[e]] : 1.0f);
    if (w) {
      const __m512 we = _mm512_set1_ps(w[e]);
#pragma GCC unroll 8
      for (int k = 0; k < NV; ++k) {
        __m512 v = k + 1 < NV || !Tail ? _mm512_loadu_ps(xe + 16 * k) : _mm512_maskz_loadu_ps(tail, xe + 16 * k);
        if (Gcn) v = _mm512_mul_ps(v, se);
        acc[k] = _mm512_add_ps(acc[k], _mm512_mul_ps(we, v));
      }
    } else {
#pragma GCC unroll 8
      for (int k = 0; k < NV; ++k) {
        __m512 v = k + 1 < NV || !Tail ? _mm512_loadu_ps(xe + 16 * k) : _mm512_maskz_loadu_ps(tail, xe + 16 * k);
        if (Gcn) v = _mm512_mul_ps(v, se);
        acc[k] = _mm512_add_ps(acc[k], v);
      }
    }
  }
  const __m512 inv = _mm512_set1_ps(1.0f / static_cast<float>(e1 - e0));
  const __m512 di = _mm512_set1_ps(Gcn ? dinv[i] : 1.0f);
  const float* xi = x + i * d + f0;
  float* o = out + i * d + f0;
#pragma GCC unroll 8
  for (int k = 0; k < NV; ++k) {
    __m512 r = mean ? _mm512_mul_ps(acc[k], inv) : acc[k];
    if (Gcn) {  // dinv[i] * (acc + dinv[i] * x[i])
      const __m512 xv = k + 1 < NV || !Tail ? _mm512_loadu_ps(xi + 16 * k) : _mm512_maskz_loadu_ps(tail, xi + 16 * k);
      r = _mm512_mul_ps(_mm512_add_ps(r, _mm512_mul_ps(xv, di)), di);
    }
    if (k + 1 < NV || !Tail) _mm512_storeu_ps(o + 16 * k, r); else _mm512_mask_storeu_ps(o + 16 * k, tail, r);
  }
}

template <int NV, bool Tail, bool Gcn, typename index_t>
__attribute__((target("avx2,fma"), optimize("fp-contract=off"))) void block_avx2(const index_t* rowptr, const index_t* col, const float* w,
                                                     const float* dinv, const float* x, float* out, int64_t i,
                                                     int64_t d, int64_t f0, int64_t last, bool mean,
                                                     int64_t pf_bytes, int64_t chunk_end) {
  const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(last)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));  // lanes of the last vector
  const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
  __m256 acc[NV];
  const float* xr = x + static_cast<int64_t>(col[e0]) * d + f0;
  const __m256 w0 = _mm256_set1_ps(w ? w[e0] : 1.0f);
  const __m256 s0 = _mm256_set1_ps(Gcn ? dinv[col[e0]] : 1.0f);
#pragma GCC unroll 8
  for (int k = 0; k < NV; ++k) {
    __m256 v = k + 1 < NV || !Tail ? _mm256_loadu_ps(xr + 8 * k) : _mm256_maskload_ps(xr + 8 * k, tail);
    if (Gcn) v = _mm256_mul_ps(v, s0);
    acc[k] = w ? _mm256_mul_ps(w0, v) : v;
  }
  for (int64_t e = e0 + 1; e < e1; ++e) {
    if (pf_bytes && e + kPrefetchEdges < chunk_end)
      prefetch_bytes(x + static_cast<int64_t>(col[e + kPrefetchEdges]) * d + f0, pf_bytes);
    const float* xe = x + static_cast<int64_t>(col[e]) * d + f0;
    const __m256 se = _mm256_set1_ps(Gcn ? dinv[col[e]] : 1.0f);
    if (w) {
      const __m256 we = _mm256_set1_ps(w[e]);
#pragma GCC unroll 8
      for (int k = 0; k < NV; ++k) {
        __m256 v = k + 1 < NV || !Tail ? _mm256_loadu_ps(xe + 8 * k) : _mm256_maskload_ps(xe + 8 * k, tail);
        if (Gcn) v = _mm256_mul_ps(v, se);
        acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(we, v));
      }
    } else {
#pragma GCC unroll 8
      for (int k = 0; k < NV; ++k) {
        __m256 v = k + 1 < NV || !Tail ? _mm256_loadu_ps(xe + 8 * k) : _mm256_maskload_ps(xe + 8 * k, tail);
        if (Gcn) v = _mm256_mul_ps(v, se);
        acc[k] = _mm256_add_ps(acc[k], v);
      }
    }
  }
  const __m256 inv = _mm256_set1_ps(1.0f / static_cast<float>(e1 - e0));
  const __m256 di = _mm256_set1_ps(Gcn ? dinv[i] : 1.0f);
  const float* xi = x + i * d + f0;
  float* o = out + i * d + f0;
#pragma GCC unroll 8
  for (int k = 0; k < NV; ++k) {
    __m256 r = mean ? _mm256_mul_ps(acc[k], inv) : acc[k];
    if (Gcn) {  // dinv[i] * (acc + dinv[i] * x[i])
      const __m256 xv = k + 1 < NV || !Tail ? _mm256_loadu_ps(xi + 8 * k) : _mm256_maskload_ps(xi + 8 * k, tail);
      r = _mm256_mul_ps(_mm256_add_ps(r, _mm256_mul_ps(xv, di)), di);
    }
    if (k + 1 < NV || !Tail) _mm256_storeu_ps(o + 8 * k, r); else _mm256_maskstore_ps(o + 8 * k, tail, r);
  }
}

// Rows [begin, end): every row's feature blocks in turn.  The first block of a row prefetches the
// whole upcoming neighbour row when it is at most 1 KiB (d <= 256), else each block prefetches its
// own part, so the number of lines in flight stays bounded for wide features.
template <bool Avx512, bool Gcn = false, typename index_t>
void rows(const index_t* rowptr, const index_t* col, const float* w, const float* x, float* out, int64_t begin,
          int64_t end, int64_t d, bool mean, const float* dinv = nullptr) {
  constexpr int64_t lanes = Avx512 ? 16 : 8, block = 8 * lanes;
  const int64_t row_bytes = d * 4;
  const bool whole_row = row_bytes <= 1024;
  const int64_t chunk_end = rowptr[end];
  for (int64_t p = rowptr[begin]; p < chunk_end && p < int64_t(rowptr[begin]) + kPrefetchEdges; ++p)
    prefetch_bytes(x + static_cast<int64_t>(col[p]) * d, whole_row ? row_bytes : block * 4);
  for (int64_t i = begin; i < end; ++i) {
    if (rowptr[i] == rowptr[i + 1]) {  // no in-edge: 0 (gcn: the self term alone, dinv[i] * (0 + dinv[i] * x[i]))
      for (int64_t f = 0; f < d; ++f) out[i * d + f] = Gcn ? dinv[i] * (0.0f + x[i * d + f] * dinv[i]) : 0.0f;
      continue;
    }
    for (int64_t f0 = 0; f0 < d; f0 += block) {
      const int64_t width = d - f0 < block ? d - f0 : block;
      const int nv = static_cast<int>((width + lanes - 1) / lanes);
      const int64_t last = width - (nv - 1) * lanes;  // lanes used in the last vector, 1..lanes
      const int64_t pf = whole_row ? (f0 == 0 ? row_bytes : 0) : width * 4;
      if constexpr (Avx512) {
        switch (nv) {
#define GKD_CASE(N)                                                                                        \
  case N: {                                                                                                  \
    if (last < lanes) block_avx512<N, true, Gcn>(rowptr, col, w, dinv, x, out, i, d, f0, last, mean, pf, chunk_end); \
    else block_avx512<N, false, Gcn>(rowptr, col, w, dinv, x, out, i, d, f0, last, mean, pf, chunk_end);            \
    break;                                                                                                    \
  }
          GKD_CASE(1) GKD_CASE(2) GKD_CASE(3) GKD_CASE(4) GKD_CASE(5) GKD_CASE(6) GKD_CASE(7) GKD_CASE(8)
#undef GKD_CASE
        }
      } else {
        switch (nv) {
#define GKD_CASE(N)                                                                                        \
  case N: {                                                                                                  \
    if (last < lanes) block_avx2<N, true, Gcn>(rowptr, col, w, dinv, x, out, i, d, f0, last, mean, pf, chunk_end); \
    else block_avx2<N, false, Gcn>(rowptr, col, w, dinv, x, out, i, d, f0, last, mean, pf, chunk_end);            \
    break;                                                                                                    \
  }
          GKD_CASE(1) GKD_CASE(2) GKD_CASE(3) GKD_CASE(4) GKD_CASE(5) GKD_CASE(6) GKD_CASE(7) GKD_CASE(8)
#undef GKD_CASE
        }
      }
    }
  }
}
#endif  // GKD_SPMM_SIMD

// The ISA to use: 2 = AVX-512F, 1 = AVX2+FMA, 0 = neither (the generic kernel).  The environment
// variable GKDFAST_SPMM_SIMD caps it ("0": generic, "avx2": at most AVX2), read on every call so a
// benchmark or test can compare the paths in one process.
inline int isa_level() {
#ifdef GKD_SPMM_SIMD
  static const int cpu = __builtin_cpu_supports("avx512f") ? 2
                         : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
  const char* cap = std::getenv("GKDFAST_SPMM_SIMD");
  if (cap && cap[0] == '0' && cap[1] == '\0') return 0;
  if (cap && std::strcmp(cap, "avx2") == 0) return cpu < 1 ? cpu : 1;
  return cpu;
#else
  return 0;
#endif
}

}  // namespace spmm_simd
}  // namespace gkdfast
