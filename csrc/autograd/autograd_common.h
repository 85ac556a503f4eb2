// Pieces the C++ autograd kernels share: typed handles of gkdfast ops, the test for "nothing to
// record", and the transposed CSR's own transpose.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace gkdfast {
namespace autograd {

// An op's typed handle.  A call through it dispatches fully (the op's own autograd kernel included),
// which is what a backward needs for double backward; a forward calls it under
// at::AutoDispatchBelowADInplaceOrView to reach the device kernel.  Each op keeps its handle in a
// static of its own accessor (spmm_op() below, the others in their files): the lookup takes a lock.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* qualified_name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(qualified_name, "").typed<Signature>();
}

using SpmmSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                          const at::Tensor&, const at::Tensor&,
                                                          const c10::optional<at::Tensor>&, const at::Tensor&,
                                                          c10::string_view);
const c10::TypedOperatorHandle<SpmmSignature>& spmm_op();

using SddmmSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                  const at::Tensor&, const at::Tensor&, const at::Tensor&);
const c10::TypedOperatorHandle<SddmmSignature>& sddmm_op();

// Whether an optional tensor argument was passed (present and defined).
bool has_value(const c10::optional<at::Tensor>& t);

// Whether autograd has anything to record for t: a gradient (grad mode on and t requires one) or a
// forward-mode tangent (torch::autograd::Function refuses those with an error rather than drop them).
// When no input has, the kernel alone serves the call, without building an autograd node.
bool needs_autograd(const at::Tensor& t);
bool needs_autograd(const c10::optional<at::Tensor>& t);

// The transposed CSR of the transposed CSR (rowptr, col, inverse of t_eid) for a backward's own op
// when a double backward may need it (grad mode on inside backward: create_graph), else three empties.
std::tuple<at::Tensor, at::Tensor, at::Tensor> transpose_of_transpose(const at::Tensor& rowptr, const at::Tensor& col,
                                                                      const at::Tensor& t_eid);

// The error of a backward called on an op that was run without the transposed CSR.
[[noreturn]] void needs_transpose_error(const char* op);

}  // namespace autograd
}  // namespace gkdfast
