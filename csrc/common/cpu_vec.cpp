#include "common/cpu_vec.h"

#include "common/macros.h"

namespace gkdfast {
namespace vec {

#define GKD_DEFINE_FOR(T)                                                                          \
  GKD_CPU_CLONES void axpy(T* __restrict acc, const T* __restrict x, T w, int64_t d) {           \
    for (int64_t f = 0; f < d; ++f) acc[f] += w * x[f];                                          \
  }                                                                                              \
  GKD_CPU_CLONES void add(T* __restrict acc, const T* __restrict x, int64_t d) {                 \
    for (int64_t f = 0; f < d; ++f) acc[f] += x[f];                                              \
  }                                                                                              \
  GKD_CPU_CLONES void scale_copy(T* __restrict acc, const T* __restrict x, T w, int64_t d) {     \
    for (int64_t f = 0; f < d; ++f) acc[f] = w * x[f];                                           \
  }                                                                                              \
  GKD_CPU_CLONES T dot(const T* __restrict a, const T* __restrict b, int64_t d) {                \
    /* four partial sums: breaks the add dependency chain and lets the compiler vectorise */     \
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                           \
    int64_t f = 0;                                                                               \
    for (; f + 4 <= d; f += 4) {                                                                 \
      s0 += a[f] * b[f];                                                                         \
      s1 += a[f + 1] * b[f + 1];                                                                 \
      s2 += a[f + 2] * b[f + 2];                                                                 \
      s3 += a[f + 3] * b[f + 3];                                                                 \
    }                                                                                            \
    for (; f < d; ++f) s0 += a[f] * b[f];                                                        \
    return (s0 + s1) + (s2 + s3);                                                                \
  }                                                                                              \
  GKD_CPU_CLONES void max_update(T* __restrict acc, int64_t* __restrict arg, const T* __restrict x, \
                                 T w, int64_t e, int64_t d) {                                    \
    for (int64_t f = 0; f < d; ++f) {                                                            \
      const T v = w * x[f];                                                                      \
      const bool take = (v > acc[f]) | ((v != v) & (acc[f] == acc[f])); /* NaN wins, sticks */   \
      acc[f] = take ? v : acc[f];                                                                \
      arg[f] = take ? e : arg[f];                                                                \
    }                                                                                            \
  }                                                                                              \
  GKD_CPU_CLONES void min_update(T* __restrict acc, int64_t* __restrict arg, const T* __restrict x, \
                                 T w, int64_t e, int64_t d) {                                    \
    for (int64_t f = 0; f < d; ++f) {                                                            \
      const T v = w * x[f];                                                                      \
      const bool take = (v < acc[f]) | ((v != v) & (acc[f] == acc[f])); /* NaN wins, sticks */   \
      acc[f] = take ? v : acc[f];                                                                \
      arg[f] = take ? e : arg[f];                                                                \
    }                                                                                            \
  }

#define GKD_DEFINE_LOCAL(T, NAME, OP)                                                              \
  GKD_CPU_CLONES void NAME(T* __restrict acc, int32_t* __restrict arg, const T* __restrict x, T w,  \
                           int32_t k, int64_t d) {                                                 \
    /* Written as full loads + bitwise blends (not "if (take) store"), so the compiler emits     \
       compare + blend instead of slow masked stores. */                                         \
    for (int64_t f = 0; f < d; ++f) {                                                            \
      const T v = w * x[f];                                                                      \
      const T old = acc[f];                                                                      \
      const int32_t prev = arg[f];                                                               \
      /* a NaN message wins once, then sticks (as torch.amax propagates it) */                  \
      const bool take = (v OP old) | ((v != v) & (old == old));                                  \
      const int32_t mask = -static_cast<int32_t>(take);                                          \
      acc[f] = take ? v : old;                                                                   \
      arg[f] = (k & mask) | (prev & ~mask);                                                      \
    }                                                                                            \
  }
GKD_DEFINE_LOCAL(float, max_update_local, >)
GKD_DEFINE_LOCAL(double, max_update_local, >)
GKD_DEFINE_LOCAL(float, min_update_local, <)
GKD_DEFINE_LOCAL(double, min_update_local, <)
#undef GKD_DEFINE_LOCAL

#define GKD_DEFINE_SELECT(T)                                                                        \
  GKD_CPU_CLONES void select_axpy(T* __restrict acc, const int64_t* __restrict arg, int64_t e,       \
                                  const T* __restrict g, T w, int64_t d) {                         \
    for (int64_t f = 0; f < d; ++f) acc[f] += arg[f] == e ? w * g[f] : T(0);                    \
  }
GKD_DEFINE_SELECT(float)
GKD_DEFINE_SELECT(double)
#undef GKD_DEFINE_SELECT

GKD_DEFINE_FOR(float)
GKD_DEFINE_FOR(double)
#undef GKD_DEFINE_FOR

}  // namespace vec
}  // namespace gkdfast
