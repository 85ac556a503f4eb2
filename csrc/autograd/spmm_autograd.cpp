// spmm and spmm_gcn as torch::autograd::Functions (autograd_kernels.h says why C++).
//
// Sizes are read as sym_numel(): under torch.compile with dynamic shapes the backward is traced with
// symbolic sizes, which numel() refuses.
//
// The formulas are the ones docs/ops.md defines, computed by gkdfast ops over the cached transposed
// CSR, so gradients are deterministic (no atomics) and twice differentiable: every op a backward calls
// goes through the dispatcher, its own autograd kernel included, when a double backward records it.
//   sum / mean: grad_x = A^T g (mean: g divided by the in-degree first), grad_w = sddmm(g, x);
//   max / min: both through spmm_arg_backward and the recorded arg;
//   gcn: grad_x = S^T g with S = D^-1/2 (A + I) D^-1/2, the same op over the transposed CSR.
#include <ATen/TensorOperators.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>

#include <string>

#include "autograd/autograd_common.h"
#include "autograd/autograd_kernels.h"

namespace gkdfast {
namespace {

using autograd::find_op;
using autograd::has_value;
using autograd::needs_autograd;
using autograd::sddmm_op;
using autograd::spmm_op;
using autograd::transpose_of_transpose;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using SpmmGcnSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    const at::Tensor&, const c10::optional<at::Tensor>&, const at::Tensor&,
                                    const at::Tensor&);
using ArgBackwardSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const c10::optional<at::Tensor>&,
                                                                 const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&);

const c10::TypedOperatorHandle<SpmmGcnSignature>& spmm_gcn_op() {
  static const auto op = find_op<SpmmGcnSignature>("gkdfast::spmm_gcn");
  return op;
}

const c10::TypedOperatorHandle<ArgBackwardSignature>& arg_backward_op() {
  static const auto op = find_op<ArgBackwardSignature>("gkdfast::spmm_arg_backward");
  return op;
}

bool is_arg_reduce(c10::string_view reduce) {
  return reduce == "max" || reduce == "min" || reduce == "amax" || reduce == "amin";
}

c10::optional<at::Tensor> weight_in_transposed_order(const at::Tensor& weight, const at::Tensor& t_eid) {
  if (!weight.defined()) return c10::nullopt;
  return weight.index_select(0, t_eid.to(at::kLong));
}

class SpmmFunction : public torch::autograd::Function<SpmmFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& rowptr, const at::Tensor& col,
                               const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_eid,
                               const c10::optional<at::Tensor>& weight, const at::Tensor& x,
                               c10::string_view reduce) {
    at::Tensor out, arg;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(out, arg) = spmm_op().call(rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce);
    }
    const bool arg_reduce = is_arg_reduce(reduce);
    const bool with_weight = has_value(weight);
    // x is read back only by max/min and by the weight gradient: a sum/mean layer kept one [N, d] input
    // per layer alive for nothing (helper 117: a 2-layer GIN held 6.1 N·d after the forward, 5.1 since).
    const bool keep_x = arg_reduce || (with_weight && weight->requires_grad());
    ctx->save_for_backward({rowptr, col, t_rowptr, t_col, t_eid, with_weight ? *weight : at::Tensor(),
                            keep_x ? x : at::Tensor(), arg});
    ctx->saved_data["reduce"] = std::string(reduce.data(), reduce.size());
    ctx->saved_data["has_weight"] = with_weight;
    // arg is int64, never differentiable: not marked, as torch's compiled autograd asserts that a C++
    // node marked nothing (helper 125: every spmm backward under compiled autograd crashed).
    // No zeros for the int64 arg output's (absent) gradient: that was an unused [N, d] int64 per backward.
    ctx->set_materialize_grads(false);
    return {out, arg};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(8);  // one entry per argument of forward; undefined = no gradient
    if (!grads[0].defined()) return result;  // only the arg output was used: nothing flows back
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &rowptr = saved[0], &col = saved[1], &t_rowptr = saved[2], &t_col = saved[3],
                     &t_eid = saved[4], &weight = saved[5], &x = saved[6], &arg = saved[7];
    const bool with_weight = ctx->saved_data["has_weight"].toBool();
    const std::string reduce = ctx->saved_data["reduce"].toStringRef();
    // needs_input_grad counts the tensor arguments that were passed: an absent weight has no slot.
    const bool need_w = with_weight && ctx->needs_input_grad(5);
    const bool need_x = ctx->needs_input_grad(with_weight ? 6 : 5);
    if (t_rowptr.sym_numel() == 0 && col.sym_numel() > 0) autograd::needs_transpose_error("spmm");
    const c10::optional<at::Tensor> w = with_weight ? c10::optional<at::Tensor>(weight) : c10::nullopt;
    if (is_arg_reduce(reduce)) {
      if (need_w || need_x) {
        auto [gx, gw] = arg_backward_op().call(rowptr, col, t_rowptr, t_col, t_eid, w, x, arg, grads[0]);
        if (need_x) result[6] = gx;
        if (need_w) result[5] = gw;
      }
      return result;
    }
    if (col.sym_numel() == 0) {  // an edgeless graph (possibly without a transposed CSR): nothing flows back
      if (need_w) result[5] = at::zeros_like(weight);
      if (need_x) result[6] = at::zeros_like(grads[0]);
      return result;
    }
    at::Tensor g = grads[0];
    if (reduce == "mean") {
      const at::Tensor deg = (rowptr.slice(0, 1) - rowptr.slice(0, 0, -1)).clamp_min(1).to(g.scalar_type());
      g = g / deg.unsqueeze(-1);
    }
    g = g.contiguous();
    if (need_x) {
      auto [tt_rowptr, tt_col, tt_eid] = transpose_of_transpose(rowptr, col, t_eid);
      result[6] = std::get<0>(spmm_op().call(t_rowptr, t_col, tt_rowptr, tt_col, tt_eid,
                                             weight_in_transposed_order(weight, t_eid), g, "sum"));
    }
    if (need_w) result[5] = sddmm_op().call(rowptr, col, t_rowptr, t_col, t_eid, g, x);
    return result;
  }
};

class SpmmGcnFunction : public torch::autograd::Function<SpmmGcnFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rowptr, const at::Tensor& col,
                            const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_eid,
                            const c10::optional<at::Tensor>& weight, const at::Tensor& dinv, const at::Tensor& x) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      out = spmm_gcn_op().call(rowptr, col, t_rowptr, t_col, t_eid, weight, dinv, x);
    }
    const bool with_weight = has_value(weight);
    ctx->save_for_backward({rowptr, col, t_rowptr, t_col, t_eid, with_weight ? *weight : at::Tensor(), dinv});
    ctx->saved_data["has_weight"] = with_weight;
    return out;
  }

  // out = S x with S = D^-1/2 (A + I) D^-1/2, so grad_x = S^T g: the same op over the transposed CSR,
  // with the weights in transposed order.  Gradients of the weights and of dinv are not formulas of
  // this op: gkdfast.spmm(norm="gcn") takes the composite path when edge weights need one.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(8);
    const variable_list saved = ctx->get_saved_variables();
    at::Tensor rowptr = saved[0], col = saved[1], t_rowptr = saved[2], t_col = saved[3], t_eid = saved[4];
    const at::Tensor &weight = saved[5], &dinv = saved[6];
    const bool with_weight = ctx->saved_data["has_weight"].toBool();
    const size_t dinv_slot = with_weight ? 6 : 5;  // needs_input_grad counts the tensor arguments passed
    TORCH_CHECK(!(with_weight && ctx->needs_input_grad(5)) && !ctx->needs_input_grad(dinv_slot),
                "gkdfast::spmm_gcn is differentiable in x only, not in weight or dinv; "
                "gkdfast.spmm(graph, x, edge_weight=w, norm='gcn') differentiates the weights");
    if (!ctx->needs_input_grad(dinv_slot + 1)) return result;
    if (col.sym_numel() == 0) {  // an edgeless graph is its own transpose (rowptr all zeros)
      t_rowptr = rowptr;
      t_col = col;
      t_eid = col;
    } else if (t_rowptr.sym_numel() == 0) {
      autograd::needs_transpose_error("spmm_gcn");
    }
    auto [tt_rowptr, tt_col, tt_eid] = transpose_of_transpose(rowptr, col, t_eid);
    result[7] = spmm_gcn_op().call(t_rowptr, t_col, tt_rowptr, tt_col, tt_eid,
                                   weight_in_transposed_order(weight, t_eid), dinv, grads[0].contiguous());
    return result;
  }
};

}  // namespace

std::tuple<at::Tensor, at::Tensor> spmm_autograd(const at::Tensor& rowptr, const at::Tensor& col,
                                                 const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                                 const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight,
                                                 const at::Tensor& x, c10::string_view reduce) {
  if (!needs_autograd(x) && !needs_autograd(weight)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return spmm_op().call(rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce);
  }
  variable_list out = SpmmFunction::apply(rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce);
  return {out[0], out[1]};
}

at::Tensor spmm_gcn_autograd(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                             const at::Tensor& t_col, const at::Tensor& t_eid,
                             const c10::optional<at::Tensor>& weight, const at::Tensor& dinv, const at::Tensor& x) {
  if (!needs_autograd(x) && !needs_autograd(weight) && !needs_autograd(dinv)) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return spmm_gcn_op().call(rowptr, col, t_rowptr, t_col, t_eid, weight, dinv, x);
  }
  return SpmmGcnFunction::apply(rowptr, col, t_rowptr, t_col, t_eid, weight, dinv, x);
}

}  // namespace gkdfast
