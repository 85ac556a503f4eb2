// GSP (global structure preserving loss over all N^2 pairs): argument checks shared by the CPU
// and CUDA kernels.  The Python layer (gkdfast.losses.gsp) validates first; these guard direct
// torch.ops calls.
#pragma once

#include <torch/types.h>

#include <string>

#include "common/similarity_kernels.h"

namespace gkdfast {

enum class GspLoss { Mse, Kl };

// "mse" or "kl"; anything else is a ValueError naming both.  `op` prefixes the message.
GspLoss parse_gsp_loss(const std::string& name, const char* op);

// student s [N, ds] and teacher t [N, dt]: 2-D, same row count, one floating dtype, one device;
// tau > 0.
void check_gsp_pair(const at::Tensor& s, const at::Tensor& t, double tau, const char* op);

// Everything a GSP kernel entry point checks first: the pair (check_gsp_pair), then the kernel
// and loss names, in that order; returns the parsed names.
struct GspArgs {
  SimKernel kind;
  GspLoss loss;
};
GspArgs check_gsp(const at::Tensor& s, const at::Tensor& t, double tau, const std::string& kernel,
                  const std::string& loss, const char* op);

// What gsp_tiled_backward needs from its forward: per_row [N], stats [N, 2] and grad [N].
void check_gsp_backward_state(int64_t n, const at::Tensor& per_row, const at::Tensor& stats,
                              const at::Tensor& grad);

}  // namespace gkdfast
