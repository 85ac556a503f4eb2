"""Reference message passing: gather messages per edge, reduce per destination."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gkdfast._segments import segment_ids
from gkdfast.graph import Graph


def spmm(graph: Graph, x: Tensor, reduce: str = "sum", weight: Optional[Tensor] = None) -> Tensor:
    """Reference of :func:`gkdfast.spmm`: ``out[i] = reduce_{e=(j->i)} w_e * x[j]``; empty rows give 0.

    For max/min the winning edge of each (row, feature) is the *first* maximal edge in CSR order, and the
    gradient flows to it alone: the same rule as the kernels (torch's scatter_reduce would split ties).
    A NaN message propagates (the first NaN edge wins), as in ``torch.amax``.

    Args:
        graph: a :class:`gkdfast.Graph` with ``N`` nodes and ``E`` edges.
        x: ``[N, d]`` node features, any floating dtype.
        reduce: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.
        weight: optional ``[E]`` edge weights in the graph's **CSR order** (``gkdfast.spmm`` takes them in
            ``edge_index`` order; ``graph.to_csr_order`` converts).

    Returns:
        ``[N, d]``; materialises the ``[E, d]`` messages.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 1]]))
        >>> gkdfast.reference.spmm(g, torch.tensor([[1.0], [2.0], [3.0]]), "max")
        tensor([[0.],
                [3.],
                [2.]])
    """
    n, d = graph.num_nodes, x.size(1)
    src, dst = graph.col.long(), graph.dst.long()
    msg = x[src]
    if weight is not None:
        msg = msg * weight.unsqueeze(-1)
    if reduce in ("sum", "mean"):
        out = x.new_zeros(n, d).index_add(0, dst, msg)
        if reduce == "mean":
            out = out / graph.in_degree().clamp_min(1).to(x.dtype).unsqueeze(-1)
        return out
    if reduce in ("max", "min"):
        if graph.num_edges == 0:  # keep x and weight in the autograd graph: their gradient is 0, not None
            return x.new_zeros(n, d) + 0 * msg.sum()
        with torch.no_grad():
            best = torch.full((n, d), float("-inf") if reduce == "max" else float("inf"), dtype=x.dtype,
                              device=x.device)
            best = best.scatter_reduce(0, dst.unsqueeze(-1).expand(-1, d), msg,
                                       "amax" if reduce == "max" else "amin", include_self=True)
            # A NaN message wins its (row, feature), as torch.amax/amin propagate NaN: without the
            # isnan term no edge would equal the NaN best and the row would silently read 0.
            is_best = (msg == best[dst]) | (msg.isnan() & best[dst].isnan())
            pos = torch.arange(graph.num_edges, device=x.device).unsqueeze(-1).expand(-1, d)
            pos = torch.where(is_best, pos, torch.full_like(pos, graph.num_edges))
            first = torch.full((n, d), graph.num_edges, dtype=torch.long, device=x.device)
            first = first.scatter_reduce(0, dst.unsqueeze(-1).expand(-1, d), pos, "amin", include_self=True)
            has = first < graph.num_edges
            first = torch.where(has, first, torch.zeros_like(first))
        out = msg.gather(0, first)
        return torch.where(has, out, torch.zeros_like(out))
    raise ValueError(f"gkdfast.spmm: unknown reduce {reduce!r}; expected one of sum, mean, max, min")


def sddmm(graph: Graph, a: Tensor, b: Tensor) -> Tensor:
    """Reference of :func:`gkdfast.sddmm`: ``out[e] = a[i] . b[j]`` for each edge ``e = (j -> i)``.

    Args:
        graph: a :class:`gkdfast.Graph` with ``N`` nodes and ``E`` edges.
        a: ``[N, d]`` destination-side features.
        b: ``[N, d]`` source-side features.

    Returns:
        ``[E]`` scores in the graph's **CSR order** (``gkdfast.sddmm`` returns ``edge_index`` order;
        ``graph.from_csr_order`` converts).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> gkdfast.reference.sddmm(g, torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]))
        tensor([4., 6.])
    """
    return (a[graph.dst.long()] * b[graph.col.long()]).sum(-1)


def edge_softmax(graph: Graph, scores: Tensor) -> Tensor:
    """Reference of :func:`gkdfast.edge_softmax`: softmax of the scores over each destination's in-edges.

    A destination whose in-edge scores are all ``-inf`` gets 0 on those edges (not NaN).

    Args:
        graph: a :class:`gkdfast.Graph` with ``N`` nodes and ``E`` edges.
        scores: ``[E]`` or ``[E, H]`` (``H`` heads) in the graph's **CSR order**.

    Returns:
        the same shape as ``scores``, CSR order.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [2, 2]]))
        >>> gkdfast.reference.edge_softmax(g, torch.tensor([0.0, 0.0]))
        tensor([0.5000, 0.5000])
    """
    dst = graph.dst.long()
    s = scores if scores.dim() == 2 else scores.unsqueeze(-1)
    n, h = graph.num_nodes, s.size(1)
    idx = dst.unsqueeze(-1).expand(-1, h)
    mx = torch.full((n, h), float("-inf"), dtype=s.dtype, device=s.device)
    mx = mx.scatter_reduce(0, idx, s.detach(), "amax", include_self=True)
    # Only an all -inf row's maximum is reset; a +inf score gives NaN over its row, as torch.softmax.
    mx = torch.where(mx == float("-inf"), torch.zeros_like(mx), mx)
    ex = (s - mx[dst]).exp()
    den = torch.zeros((n, h), dtype=s.dtype, device=s.device).index_add(0, dst, ex)
    # A row whose scores are all -inf (fully masked) gives 0, not 0/0 = NaN: the kernels' rule.
    den = torch.where(den == 0, torch.ones_like(den), den)  # (a NaN sum stays NaN)
    out = ex / den[dst]
    return out if scores.dim() == 2 else out.squeeze(-1)


def csr_mm(rowptr: Tensor, col: Tensor, values: Tensor, x: Tensor) -> Tensor:
    """Reference of the native op ``csr_mm`` (docs/ops.md, "Message passing"): the rectangular CSR
    matrix ``A`` (``rowptr [R+1]``, ``col [E]`` in ``[0, C)``, ``values [E]``) times ``x [C, d]``,
    ``out[i] = Σ_{e in row i} values[e] · x[col[e]]``, ``[R, d]``; a row without entries gives 0.
    Differentiable in ``values`` and ``x``; materialises the ``[E, d]`` products.

    Example:
        >>> rowptr, col = torch.tensor([0, 2, 2, 3]), torch.tensor([0, 1, 1])
        >>> gkdfast.reference.csr_mm(rowptr, col, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[1.0], [10.0]]))
        tensor([[21.],
                [ 0.],
                [30.]])
    """
    rows = segment_ids(rowptr.diff(), col.numel())
    return x.new_zeros(rowptr.numel() - 1, x.size(1)).index_add(0, rows, values.unsqueeze(-1) * x[col.long()])
