"""``gkdfast::spmm``, ``gkdfast::spmm_gcn``, ``gkdfast::spmm_arg_backward`` and ``gkdfast::csr_mm``
(csrc/ops/spmm.h): fake kernels, and the autograd formulas of ``spmm_arg_backward`` and ``csr_mm``.

The autograd of ``spmm`` and ``spmm_gcn`` is C++ (csrc/autograd/spmm_autograd.cpp: a Python formula
cost more per call than a small graph's kernels).  Their backward passes are gkdfast ops over the cached
transposed CSR, so gradients are deterministic (no atomics) and twice-differentiable: sum/mean through
spmm itself, GCN propagation through spmm_gcn on the transpose (the operator is symmetric in its
scaling), max/min through ``spmm_arg_backward``, whose own derivative is that op again with other inputs
(below).
"""
from __future__ import annotations

import torch

from gkdfast._segments import segment_ids
from gkdfast._native._common import has_op, register_op

_ARG_REDUCTIONS = ("max", "min", "amax", "amin")


def _spmm_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce):
    n = rowptr.shape[0] - 1
    arg_shape = (n, x.shape[1]) if reduce in _ARG_REDUCTIONS else (0,)
    return x.new_empty((n, x.shape[1])), x.new_empty(arg_shape, dtype=torch.long)


def _spmm_arg_backward_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out):
    grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)  # the kernel reads x made contiguous
    return grad_x, x.new_empty((col.shape[0],) if weight is not None else (0,))


def _spmm_gcn_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, dinv, x):
    return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))


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


def _csr_mm_fake(rowptr, col, t_rowptr, t_col, t_eid, values, x):
    return x.new_empty((rowptr.shape[0] - 1, x.shape[1]))


# csr_mm: out = A x for the [R, C] CSR matrix A.  grad_x = Aᵀ grad, the same op on the transposed
# structure (given with the call: rebuilding it is a sort of every entry); grad_values[e] =
# grad[row_e] · x[col_e], gathered ([E, d], only when the values need a gradient: the feature matrices
# csr_mm serves have constant values).
def _csr_mm_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _csr_mm_backward(ctx, grad):
    rowptr, col, t_rowptr, t_col, t_eid, values, x = ctx.saved_tensors
    grad_values = grad_x = None
    if ctx.input_needs_grad[6]:
        if t_rowptr.numel() == 0 and col.numel() > 0:
            raise RuntimeError("gkdfast.csr_mm: the gradient of x needs the transposed structure (t_rowptr, "
                               "t_col, t_eid); pass it with the call")
        if t_rowptr.numel() == 0:  # no entries: A is all zeros
            grad_x = torch.zeros_like(x)
        else:
            # Aᵀ's own transpose is A with the inverse permutation, needed only for a double backward
            back = (torch.empty_like(t_eid).scatter_(0, t_eid, torch.arange(t_eid.numel(), dtype=t_eid.dtype,
                                                                           device=t_eid.device))
                    if torch.is_grad_enabled() else t_eid.new_empty(0))
            none = rowptr.new_empty(0)
            grad_x = torch.ops.gkdfast.csr_mm(t_rowptr, t_col, rowptr if back.numel() else none,
                                              col if back.numel() else none, back,
                                              values.index_select(0, t_eid.long()), grad.contiguous())
    if ctx.input_needs_grad[5]:
        rows = segment_ids(rowptr.diff(), col.numel())
        grad_values = (grad.index_select(0, rows) * x.index_select(0, col.long())).sum(-1)
    return None, None, None, None, None, grad_values, grad_x


def register() -> None:
    """Registers the fake kernels and autograd formulas of spmm, spmm_gcn, spmm_arg_backward and csr_mm."""
    # spmm and spmm_gcn: autograd in C++ (csrc/autograd/spmm_autograd.cpp), fake kernels here.
    register_op("spmm", _spmm_fake)
    register_op("spmm_gcn", _spmm_gcn_fake)
    register_op("spmm_arg_backward", _spmm_arg_backward_fake, _arg_backward_backward, _arg_backward_setup)
    if has_op("csr_mm"):  # (an extension built before the op existed lacks it)
        register_op("csr_mm", _csr_mm_fake, _csr_mm_backward, _csr_mm_setup)
