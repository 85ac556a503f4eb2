"""Top-k personalised PageRank over the CSR: never an N x N matrix.

For a source s, ``π_s = α·e_s + (1−α)·π_s·D⁻¹A`` (random walk with restart probability α).  Two ways
to get each source's ``k`` largest entries (itself excluded):

* ``method="push"``: forward push from every source (native op ``ppr_topk``, sources in
  parallel; ``csrc/ops/ppr.h``).  A source costs O(1 / (α·eps)) edge visits whatever N is, so the
  whole graph costs O(N / (α·eps)); estimates are below π by at most ``eps·deg(v)`` on undirected
  graphs.  Memory O(threads·N + N·k).
* ``method="power"``: power iteration on a ``[N, B]`` block of B sources at a time with
  :func:`gkdfast.spmm` until the block's largest change is below ``eps``: O(N²) work over the graph,
  memory O(N·B + N·k).

``method="auto"`` (default) takes power iteration below :data:`PUSH_MIN_NODES` nodes and push from
there (when the native op is built): measured on the CPU, power iteration is 20x faster on a
2,000-node random graph (its dense blocks vectorise; push from every source spreads over the whole
graph), push 5.3x faster on Facebook (22,470 nodes; ``benchmarks/bench_ppr.py``).  The reference
T2-GNN densifies the full N x N PPR matrix.

Example:
    >>> g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]))
    >>> idx, val = topk_ppr(g, k=2)
    >>> idx.shape, bool((val > 0).all())
    (torch.Size([4, 2]), True)
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["topk_ppr", "ppr_graph", "ppr_rows", "dense_ppr"]


_DEFAULT_EPS = {"push": 1e-5, "power": 1e-4}
PUSH_MIN_NODES = 10_000  # method="auto": push from this many nodes on


def topk_ppr(graph, k: int, alpha: float = 0.15, eps: Optional[float] = None, block: int = 256,
             max_iter: int = 200, method: str = "auto") -> Tuple[Tensor, Tensor]:
    """The ``k`` largest PPR scores of every source node (itself excluded).

    Args:
        graph: :class:`gkdfast.Graph` with ``N`` nodes; a walk moves along edges ``u -> v`` with
            probability ``1 / out-degree(u)`` (nodes without out-edges lose their mass; edge weights
            are not used, by either method).
        k: entries kept per source, ``1 <= k < N``.  alpha: restart probability in ``(0, 1)``.
        eps: ``push``: residual threshold per out-edge (default 1e-5); ``power``: stop when no score
            of the block changes by more than this in one iteration (default 1e-4).
        block: sources per block of ``power`` (memory ``N x block`` floats).  max_iter: its cap.
        method: ``"push"`` (native forward push, O(N / (α·eps)) work), ``"power"`` (blocked power
            iteration, O(N²)) or ``"auto"`` (power below :data:`PUSH_MIN_NODES` nodes or without the
            native op, else push); module docstring.

    Returns:
        ``(index, value)``: ``[N, k]`` int64 target nodes and ``[N, k]`` float32 scores on the CPU,
        row s = source s, scores in decreasing order (``push``: rows with fewer than ``k`` reached
        nodes end with ``(s, 0)`` entries; ``power``: with zero scores).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> topk_ppr(g, k=1)[0].flatten().tolist()
        [1, 0]
    """
    n = graph.num_nodes
    if n < 2:
        raise ValueError(f"topk_ppr: the graph has {n} node{'' if n == 1 else 's'}; top-k PPR neighbours need at "
                         "least 2")
    if not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"topk_ppr: k must be an int in [1, {n - 1}], got {k!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"topk_ppr: alpha must be in (0, 1), got {alpha}")
    if method not in ("auto", *_DEFAULT_EPS):
        raise ValueError(f"topk_ppr: method must be 'auto', 'push' or 'power', got {method!r}")
    if method == "auto":
        from gkdfast import _backend

        native = _backend.native_loaded() and _backend.choose("ppr_topk", torch.device("cpu")) == "cpu"
        method = "push" if native and n >= PUSH_MIN_NODES else "power"
    eps = _DEFAULT_EPS[method] if eps is None else eps
    if not eps > 0 or block < 1:
        raise ValueError(f"topk_ppr: eps must be > 0 and block >= 1, got eps={eps}, block={block}")
    _check_max_iter(max_iter, "topk_ppr")
    if method == "push":
        return _push(graph, k, float(alpha), float(eps))
    return _power(graph, k, float(alpha), float(eps), block, max_iter)


def _push(graph, k: int, alpha: float, eps: float) -> Tuple[Tensor, Tensor]:
    from gkdfast import _backend
    from gkdfast.reference import ppr as ref

    t_rowptr, t_col, _ = graph.transpose_csr()  # CSR by source: the walk follows out-edges
    t_rowptr, t_col = t_rowptr.cpu(), t_col.cpu()
    sources = torch.arange(graph.num_nodes, dtype=t_col.dtype)
    if _backend.choose("ppr_topk", torch.device("cpu")) == "cpu":
        return torch.ops.gkdfast.ppr_topk(t_rowptr, t_col, sources, k, alpha, eps)
    return ref.ppr_topk(t_rowptr, t_col, sources, k, alpha, eps)


def ppr_rows(graph, sources: Tensor, alpha: float = 0.15, eps: float = 1e-10, max_iter: int = 400,
             dtype: torch.dtype = torch.float64) -> Tensor:
    """``[S, N]`` PPR scores of the given ``sources`` (1-D node ids) by power iteration until no score
    changes by more than ``eps`` (the ``power`` method on one block; edge weights are not used).  For
    checks against the top-k methods on a few hundred sources: memory ``N x S``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> [round(v, 4) for v in ppr_rows(g, torch.tensor([0]), alpha=0.5)[0].tolist()]
        [0.6667, 0.3333]
    """
    _check_max_iter(max_iter, "ppr_rows")
    return _power_block(graph, _walk(graph, dtype), sources, float(alpha), float(eps), max_iter).t().cpu()


def _check_max_iter(max_iter, fn: str) -> None:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"{fn}: max_iter must be a positive int, got {max_iter!r}")


def _walk(graph, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """``(inv_deg [N, 1], ones [E])``: the random walk's step, ``x -> A^T (x / outdeg)`` unweighted."""
    out_deg = torch.bincount(graph.col.long(), minlength=graph.num_nodes).to(dtype)  # col = edge source
    inv_deg = torch.where(out_deg > 0, 1.0 / out_deg.clamp(min=1), torch.zeros_like(out_deg)).unsqueeze(1)
    return inv_deg, torch.ones(graph.num_edges, dtype=dtype, device=graph.device)


def _power_block(graph, walk, sources: Tensor, alpha: float, eps: float, max_iter: int) -> Tensor:
    """``[N, S]``: the PPR columns of ``sources`` by power iteration (see :func:`topk_ppr`)."""
    from gkdfast import spmm

    inv_deg, unweighted = walk  # the walk ignores edge weights, as push does
    dev = inv_deg.device  # the graph's: the iteration runs where the graph is
    sources = sources.to(dev)
    cols = torch.arange(sources.numel(), device=dev)
    restart = torch.zeros(graph.num_nodes, sources.numel(), dtype=inv_deg.dtype, device=dev)
    restart[sources, cols] = alpha
    x, change = restart.clone(), math.inf
    if x.numel() == 0:
        return x
    for _ in range(max_iter):
        nxt = restart + (1 - alpha) * spmm(graph, x * inv_deg, "sum", edge_weight=unweighted)
        change = float((nxt - x).abs().max())
        x = nxt
        if change < eps:
            return x
    # The scores still move by more than eps: say so rather than hand them back as converged.
    warnings.warn(f"PPR power iteration: not converged after max_iter={max_iter} steps (last change "
                  f"{change:.3g} > eps={eps:g}); (1 - alpha)^max_iter = {(1 - alpha) ** max_iter:.3g}: "
                  "raise max_iter or alpha", RuntimeWarning, stacklevel=3)
    return x


def _power(graph, k: int, alpha: float, eps: float, block: int, max_iter: int) -> Tuple[Tensor, Tensor]:
    n = graph.num_nodes
    walk = _walk(graph, torch.float32)
    idx_out = torch.empty(n, k, dtype=torch.long)
    val_out = torch.empty(n, k)
    for start in range(0, n, block):
        src = torch.arange(start, min(start + block, n))
        x = _power_block(graph, walk, src, alpha, eps, max_iter).cpu()
        x[src, torch.arange(src.numel())] = -1.0  # drop the source itself
        val, idx = torch.topk(x, k, dim=0)
        idx_out[src], val_out[src] = idx.t(), val.t()
    return idx_out, val_out.clamp(min=0.0)


def ppr_graph(graph, k: int, alpha: float = 0.15, eps: Optional[float] = None, block: int = 256,
              method: str = "auto"):
    """``A + A_PPR``: the graph's edges (weight 1, or their ``edge_weight``) plus, for every node s,
    edges ``t -> s`` from its ``k`` top PPR targets with weight ``π_s(t)`` (T2-GNN's structure teacher
    graph; a pair present in both has the two weights summed by message passing).  ``eps``, ``block``
    and ``method``: :func:`topk_ppr`.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
        >>> ppr_graph(g, k=1).num_edges
        7
    """
    from gkdfast.graph import Graph

    idx, val = topk_ppr(graph, k, alpha, eps, block, method=method)
    n = graph.num_nodes
    ei = graph.edge_index.cpu().long()
    w = graph.edge_weight.cpu().float() if graph.edge_weight is not None else torch.ones(ei.size(1))
    keep = val.flatten() > 0
    dst = torch.arange(n).repeat_interleave(k)[keep]
    src = idx.flatten()[keep]
    return Graph(torch.cat([ei, torch.stack([src, dst])], 1), num_nodes=n,
                 edge_weight=torch.cat([w, val.flatten()[keep]]))


def dense_ppr(graph, alpha: float = 0.15) -> Tensor:
    """The exact ``[N, N]`` PPR matrix ``Π = α (I − (1−α) D⁻¹A)⁻¹`` (row s = source s), for tests on
    small graphs only.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> dense_ppr(g).sum(1).tolist()
        [1.0, 1.0]
    """
    n = graph.num_nodes
    ei = graph.edge_index.cpu().long()
    a = torch.zeros(n, n, dtype=torch.float64)
    a.index_put_((ei[0], ei[1]), torch.ones(ei.size(1), dtype=torch.float64), accumulate=True)
    deg = a.sum(1, keepdim=True)
    p = torch.where(deg > 0, a / deg.clamp(min=1), torch.zeros_like(a))
    return (alpha * torch.linalg.inv(torch.eye(n, dtype=torch.float64) - (1 - alpha) * p)).float()
