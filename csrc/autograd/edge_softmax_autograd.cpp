// edge_softmax as a torch::autograd::Function (autograd_kernels.h says why C++).  Its gradient is the
// op edge_softmax_backward(rowptr, out, g), whose own derivative (double backward) stays a Python
// formula in gkdfast/_native/edge_softmax.py: it is not on a training step's path.
#include <torch/csrc/autograd/custom_function.h>

#include "autograd/autograd_common.h"
#include "autograd/autograd_kernels.h"

namespace gkdfast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using SoftmaxSignature = at::Tensor(const at::Tensor&, const at::Tensor&);
using SoftmaxBackwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&);

const c10::TypedOperatorHandle<SoftmaxSignature>& edge_softmax_op() {
  static const auto op = autograd::find_op<SoftmaxSignature>("gkdfast::edge_softmax");
  return op;
}

const c10::TypedOperatorHandle<SoftmaxBackwardSignature>& edge_softmax_backward_op() {
  static const auto op = autograd::find_op<SoftmaxBackwardSignature>("gkdfast::edge_softmax_backward");
  return op;
}

class EdgeSoftmaxFunction : public torch::autograd::Function<EdgeSoftmaxFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rowptr, const at::Tensor& scores) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      out = edge_softmax_op().call(rowptr, scores);
    }
    ctx->save_for_backward({rowptr, out});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!ctx->needs_input_grad(1)) return {at::Tensor(), at::Tensor()};
    const variable_list saved = ctx->get_saved_variables();
    return {at::Tensor(), edge_softmax_backward_op().call(saved[0], saved[1], grads[0].contiguous())};
  }
};

}  // namespace

at::Tensor edge_softmax_autograd(const at::Tensor& rowptr, const at::Tensor& scores) {
  if (!autograd::needs_autograd(scores)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return edge_softmax_op().call(rowptr, scores);
  }
  return EdgeSoftmaxFunction::apply(rowptr, scores);
}

}  // namespace gkdfast
