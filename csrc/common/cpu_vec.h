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

}  // namespace vec
}  // namespace gkdfast
