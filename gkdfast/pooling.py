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
    if not isinstance(x, Tensor) or not isinstance(ptr, Tensor):
        raise TypeError(f"gkdfast.global_pool: x and ptr must be tensors, got {type(x).__name__} and "
                        f"{type(ptr).__name__} (ptr: torch.tensor([0, n_1, n_1 + n_2, ...]))")
    if reduce not in _REDUCES:
        raise ValueError(f"gkdfast.global_pool: reduce must be one of {', '.join(_REDUCES)}, got {reduce!r}")
    if x.dim() != 2:
        raise ValueError(f"gkdfast.global_pool: x must be 2-D [N, d], got shape {list(x.shape)}")
    if ptr.dim() != 1 or ptr.numel() < 1 or ptr.dtype not in (torch.int32, torch.int64):
        raise ValueError("gkdfast.global_pool: ptr must be a 1-D int32/int64 tensor of B + 1 offsets, got "
                         f"{ptr.dtype} {list(ptr.shape)}{_batch_vector_hint(x, ptr)}")
    if ptr.device != x.device:
        raise ValueError(f"gkdfast.global_pool: ptr is on {ptr.device}, x on {x.device}")


def _batch_vector_hint(x: Tensor, ptr: Tensor) -> str:
    """What to do when ``ptr`` looks like PyG's ``batch`` (a graph id per node) rather than offsets."""
    if ptr.dim() == 1 and x.dim() >= 1 and ptr.numel() == x.size(0):
        return ("; ptr has one entry per node: is it a PyG batch vector (a graph id per node)? Offsets from it: "
                "torch.cat([batch.new_zeros(1), torch.bincount(batch).cumsum(0)])")
    return ""


def _check_offsets(ptr: Tensor, n: int, hint: str = "") -> None:
    """The native op's checks of ``ptr``'s values, for the pure-PyTorch path (same messages)."""
    first, last = int(ptr[0]), int(ptr[-1])
    if first != 0:
        raise ValueError(f"gkdfast.global_pool: ptr rowptr[0] must be 0, got {first}{hint}")
    if ptr.numel() > 1 and bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError(f"gkdfast.global_pool: ptr must be non-decreasing{hint}")
    if last != n:
        raise ValueError(f"gkdfast.global_pool: ptr[-1] must be the number of rows of x ({n}), got {last}{hint}")


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
        _check_offsets(ptr, x.size(0), _batch_vector_hint(x, ptr))  # (the native op checks them itself)
        return _ref.global_pool(x, ptr, reduce)
    try:
        out, _ = torch.ops.gkdfast.segment_pool(x, ptr, reduce)
    except ValueError as err:  # the op's own message names it (segment_pool) and its ptr "rowptr"
        raise ValueError(str(err).replace("gkdfast.segment_pool", "gkdfast.global_pool", 1)
                         + _batch_vector_hint(x, ptr)) from None
    return out
