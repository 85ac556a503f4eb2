"""``gkdfast::gram_lse`` and ``gram_lse_backward`` (csrc/ops/gram_lse.h): fake kernels and autograd.

The symmetric case of infonce (anchors = candidates): ``lse_i = log sum_j exp(z_i . z_j * inv_tau)``
over the tiles on and above the diagonal; ``z`` and ``lse`` are saved, the tiles recomputed.
"""
from __future__ import annotations

import torch

from gkdfast._native._common import acc_dtype, has_op, register_op


def _gram_lse_fake(z, inv_tau, exclude_self):
    return z.new_empty((z.shape[0],), dtype=acc_dtype(z.dtype))


def _gram_lse_backward_fake(z, lse, grad, inv_tau, exclude_self):
    return torch.empty_like(z, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    z, inv_tau, exclude_self = inputs
    ctx.args = (inv_tau, exclude_self)
    ctx.save_for_backward(z, output)


def _backward(ctx, grad):
    z, lse = ctx.saved_tensors
    return torch.ops.gkdfast.gram_lse_backward(z, lse, grad.contiguous(), *ctx.args), None, None


def register() -> None:
    """Registers gram_lse's fake kernels and autograd (an older build without it: the losses fall
    back to infonce's reference)."""
    if not has_op("gram_lse"):
        return
    register_op("gram_lse", _gram_lse_fake, _backward, _setup)
    register_op("gram_lse_backward", _gram_lse_backward_fake, no_double_backward="gkdfast.losses.nt_xent / ncontrast")
