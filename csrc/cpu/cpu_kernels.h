// Entry points of the CPU kernels (gkdfast::<op>_cpu), declared from the one signature list
// csrc/ops/kernel_entry_points.inc; each is defined in csrc/cpu/<family>_cpu.cpp and registered in
// csrc/cpu/register_cpu.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace gkdfast {

#define GKDFAST_ENTRY(name) name##_cpu
#include "ops/kernel_entry_points.inc"
#undef GKDFAST_ENTRY

}  // namespace gkdfast
