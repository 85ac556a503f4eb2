// Staged CUDA LSP for the dot-product kernels in float32 / float64 (see lsp_staged_cuda.cu); the
// CUDA lsp / lsp_backward registrations call these unless GKDFAST_CUDA_IMPL=legacy, the kernel is
// laplace or the dtype is half.  Arguments already checked; tensors contiguous.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "common/similarity_kernels.h"

namespace gkdfast {
namespace cuda {

bool lsp_staged_supported(SimKernel kind, at::ScalarType dtype);

std::tuple<at::Tensor, at::Tensor> lsp_staged_forward(const at::Tensor& rowptr, const at::Tensor& col,
                                                      const at::Tensor& s, const at::Tensor& t, SimKernel kind,
                                                      double gamma, double tau);

std::tuple<at::Tensor, at::Tensor> lsp_staged_backward(const at::Tensor& rowptr, const at::Tensor& col,
                                                       const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                                       const at::Tensor& t_eid, const at::Tensor& s,
                                                       const at::Tensor& t, const at::Tensor& per_node,
                                                       const at::Tensor& lse, const at::Tensor& grad, SimKernel kind,
                                                       double gamma, double tau, bool need_s, bool need_t);

}  // namespace cuda
}  // namespace gkdfast
