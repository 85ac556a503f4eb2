"""Fake kernels and autograd formulas for the native structure-loss ops (lsp, gsp_tiled).

Backward passes are explicit ``*_backward`` ops that recompute kernel values from the rows: nothing
per-edge or per-pair is saved, only O(N) row statistics (log-sum-exps, per-row losses).
"""
from __future__ import annotations

import torch

from gkdfast._autograd import forbid_double_backward

from gkdfast import _backend

_LIB = "gkdfast::"


def _register():
    @torch.library.register_fake(_LIB + "lsp")
    def _lsp_fake(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, kernel, gamma, tau):
        n = rowptr.shape[0] - 1
        return student.new_empty((n,)), student.new_empty((n, 2))

    @torch.library.register_fake(_LIB + "lsp_backward")
    def _lsp_backward_fake(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, per_node, lse, grad, kernel,
                           gamma, tau, need_student, need_teacher):
        gs = torch.empty_like(student) if need_student else student.new_empty((0,))
        gt = torch.empty_like(teacher) if need_teacher else teacher.new_empty((0,))
        return gs, gt

    @torch.library.register_fake(_LIB + "gsp_tiled")
    def _gsp_fake(student, teacher, kernel, loss, gamma, tau, row_begin=0, row_end=-1):
        n = (student.shape[0] if row_end < 0 else row_end) - row_begin
        return student.new_empty((n,)), student.new_empty((n, 2))

    @torch.library.register_fake(_LIB + "gsp_tiled_backward")
    def _gsp_backward_fake(student, teacher, per_row, stats, grad, kernel, loss, gamma, tau, need_student,
                           need_teacher, row_begin=0, row_end=-1):
        gs = torch.empty_like(student) if need_student else student.new_empty((0,))
        gt = torch.empty_like(teacher) if need_teacher else teacher.new_empty((0,))
        return gs, gt

    # --- lsp: d/d(student, teacher) of sum_i grad_i * per_node_i (the lse output carries no gradient)
    def lsp_setup(ctx, inputs, output):
        rowptr, col, t_rowptr, t_col, t_eid, student, teacher, kernel, gamma, tau = inputs
        ctx.args = (kernel, gamma, tau)
        ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, output[0], output[1])

    def lsp_backward(ctx, grad_node, _grad_lse):
        rowptr, col, t_rowptr, t_col, t_eid, student, teacher, per_node, lse = ctx.saved_tensors
        need_s, need_t = ctx.needs_input_grad[5], ctx.needs_input_grad[6]
        nones = [None] * 10
        if not (need_s or need_t) or grad_node is None:
            return tuple(nones)
        if t_rowptr.numel() == 0 and col.numel() > 0:
            raise RuntimeError("gkdfast.lsp: backward needs the transposed CSR, which was not passed to the op")
        gs, gt = torch.ops.gkdfast.lsp_backward(rowptr, col, t_rowptr, t_col, t_eid, student, teacher, per_node,
                                                lse, grad_node.contiguous(), *ctx.args, need_s, need_t)
        nones[5] = gs if need_s else None
        nones[6] = gt if need_t else None
        return tuple(nones)

    torch.library.register_autograd(_LIB + "lsp", lsp_backward, setup_context=lsp_setup)

    # --- gsp_tiled: rows [row_begin, row_end) against all columns; the backward returns gradients for
    # every row of both inputs (the rows' own side and the column side of their pairs).
    def gsp_setup(ctx, inputs, output):
        student, teacher, kernel, loss, gamma, tau = inputs[:6]
        ctx.args = (kernel, loss, gamma, tau)
        ctx.rows = tuple(inputs[6:8]) if len(inputs) > 6 else (0, -1)
        ctx.save_for_backward(student, teacher, output[0], output[1])

    def gsp_backward(ctx, grad_row, _grad_stats):
        student, teacher, per_row, stats = ctx.saved_tensors
        need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        nones = [None] * len(ctx.needs_input_grad)
        if not (need_s or need_t) or grad_row is None:
            return tuple(nones)
        gs, gt = torch.ops.gkdfast.gsp_tiled_backward(student, teacher, per_row, stats, grad_row.contiguous(),
                                                      *ctx.args, need_s, need_t, *ctx.rows)
        nones[0] = gs if need_s else None
        nones[1] = gt if need_t else None
        return tuple(nones)

    torch.library.register_autograd(_LIB + "gsp_tiled", gsp_backward, setup_context=gsp_setup)
    forbid_double_backward(_LIB + "lsp_backward", "gkdfast.losses.lsp")
    forbid_double_backward(_LIB + "gsp_tiled_backward", "gkdfast.losses.gsp")


if _backend.native_loaded():
    _register()
