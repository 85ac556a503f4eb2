"""``gkdfast::sddmm`` (csrc/ops/sddmm.h): fake kernel and autograd.

``out[e] = a[i] . b[j]`` per edge ``e = (j -> i)``, so ``grad_a = A (g) b`` (spmm over the CSR with
the edge gradient as weights) and ``grad_b = A^T (g) a`` (spmm over the transposed CSR).
"""
from __future__ import annotations

import torch

from gkdfast._native._common import inverse_permutation, needs_transpose_error, register_op


def _sddmm_fake(rowptr, col, t_rowptr, t_col, t_eid, a, b):
    return a.new_empty((col.shape[0],))


def _sddmm_setup(ctx, inputs, output):
    rowptr, col, t_rowptr, t_col, t_eid, a, b = inputs
    ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, a, b)


def _sddmm_backward(ctx, g):
    rowptr, col, t_rowptr, t_col, t_eid, a, b = ctx.saved_tensors
    if t_rowptr.numel() == 0 and col.numel() > 0:
        raise needs_transpose_error("sddmm")
    if col.numel() == 0:  # an edgeless graph (possibly without a transposed CSR): nothing flows back
        return (None, None, None, None, None, torch.zeros_like(a) if ctx.input_needs_grad[5] else None,
                torch.zeros_like(b) if ctx.input_needs_grad[6] else None)
    grad_a = grad_b = None
    g = g.contiguous()
    if ctx.input_needs_grad[5]:
        grad_a, _ = torch.ops.gkdfast.spmm(rowptr, col, t_rowptr, t_col, t_eid, g, b, "sum")
    if ctx.input_needs_grad[6]:
        back_t = (rowptr, col, inverse_permutation(t_eid)) if torch.is_grad_enabled() else (col.new_empty(0),) * 3
        grad_b, _ = torch.ops.gkdfast.spmm(t_rowptr, t_col, *back_t, g[t_eid.long()], a, "sum")
    return None, None, None, None, None, grad_a, grad_b


def register() -> None:
    """Registers the fake kernel and autograd formula of sddmm."""
    register_op("sddmm", _sddmm_fake, _sddmm_backward, _sddmm_setup)
