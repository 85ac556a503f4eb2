"""Global pooling of node features into one row per graph of a batch (graph classification).

The nodes of a batch of small graphs are stored graph after graph (see ``gkdfast.data`` batching),
so graph ``b`` owns the contiguous rows ``ptr[b] <= i < ptr[b+1]``: pooling is a segment
reduction over ``ptr`` with no scatter and no atomics.
"""
from __future__ import annotations

from torch import Tensor

from gkdfast.reference import pooling as _ref

__all__ = ["global_pool"]

_REDUCES = ("sum", "mean", "max")


def global_pool(x: Tensor, ptr: Tensor, reduce: str = "sum") -> Tensor:
    """One row per graph: ``out[b] = reduce over i in [ptr[b], ptr[b+1]) of x[i]`` (0 for an empty graph).

    Args:
        x: ``[N, d]`` node features of the whole batch, graph after graph.
        ptr: ``[B + 1]`` int64 offsets, ``ptr[0] = 0``, non-decreasing, ``ptr[B] = N``.
        reduce: ``"sum"``, ``"mean"`` or ``"max"`` (max: the gradient goes to the first maximal node).

    Returns:
        ``[B, d]`` tensor.

    Example:
        >>> import torch, gkdfast
        >>> x = torch.tensor([[1.0], [2.0], [5.0]])
        >>> gkdfast.pooling.global_pool(x, torch.tensor([0, 2, 3]), "mean")
        tensor([[1.5000],
                [5.0000]])
    """
    if reduce not in _REDUCES:
        raise ValueError(f"gkdfast.global_pool: reduce must be one of {', '.join(_REDUCES)}, got {reduce!r}")
    if x.dim() != 2:
        raise ValueError(f"gkdfast.global_pool: x must be 2-D [N, d], got shape {tuple(x.shape)}")
    if ptr.dim() != 1 or ptr.numel() < 1 or ptr.dtype.is_floating_point:
        raise ValueError(f"gkdfast.global_pool: ptr must be a 1-D integer tensor of B + 1 offsets, got {tuple(ptr.shape)}")
    if int(ptr[0]) != 0 or int(ptr[-1]) != x.size(0) or bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError(f"gkdfast.global_pool: ptr must start at 0, never decrease and end at N = {x.size(0)}")
    return _ref.global_pool(x, ptr.to(x.device), reduce)
