"""Index arithmetic of segmented (CSR-style) layouts, written once: the segment of every element,
and the concatenation of many index ranges.  Both are vectorised (no Python loop over segments) and
stay on the device of their inputs."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["segment_ids", "concat_ranges"]


def segment_ids(counts: Tensor, total: Optional[int] = None, dtype: torch.dtype = torch.int64) -> Tensor:
    """The segment of each element when segment ``i`` holds ``counts[i]`` consecutive elements: the row
    of each entry of a CSR matrix (``counts = rowptr.diff()``), the graph of each node of a batch.

    Args:
        counts: ``[S]`` non-negative integers.  total: ``counts.sum()`` when known (no device sync, and a
            static size for ``torch.compile``).  dtype: of the result.

    Returns:
        ``[sum(counts)]`` ids in ``[0, S)``, non-decreasing.

    Example:
        >>> segment_ids(torch.tensor([2, 0, 3]))
        tensor([0, 0, 2, 2, 2])
    """
    ids = torch.arange(counts.numel(), device=counts.device, dtype=dtype)
    return torch.repeat_interleave(ids, counts, output_size=total)


def concat_ranges(start: Tensor, count: Tensor, total: Optional[int] = None, seg: Optional[Tensor] = None) -> Tensor:
    """``arange(start[i], start[i] + count[i])`` concatenated over ``i``: the positions of chosen CSR rows'
    entries, the node ids of chosen graphs of a batch.

    Args:
        start: ``[S]`` first index of each range.  count: ``[S]`` its length (>= 0).  total:
            ``count.sum()`` when known.  seg: ``segment_ids(count)`` when the caller has it (not
            computed again).

    Returns:
        ``[sum(count)]`` indices, range by range, in the dtype of ``start``.

    Example:
        >>> concat_ranges(torch.tensor([5, 0, 2]), torch.tensor([2, 1, 3]))
        tensor([5, 6, 0, 2, 3, 4])
    """
    if seg is None:
        seg = segment_ids(count, total)
    # output j of range i is start[i] + (j - first output of range i)
    shift = (start - (count.cumsum(0) - count).to(start.dtype))[seg]
    return shift + torch.arange(seg.numel(), device=seg.device, dtype=start.dtype)
