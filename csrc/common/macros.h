// Portability macros shared by the CPU and CUDA kernels.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GKD_HD __host__ __device__ __forceinline__
#else
#define GKD_HD inline
#endif

// Hot CPU loops are compiled twice (AVX2+FMA and baseline) and picked at load time, so the
// wheel stays portable while machines with AVX2 get wide vector code.  Not for nvcc.
#if !defined(__CUDACC__) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define GKD_CPU_CLONES __attribute__((target_clones("avx2,fma", "default")))
// Integer-only loops that AVX-512 speeds up a lot get a third clone for x86-64-v4 (AVX-512 F/BW/DQ/VL).
// Only integer work: a wider float vector would change the summation order between machines.  The
// Philox rounds of the dropout mask: 0.54 ns per element with it against 1.26 with AVX2 (one thread,
// CPU time; docs/ops.md, "dropout").
#define GKD_CPU_CLONES_AVX512 __attribute__((target_clones("arch=x86-64-v4", "avx2,fma", "default")))
#define GKD_HAS_V4_CLONE 1  // (the dropout picks its Philox words knowing that the v4 clone exists)
#else
#define GKD_CPU_CLONES
#define GKD_CPU_CLONES_AVX512
#endif
