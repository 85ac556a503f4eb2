"""Global pooling of node features into one row per graph of a batch (graph classification).

The nodes of a batch of small graphs are stored graph after graph, so graph ``b`` owns the
contiguous rows ``ptr[b] <= i < ptr[b+1]``: pooling is a segment reduction over ``ptr`` (native op
``torch.ops.gkdfast.segment_pool``, CPU and CUDA) with no scatter and no atomics, deterministic in
both directions.  The pure-PyTorch oracle is ``gkdfast.reference.pooling.global_pool``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gkdfast import _backend
from gkdfast.reference import pooling as _ref

__all__ = ["global_pool"]

_REDUCES = ("sum", "mean", "max")


def _check(x: Tensor, ptr: Tensor, reduce: str) -> None:
    if reduce not in _REDUCES:
        raise ValueError(f"gkdfast.global_pool: reduce must be one of {', '.join(_REDUCES)}, got {reduce!r}")
    if x.dim() != 2:
        raise ValueError(f"gkdfast.global_pool: x must be 2-D [N, d], got shape {tuple(x.shape)}")
    if ptr.dim() != 1 or ptr.numel() < 1 or ptr.dtype not in (torch.int32, torch.int64):
        raise ValueError("gkdfast.global_pool: ptr must be a 1-D int32/int64 tensor of B + 1 offsets, got "
                         f"{ptr.dtype} {tuple(ptr.shape)}")
    if ptr.device != x.device:
        raise ValueError(f"gkdfast.global_pool: ptr is on {ptr.device}, x on {x.device}")


def global_pool(x: Tensor, ptr: Tensor, reduce: str = "sum") -> Tensor:
    """One row per graph: ``out[b] = reduce over i in [ptr[b], ptr[b+1]) of x[i]`` (0 for an empty graph).

    Args:
        x: ``[N, d]`` node features of the whole batch, graph after graph (float32/float64 on CPU,
            also float16/bfloat16 on CUDA).
        ptr: ``[B + 1]`` int64 (or int32) offsets on x's device: ``ptr[0] = 0``, non-decreasing,
            ``ptr[B] = N`` (checked; a malformed ``ptr`` is a ValueError).
        reduce: ``"sum"``, ``"mean"`` or ``"max"`` (max: the gradient goes to the first maximal node
            of each graph and feature).

    Returns:
        ``[B, d]`` tensor, differentiable w.r.t. ``x`` (twice for sum/mean/max).

    Example:
        >>> import torch, gkdfast
        >>> x = torch.tensor([[1.0], [2.0], [5.0]])
        >>> gkdfast.pooling.global_pool(x, torch.tensor([0, 2, 3]), "mean")
        tensor([[1.5000],
                [5.0000]])
    """
    _check(x, ptr, reduce)
    if _backend.choose("segment_pool", x.device, x.dtype) == "reference":
        return _ref.global_pool(x, ptr, reduce)
    out, _ = torch.ops.gkdfast.segment_pool(x, ptr, reduce)
    return out


def _register_native():
    lib = "gkdfast::"

    @torch.library.register_fake(lib + "segment_pool")
    def _pool_fake(x, ptr, reduce):
        b = ptr.shape[0] - 1
        return x.new_empty((b, x.shape[1])), x.new_empty((b, x.shape[1]) if reduce == "max" else (0,), dtype=torch.long)

    @torch.library.register_fake(lib + "segment_pool_backward")
    def _pool_backward_fake(ptr, arg, grad_out, num_nodes, reduce):
        return grad_out.new_empty((num_nodes, grad_out.shape[1]))

    def pool_setup(ctx, inputs, output):
        x, ptr, reduce = inputs
        ctx.reduce, ctx.num_nodes = reduce, x.shape[0]
        ctx.save_for_backward(ptr, output[1])

    def pool_backward(ctx, grad_out, _grad_arg):
        ptr, arg = ctx.saved_tensors
        gx = torch.ops.gkdfast.segment_pool_backward(ptr, arg, grad_out.contiguous(), ctx.num_nodes, ctx.reduce)
        return gx, None, None

    torch.library.register_autograd(lib + "segment_pool", pool_backward, setup_context=pool_setup)

    # The backward is linear in grad_out: its own backward is the transposed map, i.e. sum / mean
    # pooling of the upstream gradient (sum, mean), or a gather at the winners (max).
    def pool_bwd_setup(ctx, inputs, output):
        ptr, arg, grad_out, num_nodes, reduce = inputs
        ctx.reduce = reduce
        ctx.save_for_backward(ptr, arg)

    def pool_bwd_backward(ctx, u):
        ptr, arg = ctx.saved_tensors
        u = u.contiguous()
        if ctx.reduce == "max":
            safe = arg.clamp_min(0)
            g = torch.where(arg >= 0, u.gather(0, safe), torch.zeros((), dtype=u.dtype, device=u.device))
        else:
            g, _ = torch.ops.gkdfast.segment_pool(u, ptr, ctx.reduce)
        return None, None, g, None, None

    torch.library.register_autograd(lib + "segment_pool_backward", pool_bwd_backward, setup_context=pool_bwd_setup)


if _backend.native_loaded() and hasattr(torch.ops.gkdfast, "segment_pool"):
    _register_native()
