"""TU graph-classification datasets in the raw TUDataset text format (MUTAG, PROTEINS, ENZYMES, ...).

Files ``<DS>_A.txt`` (``row, col`` lines, 1-based node ids, both directions), ``<DS>_graph_indicator.txt``
(graph id of each node, 1-based), ``<DS>_graph_labels.txt`` (one label per graph), optional
``<DS>_node_labels.txt`` (one int per node) and ``<DS>_node_attributes.txt`` (comma-separated
floats per node).  Edge labels/attributes are ignored.

This is **graph** classification, so :func:`load_tu` (and ``load(path)`` on such a directory)
returns a :class:`GraphDataset`, not a :class:`GraphData`: all graphs are stored together as one
block-diagonal :class:`gkdfast.Graph` (undirected, de-duplicated, no self-loops) with ``batch``
saying which graph each node belongs to.  Node features ``x`` = one-hot node labels (one column
per distinct label value, in sorted order) followed by the node attributes; ``[N, 1]`` ones when
the dataset has neither.  Graph labels are mapped to ``0..C-1`` in sorted order (MUTAG's -1/1 ->
0/1; ``label_values`` keeps the originals).  Split: a stratified random 80/10/10 split of the
*graphs* from ``seed`` (``train_mask/val_mask/test_mask`` are ``[G]`` bool).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any, Dict, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from gkdfast.data._util import fail, parse_int_table, pick_dataset, undirected_graph
from gkdfast.data.text_tables import parse_numbers
from gkdfast.graph import Graph

__all__ = ["GraphDataset", "TUGraph", "load_tu", "tu_names"]


class TUGraph(NamedTuple):
    """One graph of a :class:`GraphDataset`: its Graph (local ids), ``x`` [n, F] and int label."""
    graph: Graph
    x: Tensor
    y: int


@dataclass
class GraphDataset:
    """Many small graphs for graph classification, stored block-diagonally.

    Fields:
        graph: one :class:`gkdfast.Graph` over all ``N`` nodes (no edge crosses graphs).
        x: ``[N, F]`` float32 node features.
        batch: ``[N]`` int64 graph id of each node (non-decreasing).
        ptr: ``[G + 1]`` int64: graph ``g`` owns nodes ``ptr[g]:ptr[g+1]``.
        y: ``[G]`` int64 graph class ids.
        num_classes, name, label_values (original label of each class id).
        train_mask, val_mask, test_mask: ``[G]`` bool over graphs.

    Example:
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> len(ds), ds.num_classes, ds[0].x.shape[1] == ds.num_features
        (188, 2, True)
    """

    graph: Graph
    x: Tensor
    batch: Tensor
    ptr: Tensor
    y: Tensor
    num_classes: int
    name: str
    label_values: list
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    extras: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_graphs(self) -> int:
        """Number of graphs in the dataset (one label each)."""
        return int(self.y.numel())

    @property
    def num_nodes(self) -> int:
        """Total nodes over all graphs (they are stored as one block-diagonal graph)."""
        return self.graph.num_nodes

    @property
    def num_features(self) -> int:
        """Width of the node features ``x``."""
        return int(self.x.size(1))

    def __len__(self) -> int:
        return self.num_graphs

    def __getitem__(self, i: int) -> TUGraph:
        """Graph ``i`` with node ids relabelled to start at 0."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"graph index {i} out of range for {len(self)} graphs")
        i = i % len(self)
        lo, hi = int(self.ptr[i]), int(self.ptr[i + 1])
        rp = self.graph.rowptr
        e0, e1 = int(rp[lo]), int(rp[hi])  # CSR by destination: graph i's edges are contiguous
        col = self.graph.col[e0:e1] - lo
        rowptr = rp[lo:hi + 1] - e0
        return TUGraph(Graph.from_csr(rowptr, col, hi - lo), self.x[lo:hi], int(self.y[i]))

    def to(self, device) -> "GraphDataset":
        """A copy with every tensor (graph, features, batch vector, labels, masks) on ``device``."""
        mv = lambda t: t.to(device)  # noqa: E731
        return GraphDataset(self.graph.to(device), mv(self.x), mv(self.batch), mv(self.ptr), mv(self.y),
                            self.num_classes, self.name, list(self.label_values), mv(self.train_mask),
                            mv(self.val_mask), mv(self.test_mask), dict(self.extras))

    def __repr__(self) -> str:
        return (f"GraphDataset({self.name}: {self.num_graphs} graphs, {self.num_nodes} nodes, "
                f"{self.graph.num_edges} directed edges, {self.num_features} features, {self.num_classes} classes)")


def tu_names(directory) -> list:
    """Sorted names of the TU datasets in ``directory`` (one per ``<NAME>_A.txt`` file).

    Example:
        >>> tu_names("../shared/data/tu_mutag")              # doctest: +SKIP
        ['MUTAG']
    """
    return sorted(os.path.basename(p)[:-len("_A.txt")] for p in glob.glob(os.path.join(directory, "*_A.txt")))


def _read(path, what):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        raise fail(path, f"missing TU file ({what})") from None


def _stratified_split(y: np.ndarray, seed: int, fractions=(0.8, 0.1)):
    gen = torch.Generator().manual_seed(int(seed))
    g = y.size
    tr, va = np.zeros(g, bool), np.zeros(g, bool)
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        idx = idx[torch.randperm(idx.size, generator=gen).numpy()]
        n_tr = int(round(fractions[0] * idx.size))
        n_va = int(round(fractions[1] * idx.size))
        tr[idx[:n_tr]] = True
        va[idx[n_tr:n_tr + n_va]] = True
    return torch.from_numpy(tr), torch.from_numpy(va), torch.from_numpy(~tr & ~va)


def load_tu(directory, name: Optional[str] = None, seed: int = 0) -> GraphDataset:
    """Reads a TU dataset directory; see the module doc.

    Example:
        >>> ds = load_tu("../shared/data/tu_proteins")
        >>> ds.num_graphs, ds.num_nodes, ds.graph.num_edges // 2
        (1113, 43471, 81044)
    """
    directory = os.fspath(directory)
    ds = pick_dataset(directory, tu_names(directory), name, "TU")
    p = lambda s: os.path.join(directory, f"{ds}_{s}.txt")  # noqa: E731
    edges = parse_int_table(p("A"), _read(p("A"), "adjacency"), 2, "adjacency")
    gi = parse_int_table(p("graph_indicator"), _read(p("graph_indicator"), "graph indicator"), 1,
                         "graph indicator").reshape(-1)
    glab = parse_int_table(p("graph_labels"), _read(p("graph_labels"), "graph labels"), 1, "graph labels").reshape(-1)
    n, num_graphs = gi.size, glab.size
    if n == 0 or num_graphs == 0:
        raise fail(directory, f"{ds}: empty graph indicator or graph labels")
    # ids missing from the indicator, at its end too, are graphs without nodes (one label each)
    if int(gi.min()) < 1 or int(gi.max()) > num_graphs:
        raise fail(p("graph_indicator"), f"graph ids must be in 1..{num_graphs} (the number of graph labels), "
                                         f"got {int(gi.min())}..{int(gi.max())}")
    if bool((np.diff(gi) < 0).any()):
        raise fail(p("graph_indicator"), "graph ids must be non-decreasing (nodes grouped by graph)")
    if edges.size and (int(edges.min()) < 1 or int(edges.max()) > n):
        raise fail(p("A"), f"node ids must be in 1..{n} (1-based; {ds}_graph_indicator.txt lists {n} nodes), "
                           f"got {int(edges.min())}..{int(edges.max())}")
    src, dst = edges[:, 0] - 1, edges[:, 1] - 1
    batch = gi - 1
    if edges.size and bool((batch[src] != batch[dst]).any()):
        raise fail(p("A"), "an edge joins nodes of different graphs")
    g = undirected_graph(src, dst, n)

    parts = []
    if os.path.exists(p("node_labels")):
        nl = parse_int_table(p("node_labels"), _read(p("node_labels"), "node labels"), 1, "node labels").reshape(-1)
        if nl.size != n:
            raise fail(p("node_labels"), f"{nl.size} rows for {n} nodes")
        vals, inv = np.unique(nl, return_inverse=True)
        oh = np.zeros((n, vals.size), np.float32)
        oh[np.arange(n), inv] = 1.0
        parts.append(oh)
    if os.path.exists(p("node_attributes")):
        text = _read(p("node_attributes"), "node attributes")
        ncol = text.lstrip().partition("\n")[0].count(",") + 1  # the first line that is not blank
        flat = parse_numbers(text, torch.float32, source=p("node_attributes"),
                             what="node attributes (comma-separated floats)").numpy()
        if flat.size != n * ncol:
            raise fail(p("node_attributes"), f"expected {n} rows of {ncol} comma-separated floats, got {flat.size} values")
        # the total alone lets rows of 2, 3 and 1 values pass as rows of 2: every line's width
        widths = np.array([line.count(",") + 1 for line in text.splitlines() if line.strip()])
        if widths.size and bool((widths != ncol).any()):
            bad = int(np.flatnonzero(widths != ncol)[0])
            raise fail(p("node_attributes"), f"row {bad + 1} (not counting blank lines) has {int(widths[bad])} values, "
                                             f"the first row {ncol}")
        parts.append(flat.reshape(n, ncol))
    x = torch.from_numpy(np.concatenate(parts, 1)) if parts else torch.ones(n, 1)

    label_values, y = np.unique(glab, return_inverse=True)
    counts = np.bincount(batch, minlength=num_graphs)
    ptr = np.zeros(num_graphs + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    tr, va, te = _stratified_split(y, seed)
    return GraphDataset(g, x, torch.from_numpy(batch.astype(np.int64)), torch.from_numpy(ptr),
                        torch.from_numpy(y.astype(np.int64)), int(label_values.size), ds.lower(),
                        [int(v) for v in label_values], tr, va, te,
                        {"format": "tu", "split": f"stratified random 80/10/10 of graphs, seed={seed}"})
