// SpMM over the destination CSR (sum / mean / max / min, optional edge weight) and its max/min
// backward: argument checks shared by the CPU and CUDA kernels.  The Python layer (gkdfast.spmm)
// validates first; these guard direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "common/reducers.h"

namespace gkdfast {

// Graph (rowptr/col and, when given, the transposed CSR) and x [N, d] on the graph's device;
// returns the parsed reduce name.
Reduce check_spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                  const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& x, const std::string& reduce);

// spmm_gcn: check_spmm's graph and x, and dinv [N] in x's dtype on x's device.
void check_spmm_gcn(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                    const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& dinv, const at::Tensor& x);

// The optional edge weight, checked against the graph and x ([E], x's dtype, graph's device) and
// made contiguous; an undefined tensor when absent.
at::Tensor spmm_edge_weight(const c10::optional<at::Tensor>& weight, const at::Tensor& col, const at::Tensor& x,
                            const char* op);

// csr_mm: a rectangular CSR matrix (rowptr [R+1], col [E] in [0, C), values [E] in x's dtype), x [C, d]
// on its device, and the optional transposed structure (t_rowptr [C+1], t_col [E] in [0, R), t_eid [E]).
void check_csr_mm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                  const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& values, const at::Tensor& x);

// spmm_arg_backward: graph, x [N, d], grad_out [N, d] and arg (int64, grad_out's shape, x's
// device).  need_transpose: the kernel always walks the transposed CSR, so it must be given
// whenever the graph has edges.
void check_spmm_arg_backward(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                             const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& x,
                             const at::Tensor& arg, const at::Tensor& grad, bool need_transpose);

}  // namespace gkdfast
