// Entry points of the CUDA kernels (gkdfast::cuda::<op>_cuda), declared from the one signature list
// csrc/ops/kernel_entry_points.inc; each is defined in csrc/cuda/<family>_cuda.cu and registered in
// csrc/cuda/register_cuda.cu.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace gkdfast {
namespace cuda {

#define GKDFAST_ENTRY(name) name##_cuda
#include "ops/kernel_entry_points.inc"
#undef GKDFAST_ENTRY

}  // namespace cuda
}  // namespace gkdfast
