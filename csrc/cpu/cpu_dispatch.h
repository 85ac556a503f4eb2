// The CPU kernels' dtype dispatch.
#pragma once

#include <ATen/Dispatch.h>
#include <c10/util/Exception.h>

// AT_DISPATCH_FLOATING_TYPES behind gkdfast's own error: the CPU kernels take float32 and float64
// only, and ATen's generic "not implemented for 'Half'" does not say what to do instead.
#define GKD_DISPATCH_CPU_FLOATS(TYPE, NAME, ...)                                                          \
  [&] {                                                                                                    \
    const auto gkd_type_ = (TYPE);                                                                         \
    TORCH_CHECK_TYPE(gkd_type_ == at::kFloat || gkd_type_ == at::kDouble, "gkdfast CPU kernel ", NAME,   \
                     " takes float32 or float64, got ", gkd_type_,                                        \
                     " (the public gkdfast functions run half and bfloat16 on CPU through the reference "  \
                     "ops; or cast with .float())");                                                       \
    AT_DISPATCH_FLOATING_TYPES(gkd_type_, NAME, __VA_ARGS__);                                             \
  }()
