"""Reference structure-preserving losses: LSP (gathers E x d), GSP (builds N x N), relation.

These are the oracle for the fused kernels and the fallback when no kernel can run a call.  They
follow docs/ops.md ("Exact definitions") literally and favour clarity: ``lsp`` gathers per-edge rows (E x d),
``gsp`` builds the N x N kernel matrices (its docstring says so), which is what the public
reference repositories do too.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from gkdfast.graph import Graph

KERNELS = ("linear", "cosine", "poly", "l2", "rbf", "laplace")
COSINE_EPS = 1e-8

__all__ = ["KERNELS", "pair_kernel", "kernel_matrix", "lsp", "gsp", "relation"]


def pair_kernel(u: Tensor, v: Tensor, kernel: str, gamma: float = 1.0) -> Tensor:
    """Row-wise ``k(u[m], v[m])`` for ``[M, d]`` inputs -> ``[M]`` (the kernel table of docs/ops.md).

    Example:
        >>> u, v = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 3.0]])
        >>> pair_kernel(u, v, "linear").tolist(), pair_kernel(u, v, "l2").tolist(), pair_kernel(u, v, "poly").tolist()
        ([0.0, 4.0], [-2.0, -4.0], [1.0, 25.0])
    """
    if kernel == "linear":
        return (u * v).sum(-1)
    if kernel == "cosine":
        nu = u.norm(dim=-1).clamp_min(COSINE_EPS)
        nv = v.norm(dim=-1).clamp_min(COSINE_EPS)
        return (u * v).sum(-1) / (nu * nv)
    if kernel == "poly":
        return ((u * v).sum(-1) + 1.0) ** 2
    if kernel == "l2":
        return -(u - v).pow(2).sum(-1)
    if kernel == "rbf":
        return torch.exp(-gamma * (u - v).pow(2).sum(-1))
    if kernel == "laplace":
        return torch.exp(-gamma * (u - v).abs().sum(-1))
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")


def kernel_matrix(x: Tensor, kernel: str, gamma: float = 1.0) -> Tensor:
    """``K[i, j] = k(x_i, x_j)`` as a dense ``[N, N]`` matrix (reference only); ``x``: ``[N, d]``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> kernel_matrix(x, "linear").tolist()
        [[1.0, 0.0, 1.0], [0.0, 4.0, 2.0], [1.0, 2.0, 2.0]]
        >>> i, j = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
        >>> k = pair_kernel(x[i.reshape(-1)], x[j.reshape(-1)], "rbf", gamma=0.5).view(3, 3)
        >>> torch.allclose(kernel_matrix(x, "rbf", gamma=0.5), k)
        True
    """
    if kernel in ("linear", "cosine", "poly"):
        if kernel == "cosine":
            x = x / x.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
        g = x @ x.t()
        return (g + 1.0) ** 2 if kernel == "poly" else g
    if kernel in ("l2", "rbf"):
        # |x_i|^2 + |x_j|^2 - 2 x_i.x_j cancels: rows far from the origin lost every digit (features x 1e4
        # gave an l2 "distance" of 262,144 from a row to itself in float32; helper 119).  Distances do not
        # move with a common shift, so the rows are centred first (the constant carries no gradient), and
        # the diagonal is exactly 0, as in the native kernels.
        x = x - x.mean(0, keepdim=True).detach()
        sq = x.pow(2).sum(-1)
        d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.t())).clamp_min(0)
        d2 = torch.where(torch.eye(x.size(0), dtype=torch.bool, device=x.device), torch.zeros_like(d2), d2)
        return -d2 if kernel == "l2" else torch.exp(-gamma * d2)
    if kernel == "laplace":
        l1 = (x.unsqueeze(1) - x.unsqueeze(0)).abs().sum(-1)
        return torch.exp(-gamma * l1)
    raise ValueError(f"unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")


def _reduce_nodes(per_node: Tensor, has: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return per_node
    if reduction == "sum":
        return per_node.sum()
    return per_node.sum() / has.sum().clamp_min(1).to(per_node.dtype)


def _acc(x: Tensor, like: Optional[Tensor] = None) -> Tensor:
    """``x`` in the accumulation dtype of ``like`` (default ``x``): float64 stays, anything narrower is
    computed in float32 (half-precision kernels and softmaxes summed in half lose the loss: a KL of
    1e-5 came out negative in bfloat16), as the native kernels accumulate."""
    dtype = (like if like is not None else x).dtype
    return x.to(torch.float64 if dtype == torch.float64 else torch.float32)


def lsp(graph: Graph, student: Tensor, teacher: Tensor, kernel: str = "rbf", gamma: float = 1.0,
        tau: float = 1.0, reduction: str = "mean") -> Tensor:
    """Local structure preserving loss by gathering (E x d), as the public code does.

    For each edge ``e = (j -> i)``: ``x_e = k(h_i, h_j) / tau`` per model, ``alpha = softmax of x over
    i's in-edges``; per node ``KL(alpha^T_i || alpha^S_i)``; ``mean`` over nodes with an in-edge.
    ``student``: ``[N, d_s]``, ``teacher``: ``[N, d_t]``; returns a scalar (``[N]`` with ``reduction="none"``).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]]))
        >>> _ = torch.manual_seed(0); s, t = torch.randn(3, 8), torch.randn(3, 16)
        >>> ref = lsp(g, s, t, kernel="cosine", tau=0.5)
        >>> ref.shape, torch.allclose(ref, gkdfast.losses.lsp(g, s, t, kernel="cosine", tau=0.5))
        (torch.Size([]), True)
    """
    dst, src = graph.dst.long(), graph.col.long()
    n = graph.num_nodes
    out_dtype = student.dtype
    student, teacher = _acc(student), _acc(teacher, student)

    def log_alpha(h):
        x = pair_kernel(h[dst], h[src], kernel, gamma) / tau
        mx = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
        mx = mx.scatter_reduce(0, dst, x.detach(), "amax", include_self=True)
        mx = torch.where(torch.isinf(mx), torch.zeros_like(mx), mx)
        den = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, dst, (x - mx[dst]).exp())
        return x - mx[dst] - den.log()[dst]

    la_s, la_t = log_alpha(student), log_alpha(teacher)
    per_edge = la_t.exp() * (la_t - la_s)
    per_node = torch.zeros(n, dtype=student.dtype, device=student.device).index_add(0, dst, per_edge)
    return _reduce_nodes(per_node, graph.in_degree() > 0, reduction).to(out_dtype)


def gsp(student: Tensor, teacher: Tensor, kernel: str = "linear", loss: str = "mse", tau: float = 1.0,
        gamma: float = 1.0, nodes: Optional[Tensor] = None) -> Tensor:
    """Global structure preserving loss with dense ``[N, N]`` kernel matrices (memory O(N^2)).

    ``mse``: ``(1/N^2) sum_ij (K^S_ij - K^T_ij)^2``; ``kl``: ``(1/N) sum_i KL(softmax(K^T_i/tau) ||
    softmax(K^S_i/tau))``.  ``student``: ``[N, d_s]``, ``teacher``: ``[N, d_t]``, ``nodes``: ``[B]`` ids
    or an ``[N]`` mask; returns a scalar.

    Example:
        >>> _ = torch.manual_seed(0); s, t = torch.randn(6, 4), torch.randn(6, 8)
        >>> torch.allclose(gsp(s, t), gkdfast.losses.gsp(s, t))
        True
        >>> ref = gsp(s, t, kernel="rbf", loss="kl", tau=0.5)  # the dense [N, N] kernel matrices
        >>> torch.allclose(ref, gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", tau=0.5))
        True
    """
    out_dtype = student.dtype
    student, teacher = _acc(student), _acc(teacher, student)
    if nodes is not None:
        student, teacher = student[nodes], teacher[nodes]
    n = student.size(0)
    ks, kt = kernel_matrix(student, kernel, gamma), kernel_matrix(teacher, kernel, gamma)
    if loss == "mse":
        return ((ks - kt).pow(2).sum() / max(n * n, 1)).to(out_dtype)
    if loss == "kl":
        ls, lt = torch.log_softmax(ks / tau, -1), torch.log_softmax(kt / tau, -1)
        return ((lt.exp() * (lt - ls)).sum() / max(n, 1)).to(out_dtype)
    raise ValueError(f"unknown loss {loss!r}; expected 'mse' or 'kl'")


def gsp_rows(student: Tensor, teacher: Tensor, kernel: str, loss: str, tau: float, gamma: float, row_begin: int,
             row_end: int) -> Tensor:
    """Reference of ``torch.ops.gkdfast.gsp_tiled``'s per-row values for rows ``[row_begin, row_end)``
    against all N columns: ``[R]`` with ``sum_j (K^S_ij - K^T_ij)^2`` (mse) or ``KL_i`` (kl).  Dense
    ``[R, N, d]`` pair tensors: small inputs only."""
    out_dtype = student.dtype
    student, teacher = _acc(student), _acc(teacher, student)
    ks = pair_kernel(student[row_begin:row_end].unsqueeze(1), student.unsqueeze(0), kernel, gamma)
    kt = pair_kernel(teacher[row_begin:row_end].unsqueeze(1), teacher.unsqueeze(0), kernel, gamma)
    if loss == "mse":
        return (ks - kt).pow(2).sum(1).to(out_dtype)
    ls, lt = torch.log_softmax(ks / tau, -1), torch.log_softmax(kt / tau, -1)
    return (lt.exp() * (lt - ls)).sum(1).to(out_dtype)


def relation(student_blocks: Sequence[Tensor], teacher_blocks: Sequence[Tensor], mode: str = "centroid") -> Tensor:
    """Relation distillation between K groups of embeddings by explicit loops (see gkdfast.losses.relation).
    Blocks: ``[N_k, d_s]`` (student) and ``[N_k, d_t]`` (teacher), all ``[N, d]`` for ``"gram"``; returns a scalar.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> s, t = [torch.randn(5, 8), torch.randn(7, 8)], [torch.randn(5, 16), torch.randn(7, 16)]
        >>> torch.allclose(relation(s, t), gkdfast.losses.relation(s, t))
        True
        >>> s, t = [torch.randn(5, 8), torch.randn(5, 8)], [torch.randn(5, 16), torch.randn(5, 16)]
        >>> torch.allclose(relation(s, t, mode="gram"), gkdfast.losses.relation(s, t, mode="gram"))
        True
    """
    k = len(student_blocks)
    dtype = student_blocks[0].dtype

    def cos(a, b):
        return (a * b).sum(-1) / (a.norm(dim=-1).clamp_min(COSINE_EPS) * b.norm(dim=-1).clamp_min(COSINE_EPS))

    total = torch.zeros((), dtype=dtype, device=student_blocks[0].device)
    if mode == "centroid":
        ms = [b.mean(0) for b in student_blocks]
        mt = [b.to(dtype).mean(0) for b in teacher_blocks]
        for a in range(k):
            for b in range(k):
                total = total + (cos(ms[a], ms[b]) - cos(mt[a], mt[b])) ** 2
        return total / (k * k)
    if mode == "gram":
        for a in range(k):
            for b in range(k):
                rs = cos(student_blocks[a], student_blocks[b])
                rt = cos(teacher_blocks[a].to(dtype), teacher_blocks[b].to(dtype))
                total = total + ((rs - rt) ** 2).mean()
        return total / (k * k)
    raise ValueError(f"unknown mode {mode!r}; expected 'centroid' or 'gram'")
