"""``sample_neighbors``: uniform, seeded, deterministic in-neighbour sampling over a Graph's CSR.

The native CPU and CUDA kernels (``torch.ops.gkdfast.sample_neighbors``, one shared per-node draw in
``csrc/common/neighbor_draw.h``) and the pure-PyTorch reference (:mod:`gkdfast.reference.sampling`)
draw the same Philox words, keyed by ``(seed, node, hop)``, so a node's sample is the same whatever
the thread count, the batch it is in, or the backend.  A graph on a CUDA device samples there; a CPU
graph with a GPU model samples on the CPU and moves the (small) blocks and the gathered features to
the GPU (see :class:`gkdfast.sampling.NeighborLoader`).
"""
from __future__ import annotations

import operator
from typing import Optional, Tuple

import torch
from torch import Tensor

from gkdfast import _backend
from gkdfast._checks import check_graph
from gkdfast.graph import Graph
from gkdfast.reference import sampling as ref

__all__ = ["sample_neighbors"]

_OP = "sample_neighbors"


def as_int(value) -> Optional[int]:
    """``value`` as an int when it is a Python or numpy integer (not a bool), else ``None``.

    Example:
        >>> import numpy as np
        >>> as_int(np.int64(3)), as_int(True), as_int(2.0)
        (3, None, None)
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_int(value, name: str) -> int:
    v = as_int(value)
    if v is None:
        raise TypeError(f"gkdfast.sample_neighbors: {name} must be an int, got {type(value).__name__}")
    return v


def sample_neighbors(graph: Graph, seeds: Tensor, fanout: int, seed: int = 0,
                     hop: int = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """Samples ``min(deg, fanout)`` distinct in-neighbours of each seed node, uniformly.

    Args:
        graph: a :class:`gkdfast.Graph` (CSR by destination: a node's in-neighbours are the sources
            of its messages, as in :func:`gkdfast.spmm`).
        seeds: ``[S]`` int32/int64 node ids (repeats allowed: a repeated node gets the same sample).
        fanout: neighbours per node (``-1``: all of them).
        seed: non-negative int; with ``hop`` (``0 <= hop < 65536``) it keys the Philox stream.

    Returns:
        ``(rowptr [S+1] int64, nbr [nnz], eid [nnz])``: seed ``t``'s neighbours are
        ``nbr[rowptr[t]:rowptr[t+1]]`` (global ids, in CSR order) and ``eid`` their edge positions in
        the graph's CSR (index ``graph.col`` / CSR-ordered edge weights with it); ``nbr``/``eid`` have
        the graph's index dtype.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[1, 2, 3, 0], [0, 0, 0, 1]]))
        >>> rowptr, nbr, eid = sample_neighbors(g, torch.tensor([0, 1]), fanout=2, seed=0)
        >>> rowptr.tolist(), bool((g.col[eid] == nbr).all())
        ([0, 2, 3], True)
    """
    check_graph(graph, "gkdfast.sample_neighbors")
    if not isinstance(seeds, Tensor):
        seeds = torch.as_tensor(seeds, dtype=torch.int64)
    if seeds.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"gkdfast.sample_neighbors: seeds must be an int32 or int64 tensor, got {seeds.dtype}")
    if seeds.dim() != 1:
        raise ValueError(f"gkdfast.sample_neighbors: seeds must be 1-D, got shape {list(seeds.shape)}")
    fanout, seed, hop = _check_int(fanout, "fanout"), _check_int(seed, "seed"), _check_int(hop, "hop")
    if fanout == 0 or fanout < -1:
        raise ValueError(f"gkdfast.sample_neighbors: fanout must be a positive int or -1 (all), got {fanout}")
    if seed < 0 or seed >= 2 ** 63:
        raise ValueError(f"gkdfast.sample_neighbors: seed must be in [0, 2**63), got {seed}")
    if not 0 <= hop < 65536:
        raise ValueError(f"gkdfast.sample_neighbors: hop must be in [0, 65536), got {hop}")
    if seeds.device != graph.device:
        raise ValueError(f"gkdfast.sample_neighbors: seeds are on {seeds.device} but the graph is on {graph.device}")
    if _backend.choose(_OP, graph.device) == "reference":
        return ref.sample_neighbors(graph.rowptr, graph.col, seeds, fanout, seed, hop)
    return torch.ops.gkdfast.sample_neighbors(graph.rowptr, graph.col, seeds, fanout, seed, hop)
