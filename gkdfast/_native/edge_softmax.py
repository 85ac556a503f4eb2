"""``gkdfast::edge_softmax`` and ``gkdfast::edge_softmax_backward`` (csrc/ops/edge_softmax.h): fake
kernels, and the autograd formula of ``edge_softmax_backward`` (double backward).  ``edge_softmax``'s own
autograd is C++ (csrc/autograd/edge_softmax_autograd.cpp): its gradient is ``edge_softmax_backward``."""
from __future__ import annotations

import torch
from torch import Tensor

from gkdfast._native._common import register_op


def _row_sum_per_edge(rowptr: Tensor, v: Tensor) -> Tensor:
    """For per-edge ``v`` ([E] or [E, H], CSR order): each edge gets the sum of ``v`` over its
    destination row (segment sums, deterministic; used only by double backward)."""
    offsets = rowptr.long()
    sums = torch.segment_reduce(v, "sum", offsets=offsets, axis=0)
    return torch.repeat_interleave(sums, offsets[1:] - offsets[:-1], dim=0, output_size=v.shape[0])


def _edge_softmax_fake(rowptr, scores):
    return torch.empty_like(scores, memory_format=torch.contiguous_format)


def _edge_softmax_backward_fake(rowptr, out, grad_out):
    return torch.empty_like(out, memory_format=torch.contiguous_format)


# edge_softmax_backward (double backward): z = y (g - S), S = row-sum of y g.  With upstream u:
# dz/dg = y (u - row-sum(y u)) (the same op), dz/dy = u (g - S) - g row-sum(u y).
def _softmax_bwd_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _softmax_bwd_backward(ctx, u):
    rowptr, y, g = ctx.saved_tensors
    u = u.contiguous()
    grad_y = grad_g = None
    if ctx.input_needs_grad[2]:
        grad_g = torch.ops.gkdfast.edge_softmax_backward(rowptr, y, u)
    if ctx.input_needs_grad[1]:
        g = g.to(y.dtype)
        grad_y = u * (g - _row_sum_per_edge(rowptr, y * g)) - g * _row_sum_per_edge(rowptr, u * y)
    return None, grad_y, grad_g


def register() -> None:
    """Registers the fake kernels of edge_softmax and its backward, and the backward's autograd formula."""
    register_op("edge_softmax", _edge_softmax_fake)
    register_op("edge_softmax_backward", _edge_softmax_backward_fake, _softmax_bwd_backward, _softmax_bwd_setup)
