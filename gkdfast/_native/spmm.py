"""``gkdfast::spmm``, ``gkdfast::spmm_gcn`` and ``gkdfast::spmm_arg_backward`` (csrc/ops/spmm.h): fake
kernels and autograd.

Backward passes are gkdfast ops over the cached transposed CSR, so gradients are deterministic (no
atomics) and twice-differentiable: sum/mean through spmm itself, GCN propagation through spmm_gcn on
the transpose (the operator is symmetric in its scaling), max/min through ``spmm_arg_backward``, whose
own derivative is that op again with other inputs.
"""
from __future__ import annotations

import torch

from gkdfast._native._common import inverse_permutation, needs_transpose_error, register_op

_ARG_REDUCTIONS = ("max", "min", "amax", "amin")


def _spmm_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce):
    n = rowptr.shape[0] - 1
    arg_shape = (n, x.shape[1]) if reduce in _ARG_REDUCTIONS else (0,)
    return x.new_empty((n, x.shape[1])), x.new_empty(arg_shape, dtype=torch.long)


def _spmm_arg_backward_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out):
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)  # the kernel reads x made contiguous
    return grad_x, x.new_empty((col.shape[0],) if weight is not None else (0,))


def _spmm_setup(ctx, inputs, output):
    rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce = inputs
    ctx.reduce = reduce
    ctx.has_weight = weight is not None
    # x is read back only by max/min and by the weight gradient: a sum/mean layer kept one [N, d] input
    # per layer alive for nothing (helper 117: a 2-layer GIN held 6.1 N·d after the forward, 5.1 now).
    keep_x = reduce in _ARG_REDUCTIONS or ctx.input_needs_grad[5]
    ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, x if keep_x else None, output[1])
    # No zeros for the int64 arg output's (absent) gradient: that was an unused [N, d] int64 per backward.
    ctx.set_materialize_grads(False)


def _spmm_backward(ctx, grad_out, _grad_arg):
    if grad_out is None:  # (only the arg output was used: nothing flows back)
        return (None,) * 8
    rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg = ctx.saved_tensors
    need_w, need_x = ctx.input_needs_grad[5], ctx.input_needs_grad[6]
    if t_rowptr.numel() == 0 and col.numel() > 0:
        raise needs_transpose_error("spmm")
    grad_w = grad_x = None
    if ctx.reduce in _ARG_REDUCTIONS:
        if need_w or need_x:
            gx, gw = torch.ops.gkdfast.spmm_arg_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg,
                                                         grad_out)
            grad_x = gx if need_x else None
            grad_w = gw if (need_w and ctx.has_weight) else None
        return None, None, None, None, None, grad_w, grad_x, None
    if col.numel() == 0:  # an edgeless graph (possibly without a transposed CSR): nothing flows back
        return (None, None, None, None, None, torch.zeros_like(weight) if need_w and ctx.has_weight else None,
                torch.zeros_like(grad_out) if need_x else None, None)  # (x is not kept)
    g = grad_out
    if ctx.reduce == "mean":
        deg = (rowptr[1:] - rowptr[:-1]).clamp_min(1).to(g.dtype)
        g = g / deg.unsqueeze(-1)
    if need_x:
        w_t = weight[t_eid.long()] if ctx.has_weight else None
        # The transpose of the transpose is the graph itself (t_eid's inverse maps back): passed only
        # when a double backward may need it.
        back_t = (rowptr, col, inverse_permutation(t_eid)) if torch.is_grad_enabled() else (col.new_empty(0),) * 3
        grad_x, _ = torch.ops.gkdfast.spmm(t_rowptr, t_col, *back_t, w_t, g.contiguous(), "sum")
    if need_w and ctx.has_weight:
        grad_w = torch.ops.gkdfast.sddmm(rowptr, col, t_rowptr, t_col, t_eid, g.contiguous(), x)
    return None, None, None, None, None, grad_w, grad_x, None


def _spmm_gcn_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, dinv, x):
    return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))


def _spmm_gcn_setup(ctx, inputs, output):
    rowptr, col, t_rowptr, t_col, t_eid, weight, dinv, x = inputs
    ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, dinv)


def _spmm_gcn_backward(ctx, grad_out):
    """out = S x with S = D^-1/2 (A + I) D^-1/2, so grad_x = S^T g: the same op over the transposed CSR,
    with the weights in transposed order.  Gradients of the weights and of dinv are not formulas of
    this op: gkdfast.spmm(norm="gcn") takes the composite path when edge weights need one."""
    rowptr, col, t_rowptr, t_col, t_eid, weight, dinv = ctx.saved_tensors
    if ctx.input_needs_grad[5] or ctx.input_needs_grad[6]:
        raise RuntimeError("gkdfast::spmm_gcn is differentiable in x only, not in weight or dinv; "
                           "gkdfast.spmm(graph, x, edge_weight=w, norm='gcn') differentiates the weights")
    if not ctx.input_needs_grad[7]:
        return (None,) * 8
    if col.numel() == 0:  # an edgeless graph is its own transpose (rowptr all zeros)
        t_rowptr, t_col, t_eid = rowptr, col, col
    elif t_rowptr.numel() == 0:
        raise needs_transpose_error("spmm_gcn")
    w_t = weight[t_eid.long()] if weight is not None else None
    # The transpose of the transpose is the graph itself: passed only when a double backward may need it.
    back_t = (rowptr, col, inverse_permutation(t_eid)) if torch.is_grad_enabled() else (col.new_empty(0),) * 3
    grad_x = torch.ops.gkdfast.spmm_gcn(t_rowptr, t_col, *back_t, w_t, dinv, grad_out.contiguous())
    return None, None, None, None, None, None, None, grad_x


# spmm_arg_backward (double backward of max/min).  With e = arg[i, f] the winning edge,
# gx[j, f] = sum_{e: col_e = j} w_e g[i, f] and gw[e] = sum_f x[col_e, f] g[i, f]: both linear in g,
# so their derivatives are the same op with other inputs, plus a gather for grad_out.  Without this,
# autograd would silently treat the op as constant and give wrong second derivatives.
def _arg_backward_setup(ctx, inputs, output):
    rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out = inputs
    ctx.has_weight = weight is not None
    ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out)


def _arg_backward_backward(ctx, u_gx, u_gw):
    rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, g = ctx.saved_tensors
    graph_t = (rowptr, col, t_rowptr, t_col, t_eid)
    has_w = ctx.has_weight and u_gw is not None and u_gw.numel() == col.numel()
    grad_w = grad_x = grad_g = None
    if ctx.input_needs_grad[5] and ctx.has_weight and u_gx is not None:
        # d gx / d w_e = sum_f [arg[i,f] = e] g[i, f] u_gx[col_e, f]: the op's own gw with x := u_gx
        grad_w = torch.ops.gkdfast.spmm_arg_backward(*graph_t, weight, u_gx.contiguous(), arg, g)[1]
    if ctx.input_needs_grad[6] and has_w:
        # d gw_e / d x[j, f] = g[i, f] where arg[i, f] = e and col_e = j: the op's gx with w := u_gw
        grad_x = torch.ops.gkdfast.spmm_arg_backward(*graph_t, u_gw.contiguous(), x, arg, g)[0]
    if ctx.input_needs_grad[8] and col.numel() == 0:
        grad_g = torch.zeros_like(g)
    elif ctx.input_needs_grad[8]:
        e = arg.clamp_min(0)
        src = col.long()[e]  # [N, d] source node of each winning edge
        grad_g = torch.zeros_like(g)
        if u_gx is not None:
            w_e = weight[e] if ctx.has_weight else torch.ones_like(g)
            grad_g = grad_g + w_e * u_gx.gather(0, src)
        if has_w:
            grad_g = grad_g + u_gw[e] * x.gather(0, src)
        grad_g = torch.where(arg >= 0, grad_g, torch.zeros_like(grad_g))
    return None, None, None, None, None, grad_w, grad_x, None, grad_g


def register() -> None:
    """Registers the fake kernels and autograd formulas of spmm, spmm_gcn and spmm_arg_backward."""
    register_op("spmm", _spmm_fake, _spmm_backward, _spmm_setup)
    register_op("spmm_gcn", _spmm_gcn_fake, _spmm_gcn_backward, _spmm_gcn_setup)
    register_op("spmm_arg_backward", _spmm_arg_backward_fake, _arg_backward_backward, _arg_backward_setup)
