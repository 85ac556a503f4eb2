// dropout as a torch::autograd::Function (autograd_kernels.h says why C++).  Dropout is its own
// adjoint: the gradient is the same op with the same (p, seed) on the upstream gradient, so the mask
// is drawn again instead of stored, and any order of derivative follows.
#include <torch/csrc/autograd/custom_function.h>

#include "autograd/autograd_common.h"
#include "autograd/autograd_kernels.h"

namespace gkdfast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using DropoutSignature = at::Tensor(const at::Tensor&, double, int64_t);

const c10::TypedOperatorHandle<DropoutSignature>& dropout_op() {
  static const auto op = autograd::find_op<DropoutSignature>("gkdfast::dropout");
  return op;
}

class DropoutFunction : public torch::autograd::Function<DropoutFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double p, int64_t seed) {
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = seed;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return dropout_op().call(x, p, seed);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {dropout_op().call(grads[0], ctx->saved_data["p"].toDouble(), ctx->saved_data["seed"].toInt()),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor dropout_autograd(const at::Tensor& x, double p, int64_t seed) {
  if (!autograd::needs_autograd(x)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return dropout_op().call(x, p, seed);
  }
  return DropoutFunction::apply(x, p, seed);
}

}  // namespace gkdfast
