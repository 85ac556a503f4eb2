"""Pure-PyTorch build of an undirected graph's CSR: the oracle of ``gkdfast::symmetric_csr`` and its
fallback (docs/ops.md, "Undirected graphs from pairs").

Sorting all ``2E`` (destination, source) keys at once needs ``2E`` int64 keys plus the sort's
scratch; here one destination range at a time is sorted and deduplicated, so no sort sees more than
about ``2E / buckets`` keys and the result is written straight into one ``2E`` array of ids.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["symmetric_csr"]

# Destination ranges of the build: bound the temporaries to ~1/_BUCKETS of the edges each.
_BUCKETS = 16


def _check_range(src: Tensor, dst: Tensor, num_nodes: int) -> None:
    if src.numel() == 0:
        return
    bad = (src < 0) | (src >= num_nodes) | (dst < 0) | (dst >= num_nodes)
    if bool(bad.any()):
        e = int(bad.nonzero()[0, 0])
        u, v = int(src[e]), int(dst[e])
        raise ValueError(f"gkdfast.symmetric_csr: pair {e} has node id {u if not 0 <= u < num_nodes else v} "
                         f"outside [0, {num_nodes})")


def symmetric_csr(src: Tensor, dst: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
    """``(rowptr [N + 1] int64, col [nnz] with src's dtype)``: every pair ``{src[e], dst[e]}`` with
    ``src[e] != dst[e]`` once in each direction, as a CSR by destination with sorted rows and no
    duplicates.

    Example:
        >>> rowptr, col = symmetric_csr(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 2]), 3)
        >>> rowptr.tolist(), col.tolist()
        ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    n = int(num_nodes)
    if src.dim() != 1 or dst.dim() != 1:
        raise ValueError(f"gkdfast.symmetric_csr: src and dst must be 1-D, got {src.dim()}-D and {dst.dim()}-D")
    if src.numel() != dst.numel():
        raise ValueError(f"gkdfast.symmetric_csr: src and dst differ in length ({src.numel()} vs {dst.numel()})")
    if src.dtype not in (torch.int32, torch.int64) or dst.dtype != src.dtype:
        raise TypeError(f"gkdfast.symmetric_csr: src and dst must be int32 or int64 of one dtype, got "
                        f"{src.dtype} and {dst.dtype}")
    if n < 0:
        raise ValueError(f"gkdfast.symmetric_csr: num_nodes must be >= 0, got {n}")
    if src.dtype == torch.int32 and n > 2**31 - 1:
        raise ValueError(f"gkdfast.symmetric_csr: num_nodes {n} does not fit int32 ids; pass int64 src/dst")
    if -(-n // _BUCKETS) * n >= 2**63:  # the (destination, source) keys below are int64
        raise ValueError(f"gkdfast.symmetric_csr: the reference handles num_nodes up to about 1.2e10, got {n}")
    _check_range(src, dst, n)
    keep = src != dst
    if not bool(keep.all()):
        src, dst = src[keep], dst[keep]
    col = torch.empty(2 * src.numel(), dtype=src.dtype, device=src.device)
    counts = torch.zeros(n, dtype=torch.int64, device=src.device)
    filled = 0
    step = max(1, -(-n // _BUCKETS))
    # each endpoint's destination range as a small int: a range's mask is one compare per pair
    range_dtype = torch.int8 if _BUCKETS < 128 else torch.int32
    dst_range, src_range = (torch.div(v, step, rounding_mode="floor").to(range_dtype) for v in (dst, src))
    for k, lo in enumerate(range(0, n, step)):
        hi = min(n, lo + step)
        a, b = dst_range == k, src_range == k
        d = torch.cat([dst[a], src[b]]).long()
        s = torch.cat([src[a], dst[b]]).long()
        del a, b
        # sorted by destination, then source; duplicates gone
        key = torch.unique_consecutive(torch.sort((d - lo) * n + s).values)
        del d, s
        counts[lo:hi] = torch.bincount(key // n, minlength=hi - lo)
        col[filled:filled + key.numel()] = (key % n).to(col.dtype)
        filled += key.numel()
        del key
    rowptr = torch.zeros(n + 1, dtype=torch.int64, device=src.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    # as the native kernel: a short tail stays unused, a long one is not kept
    return rowptr, col[:filled] if filled >= col.numel() - col.numel() // 8 else col[:filled].clone()
