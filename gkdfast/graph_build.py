"""Building an undirected :class:`~gkdfast.Graph` from an edge list, in O(E) time and memory.

Loaders of undirected graphs (Planetoid, MUSAE, OGB, the synthetic generators) get a list of pairs,
often with both directions, repeats and self-loops.  :func:`symmetric_csr` turns it into the CSR by
destination a :class:`~gkdfast.Graph` stores: the native kernel (``gkdfast::symmetric_csr``) counts
and scatters both directions of every pair and sorts each row on its own, where a sort of all ``2E``
int64 keys would need several times the edge list's memory (docs/ops.md, "Undirected graphs from pairs").
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["symmetric_csr", "undirected_graph"]


def _ids(values, name: str) -> Tensor:
    if isinstance(values, Tensor):
        t = values
    else:
        arr = np.asarray(values)
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"gkdfast.symmetric_csr: {name} has node id {int(arr.max())}, past int64")
        t = torch.as_tensor(arr if arr.size else arr.astype(np.int64))  # an empty list reads as float64
    if t.dtype not in (torch.int32, torch.int64):
        if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"gkdfast.symmetric_csr: {name} must hold integer node ids, got {t.dtype}")
        t = t.to(torch.int64)  # int8/int16/uint8 ids
    if t.dim() > 1:
        raise ValueError(f"gkdfast.symmetric_csr: {name} must be 1-D, got shape {list(t.shape)} "
                         "(for an edge_index pass edge_index[0] and edge_index[1])")
    return t.reshape(-1)


def symmetric_csr(src, dst, num_nodes: int) -> Tuple[Tensor, Tensor]:
    """The CSR by destination of the undirected graph on the pairs ``{src[e], dst[e]}``.

    Every pair with ``src[e] != dst[e]`` is stored once in each direction; self-loops and repeated
    pairs (in either direction) are dropped, and each row lists its sources in increasing order.
    The result depends only on the set of pairs.

    Args:
        src, dst: ``[E]`` node ids (tensors or array-likes of one integer dtype; int32 ids give an
            int32 ``col``, anything else int64), each in ``[0, num_nodes)``.
        num_nodes: ``N``.

    Returns:
        ``(rowptr [N + 1] int64, col [nnz])``, on ``src``'s device.

    Example:
        >>> rowptr, col = symmetric_csr(torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 2]), 3)
        >>> rowptr.tolist(), col.tolist()
        ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    from gkdfast import _backend
    from gkdfast.reference import graph_build as ref

    src, dst = _ids(src, "src"), _ids(dst, "dst")
    if src.dtype != dst.dtype:
        src, dst = src.to(torch.int64), dst.to(torch.int64)
    if src.device != dst.device:
        raise ValueError(f"gkdfast.symmetric_csr: src and dst must be on one device, got {src.device} and {dst.device}")
    if isinstance(num_nodes, bool) or int(num_nodes) != num_nodes:  # (3.9 was read as 3)
        raise TypeError(f"gkdfast.symmetric_csr: num_nodes must be an int, got {num_nodes!r}")
    num_nodes = int(num_nodes)  # lengths and num_nodes: both backends check them, with one message
    if src.dtype == torch.int32 and num_nodes > 2**31 - 1:
        src, dst = src.to(torch.int64), dst.to(torch.int64)
    if _backend.choose("symmetric_csr", src.device) != "reference":
        return torch.ops.gkdfast.symmetric_csr(src, dst, num_nodes)
    return ref.symmetric_csr(src, dst, num_nodes)


def undirected_graph(src, dst, num_nodes: int, index_dtype=None):
    """A :class:`~gkdfast.Graph` with every pair ``{u, v}`` (``u != v``) of the edge list stored once
    in each direction (:func:`symmetric_csr`); it needs no permutation (already in CSR order).

    ``index_dtype``: the Graph's int dtype; default int32 for int32 ids (int64 when the edge count
    does not fit), int64 otherwise.

    Example:
        >>> g = undirected_graph([0, 1, 2], [1, 0, 0], 3)
        >>> g.num_edges, g.edge_index.tolist()
        (4, [[1, 2, 0, 0], [0, 0, 1, 2]])
    """
    from gkdfast.graph import Graph

    rowptr, col = symmetric_csr(src, dst, num_nodes)
    if index_dtype is None:
        index_dtype = col.dtype
    elif index_dtype not in (torch.int32, torch.int64):
        raise TypeError(f"undirected_graph: index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
    if index_dtype == torch.int32 and (col.numel() >= 2**31 - 1 or int(num_nodes) > 2**31 - 1):
        index_dtype = torch.int64  # int32 cannot hold these offsets or ids
    return Graph._from_parts(rowptr.to(index_dtype), col.to(index_dtype), int(num_nodes))
