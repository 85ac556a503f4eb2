// Small dense vector primitives for the CPU kernels (one row of features at a time).
// Defined in cpu_vec.cpp with AVX2/FMA clones selected at load time (see GKD_CPU_CLONES).
#pragma once

#include <cstdint>

namespace gkdfast {
namespace vec {

// acc[f] += w * x[f]
void axpy(float* acc, const float* x, float w, int64_t d);
void axpy(double* acc, const double* x, double w, int64_t d);
// acc[f] += x[f]
void add(float* acc, const float* x, int64_t d);
void add(double* acc, const double* x, int64_t d);
// acc[f] = w * x[f]
void scale_copy(float* acc, const float* x, float w, int64_t d);
void scale_copy(double* acc, const double* x, double w, int64_t d);
// sum_f a[f] * b[f]
float dot(const float* a, const float* b, int64_t d);
double dot(const double* a, const double* b, int64_t d);
// if w*x[f] > acc[f] (max) / < acc[f] (min): take it and record edge e in arg[f]
void max_update(float* acc, int64_t* arg, const float* x, float w, int64_t e, int64_t d);
void max_update(double* acc, int64_t* arg, const double* x, double w, int64_t e, int64_t d);
void min_update(float* acc, int64_t* arg, const float* x, float w, int64_t e, int64_t d);
void min_update(double* acc, int64_t* arg, const double* x, double w, int64_t e, int64_t d);
// Same, recording k (the edge's offset within its row) in a row-local int32 arg: with float the
// select is same-width and vectorises cleanly, and the buffer stays in L1 (the caller widens once).
void max_update_local(float* acc, int32_t* arg, const float* x, float w, int32_t k, int64_t d);
void max_update_local(double* acc, int32_t* arg, const double* x, double w, int32_t k, int64_t d);
void min_update_local(float* acc, int32_t* arg, const float* x, float w, int32_t k, int64_t d);
void min_update_local(double* acc, int32_t* arg, const double* x, double w, int32_t k, int64_t d);

// acc[f] += (arg[f] == e) ? w * g[f] : 0 (max/min backward: only the winning edge gets the gradient)
void select_axpy(float* acc, const int64_t* arg, int64_t e, const float* g, float w, int64_t d);
void select_axpy(double* acc, const int64_t* arg, int64_t e, const double* g, double w, int64_t d);

// Asks the cache for `bytes` starting at p: used on the feature row a few edges ahead of a gather,
// whose address the hardware prefetcher cannot guess.
inline void prefetch_row(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

}  // namespace vec
}  // namespace gkdfast
