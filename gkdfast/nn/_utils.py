"""Helpers shared by the layers: input checks and per-graph caches of derived graphs."""
from __future__ import annotations

import weakref
from typing import Callable, Dict

import torch
from torch import Tensor

from gkdfast.graph import Graph

# graph -> {key: derived Graph}.  Weak keys: a derived graph (e.g. GAT's graph with self-loops)
# lives exactly as long as the graph it came from, so repeated forward passes build it once.
_DERIVED: "weakref.WeakKeyDictionary[Graph, Dict[str, Graph]]" = weakref.WeakKeyDictionary()


def check_input(layer: str, x, graph, in_channels) -> None:
    """Raises TypeError/ValueError with the layer's name for bad ``x`` / ``graph``."""
    if not isinstance(graph, Graph):
        raise TypeError(f"gkdfast.nn.{layer}: graph must be a gkdfast.Graph, got {type(graph).__name__} "
                        "(build one with gkdfast.Graph(edge_index, num_nodes))")
    check_features(layer, x, in_channels)
    if x.size(0) != graph.num_nodes:
        raise ValueError(f"gkdfast.nn.{layer}: x has {x.size(0)} rows but the graph has {graph.num_nodes} nodes")
    if x.device != graph.device:
        raise ValueError(f"gkdfast.nn.{layer}: x is on {x.device} but the graph is on {graph.device}")


def check_features(layer: str, x, in_channels) -> None:
    """``in_channels=None`` skips the width check (width unknown, e.g. a user module in GINConv)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"gkdfast.nn.{layer}: x must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"gkdfast.nn.{layer}: x must be 2-D [num_nodes, {in_channels or 'F'}], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"gkdfast.nn.{layer}: x must be floating point, got {x.dtype}")
    if in_channels is not None and x.size(1) != in_channels:
        raise ValueError(f"gkdfast.nn.{layer}: x has {x.size(1)} features but the layer expects {in_channels}")


def derived_graph(graph: Graph, key: str, build: Callable[[Graph], Graph]) -> Graph:
    """``build(graph)``, computed once per (graph, key) and cached while ``graph`` is alive."""
    per_graph = _DERIVED.get(graph)
    if per_graph is None:
        per_graph = {}
        _DERIVED[graph] = per_graph
    g = per_graph.get(key)
    if g is None:
        g = build(graph)
        per_graph[key] = g
    return g


def csr_view(graph: Graph) -> Graph:
    """The same edges with the user's edge order replaced by CSR order and no edge weights, so that
    per-edge tensors computed from ``graph.col`` / ``graph.dst`` can be passed to the ops as they
    are (no permutation per call).  Shares the cached transposed CSR when it exists."""
    def build(g: Graph) -> Graph:
        if g.perm is None and g.edge_weight is None:
            return g
        view = Graph._from_parts(g.rowptr, g.col, g.num_nodes)
        if g._transpose is not None:
            view._transpose = g._transpose  # t_eid indexes CSR positions, identical in both graphs
        return view
    return derived_graph(graph, "csr_view", build)


def with_self_loops_csr(graph: Graph) -> Graph:
    """PyG's ``remove_self_loops`` + ``add_self_loops``: existing self-loops are dropped, then one
    loop ``i -> i`` per node is added.  Returned in CSR order without weights (see :func:`csr_view`)."""
    def build(g: Graph) -> Graph:
        src, dst = g.col.long(), g.dst.long()
        keep = src != dst
        loops = torch.arange(g.num_nodes, device=g.device)
        ei = torch.stack([torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])])
        looped = Graph(ei.to(g.index_dtype), g.num_nodes, validate=False)
        return Graph._from_parts(looped.rowptr, looped.col, g.num_nodes)
    return derived_graph(graph, "self_loops_csr", build)
