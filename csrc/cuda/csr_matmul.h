// A CSR matrix times a dense matrix on CUDA through ATen's sparse CSR matmul (cuSPARSE SpMM), without
// cuSPARSE headers: used by spmm (sum / mean) and by the staged LSP backward.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {
namespace cuda {

// out[i] = sum_{e in row i} values[e] * x[col[e]] for the CSR (rowptr [N+1], col [E]) with
// `values` [E] in x's dtype (undefined: all ones); x [M, d] float32 / float64, contiguous.  The CSR
// must already be validated (the unchecked constructor is used).  Returns [N, d].
at::Tensor csr_matmul(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& values, const at::Tensor& x);

// Whether csr_matmul may take a CSR of `num_edges` non-zeros.  cuSPARSE SpMM has been reported to fail
// (CUSPARSE_STATUS_INTERNAL_ERROR) from 2^31 non-zeros on, 64-bit indices notwithstanding, in some CUDA
// 12 releases; callers route such graphs to gkdfast's own kernels, whose offsets are int64 throughout.
inline bool csr_matmul_fits(int64_t num_edges) { return num_edges < (int64_t{1} << 31); }

// Whether a fast-path caller routes a CSR of `num_edges` non-zeros through csr_matmul: the "fast"
// implementation is selected (GKDFAST_CUDA_IMPL), the CSR fits, and torch.use_deterministic_algorithms
// is off.  cuSPARSE documents bitwise reproducibility for some SpMM algorithms only (not the CSR
// algorithm ATen picks), so the deterministic mode takes gkdfast's own kernels (no atomics).
bool csr_matmul_enabled(int64_t num_edges);

}  // namespace cuda
}  // namespace gkdfast
