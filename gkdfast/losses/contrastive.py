"""Contrastive distillation losses: G-CRD (:func:`crd`), GRACE's two-view NT-Xent (:func:`nt_xent`)
and Graph-MLP's neighbour contrastive loss (:func:`ncontrast`).

All three reduce to one native op, ``gkdfast::infonce``: rows of anchors against rows of candidates
with a streaming log-sum-exp, exact over all N candidates (BLAS tiles, O(N·d) memory, the N x N
logit matrix is never formed; the backward recomputes the tiles) or over K negatives per row drawn
inside the kernel by a counter-based Philox generator keyed by ``(seed, row, k)``, so no index tensor
is stored and CPU and CUDA draw the same negatives.  :func:`sample_negatives` shows those draws.
Where anchors and candidates are the same rows (nt_xent, ncontrast's exact denominator), the
symmetric ``gkdfast::gram_lse`` computes only the tiles on and above the diagonal: half the GEMMs.
"""
from __future__ import annotations

import weakref
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast._segments import concat_ranges, segment_ids
from gkdfast._autocast import float32_loss
from gkdfast import _backend
from gkdfast._checks import check_graph, check_rows_match, finite_number
from gkdfast._rows import add_rows, ordered_sum
from gkdfast.graph import Graph, cache_mode, derived_cache
from gkdfast.losses._checks import check_matrix, mask_to_ids
from gkdfast.losses._sharded import Shards, check_group, reduce_rows, shared_seed
from gkdfast.ops import sddmm
from gkdfast.reference import contrastive as ref
from gkdfast._tracing import tracing

__all__ = ["crd", "nt_xent", "ncontrast", "sample_negatives", "adjacency_power"]

_REDUCTIONS = ("mean", "sum", "none")
_EPS = 1e-8
_SEED_BITS = 63


# ------------------------------------------------------------------------------ checks
def _check_pair(a: Tensor, b: Tensor, op: str, na: str, nb: str, hint: str = "") -> Tuple[Tensor, Tensor]:
    check_matrix(a, op, na)
    check_matrix(b, op, nb)
    if a.size(0) != b.size(0):
        raise ValueError(f"gkdfast.losses.{op}: {na} has {a.size(0)} rows but {nb} has {b.size(0)}")
    if a.size(1) != b.size(1):
        raise ValueError(f"gkdfast.losses.{op}: {na} has width {a.size(1)} but {nb} has width {b.size(1)}; the "
                         f"dot product needs equal widths{hint}")
    if a.device != b.device:
        raise ValueError(f"gkdfast.losses.{op}: {na} is on {a.device} but {nb} is on {b.device}")
    return a, b.to(a.dtype)


def _check_tau(tau, op: str) -> float:
    if not (finite_number(tau) and tau > 0):
        raise ValueError(f"gkdfast.losses.{op}: tau must be a finite number > 0, got {tau!r}")
    return float(tau)


def _check_reduction(reduction, op: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"gkdfast.losses.{op}: unknown reduction {reduction!r}; expected one of "
                         + ", ".join(_REDUCTIONS))
    return reduction


def _check_negatives(num_negatives, seed, n: int, op: str) -> Tuple[int, int]:
    """(K, seed) for the op: K = 0 means exact over all rows."""
    if num_negatives is not None:
        if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
            raise ValueError(f"gkdfast.losses.{op}: num_negatives must be None (all rows, exact) or an int >= 1, "
                             f"got {num_negatives!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
                             or seed >= 1 << _SEED_BITS):
        raise ValueError(f"gkdfast.losses.{op}: seed must be None or an int in [0, 2**63), got {seed!r}")
    if num_negatives is not None and n >= 1 << 32:
        raise ValueError(f"gkdfast.losses.{op}: sampled negatives support fewer than 2**32 rows, got {n}")
    # K >= N - 1 would only re-draw (with replacement) rows that the exact loss uses anyway: run exact.
    if num_negatives is None or num_negatives >= n - 1:
        return 0, 0
    if seed is None:  # follows torch.manual_seed, so a seeded training run is reproducible
        seed = int(torch.randint(0, 1 << 62, (1,)).item())
    return int(num_negatives), int(seed)


def _infonce(a: Tensor, c: Tensor, tau: float, pos_offset: int, exclude_self: bool, k: int,
             seed: int, row_begin: int = 0) -> Tuple[Tensor, Tensor]:
    """(loss_rows, lse) of the infonce op on the best backend, in the accumulation dtype; the anchors
    ``a`` are the global rows ``[row_begin, row_begin + len(a))`` of the candidates ``c``."""
    if _backend.choose("infonce", a.device, a.dtype) == "reference":
        if not k:  # the exact loss: the reference holds every row's logits against every candidate
            _backend.warn_dense_fallback("infonce", a.device, a.dtype, a.size(0) * c.size(0),
                                         f"a {a.size(0)} x {c.size(0)} logit matrix")
        else:  # sampled: it gathers every row's K negatives' embeddings
            _backend.warn_dense_fallback("infonce", a.device, a.dtype, a.size(0) * k * a.size(1),
                                         f"the negatives' rows ({a.size(0)} x {k} x {a.size(1)})",
                                         name="sampled InfoNCE (num_negatives=)")
        return ref.infonce(a, c, 1.0 / tau, pos_offset, exclude_self, k, seed, row_begin)
    if row_begin == 0 and a.size(0) == c.size(0):  # the square call, as every single-process loss makes it
        return torch.ops.gkdfast.infonce(a.contiguous(), c.contiguous(), 1.0 / tau, pos_offset, exclude_self, k,
                                         seed)
    return torch.ops.gkdfast.infonce(a.contiguous(), c.contiguous(), 1.0 / tau, pos_offset, exclude_self, k, seed,
                                     row_begin)


def _gram_lse(x: Tensor, tau: float, exclude_self: bool) -> Tensor:
    """``lse_i = log Σ_j exp(x_i·x_j / τ)`` (j ≠ i when ``exclude_self``) on the best backend, in the
    accumulation dtype: ``_infonce(x, x, ...)``'s lse at half the GEMM work (the logits are symmetric)."""
    if _backend.choose("gram_lse", x.device, x.dtype) == "reference":
        _backend.warn_dense_fallback("gram_lse", x.device, x.dtype, x.size(0) ** 2,
                                     f"a {x.size(0)} x {x.size(0)} similarity matrix")
        return ref.gram_lse(x, 1.0 / tau, exclude_self)
    return torch.ops.gkdfast.gram_lse(x.contiguous(), 1.0 / tau, exclude_self)


def _reduce(rows: Tensor, reduction: str, dtype: torch.dtype) -> Tensor:
    if reduction == "none":
        return rows.to(dtype)
    # An empty input gives 0 (not the NaN of an empty mean), still connected to the inputs' graph; the
    # sum in an order independent of the thread count (torch's splits a long one across threads)
    total = ordered_sum(rows)
    return (total if reduction == "sum" or rows.numel() == 0 else total / rows.numel()).to(dtype)


def _normalize(x: Tensor) -> Tensor:
    # cos(u, v) = u·v / (max(|u|, eps) max(|v|, eps)), eps = 1e-8 (docs/ops.md)
    return F.normalize(x, dim=1, eps=_EPS)


# ------------------------------------------------------------------------------ crd
@float32_loss
def crd(student: Tensor, teacher: Tensor, tau: float = 0.075, num_negatives: Optional[int] = None,
        seed: Optional[int] = None, symmetric: bool = False, reduction: str = "mean",
        process_group=None) -> Tensor:
    """G-CRD (Joshi et al.): contrastive representation distillation with in-batch negatives.

    Rows are L2-normalised (``ẑ = z / max(‖z‖, 1e-8)``) and ``ℓ_ij = ẑS_i·ẑT_j / τ``; the loss of row i is
    ``logsumexp_j ℓ_ij − ℓ_ii`` over **all** N teacher rows j, computed exactly with a streaming
    log-sum-exp over tiles (memory O(N·d), no N x N matrix; the backward recomputes the tiles).

    With ``num_negatives=K``, row i uses ``{i}`` plus K negatives drawn uniformly *with replacement*
    from ``[N] \\ {i}`` by Philox-4x32-10 keyed by ``(seed, i, k)`` (the same on CPU and CUDA; see
    :func:`sample_negatives`): ``loss_i = logsumexp(ℓ_ii, ℓ_i,n_i1, ..., ℓ_i,n_iK) − ℓ_ii``.  When
    ``K >= N − 1`` the exact all-N loss is computed instead (it already contrasts every other row).

    Args:
        student: ``[N, d]`` student embeddings (usually a projection head's output).
        teacher: ``[N, d]`` teacher embeddings; cast to the student's dtype.  Widths must match: put a
            projection head (e.g. ``gkdfast.nn.ProjectionHead``) on each side when they differ.
        tau: temperature ``τ > 0`` (G-CRD uses 0.075).
        num_negatives: ``None`` for all N (exact) or ``K >= 1`` sampled negatives per row.  On CUDA
            the sampled backward is **not bitwise reproducible**: each sampled candidate's gradient
            is accumulated with ``atomicAdd`` (any row may draw it), so the teacher's gradient (with
            ``symmetric=True`` the student's too) may differ in the last bits between runs, unless
            ``torch.use_deterministic_algorithms(True)`` is on: then a chunked backward whose candidate
            sums are ``index_add_`` (deterministic in that mode) runs instead, bitwise reproducible
            (its speed on a GPU is not measured yet).  The draws, the forward, the CPU kernels and the
            exact mode are reproducible.
        seed: Philox seed in ``[0, 2**63)``; ``None`` draws one from torch's default generator (so
            ``torch.manual_seed`` makes runs reproducible).  Unused when the loss is exact (but still
            checked).
        symmetric: also contrast teacher anchors against student candidates and average the two
            directions (the sampled reverse direction uses an independent stream derived from ``seed``).
        reduction: ``"mean"`` (over rows), ``"sum"`` or ``"none"`` (``[N]``).
        process_group: ``None`` (single process) or a ``torch.distributed`` group: each rank passes
            its **row shard** of ``student`` and ``teacher`` (contiguous rows, rank order = row order,
            sizes may differ) and gets the loss of the concatenated rows (``"none"``: its own rows),
            exactly, sampled negatives included (global row i draws the same Philox negatives, as
            global indices; ``seed=None`` uses rank 0's draw).  Candidates are all-gathered (O(N d)),
            every rank must call backward.  See :mod:`gkdfast.distributed`.

    Returns:
        scalar (or ``[N]``), differentiable w.r.t. both ``student`` and ``teacher``.

    Example:
        >>> s = torch.randn(1000, 128, requires_grad=True); t = torch.randn(1000, 128)
        >>> loss = gkdfast.losses.crd(s, t)                               # exact, all 1000 negatives
        >>> loss = gkdfast.losses.crd(s, t, num_negatives=64, seed=0)     # sampled
        >>> loss.backward()
    """
    op = "crd"
    student, teacher = _check_pair(student, teacher, op, "student", "teacher",
                                   " (project both sides to a common width, e.g. with gkdfast.nn.ProjectionHead)")
    tau = _check_tau(tau, op)
    reduction = _check_reduction(reduction, op)
    check_group(process_group, op)
    sh = Shards(student.size(0), process_group, like=(student, teacher), op=op) if process_group is not None else None
    k, sd = _check_negatives(num_negatives, seed, sh.total if sh else student.size(0), op)
    s, t = _normalize(student), _normalize(teacher)
    if sh is None:
        rows = _infonce(s, t, tau, 0, False, k, sd)[0]
        if symmetric:
            rows = 0.5 * (rows + _infonce(t, s, tau, 0, False, k, ref._second_seed(sd))[0])
        return _reduce(rows, reduction, student.dtype)
    # This rank's anchors against every rank's candidates (row_begin: the Philox key and the
    # positive are the global row).
    sd = shared_seed(sd, seed, k, process_group)
    if not symmetric:
        return reduce_rows(_infonce(s, sh.gather(t), tau, 0, False, k, sd, sh.begin)[0], reduction, sh, student.dtype)
    st_all = sh.gather(torch.cat([s, t], 1))  # one collective for both sides
    s_all, t_all = st_all.split([s.size(1), t.size(1)], 1)
    rows = 0.5 * (_infonce(s, t_all, tau, 0, False, k, sd, sh.begin)[0]
                  + _infonce(t, s_all, tau, 0, False, k, ref._second_seed(sd), sh.begin)[0])
    return reduce_rows(rows, reduction, sh, student.dtype)


# ------------------------------------------------------------------------------ nt_xent
@float32_loss
def nt_xent(z1: Tensor, z2: Tensor, tau: float = 0.5, reduction: str = "mean", process_group=None) -> Tensor:
    """Two-view NT-Xent as in GRACE (Zhu et al., 2020), the contrastive term of T2-GNN and SAIL.

    With ``u = normalize(z1)``, ``v = normalize(z2)`` and ``θ(a, b) = a·b / τ``, the loss of node i in
    direction (u, v) is ``−log( e^{θ(u_i,v_i)} / (Σ_j e^{θ(u_i,v_j)} + Σ_{j≠i} e^{θ(u_i,u_j)}) )``: the
    positive is the same node in the other view, the negatives are every other node of **both**
    views.  The result averages both directions, ``½(ℓ(u, v)_i + ℓ(v, u)_i)``, then over nodes, which
    is GRACE's ``loss(h1, h2)``.  Exact over all 2N candidates, without an N x N matrix.
    There is no sampled mode, so none of the sampled InfoNCE's CUDA non-determinism (see :func:`crd`,
    ``num_negatives``): values and gradients are reproducible run to run.

    Args:
        z1, z2: ``[N, d]`` embeddings of the two views (``z2`` is cast to ``z1``'s dtype).
        tau: temperature ``τ > 0`` (GRACE / T2-GNN use 0.5).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[N]``, both directions averaged per node).
        process_group: ``None`` (single process) or a ``torch.distributed`` group: each rank passes
            its **row shard** of ``z1`` and ``z2`` (the same nodes in both; contiguous rows, rank
            order = row order, sizes may differ) and gets the loss of the concatenated rows
            (``"none"``: its own rows).  Both views are all-gathered (O(N d)); each rank's rows run
            against all 2N candidates with ``infonce``'s row offset (the symmetric ``gram_lse``
            trick needs anchors = candidates, which a shard is not).  Every rank must call backward.

    Example:
        >>> z1, z2 = torch.randn(500, 64, requires_grad=True), torch.randn(500, 64)
        >>> gkdfast.losses.nt_xent(z1, z2, tau=0.5).backward()
    """
    op = "nt_xent"
    z1, z2 = _check_pair(z1, z2, op, "z1", "z2")
    tau = _check_tau(tau, op)
    reduction = _check_reduction(reduction, op)
    check_group(process_group, op)
    if process_group is not None:
        return _nt_xent_sharded(z1, z2, tau, reduction, process_group)
    n = z1.size(0)
    x = torch.cat([_normalize(z1), _normalize(z2)], 0)
    # Row a's denominator runs over both views minus a itself; its positive is the same node in the
    # other view, the same dot product u_i·v_i for both directions.
    lse = _gram_lse(x, tau, True)
    pos = (x[:n] * x[n:]).sum(1).to(lse.dtype) / tau
    return _reduce(0.5 * (lse[:n] + lse[n:]) - pos, reduction, z1.dtype)


def _nt_xent_sharded(z1: Tensor, z2: Tensor, tau: float, reduction: str, group) -> Tensor:
    # Global candidate rows: [u_0 .. u_{N-1}, v_0 .. v_{N-1}]; this rank's u rows start at begin,
    # its v rows at N + begin.
    sh = Shards(z1.size(0), group, like=(z1, z2), op="nt_xent")
    u, v = _normalize(z1), _normalize(z2)
    uv_all = sh.gather(torch.cat([u, v], 1))  # one collective for both views
    x = torch.cat(uv_all.split([u.size(1), v.size(1)], 1), 0)
    lse_u = _infonce(u, x, tau, -1, True, 0, 0, sh.begin)[1]
    lse_v = _infonce(v, x, tau, -1, True, 0, 0, sh.total + sh.begin)[1]
    pos = (u * v).sum(1).to(lse_u.dtype) / tau
    return reduce_rows(0.5 * (lse_u + lse_v) - pos, reduction, sh, z1.dtype)


# ------------------------------------------------------------------------------ ncontrast
def _coalesce(p: Tensor, c: Tensor, v: Tensor, width: int, fixed_order: Optional[bool] = None):
    """Sums entries with the same (p, c) (in a fixed order on CUDA: :func:`gkdfast._rows.add_rows`; the
    positives' weights are built once per graph and cached, so their bits do not depend on the run)."""
    key, inv = torch.unique(p * width + c, return_inverse=True)
    return key // width, key % width, add_rows(key.numel(), inv, v, fixed_order)


def _sparse_product(a_rowptr, a_col, a_val, b_rowptr, b_col, b_val, n, max_nnz, hop):
    """CSR x CSR by expanding every (i, k) x (k, j) product, in row chunks of bounded size."""
    if n == 0:
        return a_rowptr, a_col, a_val
    b_deg = b_rowptr[1:] - b_rowptr[:-1]
    a_row = segment_ids(a_rowptr[1:] - a_rowptr[:-1], a_col.numel())
    work = b_deg[a_col]  # products contributed by each nonzero of a
    row_work = torch.zeros(n, dtype=torch.int64, device=a_col.device).index_add_(0, a_row, work)
    rows_out, cols_out, vals_out, total = [], [], [], 0
    chunk = max(1, min(max_nnz, 1 << 26))
    r0 = 0
    cum = torch.cumsum(row_work, 0)
    while r0 < n:
        base = int(cum[r0 - 1]) if r0 else 0
        r1 = int(torch.searchsorted(cum, torch.tensor(base + chunk, device=cum.device), right=True))
        r1 = max(r1, r0 + 1)
        e0, e1 = int(a_rowptr[r0]), int(a_rowptr[r1])
        rr, kk, vv, ww = a_row[e0:e1], a_col[e0:e1], a_val[e0:e1], work[e0:e1]
        pos = concat_ranges(b_rowptr[:-1][kk], ww)
        r, c, val = _coalesce(torch.repeat_interleave(rr, ww), b_col[pos],
                              torch.repeat_interleave(vv, ww) * b_val[pos], n)
        total += val.numel()
        if total > max_nnz:
            raise ValueError(f"gkdfast.losses.ncontrast: Â^{hop} has more than max_nnz={max_nnz} nonzeros (it "
                             f"reached {total} by row {r1} of {n}); use fewer hops or raise max_nnz")
        rows_out.append(r)
        cols_out.append(c)
        vals_out.append(val)
        r0 = r1
    row = torch.cat(rows_out)
    rowptr = torch.zeros(n + 1, dtype=torch.int64, device=row.device)
    rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    return rowptr, torch.cat(cols_out), torch.cat(vals_out)


def _check_hops(hops) -> None:
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise ValueError(f"gkdfast.losses.ncontrast: hops must be an int >= 1, got {hops!r}")


def adjacency_power(graph: Graph, hops: int = 1, max_nnz: int = 50_000_000) -> Tuple[Tensor, Tensor, Tensor]:
    """Sparse ``W = Â^hops`` with ``Â = D^-1/2 (A+I) D^-1/2`` (``A[i, j] = w`` for each edge ``j -> i``; ``I``
    is added even where the graph has its own self-loops, which then count twice,
    ``deg_i = 1 + in-weights``, as :func:`gkdfast.spmm` with ``norm="gcn"``), in float64.

    Computed by repeated sparse products, never densely; raises ``ValueError`` as soon as a power has
    more than ``max_nnz`` nonzeros.  Cached on the graph per hops, with the largest nonzero count
    of its powers: a later call with a smaller ``max_nnz`` raises the same error without recomputing.

    Returns:
        ``(rowptr [N+1], col [nnz], val [nnz])``: CSR of W (row i, column j), diagonal included.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> rowptr, col, val = gkdfast.losses.adjacency_power(g, hops=2)
    """
    check_graph(graph, "gkdfast.losses.ncontrast")
    _check_hops(hops)
    _check_max_nnz(max_nnz)
    cache = _graph_cache(graph)
    key = ("W", hops)  # (max_nnz changes no value, only whether a power is refused)
    if key not in cache:
        with cache_mode():
            cache[key] = _adjacency_power(graph, hops, max_nnz)
    rowptr, col, val, peak = cache[key]
    _check_peak(peak, hops, max_nnz)
    return rowptr, col, val


def _check_max_nnz(max_nnz) -> None:
    if isinstance(max_nnz, bool) or not isinstance(max_nnz, int) or max_nnz < 1:
        raise ValueError(f"gkdfast.losses.ncontrast: max_nnz must be an int >= 1, got {max_nnz!r}")


def _check_peak(peak: int, hops: int, max_nnz: int) -> None:
    """The cap checked against a cached power's largest nonzero count (without recomputing it)."""
    if peak > max_nnz:
        raise ValueError(f"gkdfast.losses.ncontrast: Â^{hops} (or a lower power) has {peak} nonzeros, more than "
                         f"max_nnz={max_nnz}; use fewer hops or raise max_nnz")


def _adjacency_power(graph: Graph, hops: int, max_nnz: int) -> Tuple[Tensor, Tensor, Tensor, int]:
    n, dev = graph.num_nodes, graph.device
    w = _constant_weights(graph)
    dinv = graph.gcn_norm_coefficients(w, torch.float64)
    w = torch.ones(graph.num_edges, dtype=torch.float64, device=dev) if w is None else \
        graph.to_csr_order(w).to(torch.float64)
    row = graph.dst.long()
    col = graph.col.long()
    # Â as CSR with the self-loops merged in (duplicates summed).
    rows = torch.cat([row, torch.arange(n, device=dev)])
    cols = torch.cat([col, torch.arange(n, device=dev)])
    vals = torch.cat([w, torch.ones(n, dtype=torch.float64, device=dev)])
    r, c, v = _coalesce(rows, cols, vals, n)
    v = dinv[r] * v * dinv[c]
    if v.numel() > max_nnz:
        raise ValueError(f"gkdfast.losses.ncontrast: Â has {v.numel()} nonzeros, more than max_nnz={max_nnz}")
    a_rowptr = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    a_rowptr[1:] = torch.cumsum(torch.bincount(r, minlength=n), 0)
    out, peak = (a_rowptr, c, v), v.numel()
    for h in range(2, hops + 1):
        out = _sparse_product(*out, a_rowptr, c, v, n, max_nnz, h)
        peak = max(peak, out[2].numel())
    return (*out, peak)


def _constant_weights(graph: Graph) -> Optional[Tensor]:
    """The graph's edge weights as the constants W is built from: detached, since W is cached across
    steps (a learnable weight's history would be backpropagated through once and then fail)."""
    return None if graph.edge_weight is None else graph.edge_weight.detach()


def _graph_cache(graph: Graph) -> dict:
    """The cache of W, its positives and batch rows for ``graph`` with its current ``edge_weight``:
    another weight tensor assigned to the graph, the same one written in place, or given other storage
    (``w.data = ...``), gets a fresh cache
    (W depends on them), and the old weights' entries are dropped (each holds O(nnz))."""
    per_graph = derived_cache(graph, "ncontrast")
    w = graph.edge_weight
    if w is None:
        return per_graph.setdefault(None, {})
    if tracing():  # a tensor's version is data to the tracer: match the tensor alone
        for k, entry in per_graph.items():
            if k is not None and entry[0]() is w:
                return entry[1]
    # (.data = other swaps the storage without a version bump: the data pointer tells; writes through
    # .data[...] bump nothing and are not seen, as for every tensor torch hands out without autograd)
    key = (id(w), w._version, w.data_ptr())
    entry = per_graph.get(key)
    if entry is None or entry[0]() is not w:  # (a new tensor may reuse a freed one's id: check it is w)
        for old in [k for k in per_graph if k is not None]:
            del per_graph[old]
        entry = per_graph[key] = (weakref.ref(w), {})
    return entry[1]


def _positives(graph: Graph, hops: int, max_nnz: int):
    """Off-diagonal part of W as (dst i, src j, log w), the positives graph, and the mask P.

    Cached per graph and hops without W itself (W's columns and values are 16 bytes per entry, a
    quarter of what the loss kept; :func:`adjacency_power` caches W when a caller asks for it), and with
    the destinations held once, as the positives graph's ``dst``."""
    _check_max_nnz(max_nnz)
    cache = _graph_cache(graph)
    key = ("pos", hops)
    if key not in cache:
        n = graph.num_nodes
        with cache_mode():
            rowptr, col, val, peak = cache.get(("W", hops)) or _adjacency_power(graph, hops, max_nnz)
            row = segment_ids(rowptr[1:] - rowptr[:-1], col.numel())
            keep = (row != col) & (val > 0)
            row, col, val = row[keep], col[keep], val[keep]
            del keep
            counts = torch.bincount(row, minlength=n)
            p_rowptr = torch.zeros(n + 1, dtype=torch.int64, device=col.device)
            torch.cumsum(counts, 0, out=p_rowptr[1:])
            # edge j -> i, already in CSR order (W's rows in order): row i lists its positives
            pg = Graph._from_parts(p_rowptr, col, n)
            row = pg.dst  # the graph keeps it (its kernels' backward reads it): one copy serves both
            cache[key] = (row, torch.log(val), pg, counts > 0, peak)
    row, log_w, pg, has, peak = cache[key]
    _check_peak(peak, hops, max_nnz)
    return row, log_w, pg, has


# Entries one step of the batch expansion may hold at once (triples of int64 / float64): bounds
# the memory of a batch whose rows reach hubs.  A module constant so tests can force small chunks.
_BATCH_EXPAND_CHUNK = 1 << 23


def _split_by_growth(growth: Tensor, limit: int):
    """Index ranges of consecutive entries whose ``growth`` sums to about ``limit`` (an entry that
    alone exceeds it is its own range)."""
    total = growth.cumsum(0)
    if total.numel() == 0 or int(total[-1]) <= limit:
        return [(0, growth.numel())]
    cuts = torch.searchsorted(total, torch.arange(limit, int(total[-1]), limit, device=total.device))
    bounds = [0] + sorted(set(int(x) + 1 for x in cuts.tolist())) + [growth.numel()]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _expand_hop(p: Tensor, k: Tensor, v: Tensor, rowptr: Tensor, col: Tensor, eid: Optional[Tensor],
                weight: Optional[Tensor], dinv: Tensor, width: int):
    """Entries (p, k, v) of a product with Â (rows k of Â, read straight from a CSR of the graph:
    ``Â[k, j] = dinv_k · w · dinv_j`` per stored edge, ``dinv_k²`` for the self-loop), chunked to
    ``_BATCH_EXPAND_CHUNK`` new entries, duplicates summed."""
    count = (rowptr[k + 1] - rowptr[k]).long()
    parts = []
    for lo, hi in _split_by_growth(count, _BATCH_EXPAND_CHUNK):
        pk, kk, vk, ck = p[lo:hi], k[lo:hi], v[lo:hi] * dinv[k[lo:hi]], count[lo:hi]
        entry = concat_ranges(rowptr[kk].long(), ck)
        nbr = col[entry].long()
        val = torch.repeat_interleave(vk, ck) * dinv[nbr]
        if weight is not None:
            val = val * weight[eid[entry].long() if eid is not None else entry]
        parts.append(_coalesce(torch.cat([torch.repeat_interleave(pk, ck), pk]), torch.cat([nbr, kk]),
                               torch.cat([val, vk * dinv[kk]]), width))
    return _coalesce(*(torch.cat(t) for t in zip(*parts)), width) if len(parts) > 1 else parts[0]


def _batch_rows(nodes: Tensor, hops: int, csr, weight: Optional[Tensor], dinv: Tensor, width: int):
    """Rows ``nodes[p]`` of M^hops as coalesced entries (p, k, v), where M is Â (``csr`` the graph's
    CSR by destination) or Âᵀ (``csr`` its transpose); hops = 0 is the identity."""
    p = torch.arange(nodes.numel(), device=nodes.device)
    k, v = nodes, torch.ones(nodes.numel(), dtype=dinv.dtype, device=nodes.device)
    for _ in range(hops):
        p, k, v = _expand_hop(p, k, v, *csr, weight, dinv, width)
    return p, k, v


def _batch_positives(graph: Graph, hops: int, nodes: Tensor, cols: Optional[Tensor] = None, begin: int = 0):
    """``W[nodes][:, cols]`` for ``W = Â^hops`` (``cols`` defaults to ``nodes``), without the diagonal
    *positions* (row position p is position ``begin + p`` among the columns), as (position p, column
    position q, log w) and the mask of rows with a positive.  A node listed twice is two positions; the
    pair of them is a positive of weight ``W_vv`` (as in the dense ``adj_label[idx][:, idx]`` of
    Graph-MLP's batches).  A rank's shard of a global batch passes its rows as ``nodes``, the whole
    global batch as ``cols`` and its offset in it as ``begin``.

    Neither W nor Â is formed.  ``W_pq = Σ_k (Â^a)[p, k] (Â^c)[k, q]`` with a + c = hops: the
    rows' rows of Â^a and the columns' columns of Â^c are expanded from the graph's own CSR and its
    cached transpose (values ``dinv_i · w · dinv_j`` on the fly, float64) and joined on the middle
    node k.  The work is the number of paths of length ``hops`` that start in the rows *and end* in
    the columns (a hub in the middle costs its batch neighbours squared, not its degree) plus O(N) for
    the degrees, never nnz(Â^hops); the memory is that and the batch's rows."""
    dev = graph.device
    n = graph.num_nodes
    cache = _graph_cache(graph)
    if "batch" not in cache:  # per graph, not per step: the degrees and the weights in CSR order (O(N + E))
        w = _constant_weights(graph)
        with cache_mode():
            cache["batch"] = (graph.gcn_norm_coefficients(w, torch.float64),
                              None if w is None else graph.to_csr_order(w).double())
    dinv, weight = cache["batch"]
    nodes = nodes.to(dev).long()
    cols = nodes if cols is None else cols.to(dev).long()
    width = max(cols.numel(), 1)
    a = (hops + 1) // 2
    lp, lk, lv = _batch_rows(nodes, a, (graph.rowptr, graph.col, None), weight, dinv, n)  # rows of Â^a
    # columns of Â^c: rows of Âᵀ, i.e. the CSR by source; t_eid points each entry at its weight
    rq, rk, rv = _batch_rows(cols, hops - a, graph.transpose_csr(), weight, dinv, n)
    order = torch.argsort(rk)
    rq, rk, rv = rq[order], rk[order], rv[order]
    keys, counts = torch.unique_consecutive(rk, return_counts=True)
    starts = counts.cumsum(0) - counts
    # for each left entry: where its middle node's right entries start, and how many there are
    at = torch.searchsorted(keys, lk).clamp(max=max(keys.numel() - 1, 0))
    m = torch.where(keys[at] == lk, counts[at], 0) if keys.numel() else torch.zeros_like(lk)
    starts = starts[at] if keys.numel() else m
    out = []
    for lo, hi in _split_by_growth(m, _BATCH_EXPAND_CHUNK):  # the join, in chunks of left entries
        r = concat_ranges(starts[lo:hi], m[lo:hi])
        out.append(_coalesce(torch.repeat_interleave(lp[lo:hi], m[lo:hi]), rq[r],
                             torch.repeat_interleave(lv[lo:hi], m[lo:hi]) * rv[r], width))
    p, q, v = _coalesce(*(torch.cat(t) for t in zip(*out)), width) if len(out) > 1 else out[0]
    keep = (p + begin != q) & (v > 0)
    p, q, v = p[keep], q[keep], v[keep]
    has = torch.zeros(nodes.numel(), dtype=torch.bool, device=dev)
    has[p] = True
    return p, q, torch.log(v), has


def _segment_lse(x: Tensor, seg: Tensor, n: int, present: Tensor) -> Tensor:
    """log Σ_{e: seg[e]=i} exp(x_e) per i; rows without entries give 0 (callers mask them out).  (On
    CUDA the sum is an ``index_add`` with atomics: deterministic under torch.use_deterministic_algorithms,
    and twice differentiable, which a segmented reduction is not.)"""
    m = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
    m = m.scatter_reduce(0, seg, x.detach(), "amax", include_self=True)
    m = torch.where(present, m, torch.zeros_like(m))
    s = torch.zeros(n, dtype=x.dtype, device=x.device).index_add(0, seg, torch.exp(x - m[seg]))
    return torch.where(present, torch.log(torch.where(present, s, torch.ones_like(s))) + m, torch.zeros_like(s))


@float32_loss
def ncontrast(graph: Graph, z: Tensor, tau: float = 1.0, hops: int = 1, num_negatives: Optional[int] = None,
              seed: Optional[int] = None, max_nnz: int = 50_000_000, reduction: str = "mean",
              process_group=None, nodes: Optional[Tensor] = None) -> Tensor:
    """Graph-MLP's neighbourhood contrastive loss (Hu et al., 2021), exact or with sampled negatives.

    With ``s_ij = cos(z_i, z_j) / τ`` and ``W = Â^hops`` (``Â = D^-1/2 (A+I) D^-1/2``, kept sparse; see
    :func:`adjacency_power`; ``I`` is added whatever loops the graph has, as Graph-MLP adds it to its
    adjacency: a graph that already carries PyG's ``add_self_loops`` counts each loop twice)::

        loss = −(1/|P|) Σ_{i∈P} log( Σ_{j≠i} W_ij e^{s_ij} / Σ_{j≠i} e^{s_ij} )

    where P is the set of nodes with at least one positive (some ``j ≠ i`` with ``W_ij > 0``): an
    isolated node has nothing to attract and is left out rather than giving ``log 0``.  The
    denominator runs exactly over all N nodes (tiled, no N x N matrix), or, with
    ``num_negatives=K``, over i's positives plus K nodes drawn uniformly with replacement from
    ``[N] \\ {i}`` (Philox keyed by ``(seed, i, k)``; ``K >= N − 1`` falls back to the exact sum).
    Note Graph-MLP's code uses ``τ`` as an *inverse* temperature; here ``τ`` divides.

    Args:
        graph: a :class:`gkdfast.Graph` with N nodes (its ``edge_weight``, if any, weights A).
        z: ``[N, d]`` node embeddings (e.g. an MLP's hidden layer).
        tau: temperature ``τ > 0``.
        hops: power of ``Â`` (Graph-MLP uses 2 or 3).
        num_negatives, seed: sampled denominator (see above); ``seed=None`` draws from torch's generator.
            On CUDA the loss is **not bitwise reproducible** without
            ``torch.use_deterministic_algorithms(True)``: the per-row sums over the positives are an
            ``index_add`` (atomics), and the sampled backward accumulates each drawn negative's gradient
            with ``atomicAdd``, so the last bits may differ between runs.  In that mode both are
            deterministic (the sampled backward runs a chunked path); the draws and the CPU kernels are
            always reproducible.
        max_nnz: cap on the nonzeros of ``Â^hops`` (a clear ``ValueError`` when exceeded).
        reduction: ``"mean"`` (over P), ``"sum"`` or ``"none"`` (``[N]``, 0 outside P; with ``nodes``:
            ``[B]``, one value per batch position).
        process_group: ``None`` (single process) or a ``torch.distributed`` group.  Then every rank
            passes the **full** ``graph`` (all N nodes) and its **row shard** of ``z``: the rows of
            the nodes ``[begin, begin + len(z))``, shards contiguous in rank order (sizes may
            differ, they must add up to N; see :func:`gkdfast.distributed.shard_range`).  Each
            rank gets the loss of all N nodes (``"none"``: its own nodes' rows), exactly, sampled
            negatives included (``seed=None`` uses rank 0's draw).  ``z`` is all-gathered
            (O(N d)); each rank computes its nodes' positives and their all-N denominator with
            ``infonce``'s row offset.  Every rank must call backward.
        nodes: optional ``[B]`` node ids of a mini-batch (repeats allowed), or an ``[N]`` bool mask of
            them (PyG's ``train_mask``; ids in increasing order): ``z`` then holds their rows (``[B, d]``),
            the positives are the *whole* graph's ``W`` restricted to the batch, ``W[nodes][:, nodes]``,
            and both sums run over the batch's positions (``j ≠ i`` means another position; two
            positions of one node are positives of weight ``W_vv``).  This is
            Graph-MLP's batch loss without its dense ``Â^hops``, and without the whole sparse one
            either: the batch's block of ``W`` is joined from the graph's CSR on each call (work and
            memory follow the ``hops``-paths that start and end in the batch; ``max_nnz`` does not apply),
            so it runs on graphs whose ``Â^hops`` has billions of non-zeros. O(B·d) memory for the
            similarities. That join reads the values of ``nodes``: ``torch.compile`` runs it between graphs
            (no ``fullgraph=True``), with values and gradients equal to eager. With ``process_group`` each
            rank passes its **shard of the global batch**: its ``nodes`` and their rows of ``z`` (shards in
            rank order, sizes may differ); the loss is that of the concatenated batch, exactly as one
            process computes it, and each rank joins only its own rows of the batch's ``W`` block (against
            the gathered node ids).

    Returns:
        scalar (or ``[N]``); 0 when P is empty.  Differentiable w.r.t. ``z``; the graph's ``edge_weight``
        only builds the (cached) positives and gets no gradient.

    The positives (``Â^hops``, a sparse product with a data-dependent size) are built on the first
    call for a graph and cached on it; under ``torch.compile(fullgraph=True)`` make that first call
    eagerly (a warm-up step), after which the loss traces without a graph break.  What stays cached is
    about 40 bytes per positive (their CSR, its transpose for the backward, log-weights: 165 MiB for
    4.3 M positives, a 16,000-node graph of mean degree 10 with ``hops=2``); ``W`` itself (16 bytes per
    entry) is not kept.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
        >>> z = torch.randn(3, 16, requires_grad=True)
        >>> gkdfast.losses.ncontrast(g, z, tau=0.5, hops=2).backward()
    """
    op = "ncontrast"
    check_graph(graph, f"gkdfast.losses.{op}")
    _check_hops(hops)  # every path, nodes= included
    z = check_matrix(z, op, "z")
    check_group(process_group, op)
    # Without a group the shard is every row: the collectives are the identity, begin is 0.
    sh = Shards(z.size(0), process_group, like=(z,), op=op)
    if nodes is not None:
        nodes = _check_batch_nodes(nodes, z, graph.num_nodes, op)
    elif process_group is None:
        check_rows_match(graph, z, f"gkdfast.losses.{op}", "z")
    else:
        check_rows_match(graph, z, f"gkdfast.losses.{op}", "z", num_rows=sh.total,
                         rows_text=f"the {sh.world} shards of z have {sh.total} rows together")
    tau = _check_tau(tau, op)
    reduction = _check_reduction(reduction, op)
    k, sd = _check_negatives(num_negatives, seed, sh.total, op)  # sh.total: the rows the loss runs over
    sd = shared_seed(sd, seed, k, process_group)
    zn = _normalize(z)
    zn_all = sh.gather(zn)
    if nodes is None:
        row, log_w, pg, has = _positives(graph, hops, max_nnz)
        count = has.sum()
        if process_group is not None:  # this rank's rows' positives
            mine = (row >= sh.begin) & (row < sh.end)
            row, log_w, has = row[mine], log_w[mine], has[sh.begin:sh.end]
            pg = _positives_in_rows(graph, hops, max_nnz, sh.begin, sh.end) if row.numel() else None
    else:
        p, q, log_w, has = _batch_positives(graph, hops, nodes, sh.gather(nodes), sh.begin)
        row = p + sh.begin
        pg = Graph(torch.stack([q, row]), num_nodes=sh.total, validate=False)  # edge q -> row: row's positives
        count = sh.sum(has.sum().double()) if reduction == "mean" else None  # |P| of the global batch
    rows = _ncontrast_rows(zn, zn_all, sh.begin, row, log_w, pg, has, tau, k, sd)
    return reduce_rows(rows, reduction, sh, z.dtype, count=count)


def _ncontrast_rows(zn: Tensor, zn_all: Tensor, begin: int, row: Tensor, log_w: Tensor, pg: Optional[Graph],
                    has: Tensor, tau: float, k: int, sd: int) -> Tensor:
    """Per-row losses of the anchors ``zn`` (rows ``[begin, begin + len(zn))`` of the unit-norm
    candidates ``zn_all``), whose positives are the entries (global row ``row``, log weight ``log_w``)
    and the edges of ``pg`` (over the candidates, in the same (row, column) order); ``has`` marks the
    anchors with a positive, the other rows are 0."""
    n, end = zn_all.size(0), begin + zn.size(0)
    acc = torch.float64 if zn.dtype == torch.float64 else torch.float32
    if row.numel() == 0:
        # No positives here: zero rows, still connected to the (gathered) z, so that under a process
        # group this rank's backward joins the gather's collective like every other rank's.
        return zn_all[begin:end].sum(1).to(acc) * 0.0
    present = torch.zeros(n, dtype=torch.bool, device=zn.device)
    present[begin:end] = has  # the segments this rank sums
    s = sddmm(pg, zn_all, zn_all).to(acc) / tau  # s_ij for every positive pair, in (row, col) order
    num = _segment_lse(s + log_w.to(acc), row, n, present)[begin:end]
    if k == 0:
        den = (_gram_lse(zn, tau, True) if zn_all is zn  # one process, all rows: the symmetric half-GEMM op
               else _infonce(zn, zn_all, tau, -1, True, 0, 0, begin)[1])
    else:
        den = torch.logaddexp(_infonce(zn, zn_all, tau, -1, True, k, sd, begin)[0],
                              _segment_lse(s, row, n, present)[begin:end])
    return torch.where(has, den - num, torch.zeros_like(num))


def _check_batch_nodes(nodes, z: Tensor, num_nodes: int, op: str) -> Tensor:
    """``nodes`` as a 1-D int64 tensor on z's device: B = len(z) ids in [0, num_nodes) (a bool ``[num_nodes]``
    mask gives its set positions)."""
    if torch.is_tensor(nodes):
        nodes = mask_to_ids(nodes, num_nodes, op)
    if not torch.is_tensor(nodes) or nodes.dim() != 1 or nodes.dtype.is_floating_point:
        got = f"{nodes.dtype} {list(nodes.shape)}" if torch.is_tensor(nodes) else type(nodes).__name__
        raise TypeError(f"gkdfast.losses.{op}: nodes must be a 1-D integer tensor of node ids or a bool mask, "
                        f"got {got}")
    if nodes.numel() != z.size(0):
        raise ValueError(f"gkdfast.losses.{op}: z has {z.size(0)} rows but nodes lists {nodes.numel()} nodes "
                         "(z must hold one row per listed node)")
    if tracing():  # the bounds read the values: left to the indexing while tracing
        return nodes.to(z.device).long()
    low, high = (int(nodes.min()), int(nodes.max())) if nodes.numel() else (0, 0)
    if nodes.numel() and (low < 0 or high >= num_nodes):
        bad = low if low < 0 else high
        raise IndexError(f"gkdfast.losses.{op}: node {bad} in nodes is out of range [0, {num_nodes})")
    return nodes.to(z.device).long()


def _positives_in_rows(graph: Graph, hops: int, max_nnz: int, begin: int, end: int) -> Graph:
    """The positives graph restricted to destination rows [begin, end) (cached per graph), its edges
    in the same (row, col) order as :func:`_positives`' arrays."""
    cache = _graph_cache(graph)
    key = ("pos_rows", hops, begin, end)  # (callers checked max_nnz through _positives)
    if key not in cache:
        row, _, pg, _ = _positives(graph, hops, max_nnz)
        with cache_mode():
            lo, hi = int(pg.rowptr[begin]), int(pg.rowptr[end])  # the positives are in row order: a slice
            cache[key] = Graph(torch.stack([pg.col[lo:hi], row[lo:hi]]), num_nodes=graph.num_nodes, validate=False)
    return cache[key]


# ------------------------------------------------------------------------------ sampler
def sample_negatives(num_nodes: int, num_negatives: int, seed: int, rows: Optional[Tensor] = None,
                     device=None) -> Tensor:
    """The negatives the sampled kernels draw: ``[R, K]`` int64, row r's entries uniform on
    ``[num_nodes] \\ {rows[r]}`` (Philox-4x32-10 keyed by ``(seed, row, k)``; identical on CPU and CUDA).

    Example:
        >>> gkdfast.losses.sample_negatives(10, 3, seed=0, rows=torch.tensor([0, 5])).shape
        torch.Size([2, 3])
    """
    for name, v in (("num_nodes", num_nodes), ("num_negatives", num_negatives), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"gkdfast.losses.sample_negatives: {name} must be an int, got {v!r}")
    if not 2 <= num_nodes < 1 << 32:  # the draw's 32-bit words: beyond, not the documented formula
        raise ValueError(f"gkdfast.losses.sample_negatives: need 2 <= num_nodes < 2**32, got {num_nodes}")
    if num_negatives < 0:
        raise ValueError("gkdfast.losses.sample_negatives: num_negatives must be >= 0")
    if not 0 <= seed < 1 << _SEED_BITS:
        raise ValueError("gkdfast.losses.sample_negatives: seed must be in [0, 2**63)")
    if rows is None:
        rows = torch.arange(num_nodes, device=device)
    rows = rows.to(torch.int64)
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= num_nodes):
        raise ValueError("gkdfast.losses.sample_negatives: rows out of range")
    if _backend.choose("sample_negatives", rows.device, None) == "reference":
        return ref.sample_negatives(rows, num_nodes, num_negatives, seed)
    return torch.ops.gkdfast.sample_negatives(rows.contiguous(), num_nodes, num_negatives, seed)
