"""Neighbourhood batches for graph-free students: a batch of nodes plus every in-neighbour of them.

A graph-free student (an MLP) trained in node batches sees, for LSP, only the edges *inside* its batch.
On a large graph a random batch of a few thousand nodes holds almost none (at 2.45·10⁶ nodes and 1.2·10⁸
edges, a batch of 4,096 expects 0.3), so LSP would have nothing to compare.  Its loss is a mean over
centre nodes of a per-centre term that needs the centre and *all* its in-neighbours, nothing else.  So
a neighbourhood batch carries the batch nodes (the centres) followed by their in-neighbours, and a
graph whose only edges are the centres' in-edges: LSP over it is, centre for centre, the full-graph
LSP, and its mean over uniformly drawn centres is an unbiased estimate of the full-graph mean.  The
other terms read only the centre rows (the Distiller restricts ``labelled`` / ``observed`` to them), so
they see exactly the batches they would see without the neighbours.

The expansion reads the centres' CSR rows only: ``O(Σ degree)`` per batch, never ``O(N)`` or ``O(E)``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from gkdfast._segments import concat_ranges, segment_ids

__all__ = ["neighbourhood_batch", "first_positions", "refuse_unmasked_terms", "pad_neighbour_rows",
           "refuse_nonfinite_loss"]


def first_positions(ids: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(uniq, inverse, first)`` of ``torch.unique(ids, return_inverse=True)`` plus each distinct id's
    first position in ``ids`` (where a batch that repeats a node keeps its row).

    Example:
        >>> first_positions(torch.tensor([7, 3, 7, 9]))[2].tolist()
        [1, 0, 3]
    """
    uniq, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((uniq.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, torch.arange(ids.numel(), device=ids.device), "amin")
    return uniq, inverse, first


def pad_neighbour_rows(centre_rows: Tensor, num_rows: int) -> Tensor:
    """A per-node matrix of a neighbourhood batch from its centres' rows alone: ``[num_rows, K]``, the
    ``[B, K]`` ``centre_rows`` first and NaN in the neighbour rows.

    Per-node teacher rows that only the centres use (the teacher's logits: KD reads the observed rows,
    which are the centres) need not be read for the in-neighbours, most of a batch whose centres bring
    their whole neighbourhood.  The terms allowed on such batches (:func:`refuse_unmasked_terms`) read
    those rows through their masks only; the NaN makes any other read show in the loss instead of
    passing silently.

    Example:
        >>> pad_neighbour_rows(torch.ones(2, 3), 4)[:, 0].tolist()
        [1.0, 1.0, nan, nan]
    """
    out = centre_rows.new_full((num_rows, centre_rows.size(1)), float("nan"))
    out[:centre_rows.size(0)] = centre_rows
    return out


def refuse_nonfinite_loss(value: float, who: str) -> None:
    """One clear error for a non-finite step loss on a neighbourhood batch, whose neighbour rows of
    the teacher's logits are NaN (:func:`pad_neighbour_rows`): a term that combines rows by
    arithmetic instead of indexing them would otherwise turn the student's weights into NaN silently.
    ``value``: the step's loss as the caller already reads it back (a float: no extra device sync).

    Example:
        >>> refuse_nonfinite_loss(0.5, "Distiller")   # a finite loss passes
    """
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{who}: non-finite loss on a neighbourhood batch.  Its neighbour rows of the teacher's logits "
            "are NaN (only the batch nodes' are read); a term must select rows by indexing with the "
            "labelled / observed masks, not by multiplying with them; otherwise training diverged (lower "
            "the learning rate)")


def refuse_unmasked_terms(terms, who: str) -> None:
    """Neighbourhood batches hold rows (the in-neighbours) that only LSP's centres may read: one clear
    error for a term that reads rows beyond its ``labelled`` / ``observed`` masks.

    Example:
        >>> from gkdfast.distill import recipes
        >>> refuse_unmasked_terms(recipes.get("lsp").terms(), "fit_sampled")  # ce and lsp: masked rows only
        >>> refuse_unmasked_terms(recipes.get("graphmlp").terms(), "fit_sampled")
        Traceback (most recent call last):
        ValueError: fit_sampled: term 'ncontrast' reads batch rows beyond its masks, ...
    """
    unmasked = [t.name for t in terms if not t.masked_rows_only]
    if unmasked:
        raise ValueError(f"{who}: term {unmasked[0]!r} reads batch rows beyond its masks, so on "
                         "batch_edges='neighbours' batches it would see the neighbour rows; there only terms "
                         "with masked_rows_only (ce, kd, lsp, gsp, crd, rsd, hidden_mse) run")


def neighbourhood_batch(graph, nodes: Tensor, observed: Optional[Tensor] = None) -> Tuple[Tensor, "object", int]:
    """The rows and graph of a neighbourhood batch.

    Args:
        graph: the full :class:`gkdfast.Graph` (CSR by destination: row ``i`` lists ``i``'s in-neighbours).
        nodes: ``[B]`` int64 batch nodes (the centres); a node may repeat (``labelled_first`` batches
            draw with replacement): its first position is its centre row, later ones carry no edges.
        observed: optional ``[N]`` bool: only these nodes may join as neighbours (the in-edges from the
            others are left out, as an ``induced`` batch leaves them out), so no hidden node's features
            or teacher rows reach a loss.

    Returns:
        ``(rows, batch_graph, num_centres)``: ``rows`` ``[B + M]`` global node ids, ``nodes`` first and
        then the ``M`` in-neighbours not among them (ascending); ``batch_graph`` a Graph over the
        ``B + M`` rows whose edges are every centre's in-edges (``j -> i``, in local row indices); and
        ``num_centres = B``.

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[1, 2, 3, 0], [0, 0, 1, 3]]))   # 1->0, 2->0, 3->1, 0->3
        >>> rows, bg, b = neighbourhood_batch(g, torch.tensor([0, 1]))
        >>> rows.tolist(), bg.edge_index.tolist(), b
        ([0, 1, 2, 3], [[1, 2, 3], [0, 0, 1]], 2)
    """
    from gkdfast.graph import Graph

    nodes = nodes.long()
    dev = nodes.device
    b = nodes.numel()
    rowptr, col = graph.rowptr.to(dev), graph.col.to(dev)  # (no cast: that would copy all N + 1 offsets)
    uniq, _, first = first_positions(nodes)  # the first position of every distinct node: its centre row
    # the centres' CSR rows, gathered without touching other rows
    starts = rowptr[uniq].long()
    degree = rowptr[uniq + 1].long() - starts
    total = int(degree.sum())
    seg = segment_ids(degree, total)
    nbr = col[concat_ranges(starts, degree, seg=seg)].long()
    if observed is not None:  # in-edges from hidden nodes are not part of the batch
        seen = observed.to(dev)[nbr]
        nbr, seg = nbr[seen], seg[seen]
    # a neighbour that is itself a batch node points at its centre row; the others get new rows
    pos = torch.searchsorted(uniq, nbr).clamp_(max=max(uniq.numel() - 1, 0))
    inside = uniq[pos] == nbr if uniq.numel() else torch.zeros_like(nbr, dtype=torch.bool)
    extra, extra_inv = torch.unique(nbr[~inside], return_inverse=True)
    src = torch.empty_like(nbr)
    src[inside] = first[pos[inside]]
    src[~inside] = b + extra_inv
    rows = torch.cat([nodes, extra])
    batch_graph = Graph(torch.stack([src, first[seg]]), num_nodes=rows.numel(), validate=False)
    return rows, batch_graph, b
