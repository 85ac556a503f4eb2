"""``gkdfast::lsp`` and ``gkdfast::lsp_backward`` (csrc/ops/lsp.h): fake kernels and autograd.

The backward is an explicit op that recomputes kernel values from the rows: nothing per-edge is
saved, only two scalars per node (the per-node loss and the two log-sum-exps).
"""
from __future__ import annotations

import torch

from gkdfast._native._common import needs_transpose_error, register_op


def _lsp_fake(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, kernel, gamma, tau):
    n = rowptr.shape[0] - 1
    # the precision the kernel computes them in: float64 on the CPU, the accumulation type on CUDA
    wide = student.device.type != "cuda" or student.dtype == torch.float64
    out = torch.float64 if wide else torch.float32
    return student.new_empty((n,), dtype=out), student.new_empty((n, 2), dtype=out)


def _lsp_backward_fake(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, per_node, lse, grad, kernel,
                       gamma, tau, need_student, need_teacher):
    gs = torch.empty_like(student, memory_format=torch.contiguous_format) if need_student else student.new_empty((0,))
    gt = torch.empty_like(teacher, memory_format=torch.contiguous_format) if need_teacher else teacher.new_empty((0,))
    return gs, gt


# d/d(student, teacher) of sum_i grad_i * per_node_i (the lse output carries no gradient)
def _lsp_setup(ctx, inputs, output):
    rowptr, col, t_rowptr, t_col, t_eid, student, teacher, kernel, gamma, tau = inputs
    ctx.args = (kernel, gamma, tau)
    ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, output[0], output[1])
    ctx.mark_non_differentiable(output[1])  # saved statistics: a gradient through them would be dropped


def _lsp_backward(ctx, grad_node, _grad_lse):
    rowptr, col, t_rowptr, t_col, t_eid, student, teacher, per_node, lse = ctx.saved_tensors
    need_s, need_t = ctx.input_needs_grad[5], ctx.input_needs_grad[6]
    nones = [None] * 10
    if not (need_s or need_t) or grad_node is None:
        return tuple(nones)
    if t_rowptr.numel() == 0 and col.numel() > 0:
        raise needs_transpose_error("lsp")
    gs, gt = torch.ops.gkdfast.lsp_backward(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, per_node,
                                            lse, grad_node.contiguous(), *ctx.args, need_s, need_t)
    nones[5] = gs if need_s else None
    nones[6] = gt if need_t else None
    return tuple(nones)


def register() -> None:
    """Registers the fake kernels of lsp / lsp_backward, lsp's autograd, and refuses double backward."""
    register_op("lsp", _lsp_fake, _lsp_backward, _lsp_setup)
    register_op("lsp_backward", _lsp_backward_fake, no_double_backward="gkdfast.losses.lsp")
