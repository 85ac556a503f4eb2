"""``gkdfast::segment_pool`` and ``gkdfast::segment_pool_backward`` (csrc/ops/segment_pool.h): fake
kernels and autograd (twice differentiable: the backward is linear in its upstream gradient)."""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _pool_fake(x, ptr, reduce):
    b = ptr.shape[0] - 1
    return x.new_empty((b, x.shape[1])), x.new_empty((b, x.shape[1]) if reduce == "max" else (0,), dtype=torch.long)


def _pool_backward_fake(ptr, arg, grad_out, num_nodes, reduce):
    return grad_out.new_empty((num_nodes, grad_out.shape[1]))


def _pool_setup(ctx, inputs, output):
    x, ptr, reduce = inputs
    ctx.reduce, ctx.num_nodes = reduce, x.shape[0]
    ctx.save_for_backward(ptr, output[1])


def _pool_backward(ctx, grad_out, _grad_arg):
    ptr, arg = ctx.saved_tensors
    gx = torch.ops.gkdfast.segment_pool_backward(ptr, arg, grad_out.contiguous(), ctx.num_nodes, ctx.reduce)
    return gx, None, None


# The backward's own backward is the transposed linear map: sum / mean pooling of the upstream
# gradient (sum, mean), or a gather at the winners (max).
def _pool_bwd_setup(ctx, inputs, output):
    ptr, arg, grad_out, num_nodes, reduce = inputs
    ctx.reduce = reduce
    ctx.save_for_backward(ptr, arg)


def _pool_bwd_backward(ctx, u):
    ptr, arg = ctx.saved_tensors
    u = u.contiguous()
    if ctx.reduce == "max":
        g = torch.where(arg >= 0, u.gather(0, arg.clamp_min(0)), torch.zeros((), dtype=u.dtype, device=u.device))
    else:
        g, _ = torch.ops.gkdfast.segment_pool(u, ptr, ctx.reduce)
    return None, None, g, None, None


def register() -> None:
    """Registers the fake kernels and autograd formulas of segment_pool and its backward."""
    if not has_op("segment_pool"):  # an extension built before the op existed
        return
    register_op("segment_pool", _pool_fake, _pool_backward, _pool_setup)
    register_op("segment_pool_backward", _pool_backward_fake, _pool_bwd_backward, _pool_bwd_setup)
