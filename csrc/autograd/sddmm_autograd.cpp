// sddmm as a torch::autograd::Function (autograd_kernels.h says why C++).
// out[e] = a[i] . b[j] per edge e = (j -> i), so grad_a = A (g) b (spmm over the CSR with the edge
// gradient as weights) and grad_b = A^T (g) a (spmm over the transposed CSR): deterministic, and
// twice differentiable through spmm's own autograd kernel.
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include "autograd/autograd_common.h"
#include "autograd/autograd_kernels.h"

namespace gkdfast {
namespace {

using autograd::needs_autograd;
using autograd::sddmm_op;
using autograd::spmm_op;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SddmmFunction : public torch::autograd::Function<SddmmFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rowptr, const at::Tensor& col,
                            const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_eid,
                            const at::Tensor& a, const at::Tensor& b) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      out = sddmm_op().call(rowptr, col, t_rowptr, t_col, t_eid, a, b);
    }
    ctx->save_for_backward({rowptr, col, t_rowptr, t_col, t_eid, a, b});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(7);
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &rowptr = saved[0], &col = saved[1], &t_rowptr = saved[2], &t_col = saved[3],
                     &t_eid = saved[4], &a = saved[5], &b = saved[6];
    const bool need_a = ctx->needs_input_grad(5), need_b = ctx->needs_input_grad(6);
    if (t_rowptr.sym_numel() == 0 && col.sym_numel() > 0) autograd::needs_transpose_error("sddmm");
    if (col.sym_numel() == 0) {  // an edgeless graph (possibly without a transposed CSR): nothing flows back
      if (need_a) result[5] = at::zeros_like(a);
      if (need_b) result[6] = at::zeros_like(b);
      return result;
    }
    const at::Tensor g = grads[0].contiguous();
    if (need_a) result[5] = std::get<0>(spmm_op().call(rowptr, col, t_rowptr, t_col, t_eid, g, b, "sum"));
    if (need_b) {
      auto [tt_rowptr, tt_col, tt_eid] = autograd::transpose_of_transpose(rowptr, col, t_eid);
      result[6] = std::get<0>(spmm_op().call(t_rowptr, t_col, tt_rowptr, tt_col, tt_eid,
                                             g.index_select(0, t_eid.to(at::kLong)), a, "sum"));
    }
    return result;
  }
};

}  // namespace

at::Tensor sddmm_autograd(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                          const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& a, const at::Tensor& b) {
  if (!needs_autograd(a) && !needs_autograd(b)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return sddmm_op().call(rowptr, col, t_rowptr, t_col, t_eid, a, b);
  }
  return SddmmFunction::apply(rowptr, col, t_rowptr, t_col, t_eid, a, b);
}

}  // namespace gkdfast
