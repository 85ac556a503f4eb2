// Autograd kernels of spmm and spmm_gcn in C++ (registered for the Autograd key in
// csrc/autograd/register_autograd.cpp).  They are the hot ops of every GNN layer: written as
// torch.library.register_autograd formulas, the Python around one small call (the wrapper's argument
// handling and a Python backward node) cost more than the kernels themselves on a Cora-sized graph
// (docs/spmm-perf.md, "C++ autograd").  Same formulas as before, same error messages.
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

}  // namespace gkdfast
