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

}  // namespace cuda
}  // namespace gkdfast
