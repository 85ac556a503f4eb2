"""Public message-passing ops: :func:`spmm`, :func:`sddmm`, :func:`edge_softmax`.

Each call picks the CUDA kernel, the CPU kernel or the pure-PyTorch reference (see
:mod:`gkdfast._backend`).  The native operators are defined once in C++ (``torch.ops.gkdfast``);
their fake kernels (for torch.compile / meta tensors) live in :mod:`gkdfast._native.spmm`, ``.sddmm``
and ``.edge_softmax``, their autograd kernels in C++ (``csrc/autograd/``).  Backward passes are themselves
gkdfast ops over the cached transposed CSR, so gradients are deterministic (no atomics) and
twice-differentiable (every reduce; see docs/ops.md, "Differentiability").
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from gkdfast import _autocast, _backend
from gkdfast import _checks
from gkdfast import reference as ref
from gkdfast.graph import Graph

__all__ = ["spmm", "sddmm", "edge_softmax", "gcn_norm"]

REDUCTIONS = ("sum", "mean", "max", "min")


# ---------------------------------------------------------------------------------------- checks
def check_graph(graph, op: str, swapped_with=None) -> Graph:
    """``gkdfast._checks.check_graph`` with the ``gkdfast.<op>`` prefix; returns ``graph``."""
    return _checks.check_graph(graph, f"gkdfast.{op}", swapped_with=swapped_with)


def check_node_tensor(graph: Graph, x, op: str, name: str = "x") -> Tensor:
    """A ``[num_nodes, features]`` floating tensor on the graph's device (message names ``op``/``name``)."""
    return _checks.check_node_matrix(graph, x, f"gkdfast.{op}", name)


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def graph_tensors(graph: Graph, need_transpose: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(rowptr, col, t_rowptr, t_col, t_eid); the transpose is empty when no backward will need it."""
    if need_transpose:
        t_rowptr, t_col, t_eid = graph.transpose_csr()
    else:
        t_rowptr = t_col = t_eid = graph.col.new_empty(0)
    return graph.rowptr, graph.col, t_rowptr, t_col, t_eid


# ---------------------------------------------------------------------------------------- spmm
def spmm(graph: Graph, x: Tensor, reduce: str = "sum", edge_weight: Optional[Tensor] = None,
         norm: Optional[str] = None) -> Tensor:
    """Sparse-dense message passing: ``out[i] = reduce over edges e=(j->i) of w_e * x[j]``.

    Args:
        graph: a :class:`gkdfast.Graph` with ``N`` nodes and ``E`` edges.
        x: ``[N, d]`` floating node features (float32/float64 on CPU kernels, also float16/bfloat16 on
            CUDA; other floating dtypes run on the reference).
        reduce: ``"sum"``, ``"mean"`` (sum divided by the in-degree), ``"max"`` or ``"min"``.
            Rows without in-edges give 0.  For max/min, ties go to the first edge in the graph's CSR
            order, and the gradient flows to that edge only.
        edge_weight: optional ``[E]`` weights in the order of the graph's ``edge_index``; defaults to
            ``graph.edge_weight``.  Differentiable.
        norm: ``"gcn"`` applies ``D^-1/2 (A + I) D^-1/2`` (``deg_i = 1 + sum of in-weights``; ``I`` added
            even where the graph has self-loops; a node whose degree is 0 or negative, possible with
            negative weights, gets coefficient 0) without
            materialising per-edge coefficients or self-loops; only with ``reduce="sum"``.

    Determinism: bitwise reproducible run to run on CPU and CUDA (no atomics, forward or backward),
    except ``norm="gcn"`` **with edge weights on CUDA**: the weighted degrees are summed with
    ``index_add_`` (atomics), so the result may differ in the last bits between runs, unless
    ``torch.use_deterministic_algorithms(True)`` is on (PyTorch's ``index_add_`` is then
    deterministic).  Without edge weights the degrees are exact counts.  See README, "Determinism".

    Returns:
        ``[N, d]`` tensor.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 1]]))
        >>> gkdfast.spmm(g, torch.eye(3), "sum")
        tensor([[0., 0., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])
    """
    check_graph(graph, "spmm", swapped_with=x)
    x = check_node_tensor(graph, x, "spmm")
    if reduce not in REDUCTIONS:
        raise ValueError(f"gkdfast.spmm: unknown reduce {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
    if edge_weight is None:
        edge_weight = graph.edge_weight
    if edge_weight is not None:
        graph.check_edge_values(edge_weight, "edge_weight")
    if _autocast.autocast_on(x.device.type):  # inputs of any float dtypes meet in the region's (a matmul's)
        dtype = _autocast.message_dtype(x, _backend.native_dtypes("spmm", x.device.type))
        x = x.to(dtype)
        edge_weight = None if edge_weight is None else edge_weight.to(dtype)
    if edge_weight is not None and edge_weight.dtype != x.dtype:
        raise TypeError(f"gkdfast.spmm: edge_weight has dtype {edge_weight.dtype} but x has {x.dtype}")
    if norm is not None:
        if norm != "gcn":
            raise ValueError(f"gkdfast.spmm: unknown norm {norm!r}; expected None or 'gcn'")
        if reduce != "sum":
            raise ValueError("gkdfast.spmm: norm='gcn' is defined for reduce='sum' only")
        return _spmm_gcn(graph, x, edge_weight)
    return _spmm(graph, x, reduce, edge_weight)


def _spmm_gcn(graph: Graph, x: Tensor, edge_weight: Optional[Tensor]) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2 x``: the fused native op where one runs (one pass, one [N, d] output,
    the composite's bits), else the composite ``dinv * (spmm(x * dinv) + x * dinv)``, which is also the
    path when the edge weights need a gradient (the fused op differentiates x only)."""
    dinv = graph.gcn_norm_coefficients(edge_weight, x.dtype)
    if not _needs_grad(edge_weight) and _backend.choose("spmm_gcn", x.device, x.dtype) != "reference":
        w = graph.to_csr_order(edge_weight) if edge_weight is not None else None
        return torch.ops.gkdfast.spmm_gcn(*graph_tensors(graph, _needs_grad(x)), w, dinv, x)
    dinv = dinv.unsqueeze(-1)
    h = x * dinv
    return dinv * (_spmm(graph, h, "sum", edge_weight) + h)


def _spmm(graph: Graph, x: Tensor, reduce: str, edge_weight: Optional[Tensor]) -> Tensor:
    w = graph.to_csr_order(edge_weight) if edge_weight is not None else None
    if _backend.choose("spmm", x.device, x.dtype) == "reference":
        _backend.warn_dense_fallback("spmm", x.device, x.dtype, graph.num_edges * x.size(1),
                                     f"one message per edge ({graph.num_edges} x {x.size(1)})", name="spmm")
        return ref.spmm(graph, x, reduce, w)
    tensors = graph_tensors(graph, _needs_grad(x, w))
    out, _ = torch.ops.gkdfast.spmm(*tensors, w, x, reduce)
    return out


def gcn_norm(graph: Graph, edge_weight: Optional[Tensor] = None, dtype=torch.float32) -> Tuple[Graph, Tensor]:
    """Explicit GCN normalisation for code that wants per-edge coefficients (e.g. to pass to another library).

    Returns ``(graph_with_self_loops, weight)`` with ``weight[e] = w_e / sqrt(deg_i deg_j)`` for
    ``D^-1/2 (A + I) D^-1/2`` (the graph's ``edge_weight`` is ``weight``); prefer ``spmm(..., norm="gcn")``,
    which never builds them.  One self-loop per node is added whatever the graph has: a graph that
    already has loops counts them twice (``A_ii = 2``), unlike PyG's ``add_remaining_self_loops``.
    ``dtype``: of the returned weights (float32 by default, whatever the edge weights' dtype; pass
    ``torch.float64`` to keep float64 weights).
    With edge weights on CUDA the degrees are an ``index_add_`` (atomics): the weights may differ in
    the last bits between runs (compute them once and reuse them, or turn on
    ``torch.use_deterministic_algorithms(True)``, for bitwise reproducibility).

    Example:
        >>> g2, w = gkdfast.gcn_norm(gkdfast.Graph(torch.tensor([[0], [1]])))
        >>> w.shape
        torch.Size([3])
    """
    check_graph(graph, "gcn_norm")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"gkdfast.gcn_norm: dtype must be a floating-point torch.dtype, got {dtype!r}")
    if edge_weight is not None:
        graph.check_edge_values(edge_weight, "edge_weight")
    dinv = graph.gcn_norm_coefficients(edge_weight, dtype)
    w = edge_weight if edge_weight is not None else graph.edge_weight
    w = torch.ones(graph.num_edges, dtype=dtype, device=graph.device) if w is None else w.to(dtype)
    looped = graph.add_self_loops()
    ei = looped.edge_index.long()
    w_all = torch.cat([w, torch.ones(graph.num_nodes, dtype=dtype, device=graph.device)])
    norm_w = dinv[ei[0]] * w_all * dinv[ei[1]]
    # The returned graph carries the normalised weights themselves: spmm(looped, x) applies them, rather
    # than the raw weights of another edge set.
    looped.edge_weight = norm_w
    return looped, norm_w


# ---------------------------------------------------------------------------------------- sddmm
def sddmm(graph: Graph, a: Tensor, b: Tensor) -> Tensor:
    """Sampled dense-dense product: ``out[e] = a[i] . b[j]`` for each edge ``e = (j -> i)``.

    Args:
        a: ``[N, d]`` destination-side features.  b: ``[N, d]`` source-side features.
    Returns:
        ``[E]`` in the order of ``graph.edge_index``.  Differentiable in ``a`` and ``b``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> gkdfast.sddmm(g, torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]))
        tensor([6., 4.])
    """
    check_graph(graph, "sddmm", swapped_with=a)
    a = check_node_tensor(graph, a, "sddmm", "a")
    b = check_node_tensor(graph, b, "sddmm", "b")
    if a.size(1) != b.size(1):
        raise ValueError(f"gkdfast.sddmm: a and b must have the same width, got {a.size(1)} and {b.size(1)}")
    if _autocast.autocast_on(a.device.type):  # as spmm: the region's dtype where a kernel takes it, else float32
        dtype = _autocast.message_dtype(a, _backend.native_dtypes("sddmm", a.device.type))
        a, b = a.to(dtype), b.to(dtype)
    if a.dtype != b.dtype:
        raise TypeError(f"gkdfast.sddmm: a and b have different dtypes ({a.dtype}, {b.dtype})")
    if _backend.choose("sddmm", a.device, a.dtype) == "reference":
        _backend.warn_dense_fallback("sddmm", a.device, a.dtype, 2 * graph.num_edges * a.size(1),
                                     f"both endpoint rows of every edge (2 x {graph.num_edges} x {a.size(1)})",
                                     name="sddmm")
        out = ref.sddmm(graph, a, b)
    else:
        out = torch.ops.gkdfast.sddmm(*graph_tensors(graph, _needs_grad(a, b)), a, b)
    return graph.from_csr_order(out)


# ---------------------------------------------------------------------------------------- edge_softmax
def edge_softmax(graph: Graph, scores: Tensor) -> Tensor:
    """Softmax of per-edge ``scores`` over each destination's in-edges.

    Args:
        scores: ``[E]`` or ``[E, H]`` (``H`` independent heads) in the order of ``graph.edge_index``.
    Returns:
        same shape; entries of each destination's in-edges sum to 1 (per head).  A destination whose
        scores are all ``-inf`` (fully masked) gets 0 on its edges instead of NaN.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [2, 2]]))
        >>> gkdfast.edge_softmax(g, torch.tensor([0.0, 0.0]))
        tensor([0.5000, 0.5000])
    """
    check_graph(graph, "edge_softmax", swapped_with=scores)
    graph.check_edge_values(scores, "scores", allow_heads=True)
    s = graph.to_csr_order(scores)
    if _backend.choose("edge_softmax", s.device, s.dtype) == "reference":
        out = ref.edge_softmax(graph, s)
    else:
        out = torch.ops.gkdfast.edge_softmax(graph.rowptr, s)
    return graph.from_csr_order(out)
