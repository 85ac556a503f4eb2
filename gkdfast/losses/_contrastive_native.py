"""Fake (meta) kernels and autograd formulas of the native contrastive ops.

``gkdfast::infonce`` returns ``(loss [N], lse [N])`` in the accumulation dtype; its backward is the
explicit ``gkdfast::infonce_backward`` op, which recomputes the logit tiles (or re-draws the Philox
negatives) instead of saving anything N x N or N x K: only the inputs and ``lse`` are saved.
``gkdfast::gram_lse`` (anchors = candidates, the symmetric case) likewise saves ``z`` and ``lse``.
"""
from __future__ import annotations

import torch

from gkdfast._autograd import forbid_double_backward

from gkdfast import _backend

_LIB = "gkdfast::"


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _register():
    @torch.library.register_fake(_LIB + "infonce")
    def _infonce_fake(a, c, inv_tau, pos_offset, exclude_self, num_negatives, seed, row_begin=0):
        n = a.shape[0]
        return a.new_empty((n,), dtype=_acc(a.dtype)), a.new_empty((n,), dtype=_acc(a.dtype))

    @torch.library.register_fake(_LIB + "infonce_backward")
    def _infonce_backward_fake(a, c, lse, grad_loss, grad_lse, inv_tau, pos_offset, exclude_self, num_negatives,
                               seed, row_begin=0):
        return torch.empty_like(a), torch.empty_like(c)

    @torch.library.register_fake(_LIB + "sample_negatives")
    def _sample_negatives_fake(rows, num_nodes, num_negatives, seed):
        return rows.new_empty((rows.shape[0], num_negatives), dtype=torch.int64)

    @torch.library.register_fake(_LIB + "topk_similar")
    def _topk_fake(query, keys, k):
        return query.new_empty((query.shape[0], k)), query.new_empty((query.shape[0], k), dtype=torch.int64)

    def setup(ctx, inputs, output):
        a, c, inv_tau, pos_offset, exclude_self, num_negatives, seed = inputs[:7]
        row_begin = inputs[7] if len(inputs) > 7 else 0  # anchors = rows [row_begin, row_begin + R) of c
        ctx.args = (inv_tau, pos_offset, exclude_self, num_negatives, seed, row_begin)
        ctx.save_for_backward(a, c, output[1])

    def backward(ctx, grad_loss, grad_lse):
        a, c, lse = ctx.saved_tensors
        if grad_loss is None:
            grad_loss = torch.zeros_like(lse)
        if grad_lse is None:
            grad_lse = torch.zeros_like(lse)
        da, dc = torch.ops.gkdfast.infonce_backward(a, c, lse, grad_loss.contiguous(), grad_lse.contiguous(),
                                                    *ctx.args)
        rest = [None] * (len(ctx.needs_input_grad) - 2)
        return (da if ctx.needs_input_grad[0] else None, dc if ctx.needs_input_grad[1] else None, *rest)

    torch.library.register_autograd(_LIB + "infonce", backward, setup_context=setup)
    forbid_double_backward(_LIB + "infonce_backward", "gkdfast.losses.crd / nt_xent / ncontrast")

    if not hasattr(torch.ops.gkdfast, "gram_lse"):  # an older build: losses fall back to infonce's reference
        return

    @torch.library.register_fake(_LIB + "gram_lse")
    def _gram_lse_fake(z, inv_tau, exclude_self):
        return z.new_empty((z.shape[0],), dtype=_acc(z.dtype))

    @torch.library.register_fake(_LIB + "gram_lse_backward")
    def _gram_lse_backward_fake(z, lse, grad, inv_tau, exclude_self):
        return torch.empty_like(z)

    def gram_setup(ctx, inputs, output):
        z, inv_tau, exclude_self = inputs
        ctx.args = (inv_tau, exclude_self)
        ctx.save_for_backward(z, output)

    def gram_backward(ctx, grad):
        z, lse = ctx.saved_tensors
        return torch.ops.gkdfast.gram_lse_backward(z, lse, grad.contiguous(), *ctx.args), None, None

    torch.library.register_autograd(_LIB + "gram_lse", gram_backward, setup_context=gram_setup)
    forbid_double_backward(_LIB + "gram_lse_backward", "gkdfast.losses.nt_xent / ncontrast")


if _backend.native_loaded() and hasattr(torch.ops.gkdfast, "infonce"):
    _register()
