"""``gkdfast::gsp_tiled`` and ``gkdfast::gsp_tiled_backward`` (csrc/ops/gsp.h): fake kernels and autograd.

Rows ``[row_begin, row_end)`` against all columns with a streaming log-sum-exp; the backward
recomputes the tiles and returns gradients for every row of both inputs (the rows' own side and the
column side of their pairs).  Only O(N) row statistics are saved.
"""
from __future__ import annotations

import torch

from gkdfast._native._common import register_op


def _gsp_fake(student, teacher, kernel, loss, gamma, tau, row_begin=0, row_end=-1):
    n = (student.shape[0] if row_end < 0 else row_end) - row_begin
    out = torch.float64 if student.dtype == torch.float64 else torch.float32  # csrc/ops/gsp.h gsp_output_dtype
    return student.new_empty((n,), dtype=out), student.new_empty((n, 2), dtype=out)


def _gsp_backward_fake(student, teacher, per_row, stats, grad, kernel, loss, gamma, tau, need_student,
                       need_teacher, row_begin=0, row_end=-1):
    gs = torch.empty_like(student, memory_format=torch.contiguous_format) if need_student else student.new_empty((0,))
    gt = torch.empty_like(teacher, memory_format=torch.contiguous_format) if need_teacher else teacher.new_empty((0,))
    return gs, gt


def _gsp_setup(ctx, inputs, output):
    student, teacher, kernel, loss, gamma, tau = inputs[:6]
    ctx.args = (kernel, loss, gamma, tau)
    ctx.rows = tuple(inputs[6:8]) if len(inputs) > 6 else (0, -1)
    ctx.save_for_backward(student, teacher, output[0], output[1])
    ctx.mark_non_differentiable(output[1])  # saved statistics: a gradient through them would be dropped


def _gsp_backward(ctx, grad_row, _grad_stats):
    student, teacher, per_row, stats = ctx.saved_tensors
    need_s, need_t = ctx.input_needs_grad[0], ctx.input_needs_grad[1]
    nones = [None] * len(ctx.input_needs_grad)
    if not (need_s or need_t) or grad_row is None:
        return tuple(nones)
    gs, gt = torch.ops.gkdfast.gsp_tiled_backward(student, teacher, per_row, stats, grad_row.contiguous(),
                                                  *ctx.args, need_s, need_t, *ctx.rows)
    nones[0] = gs if need_s else None
    nones[1] = gt if need_t else None
    return tuple(nones)


def register() -> None:
    """Registers the fake kernels of gsp_tiled / its backward, gsp_tiled's autograd, and refuses
    double backward."""
    register_op("gsp_tiled", _gsp_fake, _gsp_backward, _gsp_setup)
    register_op("gsp_tiled_backward", _gsp_backward_fake, no_double_backward="gkdfast.losses.gsp")
