"""The :class:`GraphData` container every reader and generator returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from gkdfast.graph import Graph, check_to_device

__all__ = ["GraphData", "per_node_extras"]

# Rows per chunk when scanning features for NaN/inf: bounds the temporary bool mask on big
# (possibly memory-mapped) feature matrices.
_FINITE_CHUNK_ROWS = 1 << 16


def _first_non_finite_row(x: Tensor):
    """Index of the first row of ``x`` holding NaN or inf, or None (chunked: no [N, F] temporary)."""
    if not x.is_floating_point():
        return None
    # NaN and inf survive a sum, so a finite sum proves every entry finite in one cheap pass (Facebook's
    # 22,470 x 4,714 features: 12 ms against 0.5-7 s for isfinite); only a non-finite sum (a bad entry,
    # or finite values that overflow) searches row by row.
    if bool(torch.isfinite(x.sum())):
        return None
    for r0 in range(0, x.size(0), _FINITE_CHUNK_ROWS):
        ok = torch.isfinite(x[r0:r0 + _FINITE_CHUNK_ROWS]).all(dim=1)
        if not bool(ok.all()):
            return r0 + int((~ok).nonzero()[0, 0])
    return None


def is_per_node(value, num_nodes: int) -> bool:
    """Whether an extras value is per-node metadata: a tensor with one row per node."""
    return isinstance(value, torch.Tensor) and value.dim() >= 1 and value.size(0) == num_nodes


def per_node_extras(extras: dict, num_nodes: int, take) -> dict:
    """``extras`` with every tensor of ``num_nodes`` rows (per-node metadata: T2-GNN's
    ``missing_features``, Cold Brew's ``isolated_mask``, ``lcc_nodes``, ...) passed through ``take``
    (a row selection or permutation); everything else as it is.  Used where nodes are dropped or
    reordered, so such metadata stays aligned with the node ids.

    Example:
        >>> per_node_extras({"mask": torch.tensor([1, 2, 3]), "name": "x"}, 3, lambda t: t[[2, 0]])
        {'mask': tensor([3, 1]), 'name': 'x'}
    """
    return {k: take(v) if is_per_node(v, num_nodes) else v for k, v in extras.items()}


@dataclass
class GraphData:
    """One node-classification graph: structure, features, labels and a split.

    Fields:
        graph: :class:`gkdfast.Graph` over ``N`` nodes.  Readers of undirected data store every
            edge in both directions, without duplicates and without self-loops, so
            ``graph.num_edges == 2 * (undirected edges)``.
        x: ``[N, F]`` float32 node features.
        y: ``[N]`` int64 class ids in ``[0, num_classes)``; **``-1`` marks an unlabelled node**
            (e.g. CiteSeer's 15 isolated test placeholders, a BlogCatalog node with no group).
            Unlabelled nodes are never in any mask.
        train_mask, val_mask, test_mask: ``[N]`` bool, pairwise disjoint.
        num_classes: number of classes ``C``.
        name: dataset name (e.g. ``"cora"``).
        sensitive: optional ``[N]`` int64 sensitive attribute (fairness datasets), else ``None``.
        extras: format-specific extras (``class_names``, ``node_names``, ``feature_mask``,
            ``split`` = how the masks were made, ...).  Never needed for training.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=200, num_classes=4, feature_dim=8)
        >>> d.num_nodes, d.num_features, d.num_classes
        (200, 8, 4)
        >>> int(d.train_mask.sum())
        80
    """

    graph: Graph
    x: Tensor
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_classes: int
    name: str = "graph"
    sensitive: Optional[Tensor] = None
    extras: Dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_nodes(self) -> int:
        """N, the number of nodes (rows of ``x``)."""
        return self.graph.num_nodes

    @property
    def num_edges(self) -> int:
        """Directed edges stored in ``graph`` (twice the undirected count for undirected data)."""
        return self.graph.num_edges

    @property
    def num_features(self) -> int:
        """F, the width of ``x``."""
        return int(self.x.size(1))

    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` (source, destination) in the graph's index dtype (int64, or int32 for a graph
        built or loaded with int32 indices, e.g. by ``load_mmap``), as :attr:`gkdfast.Graph.edge_index`."""
        return self.graph.edge_index

    @property
    def labelled_mask(self) -> Tensor:
        """``[N]`` bool: nodes with a class label (``y >= 0``)."""
        return self.y >= 0

    @property
    def device(self) -> torch.device:
        """Device of the node features (the graph and masks follow :meth:`to`)."""
        return self.x.device

    # ------------------------------------------------------------------ transforms
    def to(self, device) -> "GraphData":
        """A new GraphData with every tensor (and the graph) on ``device``; tensors already there are
        shared, as ``Tensor.to`` shares them (``copy.deepcopy`` for an independent copy).  Takes a
        device only: cast a tensor itself for another dtype (``data.x = data.x.double()``).

        Example:
            >>> from gkdfast.data import csbm
            >>> csbm(num_nodes=50).to("cpu").x.device.type
            'cpu'
        """
        check_to_device(device, "GraphData")

        def mv(t):
            return None if t is None else t.to(device)

        return GraphData(self.graph.to(device), mv(self.x), mv(self.y), mv(self.train_mask), mv(self.val_mask),
                         mv(self.test_mask), self.num_classes, self.name, mv(self.sensitive), dict(self.extras))

    def with_split(self, train_mask: Tensor, val_mask: Tensor, test_mask: Tensor, how: str = "custom") -> "GraphData":
        """A shallow copy with other masks (e.g. from :func:`gkdfast.data.random_split`)."""
        extras = dict(self.extras)
        extras["split"] = how
        return GraphData(self.graph, self.x, self.y, train_mask, val_mask, test_mask, self.num_classes,
                         self.name, self.sensitive, extras)

    def reorder(self, method="rcm", communities: Optional[Tensor] = None):
        """The same data with nodes relabelled for gather locality: returns ``(data, reordering)``.

        ``method``: ``"rcm"``, ``"degree"``, ``"community"`` (with ``communities``, an ``[N]``
        partition, e.g. a teacher's predicted classes) or an ``[N]`` permutation (new id -> old id); see
        :func:`gkdfast.reorder.reorder_graph`.  Features, labels, masks, ``sensitive`` and the graph's
        edge weights are permuted; ``extras`` is copied unchanged (plus ``extras["reordered"] =
        method``).  Train on the returned data, then map node outputs back to the original order with
        ``reordering.unpermute(out)`` (or ids with ``reordering.old_ids``).

        Example:
            >>> from gkdfast.data import csbm
            >>> d = csbm(num_nodes=100, num_classes=2, feature_dim=4)
            >>> d2, r = d.reorder("rcm")
            >>> bool((r.unpermute(d2.x) == d.x).all()), int(d2.train_mask.sum()) == int(d.train_mask.sum())
            (True, True)
        """
        graph, r = self.graph.reorder(method, communities)

        def nodes(t):
            return None if t is None else r.permute(t)

        extras = per_node_extras(self.extras, self.num_nodes, r.permute)
        extras["reordered"] = r.method
        return GraphData(graph, nodes(self.x), nodes(self.y), nodes(self.train_mask), nodes(self.val_mask),
                         nodes(self.test_mask), self.num_classes, self.name, nodes(self.sensitive), extras), r

    def validate(self) -> "GraphData":
        """Checks shapes, dtypes and mask disjointness; raises ValueError; returns self."""
        n = self.graph.num_nodes
        if self.x.dim() != 2 or self.x.size(0) != n:
            raise ValueError(f"GraphData({self.name}): x must be [N={n}, F], got {list(self.x.shape)}")
        if self.y.dim() != 1 or self.y.size(0) != n:
            raise ValueError(f"GraphData({self.name}): y must be [N={n}], got {list(self.y.shape)}")
        if self.y.is_floating_point() or self.y.dtype == torch.bool:
            raise ValueError(f"GraphData({self.name}): y must hold integer class ids, got {self.y.dtype}")
        if self.y.numel() and int(self.y.max()) >= self.num_classes:
            raise ValueError(f"GraphData({self.name}): label {int(self.y.max())} >= num_classes={self.num_classes}")
        if self.y.numel() and int(self.y.min()) < -1:
            raise ValueError(f"GraphData({self.name}): label {int(self.y.min())} < -1 (labels are class ids >= 0, "
                             "or -1 for an unlabelled node)")
        bad = _first_non_finite_row(self.x)
        if bad is not None:
            raise ValueError(f"GraphData({self.name}): x has NaN or inf (first in row {bad}); clean or impute the "
                             "features before training")
        total = torch.zeros(n, dtype=torch.int64, device=self.y.device)
        for nm in ("train_mask", "val_mask", "test_mask"):
            m = getattr(self, nm)
            if m.dtype != torch.bool or m.shape != (n,):
                raise ValueError(f"GraphData({self.name}): {nm} must be bool [N={n}], got {m.dtype} {list(m.shape)}")
            if bool((m & (self.y < 0)).any()):
                raise ValueError(f"GraphData({self.name}): {nm} contains unlabelled nodes (y == -1)")
            total += m.long()
        if bool((total > 1).any()):
            raise ValueError(f"GraphData({self.name}): train/val/test masks overlap")
        if self.sensitive is not None and self.sensitive.shape != (n,):
            raise ValueError(f"GraphData({self.name}): sensitive must be [N={n}], got {list(self.sensitive.shape)}")
        if self.sensitive is not None and n and bool(((self.sensitive != 0) & (self.sensitive != 1)).any()):
            # ΔSP / ΔEO compare groups 0 and 1: any other value would be silently left out
            raise ValueError(f"GraphData({self.name}): sensitive must hold 0/1 only, got values "
                             f"{torch.unique(self.sensitive).tolist()[:8]}; map it to 0/1 before training")
        return self

    def summary(self) -> str:
        """One line: name, sizes, split sizes."""
        return (f"{self.name}: {self.num_nodes} nodes, {self.num_edges} directed edges, {self.num_features} features, "
                f"{self.num_classes} classes, train/val/test = {int(self.train_mask.sum())}/"
                f"{int(self.val_mask.sum())}/{int(self.test_mask.sum())}")

    def __repr__(self) -> str:
        return f"GraphData({self.summary()})"
