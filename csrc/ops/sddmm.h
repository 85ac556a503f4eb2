// SDDMM (out[e] = a[i] . b[j] per edge e = (j -> i)): argument checks shared by the CPU and CUDA
// kernels.  The Python layer (gkdfast.sddmm) validates first; these guard direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// Graph (rowptr/col and, when given, the transposed CSR) and a, b [N, d] of one floating dtype on
// the graph's device.
void check_sddmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr, const at::Tensor& t_col,
                 const at::Tensor& t_eid, const at::Tensor& a, const at::Tensor& b);

}  // namespace gkdfast
