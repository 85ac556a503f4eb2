// Autograd kernels written in C++, registered for the Autograd key (every device) in
// csrc/autograd/register_autograd.cpp; one file per op family (<family>_autograd.cpp).
//
// These are the hot ops of every GNN layer (message passing, attention, dropout).  As
// torch.library.register_autograd formulas, the Python around one call (the wrapper's argument handling
// and a Python backward node) cost more than the kernels themselves on a Cora-sized graph: spmm forward
// + backward, 2,708 nodes, d = 16, one thread, 189 -> 127 us with the C++ node (docs/spmm-perf.md).
// The formulas and error messages are the ones the Python formulas had; the other differentiable ops
// keep theirs in gkdfast/_native/.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace gkdfast {

std::tuple<at::Tensor, at::Tensor> spmm_autograd(const at::Tensor& rowptr, const at::Tensor& col,
                                                 const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                                 const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight,
                                                 const at::Tensor& x, c10::string_view reduce);

at::Tensor spmm_gcn_autograd(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                             const at::Tensor& t_col, const at::Tensor& t_eid,
                             const c10::optional<at::Tensor>& weight, const at::Tensor& dinv, const at::Tensor& x);

at::Tensor sddmm_autograd(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                          const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& a, const at::Tensor& b);

at::Tensor edge_softmax_autograd(const at::Tensor& rowptr, const at::Tensor& scores);

at::Tensor dropout_autograd(const at::Tensor& x, double p, int64_t seed);

}  // namespace gkdfast
