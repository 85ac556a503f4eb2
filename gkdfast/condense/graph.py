"""The condensed graph: synthetic features, dense weighted adjacency and labels; npz bundle round trip."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
from torch import Tensor

__all__ = ["CondensedGraph", "load_condensed"]


@dataclass
class CondensedGraph:
    """Output of :func:`gkdfast.condense.condense`.

    Fields: ``x`` ``[N', d]`` features, ``adj`` ``[N', N']`` symmetric weights in [0, 1] with a zero diagonal,
    ``y`` ``[N']`` labels, ``num_classes``, ``history`` (matching loss per epoch), ``seconds`` (condensation
    wall time), ``name``.

    Example:
        >>> g = CondensedGraph(torch.ones(2, 3), torch.tensor([[0., .5], [.5, 0.]]), torch.tensor([0, 1]), 2)
        >>> d = g.to_graphdata()
        >>> d.num_nodes, d.num_edges, d.graph.edge_weight.tolist()
        (2, 2, [0.5, 0.5])
    """

    x: Tensor
    adj: Tensor
    y: Tensor
    num_classes: int
    history: List[float] = field(default_factory=list)
    seconds: float = 0.0
    name: str = "condensed"

    @property
    def num_nodes(self) -> int:
        """N', the number of synthetic nodes."""
        return int(self.x.size(0))

    def to_graphdata(self):
        """A :class:`gkdfast.data.GraphData`: every off-diagonal pair with a positive weight becomes an edge
        (both directions) weighted by ``adj``; all nodes are training nodes (no val / test nodes).

        Example:
            >>> g = CondensedGraph(torch.ones(3, 2), torch.zeros(3, 3), torch.tensor([0, 1, 1]), 2)
            >>> g.to_graphdata().num_edges, int(g.to_graphdata().train_mask.sum())
            (0, 3)
        """
        from gkdfast.data import GraphData
        from gkdfast.graph import Graph

        adj = self.adj.detach().float().cpu()
        adj = adj - torch.diag_embed(adj.diagonal())
        ei = (adj > 0).nonzero().t().contiguous()
        w = adj[ei[0], ei[1]].contiguous()
        n = self.num_nodes
        ones, zeros = torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
        return GraphData(Graph(ei, n, w), self.x.detach().float().cpu().contiguous(), self.y.long().cpu(), ones,
                         zeros, zeros.clone(), int(self.num_classes), self.name, None,
                         {"format": "condensed", "split": "all synthetic nodes train"}).validate()

    def save(self, path: str) -> None:
        """Writes the gkdfast ``.npz`` bundle (:func:`gkdfast.data.save_npz`); read it back with
        :func:`load_condensed` or ``gkdfast.data.load``.

        Example:
            >>> g.save("out/cora-gcond-seed0.npz")             # doctest: +SKIP
        """
        from gkdfast.data import save_npz

        save_npz(self.to_graphdata(), path)


def load_condensed(path: str) -> CondensedGraph:
    """Reads a bundle written by :meth:`CondensedGraph.save` back into a dense :class:`CondensedGraph`.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "c.npz")
        >>> CondensedGraph(torch.ones(2, 3), torch.tensor([[0., .5], [.5, 0.]]), torch.tensor([0, 1]), 2).save(p)
        >>> load_condensed(p).adj
        tensor([[0.0000, 0.5000],
                [0.5000, 0.0000]])
    """
    from gkdfast.data import load_npz_bundle

    d = load_npz_bundle(path)
    n = d.num_nodes
    adj = torch.zeros(n, n)
    ei = d.graph.edge_index
    if d.graph.edge_weight is None:
        raise ValueError(f"{path}: not a condensed graph (no edge_weight array)")
    adj[ei[0], ei[1]] = d.graph.edge_weight  # both in the order the bundle stored them
    return CondensedGraph(d.x, adj, d.y, d.num_classes, name=d.name)
