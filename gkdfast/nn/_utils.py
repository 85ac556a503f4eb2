"""Helpers shared by the layers: input checks and per-graph caches of derived graphs."""
from __future__ import annotations

import numbers
from typing import Callable, Optional

import torch
from torch import Tensor

from gkdfast import _backend
from gkdfast._checks import check_float_matrix, check_graph, check_rows_match
from gkdfast._tracing import tracing
from gkdfast.graph import Graph, derived_cache



def check_model_sizes(name: str, in_channels, hidden_channels, out_channels, num_layers, dropout,
                      out_name: str = "out_channels") -> None:
    """Raises ValueError naming model ``name`` for a non-positive width or layer count, or a dropout
    outside [0, 1).  ``out_name``: what the model calls its output width (e.g. ``num_classes``)."""
    for what, v in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                    (out_name, out_channels), ("num_layers", num_layers)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"gkdfast.nn.{name}: {what} must be a positive int, got {v!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"gkdfast.nn.{name}: dropout must be in [0, 1), got {dropout}")


def check_channels(layer: str, **widths) -> tuple:
    """The widths as Python ints (NumPy or torch integer scalars are taken, e.g. ``labels.max() + 1``);
    ValueError naming ``layer`` for one that is not a positive integer, with PyG's lazy ``-1`` and
    bipartite ``(source, destination)`` widths said not to be supported here."""
    out = []
    for what, v in widths.items():
        integral = isinstance(v, numbers.Integral) and not isinstance(v, bool)
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_floating_point() and v.dtype != torch.bool:
            v, integral = int(v), True
        if integral and v >= 1:
            out.append(int(v))
            continue
        hint = ""
        if integral and v == -1:
            hint = " (PyG's lazy width -1 is not supported: pass the input width)"
        elif isinstance(v, tuple):
            hint = " (PyG's bipartite (source, destination) widths are not supported)"
        raise ValueError(f"gkdfast.nn.{layer}: {what} must be a positive int, got {v!r}{hint}")
    return tuple(out)


def check_sparse_input(layer: str, value, pyg_third: str) -> None:
    """A tensor or a tuple where ``sparse_input`` (a flag) goes is PyG's third argument, which this
    layer's ``forward`` does not take: a TypeError saying so (its truth value was read as the flag)."""
    if isinstance(value, (torch.Tensor, tuple, list)):
        raise TypeError(f"gkdfast.nn.{layer}: the third argument of forward is sparse_input (a bool), got "
                        f"{type(value).__name__}; PyG's third argument ({pyg_third}) is not supported here")


def check_input(layer: str, x, graph, in_channels) -> None:
    """Raises TypeError/ValueError with the layer's name for bad ``x`` / ``graph``."""
    where = f"gkdfast.nn.{layer}"
    if isinstance(x, Graph) and isinstance(graph, torch.Tensor):
        raise TypeError(f"{where}: got (graph, x); layers take the features first: layer(x, graph)")
    check_graph(graph, where)
    check_features(layer, x, in_channels)
    check_rows_match(graph, x, where, "x")


def check_features(layer: str, x, in_channels) -> None:
    """``in_channels=None`` skips the width check (width unknown, e.g. a user module in GINConv)."""
    check_float_matrix(x, f"gkdfast.nn.{layer}", "x", f"[num_nodes, {in_channels or 'F'}]")
    if in_channels is not None and x.size(1) != in_channels:
        raise ValueError(f"gkdfast.nn.{layer}: x has {x.size(1)} features but the layer expects {in_channels}")


def reset_children(module: torch.nn.Module) -> None:
    """Re-initialises ``module``'s children as at construction: a child with its own
    ``reset_parameters`` resets itself (and its children: GCNConv / GATConv use glorot, which a second
    reset of their inner ``nn.Linear`` would overwrite with its kaiming default); other children are
    walked into."""
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_children(child)


def derived_graph(graph: Graph, key: str, build: Callable[[Graph], Graph]) -> Graph:
    """``build(graph)``, computed once per (graph, key) and kept on the graph (:func:`derived_cache`), so
    a derived graph (e.g. GAT's graph with self-loops) lives exactly as long as the graph it came from."""
    per_graph = derived_cache(graph, "graphs")
    g = per_graph.get(key)
    if g is None:
        from gkdfast.graph import cache_mode

        with cache_mode():  # built under inference mode, it would break later training on the graph
            g = build(graph)
        if not tracing():  # (a traced value is no cache: as Graph's own, see Graph._keep)
            per_graph[key] = g
    return g


def csr_view(graph: Graph) -> Graph:
    """The same edges with the user's edge order replaced by CSR order and no edge weights, so that
    per-edge tensors computed from ``graph.col`` / ``graph.dst`` can be passed to the ops as they
    are (no permutation per call).  Shares the cached transposed CSR when it exists."""
    if graph.perm is None and graph.edge_weight is None:
        # The graph itself, never cached: it would go on being returned after edge weights are
        # assigned to the graph.
        return graph

    def build(g: Graph) -> Graph:
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


class _EdgeGather(torch.autograd.Function):
    """``out[e] = a_src[col[e]] + a_dst[dst[e]]`` for every edge in CSR order (``[E, H]``).

    Autograd's own backward for the two gathers would scatter-add (atomics on CUDA, so run-to-run
    differences); here each node's gradient is a segment sum over its CSR row (destination side)
    or its transposed-CSR row (source side), which is deterministic on every device.  The backward
    is :class:`_EdgeSegmentSum`, whose backward is this gather again (the two are adjoints), so
    derivatives of any order are right (``torch.autograd.functional.hvp`` on a GAT needs the third).
    """

    @staticmethod
    def forward(ctx, graph: Graph, a_src: Tensor, a_dst: Tensor) -> Tensor:
        ctx.graph = graph
        return a_src[graph.col.long()] + a_dst[graph.dst.long()]

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_src, grad_dst = _EdgeSegmentSum.apply(ctx.graph, grad, ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        return None, grad_src, grad_dst


class _EdgeSegmentSum(torch.autograd.Function):
    """``(grad_src, grad_dst)``: per node, the sum of the ``[E, H]`` edge values over its out-edges
    (transposed-CSR rows) and over its in-edges (CSR rows); ``None`` where not asked for.  The adjoint
    of :class:`_EdgeGather`, which is its backward."""

    @staticmethod
    def forward(ctx, graph: Graph, grad: Tensor, want_src: bool, want_dst: bool):
        ctx.graph = graph
        grad_src = grad_dst = None
        if want_dst:
            grad_dst = torch.segment_reduce(grad, "sum", offsets=graph.rowptr.long(), axis=0)
        if want_src:
            t_rowptr, _, t_eid = graph.transpose_csr()
            grad_src = torch.segment_reduce(grad[t_eid.long()], "sum", offsets=t_rowptr.long(), axis=0)
        return grad_src, grad_dst

    @staticmethod
    def backward(ctx, gg_src, gg_dst):
        if gg_src is None and gg_dst is None:
            return None, None, None, None
        # an output not used downstream has no gradient: zeros of the same [N, H] shape
        gg_src = torch.zeros_like(gg_dst) if gg_src is None else gg_src
        gg_dst = torch.zeros_like(gg_src) if gg_dst is None else gg_dst
        return None, _EdgeGather.apply(ctx.graph, gg_src, gg_dst), None, None


def edge_sum(graph: Graph, a_src: Tensor, a_dst: Tensor) -> Tensor:
    """Per-edge ``a_src[j] + a_dst[i]`` for ``e = (j -> i)`` in CSR order; ``a_*`` are ``[N, H]``,
    the result ``[E, H]``.  Deterministic backward (segment sums, no scatter-add), differentiable to
    any order.  Under ``torch.func`` transforms and forward-mode AD (which compose with plain indexing,
    not with these hand-written functions) the gathers are plain indexing."""
    if _backend.transforms_active():
        return a_src[graph.col.long()] + a_dst[graph.dst.long()]
    return _EdgeGather.apply(graph, a_src, a_dst)


def parse_width_layers(rest: str, spec: str, form: str, hidden: int, num_layers: int):
    """The ``hidden[xlayers]`` tail of a model spec (``"128x5"``, ``"16"``, ``""``) -> ``(hidden,
    num_layers)``, the given defaults where a part is absent; ValueError naming ``form`` otherwise.

    Example:
        >>> parse_width_layers("16x1", "rgcn:16x1", "name[:hidden[xlayers]]", 64, 2)
        (16, 1)
    """
    if not rest:
        return hidden, num_layers
    h, _, layers = rest.partition("x")
    if not h.isdigit() or int(h) < 1 or (layers and (not layers.isdigit() or int(layers) < 1)):
        raise ValueError(f"bad model spec {spec!r}: expected {form}, e.g. {spec.split(':')[0]}:128x2")
    return int(h), int(layers) if layers else num_layers


def weights_like(graph: Graph, edge_weight: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """The edge weights a layer applies (``edge_weight``, else the graph's own) in ``x``'s dtype: a
    float64 model on a graph with float32 weights (or the reverse) would otherwise be refused by spmm.

    Example:
        >>> g = Graph(torch.tensor([[0], [1]]), edge_weight=torch.tensor([2.0]))
        >>> weights_like(g, None, torch.zeros(2, 1, dtype=torch.float64)).dtype
        torch.float64
    """
    w = graph.edge_weight if edge_weight is None else edge_weight
    return w if w is None or w.dtype == x.dtype else w.to(x.dtype)
