"""``HeteroGraph``: node types, typed relations held as CSR graphs, meta-path graphs.

A relation ``(src_type, name, dst_type)`` is a :class:`gkdfast.Graph` over ``max(n_src, n_dst)``
nodes whose edges run from a ``src_type`` id to a ``dst_type`` id (each type numbers its nodes from
0), so ``relation_spmm`` aggregates ``[n_src, d]`` rows into ``[n_dst, d]`` with ``gkdfast.ops.spmm``.
Readers add every relation's reverse (``rev_<name>``) so messages reach every type.

Meta-path graphs (e.g. movie–actor–movie) are sparse products of relation matrices, computed once
with a cap on the non-zeros: the product's size is bounded (Σ over middle nodes of in·out degree)
before it is formed, and a path that would exceed ``max_nnz`` is refused with a one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from gkdfast.graph import Graph, check_to_device, derived_cache
from gkdfast._tracing import tracing

__all__ = ["HeteroGraph", "Relation", "relation_spmm", "compose_metapath"]

Relation = Tuple[str, str, str]


def _pad_rows(x: Tensor, n: int) -> Tensor:
    return x if x.size(0) == n else torch.cat([x, x.new_zeros(n - x.size(0), *x.shape[1:])])


def _num_sources(graph: Graph) -> int:
    """1 + the largest source id of ``graph``'s edges (0 without edges), computed once per graph."""
    cache = derived_cache(graph, "hetero")
    if "num_sources" not in cache:
        cache["num_sources"] = int(graph.col.max()) + 1 if graph.num_edges else 0
    return cache["num_sources"]


def relation_spmm(graph: Graph, x_src: Tensor, num_dst: int, reduce: str = "mean") -> Tensor:
    """``out[j] = reduce over relation edges (i -> j) of x_src[i]`` → ``[num_dst, d]``.

    Example:
        >>> g = Graph(torch.tensor([[0, 1, 1], [0, 0, 2]]), num_nodes=3)   # 2 sources, 3 targets
        >>> relation_spmm(g, torch.tensor([[1.0], [3.0]]), 3).flatten().tolist()
        [2.0, 0.0, 3.0]
    """
    from gkdfast.ops import spmm

    if isinstance(num_dst, bool) or not isinstance(num_dst, int) or not 0 <= num_dst <= graph.num_nodes:
        raise ValueError(f"relation_spmm: num_dst must be an int in [0, {graph.num_nodes}], got {num_dst!r}")
    if x_src.size(0) > graph.num_nodes:
        raise ValueError(f"relation_spmm: x_src has {x_src.size(0)} rows but the relation graph has "
                         f"{graph.num_nodes} nodes")
    # fewer rows than the relation has sources would silently read zeros for the missing ones
    if not tracing() and x_src.size(0) < _num_sources(graph):
        raise ValueError(f"relation_spmm: x_src has {x_src.size(0)} rows but the relation's edges start at "
                         f"source ids up to {_num_sources(graph) - 1}")
    return spmm(graph, _pad_rows(x_src, graph.num_nodes), reduce)[:num_dst]


def compose_metapath(graphs: Sequence[Graph], sizes: Sequence[int], max_nnz: int = 50_000_000,
                     drop_self: bool = True, name: str = "meta-path") -> Graph:
    """The binarised product ``A_1 A_2 ... A_k`` of relation graphs as a Graph over ``sizes[-1]``
    (square when the path starts and ends on the same type).

    Args:
        graphs: relation graphs, ``graphs[i]`` from a type with ``sizes[i]`` nodes to one with
            ``sizes[i+1]``.  sizes: ``k + 1`` node counts along the path.
        max_nnz: refuse (ValueError) when a product could hold more pairs than this (checked before
            each multiplication, on the product built so far).
        drop_self: drop ``u -> u`` pairs (a node is trivially its own meta-path neighbour); only for a
            path that starts and ends on the same type (else row ``u`` and column ``u`` are different
            nodes): :meth:`HeteroGraph.metapath` passes it so.

    Example:
        >>> ma = Graph(torch.tensor([[0, 1, 2], [0, 0, 1]]), num_nodes=3)  # 3 movies -> 2 actors
        >>> am = ma.t()
        >>> compose_metapath([ma, am], [3, 2, 3]).edge_index.tolist()
        [[0, 1], [1, 0]]
    """
    if len(graphs) < 1 or len(sizes) != len(graphs) + 1:
        raise ValueError(f"{name}: give k relation graphs and k + 1 sizes")
    mat = None
    for g, a, b in zip(graphs, sizes[:-1], sizes[1:]):
        sub = _block(g.edge_index.cpu().numpy(), a, b)
        if mat is not None:
            # Pairs the product can hold: Σ over the middle type of (in-degree so far) · (out-degree next),
            # before scipy allocates them.
            bound = int((mat.getnnz(axis=0).astype(np.int64) * sub.getnnz(axis=1).astype(np.int64)).sum())
            if bound > max_nnz:
                raise ValueError(f"{name}: the product could hold {bound:,} pairs, over max_nnz={max_nnz:,}; raise "
                                 "max_nnz or use a shorter / more selective meta-path")
        mat = sub if mat is None else _binarise(mat @ sub)
    coo = mat.tocoo()
    keep = coo.row != coo.col if drop_self else slice(None)
    idx = torch.from_numpy(np.stack([coo.row[keep], coo.col[keep]]).astype(np.int64))
    # (composed with scipy on the CPU; returned where the relations are, as hg.to(device) promises)
    return Graph(idx.to(graphs[0].device), num_nodes=max(sizes[0], sizes[-1]))


def _transposes(a: Graph, b: Graph) -> bool:
    """Whether ``a``'s (deduplicated) edge set is ``b``'s reversed."""
    ea, eb = a.edge_index.long(), b.edge_index.long()
    n = max(a.num_nodes, b.num_nodes)
    return torch.equal(torch.unique(ea[0] * n + ea[1]), torch.unique(eb[1] * n + eb[0]))


def _block(edge_index: np.ndarray, rows: int, cols: int):
    """The 0/1 ``[rows, cols]`` scipy CSR matrix of a relation's edges (duplicates merged)."""
    import scipy.sparse as sp

    ones = np.ones(edge_index.shape[1], dtype=np.float32)
    return _binarise(sp.csr_matrix((ones, (edge_index[0], edge_index[1])), shape=(rows, cols)))


def _binarise(m):
    m = m.tocsr()
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


@dataclass(eq=False)  # identity equality and hashing, as Graph (a field-wise == would compare tensors)
class HeteroGraph:
    """A typed graph for node classification on one target type.

    Fields:
        num_nodes: ``{type: count}``.  x: ``{type: [n, F] float32}`` for the types with features.
        relations: ``{(src, name, dst): Graph}`` (see the module doc for the layout).
        target: the labelled type.  y: ``[n_target]`` int64 (``-1`` = unlabelled).
        train_mask, val_mask, test_mask: ``[n_target]`` bool.  num_classes: ``C``.
        metapaths: ``{name: Graph}`` over the target type (e.g. ``"mam"``), as shipped or composed.
        name: dataset name.  extras: reader notes (``split``, ``format``...).

    Example:
        >>> hg = HeteroGraph.toy()
        >>> hg.target, hg.num_nodes["movie"], sorted(hg.metapaths)
        ('movie', 6, ['mam'])
    """

    num_nodes: Dict[str, int]
    x: Dict[str, Tensor]
    relations: Dict[Relation, Graph]
    target: str
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_classes: int
    metapaths: Dict[str, Graph] = field(default_factory=dict)
    name: str = "hetero"
    extras: dict = field(default_factory=dict, repr=False)

    @property
    def node_types(self) -> List[str]:
        """Type names, the target first."""
        return [self.target] + sorted(t for t in self.num_nodes if t != self.target)

    def relation(self, src: str, dst: str) -> List[Relation]:
        """Relations from ``src`` to ``dst``."""
        return [r for r in self.relations if r[0] == src and r[2] == dst]

    def metapath(self, *types: str, max_nnz: int = 50_000_000) -> Graph:
        """The meta-path graph along ``types`` (e.g. ``"movie", "actor", "movie"``), composed from the
        first relation between each consecutive pair.

        Example:
            >>> HeteroGraph.toy().metapath("movie", "actor", "movie").num_edges
            6
        """
        unknown = [t for t in types if t not in self.num_nodes]
        if len(types) < 2 or unknown:
            raise ValueError(f"{self.name}: a meta-path needs two or more node types from {sorted(self.num_nodes)}, "
                             f"got {list(types)}" + (f" ({unknown[0]!r} is not one)" if unknown else ""))
        graphs, sizes = [], [self.num_nodes[types[0]]]
        for a, b in zip(types[:-1], types[1:]):
            rels = self.relation(a, b)
            if not rels:
                raise ValueError(f"{self.name}: no relation from {a!r} to {b!r} (relations: {list(self.relations)})")
            graphs.append(self.relations[rels[0]])
            sizes.append(self.num_nodes[b])
        return compose_metapath(graphs, sizes, max_nnz, drop_self=types[0] == types[-1], name="-".join(types))

    def __getstate__(self) -> dict:  # (what is derived from the graph, e.g. HGT's merged relations, is rebuilt)
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def to(self, device) -> "HeteroGraph":
        """A new HeteroGraph with every tensor and graph on ``device`` (tensors already there are shared,
        as ``Tensor.to`` shares them)."""
        check_to_device(device, "HeteroGraph")
        return HeteroGraph(dict(self.num_nodes), {k: v.to(device) for k, v in self.x.items()},
                           {k: g.to(device) for k, g in self.relations.items()}, self.target, self.y.to(device),
                           self.train_mask.to(device), self.val_mask.to(device), self.test_mask.to(device),
                           self.num_classes, {k: g.to(device) for k, g in self.metapaths.items()}, self.name,
                           dict(self.extras))

    def validate(self) -> "HeteroGraph":
        """Checks types, sizes and masks; raises ValueError; returns self."""
        if self.target not in self.num_nodes:
            raise ValueError(f"{self.name}: target type {self.target!r} is not a node type {sorted(self.num_nodes)}")
        n = self.num_nodes[self.target]
        for (s, r, d), g in self.relations.items():
            for t in (s, d):
                if t not in self.num_nodes:
                    raise ValueError(f"{self.name}: relation {r!r} names the unknown node type {t!r}")
            if g.num_nodes < max(self.num_nodes[s], self.num_nodes[d]):
                raise ValueError(f"{self.name}: relation {r!r} graph has {g.num_nodes} nodes, fewer than its types")
            ei = g.edge_index
            for side, t in ((0, s), (1, d)):  # ids index their own type (R-GCN would drop the others)
                if ei.size(1) and int(ei[side].max()) >= self.num_nodes[t]:
                    raise ValueError(f"{self.name}: relation {r!r} has {t!r} id {int(ei[side].max())}, but {t!r} has "
                                     f"{self.num_nodes[t]} nodes")
        for t, x in self.x.items():
            if t not in self.num_nodes:
                raise ValueError(f"{self.name}: features of the unknown node type {t!r} "
                                 f"(types: {sorted(self.num_nodes)})")
            if x.dim() != 2 or x.size(0) != self.num_nodes[t]:
                raise ValueError(f"{self.name}: features of {t!r} must be [{self.num_nodes[t]}, F], "
                                 f"got {list(x.shape)}")
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{self.name}: features of {t!r} have NaN or inf")
        if self.y.shape != (n,):
            raise ValueError(f"{self.name}: y must have one label per {self.target!r} node ({n}), "
                             f"got {list(self.y.shape)}")
        if self.y.is_floating_point() or self.y.dtype == torch.bool:
            raise ValueError(f"{self.name}: y must hold int class ids (-1: unlabelled), got {self.y.dtype}")
        if n and int(self.y.max()) >= self.num_classes:  # (a crash in training, or a silent miss in testing)
            raise ValueError(f"{self.name}: label {int(self.y.max())} is not below num_classes={self.num_classes}")
        for name, g in self.metapaths.items():
            if g.num_nodes != n:
                raise ValueError(f"{self.name}: meta-path {name!r} has {g.num_nodes} nodes, but the target type "
                                 f"{self.target!r} has {n}")
        for name, m in (("train_mask", self.train_mask), ("val_mask", self.val_mask), ("test_mask", self.test_mask)):
            if m.shape != (n,) or m.dtype != torch.bool:
                raise ValueError(f"{self.name}: {name} must be bool [{n}], got {m.dtype} {list(m.shape)}")
            if bool((m & (self.y < 0)).any()):
                raise ValueError(f"{self.name}: a mask contains unlabelled {self.target!r} nodes")
        if bool((self.train_mask & self.val_mask).any() | (self.train_mask & self.test_mask).any()
                | (self.val_mask & self.test_mask).any()):
            raise ValueError(f"{self.name}: the train / val / test masks overlap (a test node in training leaks)")
        return self

    def summary(self) -> str:
        """One line: name, types with counts, relations, split sizes."""
        types = ", ".join(f"{t} {self.num_nodes[t]}" for t in self.node_types)
        rels = sum(1 for r in self.relations if not r[1].startswith("rev_"))
        return (f"{self.name}: {types}; {rels} relations (+ reverses); target {self.target}, {self.num_classes} "
                f"classes, train/val/test = {int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
                f"{int(self.test_mask.sum())}")

    @staticmethod
    def from_pyg(data, target: str, metapaths: Optional[Dict[str, Sequence[str]]] = None) -> "HeteroGraph":
        """From a PyG ``HeteroData`` (read through its public attributes, so PyG need not be imported
        here): node types with ``num_nodes`` / ``x``; edge types ``(src, rel, dst)`` with
        ``edge_index``; ``data[target]`` with ``y`` and ``train_mask`` / ``val_mask`` / ``test_mask``.
        A reverse ``(dst, "rev_<name>", src)`` is added for every relation that comes without one (a
        relation within one type whose edges are already symmetric needs none).  ``metapaths``:
        ``{"mam": ("movie", "actor", "movie")}`` to compose.

        Example:
            >>> hg = HeteroGraph.from_pyg(pyg_imdb, "movie", {"mam": ("movie", "actor", "movie")})  # doctest: +SKIP
        """
        counts = {t: int(data[t].num_nodes) for t in data.node_types}
        if target not in counts:
            raise ValueError(f"from_pyg: target {target!r} is not a node type of the HeteroData {sorted(counts)}")
        x = {t: data[t].x.float() for t in data.node_types if getattr(data[t], "x", None) is not None}
        rels: Dict[Relation, Graph] = {}
        for (s, r, d) in data.edge_types:
            for t_ in (s, d):
                if t_ not in counts:
                    raise ValueError(f"from_pyg: edge type {(s, r, d)} names {t_!r}, not a node type {sorted(counts)}")
            g = Graph(data[(s, r, d)].edge_index.long(), num_nodes=max(counts[s], counts[d]))
            rels[(s, r, d)] = g
        given = set(rels)
        for (s, r, d), g in list(rels.items()):
            if (d, "rev_" + r, s) in given or (r.startswith("rev_") and (d, r[4:], s) in given):
                continue  # its reverse came with the data (PyG's ToUndirected names it rev_<name>)
            if any(k[0] == d and k[2] == s and k != (s, r, d) and _transposes(rels[k], g) for k in given):
                continue  # ... or under another name ("to" both ways, as PyG's IMDB / DBLP ship them)
            if s == d and _transposes(g, g):
                continue  # a relation within one type whose edges go both ways already
            rels[(d, "rev_" + r, s)] = g.t()
        t = data[target]
        masks = [getattr(t, m, None) for m in ("train_mask", "val_mask", "test_mask")]
        if any(m is None for m in masks) or getattr(t, "y", None) is None:
            raise ValueError(f"from_pyg: data[{target!r}] needs y, train_mask, val_mask and test_mask")
        y = t.y.long()
        hg = HeteroGraph(counts, x, rels, target, y, *(m.bool() for m in masks), int(y.max()) + 1, {}, "pyg",
                         {"split": "given", "format": "pyg"})
        for name, types in (metapaths or {}).items():
            hg.metapaths[name] = hg.metapath(*types)
        return hg.validate()

    @staticmethod
    def toy() -> "HeteroGraph":
        """Six movies, three actors, two classes: a tiny graph for examples and tests."""
        ma = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 2, 2]])
        rel = Graph(ma, num_nodes=6)
        y = torch.tensor([0, 0, 1, 1, 0, 1])
        tr = torch.tensor([True, False, True, False, False, False])
        va = torch.tensor([False, True, False, True, False, False])
        te = ~(tr | va)
        hg = HeteroGraph({"movie": 6, "actor": 3}, {"movie": torch.eye(6)},
                         {("movie", "ma", "actor"): rel, ("actor", "rev_ma", "movie"): rel.t()}, "movie", y,
                         tr, va, te, 2, name="toy")
        hg.metapaths["mam"] = hg.metapath("movie", "actor", "movie")
        return hg.validate()

    def __repr__(self) -> str:
        return f"HeteroGraph({self.summary()})"
