"""Peer groups for online distillation: several student networks trained together in one
:class:`~gkdfast.distill.Distiller`, with terms that read every peer's outputs.

The Distiller trains one module; :class:`PeerGroup` is that module.  Its forward runs every peer,
keeps their ``(logits, hidden)`` for the terms of the same step (:func:`peer_outputs`) and returns
the peers' mean logits; the Distiller's early stopping watches the best peer's validation accuracy
(:meth:`PeerGroup.member_accuracy`).

Example:
    >>> g = PeerGroup([gkdfast.nn.MLP(4, 8, 3), gkdfast.nn.MLP(4, 8, 3)])
    >>> g(torch.randn(5, 4)).shape, len(g.last)
    (torch.Size([5, 3]), 2)
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.distill.distiller import accuracy, call_model, uses_graph
from gkdfast.distill.terms import LossTerm, StepContext, _rows

__all__ = ["PeerGroup", "peer_outputs", "PeerCE", "PeerTerm", "best_peer"]


class PeerGroup(nn.Module):
    """``K`` peer networks of one kind (all graph-free or all GNNs) trained as one module.

    ``forward(x[, graph], return_hidden)`` → the peers' mean logits ``[N, C]`` (and the first peer's
    hidden layer); ``self.last`` holds every peer's ``(logits, hidden)`` from that call.
    ``select``: what the Distiller's early stopping and best-epoch choice watch, ``"best"`` (the best
    peer's validation accuracy, default) or ``"mean"`` (the peers' mean logits).
    """

    def __init__(self, peers: Sequence[nn.Module], select: str = "best"):
        super().__init__()
        if select not in ("best", "mean"):
            raise ValueError(f"PeerGroup: select must be 'best' or 'mean', got {select!r}")
        if len(peers) < 2:
            raise ValueError(f"PeerGroup: give at least 2 peers, got {len(peers)}")
        kinds = {uses_graph(p) for p in peers}
        if len(kinds) != 1:
            raise ValueError("PeerGroup: peers must all be graph-free or all need the graph")
        self.peers = nn.ModuleList(peers)
        self.uses_graph = kinds.pop()
        self.select = select
        self.last: List[Tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor, graph=None, return_hidden: bool = False):
        self.last = [call_model(p, x, graph, self.uses_graph, True) for p in self.peers]
        logits = torch.stack([z for z, _ in self.last]).mean(0)
        return (logits, self.last[0][1]) if return_hidden else logits

    def member_accuracy(self, y: Tensor, mask, rows: int):
        """The best peer's accuracy on the rows of the last forward (the Distiller's validation score
        for a group when ``select == "best"``); None when that forward did not cover all ``rows``
        (a chunked prediction) or ``select == "mean"`` (the ensemble's accuracy is used then).

        Selecting on the best peer keeps the epoch at which the peer the recipes return
        (:func:`best_peer`) peaks; selecting on the ensemble's accuracy stopped at epochs where the
        returned peer was past its best (measured, docs/recipes-more.md).
        """
        outs = self.member_logits(rows)
        return None if outs is None else max(accuracy(z, y, mask) for z in outs)

    def member_logits(self, rows: int) -> Optional[List[Tensor]]:
        """Each peer's logits from the last forward (detached) when it covered all ``rows`` and
        ``select == "best"``, else None: what :meth:`member_accuracy` scores, and what a data-parallel
        validation counts per peer over every rank's rows before taking the best."""
        if self.select != "best" or not self.last or any(z.size(0) != rows for z, _ in self.last):
            return None
        return [z.detach() for z, _ in self.last]


def peer_outputs(group: PeerGroup, ctx: StepContext) -> List[Tuple[Tensor, Tensor]]:
    """Each peer's ``(logits [B, C], hidden [B, H])`` for the step's batch rows (a GNN group ran on
    the whole graph, so its rows are selected here; a graph-free group ran on the batch rows only).

    Example:
        >>> peer_outputs(group, ctx)[1][0].shape          # doctest: +SKIP
        torch.Size([2708, 7])
    """
    if not group.uses_graph or ctx.full_batch:
        return group.last
    return [(z[ctx.nodes], h[ctx.nodes]) for z, h in group.last]


class PeerTerm(LossTerm):
    """Base of terms over a :class:`PeerGroup` (held by reference: its parameters are the student's)."""

    def __init__(self, group: PeerGroup, weight: float = 1.0, nodes: str = "all"):
        super().__init__(weight, nodes)
        self._group = [group]  # a list, so nn.Module does not register the peers twice

    @property
    def group(self) -> PeerGroup:
        return self._group[0]


class PeerCE(PeerTerm):
    """``Σ_k CE(z_k, y)`` over the labelled rows (every peer learns the labels)."""

    name = "peer_ce"

    def __init__(self, group: PeerGroup, weight: float = 1.0):
        super().__init__(group, weight, nodes="train")

    def forward(self, ctx: StepContext) -> Tensor:
        total = ctx.logits.sum() * 0.0
        for z, _ in peer_outputs(self.group, ctx):
            zz, y = _rows(ctx.labelled, z, ctx.y)
            if y.numel():
                total = total + F.cross_entropy(zz, y)
        return total


@torch.no_grad()
def best_peer(group: PeerGroup, data, inputs: Tensor, device) -> Tuple[int, List[float]]:
    """Index of the peer with the best validation accuracy, and every peer's accuracy (fractions).

    Example:
        >>> i, accs = best_peer(group, data, data.x, "cpu")     # doctest: +SKIP
    """
    graph = data.graph.to(device) if group.uses_graph else None
    accs = []
    for p in group.peers:
        p.eval()
        z = call_model(p, inputs.to(device), graph, group.uses_graph, False)[0]
        accs.append(accuracy(z.cpu(), data.y.cpu(), data.val_mask.cpu()))
    return max(range(len(accs)), key=accs.__getitem__), accs
