"""Public message-passing ops: :func:`spmm`, :func:`sddmm`, :func:`edge_softmax`.

Each call picks the CUDA kernel, the CPU kernel or the pure-PyTorch reference (see
:mod:`gkdfast._backend`).  The native operators are defined once in C++ (``torch.ops.gkdfast``);
this module registers their fake kernels (for torch.compile / meta tensors) and their autograd
formulas.  Backward passes are themselves gkdfast ops over the cached transposed CSR, so gradients
are deterministic (no atomics) and twice-differentiable for sum/mean.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from gkdfast import _backend
from gkdfast import _checks
from gkdfast import reference as ref
from gkdfast.graph import Graph

__all__ = ["spmm", "sddmm", "edge_softmax", "gcn_norm"]

REDUCTIONS = ("sum", "mean", "max", "min")


# ---------------------------------------------------------------------------------------- checks
def check_graph(graph, op: str) -> Graph:
    """``gkdfast._checks.check_graph`` with the ``gkdfast.<op>`` prefix; returns ``graph``."""
    return _checks.check_graph(graph, f"gkdfast.{op}")


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
        x: ``[N, d]`` node features (float32/float64 on CPU kernels, also float16/bfloat16 on CUDA;
            other dtypes run on the reference).
        reduce: ``"sum"``, ``"mean"`` (sum divided by the in-degree), ``"max"`` or ``"min"``.
            Rows without in-edges give 0.  For max/min, ties go to the first edge in the graph's CSR
            order, and the gradient flows to that edge only.
        edge_weight: optional ``[E]`` weights in the order of the graph's ``edge_index``; defaults to
            ``graph.edge_weight``.  Differentiable.
        norm: ``"gcn"`` applies ``D^-1/2 (A + I) D^-1/2`` (``deg_i = 1 + sum of in-weights``) without
            materialising per-edge coefficients or self-loops; only with ``reduce="sum"``.

    Returns:
        ``[N, d]`` tensor.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 1]]))
        >>> gkdfast.spmm(g, torch.eye(3), "sum")
        tensor([[0., 0., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])
    """
    check_graph(graph, "spmm")
    x = check_node_tensor(graph, x, "spmm")
    if reduce not in REDUCTIONS:
        raise ValueError(f"gkdfast.spmm: unknown reduce {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
    if edge_weight is None:
        edge_weight = graph.edge_weight
    if edge_weight is not None:
        graph.check_edge_values(edge_weight, "edge_weight")
        if edge_weight.dtype != x.dtype:
            raise TypeError(f"gkdfast.spmm: edge_weight has dtype {edge_weight.dtype} but x has {x.dtype}")
    if norm is not None:
        if norm != "gcn":
            raise ValueError(f"gkdfast.spmm: unknown norm {norm!r}; expected None or 'gcn'")
        if reduce != "sum":
            raise ValueError("gkdfast.spmm: norm='gcn' is defined for reduce='sum' only")
        dinv = graph.gcn_norm_coefficients(edge_weight, x.dtype).unsqueeze(-1)
        h = x * dinv
        return dinv * (_spmm(graph, h, "sum", edge_weight) + h)
    return _spmm(graph, x, reduce, edge_weight)


def _spmm(graph: Graph, x: Tensor, reduce: str, edge_weight: Optional[Tensor]) -> Tensor:
    w = graph.to_csr_order(edge_weight) if edge_weight is not None else None
    if _backend.choose("spmm", x.device, x.dtype) == "reference":
        return ref.spmm(graph, x, reduce, w)
    tensors = graph_tensors(graph, _needs_grad(x, w))
    out, _ = torch.ops.gkdfast.spmm(*tensors, w, x, reduce)
    return out


def gcn_norm(graph: Graph, edge_weight: Optional[Tensor] = None, dtype=torch.float32) -> Tuple[Graph, Tensor]:
    """Explicit GCN normalisation for code that wants per-edge coefficients (e.g. to pass to another library).

    Returns ``(graph_with_self_loops, weight)`` with ``weight[e] = w_e / sqrt(deg_i deg_j)`` for
    ``D^-1/2 (A + I) D^-1/2``; prefer ``spmm(..., norm="gcn")``, which never builds them.

    Example:
        >>> g2, w = gkdfast.gcn_norm(gkdfast.Graph(torch.tensor([[0], [1]])))
        >>> w.shape
        torch.Size([3])
    """
    check_graph(graph, "gcn_norm")
    dinv = graph.gcn_norm_coefficients(edge_weight, dtype)
    w = edge_weight if edge_weight is not None else graph.edge_weight
    w = torch.ones(graph.num_edges, dtype=dtype, device=graph.device) if w is None else w.to(dtype)
    looped = graph.add_self_loops()
    ei = looped.edge_index.long()
    w_all = torch.cat([w, torch.ones(graph.num_nodes, dtype=dtype, device=graph.device)])
    return looped, dinv[ei[0]] * w_all * dinv[ei[1]]


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
    check_graph(graph, "sddmm")
    a = check_node_tensor(graph, a, "sddmm", "a")
    b = check_node_tensor(graph, b, "sddmm", "b")
    if a.size(1) != b.size(1):
        raise ValueError(f"gkdfast.sddmm: a and b must have the same width, got {a.size(1)} and {b.size(1)}")
    if a.dtype != b.dtype:
        raise TypeError(f"gkdfast.sddmm: a and b have different dtypes ({a.dtype}, {b.dtype})")
    if _backend.choose("sddmm", a.device, a.dtype) == "reference":
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
    check_graph(graph, "edge_softmax")
    graph.check_edge_values(scores, "scores", allow_heads=True)
    s = graph.to_csr_order(scores)
    if _backend.choose("edge_softmax", s.device, s.dtype) == "reference":
        out = ref.edge_softmax(graph, s)
    else:
        out = torch.ops.gkdfast.edge_softmax(graph.rowptr, s)
    return graph.from_csr_order(out)


# ---------------------------------------------------------------------------------------- registrations
def _inverse(perm: Tensor) -> Tensor:
    inv = torch.empty_like(perm)
    inv[perm.long()] = torch.arange(perm.numel(), device=perm.device, dtype=perm.dtype)
    return inv


def _row_sum_per_edge(rowptr: Tensor, v: Tensor) -> Tensor:
    """For per-edge ``v`` ([E] or [E, H], CSR order): each edge gets the sum of ``v`` over its
    destination row (segment sums, deterministic; used only by double backward)."""
    offsets = rowptr.long()
    sums = torch.segment_reduce(v, "sum", offsets=offsets, axis=0)
    return torch.repeat_interleave(sums, offsets[1:] - offsets[:-1], dim=0, output_size=v.shape[0])


def _register_native():
    lib = "gkdfast::"

    @torch.library.register_fake(lib + "spmm")
    def _spmm_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce):
        n = rowptr.shape[0] - 1
        arg_shape = (n, x.shape[1]) if reduce in ("max", "min", "amax", "amin") else (0,)
        return x.new_empty((n, x.shape[1])), x.new_empty(arg_shape, dtype=torch.long)

    @torch.library.register_fake(lib + "spmm_arg_backward")
    def _spmm_arg_backward_fake(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out):
        return torch.empty_like(x), x.new_empty((col.shape[0],) if weight is not None else (0,))

    @torch.library.register_fake(lib + "sddmm")
    def _sddmm_fake(rowptr, col, t_rowptr, t_col, t_eid, a, b):
        return a.new_empty((col.shape[0],))

    @torch.library.register_fake(lib + "edge_softmax")
    def _edge_softmax_fake(rowptr, scores):
        return torch.empty_like(scores)

    @torch.library.register_fake(lib + "edge_softmax_backward")
    def _edge_softmax_backward_fake(rowptr, out, grad_out):
        return torch.empty_like(out)

    # --- spmm
    def spmm_setup(ctx, inputs, output):
        rowptr, col, t_rowptr, t_col, t_eid, weight, x, reduce = inputs
        ctx.reduce = reduce
        ctx.has_weight = weight is not None
        ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, x, output[1])

    def spmm_backward(ctx, grad_out, _grad_arg):
        rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg = ctx.saved_tensors
        need_w, need_x = ctx.needs_input_grad[5], ctx.needs_input_grad[6]
        if t_rowptr.numel() == 0 and col.numel() > 0:
            raise RuntimeError("gkdfast.spmm: backward needs the transposed CSR, which was not passed to the op")
        grad_w = grad_x = None
        if ctx.reduce in ("max", "min", "amax", "amin"):
            if need_w or need_x:
                gx, gw = torch.ops.gkdfast.spmm_arg_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg,
                                                             grad_out)
                grad_x = gx if need_x else None
                grad_w = gw if (need_w and ctx.has_weight) else None
            return None, None, None, None, None, grad_w, grad_x, None
        g = grad_out
        if ctx.reduce == "mean":
            deg = (rowptr[1:] - rowptr[:-1]).clamp_min(1).to(g.dtype)
            g = g / deg.unsqueeze(-1)
        if need_x:
            w_t = weight[t_eid.long()] if ctx.has_weight else None
            back_t = (rowptr, col, _inverse(t_eid)) if torch.is_grad_enabled() else (col.new_empty(0),) * 3
            grad_x, _ = torch.ops.gkdfast.spmm(t_rowptr, t_col, *back_t, w_t, g.contiguous(), "sum")
        if need_w and ctx.has_weight:
            grad_w = torch.ops.gkdfast.sddmm(rowptr, col, t_rowptr, t_col, t_eid, g.contiguous(), x)
        return None, None, None, None, None, grad_w, grad_x, None

    torch.library.register_autograd(lib + "spmm", spmm_backward, setup_context=spmm_setup)

    # --- spmm_arg_backward (double backward of max/min).  With e = arg[i, f] the winning edge,
    # gx[j, f] = sum_{e: col_e = j} w_e g[i, f] and gw[e] = sum_f x[col_e, f] g[i, f]: both linear in g,
    # so their derivatives are the same op with other inputs, plus a gather for grad_out.  Without this,
    # autograd would silently treat the op as constant and give wrong second derivatives.
    def arg_backward_setup(ctx, inputs, output):
        rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out = inputs
        ctx.has_weight = weight is not None
        ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, grad_out)

    def arg_backward_backward(ctx, u_gx, u_gw):
        rowptr, col, t_rowptr, t_col, t_eid, weight, x, arg, g = ctx.saved_tensors
        graph_t = (rowptr, col, t_rowptr, t_col, t_eid)
        has_w = ctx.has_weight and u_gw is not None and u_gw.numel() == col.numel()
        grad_w = grad_x = grad_g = None
        if ctx.needs_input_grad[5] and ctx.has_weight and u_gx is not None:
            # d gx / d w_e = sum_f [arg[i,f] = e] g[i, f] u_gx[col_e, f]: the op's own gw with x := u_gx
            grad_w = torch.ops.gkdfast.spmm_arg_backward(*graph_t, weight, u_gx.contiguous(), arg, g)[1]
        if ctx.needs_input_grad[6] and has_w:
            # d gw_e / d x[j, f] = g[i, f] where arg[i, f] = e and col_e = j: the op's gx with w := u_gw
            grad_x = torch.ops.gkdfast.spmm_arg_backward(*graph_t, u_gw.contiguous(), x, arg, g)[0]
        if ctx.needs_input_grad[8] and col.numel() == 0:
            grad_g = torch.zeros_like(g)
        elif ctx.needs_input_grad[8]:
            e = arg.clamp_min(0)
            src = col.long()[e]  # [N, d] source node of each winning edge
            grad_g = torch.zeros_like(g)
            if u_gx is not None:
                w_e = weight[e] if ctx.has_weight else torch.ones_like(g)
                grad_g = grad_g + w_e * u_gx.gather(0, src)
            if has_w:
                grad_g = grad_g + u_gw[e] * x.gather(0, src)
            grad_g = torch.where(arg >= 0, grad_g, torch.zeros_like(grad_g))
        return None, None, None, None, None, grad_w, grad_x, None, grad_g

    torch.library.register_autograd(lib + "spmm_arg_backward", arg_backward_backward,
                                    setup_context=arg_backward_setup)

    # --- sddmm: grad_a = A (g) b ; grad_b = A^T (g) a
    def sddmm_setup(ctx, inputs, output):
        rowptr, col, t_rowptr, t_col, t_eid, a, b = inputs
        ctx.save_for_backward(rowptr, col, t_rowptr, t_col, t_eid, a, b)

    def sddmm_backward(ctx, g):
        rowptr, col, t_rowptr, t_col, t_eid, a, b = ctx.saved_tensors
        if t_rowptr.numel() == 0 and col.numel() > 0:
            raise RuntimeError("gkdfast.sddmm: backward needs the transposed CSR, which was not passed to the op")
        grad_a = grad_b = None
        g = g.contiguous()
        if ctx.needs_input_grad[5]:
            grad_a, _ = torch.ops.gkdfast.spmm(rowptr, col, t_rowptr, t_col, t_eid, g, b, "sum")
        if ctx.needs_input_grad[6]:
            back_t = (rowptr, col, _inverse(t_eid)) if torch.is_grad_enabled() else (col.new_empty(0),) * 3
            grad_b, _ = torch.ops.gkdfast.spmm(t_rowptr, t_col, *back_t, g[t_eid.long()], a, "sum")
        return None, None, None, None, None, grad_a, grad_b

    torch.library.register_autograd(lib + "sddmm", sddmm_backward, setup_context=sddmm_setup)

    # --- edge_softmax
    def softmax_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output)

    def softmax_backward(ctx, g):
        rowptr, out = ctx.saved_tensors
        return None, torch.ops.gkdfast.edge_softmax_backward(rowptr, out, g.contiguous())

    torch.library.register_autograd(lib + "edge_softmax", softmax_backward, setup_context=softmax_setup)

    # --- edge_softmax_backward (double backward): z = y (g - S), S = row-sum of y g.  With upstream u:
    # dz/dg = y (u - row-sum(y u)) (the same op), dz/dy = u (g - S) - g row-sum(u y).
    def softmax_bwd_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def softmax_bwd_backward(ctx, u):
        rowptr, y, g = ctx.saved_tensors
        u = u.contiguous()
        grad_y = grad_g = None
        if ctx.needs_input_grad[2]:
            grad_g = torch.ops.gkdfast.edge_softmax_backward(rowptr, y, u)
        if ctx.needs_input_grad[1]:
            g = g.to(y.dtype)
            grad_y = u * (g - _row_sum_per_edge(rowptr, y * g)) - g * _row_sum_per_edge(rowptr, u * y)
        return None, grad_y, grad_g

    torch.library.register_autograd(lib + "edge_softmax_backward", softmax_bwd_backward,
                                    setup_context=softmax_bwd_setup)


if _backend.native_loaded():
    _register_native()
