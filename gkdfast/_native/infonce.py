"""``gkdfast::infonce``, ``infonce_backward``, ``sample_negatives`` and ``topk_similar``
(csrc/ops/infonce.h): fake kernels and autograd.

``infonce`` returns ``(loss [R], lse [R])`` in the accumulation dtype; its backward is the explicit
``infonce_backward`` op, which recomputes the logit tiles (or re-draws the Philox negatives) instead
of saving anything N x N or N x K: only the inputs and ``lse`` are saved.  ``sample_negatives`` has no
gradient (indices).  ``topk_similar``'s values ``query_q . keys_idx`` get theirs from the saved indices
(the public ``gkdfast.topk_similar`` recomputes its values in Python instead, from normalised rows).
"""
from __future__ import annotations

import torch

from gkdfast._native._common import acc_dtype, has_op, register_op


def _infonce_fake(a, c, inv_tau, pos_offset, exclude_self, num_negatives, seed, row_begin=0):
    n = a.shape[0]
    return a.new_empty((n,), dtype=acc_dtype(a.dtype)), a.new_empty((n,), dtype=acc_dtype(a.dtype))


def _infonce_backward_fake(a, c, lse, grad_loss, grad_lse, inv_tau, pos_offset, exclude_self, num_negatives,
                           seed, row_begin=0):
    dense = torch.contiguous_format  # the kernel makes its inputs contiguous first
    return torch.empty_like(a, memory_format=dense), torch.empty_like(c, memory_format=dense)


def _sample_negatives_fake(rows, num_nodes, num_negatives, seed):
    return rows.new_empty((rows.shape[0], num_negatives), dtype=torch.int64)


def _topk_fake(query, keys, k):
    return query.new_empty((query.shape[0], k)), query.new_empty((query.shape[0], k), dtype=torch.int64)


def _setup(ctx, inputs, output):
    a, c, inv_tau, pos_offset, exclude_self, num_negatives, seed = inputs[:7]
    row_begin = inputs[7] if len(inputs) > 7 else 0  # anchors = rows [row_begin, row_begin + R) of c
    ctx.args = (inv_tau, pos_offset, exclude_self, num_negatives, seed, row_begin)
    ctx.save_for_backward(a, c, output[1])


def _backward(ctx, grad_loss, grad_lse):
    a, c, lse = ctx.saved_tensors
    if grad_loss is None:
        grad_loss = torch.zeros_like(lse)
    if grad_lse is None:
        grad_lse = torch.zeros_like(lse)
    da, dc = torch.ops.gkdfast.infonce_backward(a, c, lse, grad_loss.contiguous(), grad_lse.contiguous(), *ctx.args)
    rest = [None] * (len(ctx.input_needs_grad) - 2)
    return (da if ctx.input_needs_grad[0] else None, dc if ctx.input_needs_grad[1] else None, *rest)


def _topk_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1], output[1])


def _topk_backward(ctx, grad_values, grad_idx):
    query, keys, idx = ctx.saved_tensors
    if grad_values is None:
        return None, None, None
    gq = (grad_values.unsqueeze(2) * keys[idx]).sum(1) if ctx.input_needs_grad[0] else None
    gk = None
    if ctx.input_needs_grad[1]:
        rows = (grad_values.unsqueeze(2) * query.unsqueeze(1)).reshape(-1, query.shape[1])
        gk = torch.zeros_like(keys).index_add_(0, idx.reshape(-1), rows)
    return gq, gk, None


def register() -> None:
    """Registers the family's fake kernels and infonce's autograd (nothing on a build without it)."""
    if not has_op("infonce"):
        return
    register_op("infonce", _infonce_fake, _backward, _setup)
    register_op("infonce_backward", _infonce_backward_fake,
                no_double_backward="gkdfast.losses.crd / nt_xent / ncontrast")
    register_op("sample_negatives", _sample_negatives_fake)
    register_op("topk_similar", _topk_fake, _topk_backward, _topk_setup)
