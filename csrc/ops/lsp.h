// LSP (local structure preserving loss): argument checks shared by the CPU and CUDA kernels.
// The Python layer (gkdfast.losses.lsp) validates first; these guard direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>

#include "common/similarity_kernels.h"

namespace gkdfast {

// Graph (rowptr/col and, when given, the transposed CSR), student s [N, ds] and teacher t [N, dt]
// of one floating dtype on the graph's device, tau > 0; returns the parsed kernel name.
// `op` is "lsp" or "lsp_backward" and prefixes every message.
SimKernel check_lsp(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                    const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& s, const at::Tensor& t,
                    const std::string& kernel, double tau, const char* op);

// What lsp_backward needs on top of check_lsp: the forward's per_node [N], lse [N, 2], the
// incoming grad [N], and the transposed CSR (the source-side pass walks it).
void check_lsp_backward_state(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                              const at::Tensor& per_node, const at::Tensor& lse, const at::Tensor& grad);

}  // namespace gkdfast
