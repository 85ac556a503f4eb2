"""Locality-improving node orders for message passing, with the permutation kept for the user.

A gather ``out[i] = sum_{j->i} x[j]`` reads one feature row per edge.  When the neighbours of
consecutive destination rows have nearby ids, those rows are still in cache when the next row needs
them; random ids (most generators and many datasets) defeat that.  :func:`reorder_graph` relabels the
nodes (reverse Cuthill–McKee or degree order) and returns a :class:`Reordering` that maps node and
edge tensors between the two numberings, so a model trains on the reordered data and its outputs go
back to the original node order with one call.

Each node's in-edges keep their order, so ``spmm`` on the reordered graph is *bitwise* the permuted
``spmm`` of the original graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["Reordering", "node_order", "reorder_graph"]

METHODS = ("rcm", "degree", "community")


@dataclass(frozen=True)
class Reordering:
    """The relabelling ``old -> new`` of a reordered graph, with helpers for both directions.

    Fields:
        perm: ``[N]`` int64, new id -> old id (new node ``k`` is old node ``perm[k]``).
        rank: ``[N]`` int64, old id -> new id (the inverse of ``perm``).
        edge_perm: ``[E]`` int64, new graph's edge (CSR) position -> the old graph's edge id in the
            order the old graph was built from (its ``edge_index`` order).
        method: how the order was made (``"rcm"``, ``"degree"``, ``"community"`` or ``"custom"``).

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [2, 2, 0]]))
        >>> g2, r = g.reorder("degree")
        >>> r.perm, r.rank
        (tensor([2, 0, 1]), tensor([1, 2, 0]))
        >>> x = torch.arange(3.0).view(3, 1)
        >>> out = gkdfast.spmm(g2, r.permute(x))          # computed in the new order
        >>> torch.equal(r.unpermute(out), gkdfast.spmm(g, x))
        True
    """

    perm: Tensor
    rank: Tensor
    edge_perm: Tensor
    method: str = "custom"

    @property
    def num_nodes(self) -> int:
        """N, the number of relabelled nodes."""
        return int(self.perm.numel())

    def permute(self, t: Tensor) -> Tensor:
        """Node tensor (dim 0 = nodes) from the old order to the new: ``t[perm]``.

        Example:
            >>> r = Reordering(torch.tensor([1, 0]), torch.tensor([1, 0]), torch.tensor([], dtype=torch.long))
            >>> r.permute(torch.tensor([10, 20]))
            tensor([20, 10])
        """
        self._check_nodes(t, "permute")
        return t[self.perm.to(t.device)]

    def unpermute(self, t: Tensor) -> Tensor:
        """Node tensor from the new order back to the old one (the inverse of :meth:`permute`):
        ``t[rank]``.  Use it on a model's outputs (logits, embeddings) computed on reordered data.

        Example:
            >>> r = Reordering(torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0]), torch.tensor([], dtype=torch.long))
            >>> r.unpermute(r.permute(torch.tensor([5, 6, 7])))
            tensor([5, 6, 7])
        """
        self._check_nodes(t, "unpermute")
        return t[self.rank.to(t.device)]

    inverse = unpermute  # alias: "map back to the original node order"

    def new_ids(self, old_ids: Tensor) -> Tensor:
        """Old node ids (e.g. a list of training nodes) -> their ids in the new graph: ``rank[old_ids]``.

        Example:
            >>> r = Reordering(torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0]), torch.tensor([], dtype=torch.long))
            >>> r.new_ids(torch.tensor([0, 2]))
            tensor([1, 0])
        """
        return self.rank.to(old_ids.device)[old_ids.long()]

    def old_ids(self, new_ids: Tensor) -> Tensor:
        """New node ids -> the original ids: ``perm[new_ids]``."""
        return self.perm.to(new_ids.device)[new_ids.long()]

    def permute_edges(self, values: Tensor) -> Tensor:
        """Per-edge tensor (dim 0 = edges) in the old graph's edge order -> the new graph's edge
        order (its CSR order), e.g. edge weights.

        Example:
            >>> import gkdfast
            >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
            >>> g2, r = g.reorder(torch.tensor([1, 0]))
            >>> r.permute_edges(torch.tensor([0.5, 2.0]))
            tensor([0.5000, 2.0000])
        """
        if values.size(0) != self.edge_perm.numel():
            raise ValueError(f"Reordering.permute_edges: values must have {self.edge_perm.numel()} rows "
                             f"(one per edge), got {list(values.shape)}")
        return values[self.edge_perm.to(values.device)]

    def unpermute_edges(self, values: Tensor) -> Tensor:
        """Per-edge tensor in the new graph's edge order -> the old graph's edge order."""
        if values.size(0) != self.edge_perm.numel():
            raise ValueError(f"Reordering.unpermute_edges: values must have {self.edge_perm.numel()} rows "
                             f"(one per edge), got {list(values.shape)}")
        out = torch.empty_like(values)
        out[self.edge_perm.to(values.device)] = values
        return out

    def _check_nodes(self, t: Tensor, what: str) -> None:
        if not isinstance(t, Tensor) or t.dim() == 0 or t.size(0) != self.num_nodes:
            shape = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"Reordering.{what}: expected a tensor with {self.num_nodes} rows (one per node), "
                             f"got {shape}")


def _scipy_pattern(graph):
    """The graph's symmetrised sparsity pattern as a scipy CSR (int32 indices when they fit)."""
    import scipy.sparse as sp

    n, e = graph.num_nodes, graph.num_edges
    idx = np.int32 if e < 2**31 - 1 and n < 2**31 - 1 else np.int64
    # 1 byte per edge: only the pattern matters.  bool, whose sums are ORs: int8 counts of 256 parallel
    # edges wrapped to 0 and scipy dropped the pair.  (a shares the graph's index arrays: nothing
    # here may modify it in place)
    data = np.ones(e, dtype=np.bool_)
    a = sp.csr_matrix((data, graph.col.cpu().numpy().astype(idx, copy=False),
                       graph.rowptr.cpu().numpy().astype(idx, copy=False)), shape=(n, n))
    return (a + a.T).tocsr()


def community_order(communities: Tensor, num_nodes: int) -> Tensor:
    """Nodes grouped by community id (stable: the old order inside a community): ``[N]`` int64,
    new id -> old id.  ``communities`` is any ``[N]`` integer partition — class labels, a teacher's
    predicted classes, METIS or Louvain parts.  On a graph whose edges mostly stay inside communities
    the rows a gather reads then sit in one community's compact block of ``x``.

    Example:
        >>> community_order(torch.tensor([2, 0, 2, 1]), 4)
        tensor([1, 3, 0, 2])
    """
    if not isinstance(communities, Tensor) or communities.dim() != 1 or communities.numel() != num_nodes \
            or communities.is_floating_point() or communities.dtype == torch.bool:
        shape = list(communities.shape) if isinstance(communities, Tensor) else type(communities).__name__
        raise ValueError(f"reorder: communities must be an integer tensor of shape [{num_nodes}] (a community id "
                         f"per node), got {shape}")
    return torch.sort(communities.cpu().to(torch.int64), stable=True)[1]


def node_order(graph, method: str = "rcm", communities: Optional[Tensor] = None) -> Tensor:
    """A locality-improving node order of ``graph``: ``[N]`` int64, new id -> old id.

    Methods:
        ``"rcm"``: reverse Cuthill–McKee (``scipy.sparse.csgraph.reverse_cuthill_mckee``) on the
            symmetrised pattern: breadth-first from low-degree nodes, so neighbours get nearby ids.
            Best for graphs with locality (meshes, communities, road and co-purchase networks).
        ``"degree"``: by decreasing total degree (in + out, ties by old id): the hubs, which most
            edges read, share a compact block of rows that stays in cache.  Cheap (a sort).
        ``"community"``: grouped by ``communities`` (:func:`community_order`); the strongest order
            on community-structured graphs when a partition is known (docs/spmm-perf.md).

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))   # a 4-cycle
        >>> sorted(node_order(g, "rcm").tolist())
        [0, 1, 2, 3]
    """
    n = graph.num_nodes
    if method == "community":
        if communities is None:
            raise ValueError("reorder: method 'community' needs communities= (an [N] community id per node)")
        return community_order(communities, n)
    if method == "degree":
        # out-degree by counting (not graph.out_degree(), which builds and caches the transposed CSR)
        deg = graph.in_degree().cpu() + torch.bincount(graph.col.cpu().to(torch.int64), minlength=n)
        return torch.sort(deg, descending=True, stable=True)[1]
    if method == "rcm":
        if graph.num_edges == 0:
            return torch.arange(n)
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        order = reverse_cuthill_mckee(_scipy_pattern(graph), symmetric_mode=True)
        return torch.from_numpy(np.asarray(order, dtype=np.int64))
    raise ValueError(f"node_order: method must be one of {METHODS} or a permutation tensor, got {method!r}")


def _check_perm(perm: Tensor, n: int) -> Tensor:
    if (not isinstance(perm, Tensor) or perm.dim() != 1 or perm.numel() != n or perm.is_floating_point()
            or perm.dtype == torch.bool):  # a bool mask is not an order
        shape = list(perm.shape) if isinstance(perm, Tensor) else type(perm).__name__
        raise ValueError(f"reorder: a custom order must be an integer tensor of shape [{n}] (new id -> old id), "
                         f"got {shape}")
    perm = perm.to(torch.int64).cpu()
    seen = torch.zeros(n, dtype=torch.bool)
    if n and (int(perm.min()) < 0 or int(perm.max()) >= n):
        raise ValueError(f"reorder: the order must be a permutation of 0..{n - 1}; it has ids outside that range")
    seen[perm] = True
    if not bool(seen.all()):
        raise ValueError(f"reorder: the order must be a permutation of 0..{n - 1}; it repeats some ids")
    return perm


def reorder_graph(graph, method: Union[str, Tensor] = "rcm", communities: Optional[Tensor] = None):
    """Relabels ``graph``'s nodes for locality: returns ``(new_graph, reordering)``.

    Args:
        graph: a :class:`gkdfast.Graph` (any device; the order is computed on the CPU).
        method: ``"rcm"``, ``"degree"``, ``"community"`` (see :func:`node_order`) or an ``[N]``
            permutation tensor (new id -> old id).
        communities: the ``[N]`` partition for ``"community"``.

    The new graph has edge ``rank[j] -> rank[i]`` for every old edge ``j -> i``; each node's
    in-edges keep their order (so sums are bitwise those of the old graph, permuted), its index
    dtype is the old one and its ``edge_weight`` (if any) is carried over.  Per-edge tensors of the
    new graph are in its CSR order; :meth:`Reordering.permute_edges` converts old per-edge tensors.

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 2, 1], [1, 1, 2]]))
        >>> g2, r = reorder_graph(g, "degree")
        >>> g2.edge_index, r.perm
        (tensor([[2, 1, 0],
                [0, 0, 1]]), tensor([1, 2, 0]))
    """
    from gkdfast.graph import Graph

    n, dev, dt = graph.num_nodes, graph.device, graph.index_dtype
    if isinstance(method, Tensor):
        perm, name = _check_perm(method, n), "custom"
    else:
        perm, name = node_order(graph, method, communities), method
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(n, dtype=torch.int64)
    rowptr, col = graph.rowptr.cpu().to(torch.int64), graph.col.cpu()
    deg = rowptr[1:] - rowptr[:-1]
    new_deg = deg[perm]
    new_rowptr = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(new_deg, 0, out=new_rowptr[1:])
    # CSR position of every new edge in the old CSR: new row k takes old row perm[k] in order.
    # In-place and index-dtype steps keep the peak near 20 bytes per edge (8 of them returned).
    old_pos = torch.repeat_interleave(rowptr[:-1][perm] - new_rowptr[:-1], new_deg)
    old_pos += torch.arange(graph.num_edges, dtype=torch.int64)
    new_col = torch.index_select(rank.to(dt), 0, torch.index_select(col, 0, old_pos))
    edge_perm = old_pos if graph.perm is None else graph.perm.cpu().to(torch.int64)[old_pos]
    g = Graph._from_parts(new_rowptr.to(dt).to(dev), new_col.to(dev), n)
    if graph.edge_weight is not None:
        g.edge_weight = graph.edge_weight[edge_perm.to(graph.edge_weight.device)]
    return g, Reordering(perm, rank, edge_perm, name)
