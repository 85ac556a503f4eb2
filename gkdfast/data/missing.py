"""Incomplete graphs: hide a fraction of the feature entries and of the edges, reproducibly.

T2-GNN's setting (AAAI 2023): each feature entry is missing with probability ``rate`` and each
undirected edge is deleted with probability ``rate`` (both directions together).  The result keeps
the missing entries at 0 in ``x`` and records where they are in ``extras["missing_features"]`` (a
bool ``[N, F]``), so a method that imputes them knows which entries to fill.

Example:
    >>> from gkdfast.data import csbm
    >>> d = csbm(num_nodes=300, num_classes=3, seed=0)
    >>> m = mask_missing(d, 0.3, seed=0)
    >>> round(float(m.extras["missing_features"].float().mean()), 1), m.graph.num_edges < d.graph.num_edges
    (0.3, True)
"""
from __future__ import annotations

from dataclasses import replace

import torch

__all__ = ["mask_missing"]

_EDGE_STREAM = 0x2545F4914F6CDD1D  # xor-ed into the seed for the edge stream (any fixed odd constant)


def mask_missing(data, rate: float, seed: int = 0, features: bool = True, edges: bool = True):
    """A copy of ``data`` with a fraction ``rate`` of its feature entries and edges removed.

    Args:
        data: :class:`gkdfast.data.GraphData` (``x`` ``[N, F]``, graph with ``E`` directed edges).
        rate: probability in ``[0, 1)`` that a feature entry is missing and that an edge is deleted.
        seed: seeds both draws (same seed → same mask), each from its own stream: the deleted edges do
            not depend on ``features`` or on the feature width.  features / edges: what to mask.

    Returns:
        ``GraphData`` with missing entries set to 0, ``extras["missing_features"]`` (bool ``[N, F]``),
        ``extras["missing_rate"]`` = ``rate``, and the graph without the deleted edges: an edge
        ``(u, v)`` and its reverse ``(v, u)`` are deleted together, so an undirected graph stays
        undirected.  Labels and masks are unchanged.

    Example:
        >>> from gkdfast.data import csbm
        >>> a, b = mask_missing(csbm(seed=1), 0.5, seed=3), mask_missing(csbm(seed=1), 0.5, seed=3)
        >>> bool(torch.equal(a.x, b.x)), a.graph.num_edges == b.graph.num_edges
        (True, True)
    """
    from gkdfast.graph import Graph

    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"mask_missing: rate must be in [0, 1), got {rate}")
    gen = torch.Generator().manual_seed(int(seed))
    # The edges draw from a stream of their own, so the same seed deletes the same edges whether the
    # features are masked too and whatever their width (an edges-only ablation matches the full mask).
    edge_gen = torch.Generator().manual_seed((int(seed) ^ _EDGE_STREAM) & ((1 << 63) - 1))
    n, f = data.x.shape
    miss = torch.zeros(n, f, dtype=torch.bool)
    if features and rate > 0:
        miss = torch.rand(n, f, generator=gen) < rate
    x = data.x.masked_fill(miss.to(data.x.device), 0.0)
    graph = data.graph
    if edges and rate > 0:
        ei = graph.edge_index.cpu().long()
        lo, hi = torch.minimum(ei[0], ei[1]), torch.maximum(ei[0], ei[1])
        pair = lo * n + hi  # one id per undirected pair, so both directions share the coin flip
        uniq, inverse = torch.unique(pair, return_inverse=True)
        keep_pair = torch.rand(uniq.numel(), generator=edge_gen) >= rate
        keep = keep_pair[inverse]
        w = graph.edge_weight.cpu()[keep] if graph.edge_weight is not None else None
        graph = Graph(ei[:, keep], num_nodes=n, edge_weight=w).to(data.graph.device)
    extras = dict(data.extras, missing_features=miss, missing_rate=float(rate))
    return replace(data, x=x, graph=graph, extras=extras)
