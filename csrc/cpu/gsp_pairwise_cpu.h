// CPU GSP per-pair path (laplace), called by the gsp_tiled CPU entry points in gsp_cpu.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "common/similarity_kernels.h"
#include "ops/gsp.h"

namespace gkdfast {
namespace cpu {

// Rows [r0, r1) against all N columns: (per_row [R], stats [R, 2]).  Arguments already checked.
std::tuple<at::Tensor, at::Tensor> gsp_direct_cpu(const at::Tensor& s, const at::Tensor& t, SimKernel kind,
                                                 GspLoss loss, double gamma, double tau, int64_t r0, int64_t r1);

// Gradients of all N rows from full-N state (gsp_full_state for a partial range [r0, r1)).
std::tuple<at::Tensor, at::Tensor> gsp_direct_backward_cpu(const at::Tensor& s, const at::Tensor& t,
                                                          const at::Tensor& per_row, const at::Tensor& stats,
                                                          const at::Tensor& grad, SimKernel kind, GspLoss loss,
                                                          double gamma, double tau, bool need_s, bool need_t,
                                                          int64_t r0, int64_t r1);

}  // namespace cpu
}  // namespace gkdfast
