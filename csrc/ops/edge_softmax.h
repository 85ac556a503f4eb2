// Edge softmax over each destination's in-edges: argument checks shared by the CPU and CUDA
// kernels.  The Python layer (gkdfast.edge_softmax) validates first; these guard direct torch.ops
// calls, where a score tensor shorter than the edge list would be read out of bounds.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// Per-edge scores (or the forward output, for the backward): [E] or [E, H], floating, on the
// graph's device, E = rowptr[-1].  Reading rowptr[-1] costs one small device-to-host copy on CUDA.
void check_edge_scores(const at::Tensor& rowptr, const at::Tensor& s, const char* op, const char* name);

// edge_softmax_backward: grad has the output's shape and device.
void check_edge_softmax_grad(const at::Tensor& y, const at::Tensor& g);

}  // namespace gkdfast
