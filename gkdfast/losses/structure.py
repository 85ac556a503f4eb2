"""Structure-preserving distillation losses: :func:`lsp`, :func:`gsp`, :func:`rsd`, :func:`relation`.

All of them compare *relations* between embeddings (a kernel k(u, v) between rows of one model's
embedding matrix) rather than the embeddings themselves, so the student and teacher widths may
differ.  Exact definitions: docs/ops.md; kernels (``u``, ``v`` rows of one matrix):

========  ======================================================
linear    ``u.v``
cosine    ``u.v / (max(|u|, 1e-8) max(|v|, 1e-8))``
poly      ``(u.v + 1)^2``
l2        ``-|u - v|^2``
rbf       ``exp(-gamma |u - v|^2)``
laplace   ``exp(-gamma |u - v|_1)``  (the official LSP code's kernel, gamma = 0.01)
========  ======================================================

How the published code maps onto these arguments is in ``docs/losses.md``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from gkdfast._autocast import float32_loss, wide_sum
from gkdfast import _backend
from gkdfast._checks import check_graph, check_rows_match, finite_number
from gkdfast._rows import ordered_sum, take_rows
from gkdfast.graph import Graph
from gkdfast.losses._checks import check_matrix, mask_to_ids
from gkdfast.losses._sharded import Shards, check_group
from gkdfast.reference import structure as ref
from gkdfast._tracing import tracing

__all__ = ["lsp", "gsp", "rsd", "relation", "KERNELS", "check_kernel"]

KERNELS = ref.KERNELS
_LSP_REDUCTIONS = ("mean", "sum", "none")
_GSP_LOSSES = ("mse", "kl")
# Rows per chunk of the Gram path (float64 copies of one chunk at a time, never of the whole matrix).
_GRAM_CHUNK = 1 << 12  # (4,096: 65,536 rows made 11 N·d of float64 temporaries for N <= 65,536, helper 117)


# ------------------------------------------------------------------------------------------ checks
def _check_embeddings(op: str, student, teacher, graph: Optional[Graph] = None):
    where = f"gkdfast.losses.{op}"
    check_matrix(student, op, "student")
    check_matrix(teacher, op, "teacher")
    if student.size(0) != teacher.size(0):
        raise ValueError(f"{where}: student has {student.size(0)} rows but teacher has "
                         f"{teacher.size(0)} (one row per node in both)")
    if student.device != teacher.device:
        raise ValueError(f"{where}: student is on {student.device} but teacher is on {teacher.device}")
    if graph is not None:
        check_rows_match(graph, student, where, "student", rows_text="embeddings have {rows} rows")


def check_kernel(op: str, kernel: str, gamma: float, tau: float) -> None:
    """The checks :func:`lsp` and :func:`gsp` make on their kernel settings, for callers that hold the
    settings before any data (the distillation terms, at construction): a ValueError naming
    ``gkdfast.losses.<op>`` for an unknown kernel, a tau that is not finite and > 0, a non-finite gamma
    or a negative rbf/laplace bandwidth.

    Example:
        >>> check_kernel("lsp", "rbf", 1.0, 0.5)   # fine: returns None
        >>> check_kernel("gsp", "foo", 1.0, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: gkdfast.losses.gsp: unknown kernel 'foo'; expected one of linear, cosine, poly, l2, rbf, laplace
    """
    if kernel not in KERNELS:
        raise ValueError(f"gkdfast.losses.{op}: unknown kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    if not (finite_number(tau) and tau > 0):
        raise ValueError(f"gkdfast.losses.{op}: tau must be a finite number > 0, got {tau!r}")
    if not finite_number(gamma):
        raise ValueError(f"gkdfast.losses.{op}: gamma must be a finite number, got {gamma!r}")
    if kernel in ("rbf", "laplace") and gamma < 0:  # a bandwidth: negative would grow with the distance
        raise ValueError(f"gkdfast.losses.{op}: gamma must be >= 0 for the {kernel} kernel, got {gamma!r}")


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# ------------------------------------------------------------------------------------------ LSP
@float32_loss
def lsp(graph: Graph, student: Tensor, teacher: Tensor, kernel: str = "rbf", gamma: float = 1.0,
        tau: float = 1.0, reduction: str = "mean") -> Tensor:
    """Local structure preserving loss (Yang et al., CVPR 2020), fused per destination node.

    For each destination ``i`` with at least one in-edge and each in-edge ``e = (j -> i)``:
    ``alpha_ij = softmax over i's in-neighbours of k(h_i, h_j) / tau``, for the student and the
    teacher separately, and per node ``KL(alpha^T_i || alpha^S_i)``.  One pass per row computes the
    kernel values on the fly: no ``E x d`` tensor (the public code gathers four), and backward keeps
    only two scalars per edge.

    Args:
        graph: :class:`gkdfast.Graph` with ``N`` nodes (messages ``j -> i``).
        student: ``[N, d_s]`` embeddings.  teacher: ``[N, d_t]`` (``d_t`` may differ; cast to the
            student's dtype).  Both differentiable.
        kernel: one of ``linear, cosine, poly, l2, rbf, laplace`` (module docstring).
        gamma: bandwidth of ``rbf``/``laplace``; the other kernels do not use it, but it must still be a
            finite number.
        tau: softmax temperature, > 0.
        reduction: ``"mean"`` over nodes with an in-edge, ``"sum"``, or ``"none"`` -> ``[N]`` (0 for
            nodes without in-edges).

    The official LSP code is ``kernel="laplace", gamma=0.01, tau=1, reduction="mean"``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]]))
        >>> s, t = torch.randn(3, 8, requires_grad=True), torch.randn(3, 16)
        >>> loss = gkdfast.losses.lsp(g, s, t, kernel="laplace", gamma=0.01)
        >>> loss.backward()
    """
    check_graph(graph, "gkdfast.losses.lsp")
    _check_embeddings("lsp", student, teacher, graph)
    check_kernel("lsp", kernel, gamma, tau)
    if reduction not in _LSP_REDUCTIONS:
        raise ValueError(f"gkdfast.losses.lsp: unknown reduction {reduction!r}; expected one of "
                         f"{', '.join(_LSP_REDUCTIONS)}")
    teacher = teacher.to(student.dtype)
    if _backend.choose("lsp", student.device, student.dtype) == "reference":
        # both ends of every edge, for both models
        e = graph.num_edges
        _backend.warn_dense_fallback("lsp", student.device, student.dtype, 2 * e * (student.size(1) + teacher.size(1)),
                                     f"the {e} edges' endpoint rows (E x d)", name="losses.lsp")
        return ref.lsp(graph, student, teacher, kernel, float(gamma), float(tau), reduction)
    if _needs_grad(student, teacher):
        t_rowptr, t_col, t_eid = graph.transpose_csr()
    else:
        t_rowptr = t_col = t_eid = graph.col.new_empty(0)
    per_node, _ = torch.ops.gkdfast.lsp(graph.rowptr, graph.col, t_rowptr, t_col, t_eid, student.contiguous(),
                                        teacher.contiguous(), kernel, float(gamma), float(tau))
    # (per_node is float32 for half inputs; sums are taken there and cast once)
    if reduction == "none":
        return per_node.to(student.dtype)
    if reduction == "sum":
        return ordered_sum(per_node).to(student.dtype)
    # nodes with an in-edge, as a tensor: no host sync per call, and no graph break under torch.compile
    count = (graph.rowptr[1:] > graph.rowptr[:-1]).sum().clamp_min(1)
    return (ordered_sum(per_node) / count).to(student.dtype)


# ------------------------------------------------------------------------------------------ GSP
class _GramMSE(torch.autograd.Function):
    """``(1/N^2) |S S^T - T T^T|_F^2 = (|S^T S|^2 - 2 |S^T T|^2 + |T^T T|^2) / N^2`` in float64.

    The three d x d Gram products are accumulated over row chunks in float64 (the terms nearly
    cancel when student ~ teacher), so memory is O(chunk * d + d^2) beyond the inputs.
    Gradients: dL/dS = 4 (S A - T B^T) / N^2, dL/dT = 4 (T C - S B) / N^2 with A = S^T S,
    B = S^T T, C = T^T T.

    With a process group the rows are this rank's shard: A, B, C and N are sums over the rows, so
    one all-reduce of the packed Grams (and N) makes them global and the value exact; a shard's
    gradient rows need only its own rows and the global Grams (no collective in backward).
    """

    @staticmethod
    def forward(ctx, s: Tensor, t: Tensor, group=None) -> Tensor:
        n_local = s.size(0)
        ds, dt = s.size(1), t.size(1)
        # One float64 buffer [A | B | C]: a single all-reduce when distributed.
        packed = s.new_zeros((ds * ds + ds * dt + dt * dt,), dtype=torch.float64)
        a = packed[:ds * ds].view(ds, ds)
        b = packed[ds * ds:ds * ds + ds * dt].view(ds, dt)
        c = packed[ds * ds + ds * dt:].view(dt, dt)
        for r0 in range(0, n_local, _GRAM_CHUNK):
            sc = s[r0:r0 + _GRAM_CHUNK].double()
            tc = t[r0:r0 + _GRAM_CHUNK].double()
            a.addmm_(sc.t(), sc)
            b.addmm_(sc.t(), tc)
            c.addmm_(tc.t(), tc)
        n = n_local
        if group is not None:
            # N from the row counts, whose all-gather also checks equal widths / dtypes on every rank
            n = Shards(n_local, group, like=(s, t), op="gsp").total
            torch.distributed.all_reduce(packed, group=group)
        total = a.pow(2).sum() - 2.0 * b.pow(2).sum() + c.pow(2).sum()
        ctx.save_for_backward(s, t, a, b, c)
        ctx.n, ctx.distributed = n, group is not None
        # Exactly >= 0 in exact arithmetic; rounding of the cancelling terms may leave -1e-17.
        return (total.clamp_min(0) / max(n * n, 1)).to(s.dtype)

    @staticmethod
    def backward(ctx, grad, *_):
        s, t, a, b, c = ctx.saved_tensors
        scale = grad.double() * (4.0 / max(ctx.n * ctx.n, 1))  # a tensor: no device sync
        if torch.is_grad_enabled():  # create_graph=True: the gradient must itself be differentiable
            if ctx.distributed:
                raise RuntimeError("gkdfast: double backward through losses.rsd / losses.gsp (linear or cosine, "
                                   "mse) with process_group= is not supported (the Grams are all-reduced)")
            # the Grams again, tracked this time (forward built them outside autograd): O(N d^2)
            s64, t64 = s.double(), t.double()
            a, b, c = _grams(s64, t64)
            gs = ((s64 @ a - t64 @ b.t()) * scale).to(s.dtype) if ctx.needs_input_grad[0] else None
            gt = ((t64 @ c - s64 @ b) * scale).to(t.dtype) if ctx.needs_input_grad[1] else None
            return gs, gt, None
        n_local = s.size(0)
        gs = torch.empty_like(s) if ctx.needs_input_grad[0] else None
        gt = torch.empty_like(t) if ctx.needs_input_grad[1] else None
        # One float64 copy of each chunk serves both gradients; the products accumulate in place.
        for r0 in range(0, n_local, _GRAM_CHUNK):
            sc, tc = s[r0:r0 + _GRAM_CHUNK].double(), t[r0:r0 + _GRAM_CHUNK].double()
            if gs is not None:
                gs[r0:r0 + _GRAM_CHUNK] = torch.mm(sc, a).addmm_(tc, b.t(), alpha=-1.0).mul_(scale)
            if gt is not None:
                gt[r0:r0 + _GRAM_CHUNK] = torch.mm(tc, c).addmm_(sc, b, alpha=-1.0).mul_(scale)
        return gs, gt, None


def _grams(s64: Tensor, t64: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(SᵀS, SᵀT, TᵀT)``: the three d x d Grams of :class:`_GramMSE`, by tracked products."""
    return s64.t() @ s64, s64.t() @ t64, t64.t() @ t64


def _gram_mse_autograd(s: Tensor, t: Tensor) -> Tensor:
    """:class:`_GramMSE`'s value by plain autograd (float64 Grams, O(d^2) memory): the reference path,
    which also has second derivatives."""
    a, b, c = _grams(s.double(), t.double())
    n = s.size(0)
    total = a.pow(2).sum() - 2.0 * b.pow(2).sum() + c.pow(2).sum()
    return (total.clamp_min(0) / max(n * n, 1)).to(s.dtype)


def _unit_rows(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(ref.COSINE_EPS)


def _selected_rows(op: str, student: Tensor, teacher: Tensor, nodes, process_group) -> Tuple[Tensor, Tensor]:
    """``op``'s (gsp's, rsd's) argument checks and its ``nodes=`` rows: ``(student, teacher)`` restricted to
    them, the teacher in the student's dtype; errors name ``op``."""
    _check_embeddings(op, student, teacher)
    check_group(process_group, op)
    teacher = teacher.to(student.dtype)
    if nodes is None:
        return student, teacher
    if not isinstance(nodes, Tensor):
        nodes = torch.as_tensor(nodes, device=student.device)
    nodes = mask_to_ids(nodes, student.size(0), op)
    if nodes.is_floating_point() or nodes.dim() != 1 or nodes.dtype == torch.uint8:
        # (uint8 indexing is torch's old mask form: refused rather than read either way)
        raise TypeError(f"gkdfast.losses.{op}: nodes must be a 1-D integer index tensor or a bool mask")
    if nodes.device != student.device:
        raise ValueError(f"gkdfast.losses.{op}: nodes is on {nodes.device} but the embeddings are on "
                         f"{student.device}")
    # The bounds read the values: skipped while torch.compile traces (fullgraph cannot branch on
    # data), where the indexing below still refuses an index out of range.
    if (not tracing() and nodes.numel()
            and (int(nodes.min()) < -student.size(0) or int(nodes.max()) >= student.size(0))):
        n = student.size(0)
        raise ValueError(f"gkdfast.losses.{op}: nodes has indices outside [-{n}, {n}) (ids of the {n} rows; "
                         "negative ones count from the end, as in tensor indexing)")
    # take_rows: repeated ids' gradients added in a fixed order on CPU (t[nodes] used atomics there);
    # negative ids wrapped first, which take_rows would leave to t[nodes]
    nodes = torch.where(nodes < 0, nodes + student.size(0), nodes)
    return take_rows(student, nodes), take_rows(teacher, nodes)


@float32_loss
def gsp(student: Tensor, teacher: Tensor, kernel: str = "linear", loss: str = "mse", tau: float = 1.0,
        gamma: float = 1.0, nodes: Optional[Tensor] = None, process_group=None) -> Tensor:
    """Global structure preserving loss over *all* N^2 node pairs, exact, in O(N d) memory.

    ``K^S_ij = k(s_i, s_j)``, ``K^T_ij = k(t_i, t_j)`` over all pairs (``i = j`` included):

    * ``loss="mse"``: ``(1/N^2) sum_ij (K^S_ij - K^T_ij)^2`` (Joshi et al.'s GSP, NOSMOG's RSD).
    * ``loss="kl"``: ``(1/N) sum_i KL(softmax_j(K^T_i. / tau) || softmax_j(K^S_i. / tau))``.

    Paths: ``linear``/``cosine`` with ``mse`` use the Gram identity
    ``|S S^T - T T^T|^2 = |S^T S|^2 - 2 |S^T T|^2 + |T^T T|^2`` accumulated in float64
    (O(N d^2) work, any device).  Everything else, ``poly`` with ``mse`` included (its expansion
    has a quartic term whose Gram form needs O(d^4) memory), runs the tiled kernel: row blocks
    against column blocks with a streaming log-sum-exp, tiles recomputed in backward; O(N^2 d)
    work, O(N) saved state.

    Args:
        student: ``[N, d_s]``.  teacher: ``[N, d_t]``; widths may differ.  Both differentiable.
        kernel: ``linear, cosine, poly, l2, rbf, laplace``.
        loss: ``"mse"`` or ``"kl"``.
        tau: softmax temperature for ``kl`` (> 0).  gamma: bandwidth of ``rbf``/``laplace``.  Both are
            checked (finite, tau > 0) even where the kernel or loss does not use them.
        nodes: optional 1-D index (or bool mask) tensor restricting the loss to those rows, e.g. a
            random sample, as in the public subsampled implementations.  With ``process_group`` it
            indexes this rank's shard (the loss is then over the concatenation of every rank's
            selected rows).  Under ``torch.compile(fullgraph=True)`` pass an index tensor: a mask's
            row count depends on its values, which a full graph cannot branch on.
        process_group: ``None`` (single process) or a ``torch.distributed`` group.  Each rank then
            passes its **row shard** (contiguous rows, rank order = row order, sizes may differ; see
            :func:`gkdfast.distributed.shard_range`) of ``student`` and ``teacher`` and gets the loss
            of the concatenated rows, exactly; every rank must call backward, and the gradient of a
            shard is its rows of the single-process gradient.  Gram paths: one all-reduce of the
            ``d x d`` Grams; tiled paths: the rows are all-gathered (O(N d)), each rank runs its
            rows against all N columns (``gsp_tiled``'s ``row_begin``/``row_end``), and the column
            gradients are summed back to their owners in backward.

    Returns:
        scalar tensor in the student's dtype.

    Joshi et al.'s GSP: ``kernel`` in ``cosine, poly, rbf`` with ``gamma=0.5`` for rbf,
    ``loss="mse"``, ``nodes=<random sample of 2048-4096 training nodes>``.  Their ``poly`` is
    ``cos^2`` and their ``l2`` the unsquared distance ``|u - v|``; neither has an exact
    counterpart here (ours are ``(u.v + 1)^2`` and ``-|u - v|^2``).  See docs/losses.md.

    Example:
        >>> s, t = torch.randn(100, 16, requires_grad=True), torch.randn(100, 32)
        >>> gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.1).backward()
    """
    check_kernel("gsp", kernel, gamma, tau)
    if loss not in _GSP_LOSSES:
        raise ValueError(f"gkdfast.losses.gsp: unknown loss {loss!r}; expected 'mse' or 'kl'")
    student, teacher = _selected_rows("gsp", student, teacher, nodes, process_group)
    if loss == "mse" and kernel in ("linear", "cosine"):
        if kernel == "cosine":
            student, teacher = _unit_rows(student), _unit_rows(teacher)
        # the plain-autograd form: twice differentiable, as every reference loss, and what torch.compile
        # traces for any N (the chunk loop below fixed N in the compiled code: a recompile per graph size)
        if process_group is None and (_backend.reference_requested() or tracing()):
            return _gram_mse_autograd(student, teacher)
        return _GramMSE.apply(student, teacher, process_group)
    if loss == "kl" and student.dtype != torch.float64 and not _backend.reference_requested():
        # The kernels keep each row's log-sum-exp in the input dtype between forward and backward, and
        # the teacher gradient's sum over a row cancels against it: rounded to float32, that cost up to
        # 330x the gradient's size (identical student rows, tau = 0.05; helper 119).  In float64 the
        # rounding is 2^-29 times smaller; the loss keeps the inputs' dtype and the gradients flow back
        # through the casts.  (Storing the max and the log-sum apart would keep float32 tiles at a dense
        # float32 log_softmax's accuracy, not float64's: docs/losses.md, scripts/gsp_kl_precision.py.)
        out_dtype = student.dtype
        return gsp(student.double(), teacher.double(), kernel, loss, tau, gamma, None,
                   process_group).to(out_dtype)
    if process_group is not None:
        return _gsp_sharded(student, teacher, kernel, loss, tau, gamma, process_group)
    n = student.size(0)
    if n == 0:
        return student.sum() * 0 + teacher.sum() * 0
    if _backend.choose("gsp_tiled", student.device, student.dtype) == "reference":
        # (laplace's reference builds the N x N x d differences; the others two N x N matrices)
        per_pair = 2 * student.size(1) if kernel == "laplace" else 2
        _backend.warn_dense_fallback("gsp_tiled", student.device, student.dtype, per_pair * n * n,
                                     f"{n} x {n} kernel matrices" + (" from N x N x d differences"
                                                                     if kernel == "laplace" else ""))
        return ref.gsp(student, teacher, kernel, loss, tau, gamma)
    per_row, _ = torch.ops.gkdfast.gsp_tiled(student.contiguous(), teacher.contiguous(), kernel, loss, float(gamma),
                                             float(tau))
    # (per_row is float32 for half inputs: its sums would overflow half)
    return (ordered_sum(per_row) / (n * n if loss == "mse" else n)).to(student.dtype)


def _gsp_sharded(student: Tensor, teacher: Tensor, kernel: str, loss: str, tau: float, gamma: float,
                 group) -> Tensor:
    """Tiled GSP of this rank's row shard against every rank's rows, summed over the ranks."""
    sh = Shards(student.size(0), group, like=(student, teacher), op="gsp")
    st_all = sh.gather(torch.cat([student, teacher], 1))  # one collective for both models
    s_all, t_all = st_all.split([student.size(1), teacher.size(1)], 1)
    if sh.total == 0:
        return student.sum() * 0 + teacher.sum() * 0
    if _backend.choose("gsp_tiled", student.device, student.dtype) == "reference":
        rows = sh.end - sh.begin
        _backend.warn_dense_fallback("gsp_tiled", student.device, student.dtype, 2 * rows * sh.total * s_all.size(1),
                                     f"{rows} x {sh.total} x d pair tensors")
        per_row = ref.gsp_rows(s_all, t_all, kernel, loss, tau, gamma, sh.begin, sh.end)
    else:
        per_row, _ = torch.ops.gkdfast.gsp_tiled(s_all.contiguous(), t_all.contiguous(), kernel, loss, float(gamma),
                                                 float(tau), sh.begin, sh.end)
    return (sh.sum(ordered_sum(per_row)) / (sh.total * sh.total if loss == "mse" else sh.total)).to(student.dtype)


@float32_loss
def rsd(student: Tensor, teacher: Tensor, nodes: Optional[Tensor] = None, process_group=None) -> Tensor:
    """Representation similarity distillation (NOSMOG): ``(1/N^2) |S S^T - T T^T|_F^2``.

    Equal to ``gsp(student, teacher, kernel="linear", loss="mse", nodes=nodes)``: exact over all
    pairs through the float64 Gram identity, O(N d^2) time; memory beyond the inputs and their
    gradients: the d x d Grams and float64 copies of 4,096 rows at a time (and the gathered rows with
    ``nodes``).  NOSMOG applies it per mini-batch B (pass ``nodes=batch``) with the
    student side ``Dropout(ReLU(W h^S))`` (apply that projection before calling).

    Args:
        student: ``[N, d_s]``.  teacher: ``[N, d_t]``; widths may differ.  Both differentiable.
        nodes: optional ``[B]`` index (or ``[N]`` bool mask) restricting the loss to those rows.
        process_group: each rank passes its row shard and gets the loss over all ranks' rows (as
            :func:`gsp`; the d x d Grams are all-reduced).

    Returns:
        scalar tensor in the student's dtype.

    Example:
        >>> s, t = torch.randn(1000, 64, requires_grad=True), torch.randn(1000, 128)
        >>> gkdfast.losses.rsd(s, t).backward()
    """
    student, teacher = _selected_rows("rsd", student, teacher, nodes, process_group)  # (errors name rsd)
    return gsp(student, teacher, kernel="linear", loss="mse", process_group=process_group)


# ------------------------------------------------------------------------------------------ relation
def _block_cos(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1).clamp_min(ref.COSINE_EPS) * b.norm(dim=-1).clamp_min(ref.COSINE_EPS))


@float32_loss
def relation(student_blocks: Sequence[Tensor], teacher_blocks: Sequence[Tensor], mode: str = "centroid") -> Tensor:
    """Relation-level distillation between K groups of embeddings (node types or modalities).

    Each model gives K blocks; a block is a 2-D tensor of embeddings.  Within one model all blocks
    share the width (``d_s`` for the student, ``d_t`` for the teacher; the two may differ).

    * ``mode="centroid"`` (a coarse form of HIRE's relation-level term, correlation between the
      embeddings of different node types; the HIRE recipe uses the full cross-type similarity
      matrices, :func:`gkdfast.hetero.hire.relation_loss`): blocks ``[N_k, d]`` may have different row counts;
      ``R_kl = cos(mean(B_k), mean(B_l))`` (``K x K``) per model and
      ``loss = (1/K^2) sum_kl (R^S_kl - R^T_kl)^2``.
    * ``mode="gram"`` (multimodal Gram-matrix term): all blocks are ``[N, d]``, row ``i`` of every
      block describing the same node in K modalities; per node ``R_i,kl = cos(B_k[i], B_l[i])`` and
      ``loss = (1/(N K^2)) sum_i sum_kl (R^S_i,kl - R^T_i,kl)^2``.  Memory O(N K d) (the stacked
      unit rows, about 4x the inputs), never N x N.

    These are tiny (K x K) computations, so they are plain differentiable PyTorch on every device.

    Example:
        >>> s = [torch.randn(5, 8), torch.randn(7, 8), torch.randn(3, 8)]
        >>> t = [torch.randn(5, 16), torch.randn(7, 16), torch.randn(3, 16)]
        >>> gkdfast.losses.relation(s, t).shape
        torch.Size([])
    """
    if mode not in ("centroid", "gram"):
        raise ValueError(f"gkdfast.losses.relation: unknown mode {mode!r}; expected 'centroid' or 'gram'")
    student_blocks, teacher_blocks = list(student_blocks), list(teacher_blocks)
    if len(student_blocks) != len(teacher_blocks) or not student_blocks:
        raise ValueError(f"gkdfast.losses.relation: need the same non-zero number of student and teacher blocks, got "
                         f"{len(student_blocks)} and {len(teacher_blocks)}")
    for side, blocks in (("student", student_blocks), ("teacher", teacher_blocks)):
        for k, b in enumerate(blocks):
            if not isinstance(b, Tensor) or b.dim() != 2 or not b.is_floating_point():
                raise TypeError(f"gkdfast.losses.relation: {side} block {k} must be a 2-D floating tensor")
            if b.size(1) != blocks[0].size(1):
                raise ValueError(f"gkdfast.losses.relation: {side} blocks must share one width, block {k} has "
                                 f"{b.size(1)} but block 0 has {blocks[0].size(1)}")
            if b.device != student_blocks[0].device:
                raise ValueError(f"gkdfast.losses.relation: {side} block {k} is on {b.device}, "
                                 f"student block 0 on {student_blocks[0].device}")
    for k, (bs, bt) in enumerate(zip(student_blocks, teacher_blocks)):
        if bs.size(0) != bt.size(0):
            raise ValueError(f"gkdfast.losses.relation: block {k} has {bs.size(0)} student rows but {bt.size(0)} "
                             "teacher rows")
        if bs.size(0) == 0 and mode == "centroid":
            raise ValueError(f"gkdfast.losses.relation: block {k} is empty (its mean is undefined)")
    dtype = student_blocks[0].dtype
    kk = len(student_blocks)
    if mode == "centroid":
        ms = _unit_rows(torch.stack([b.mean(0) for b in student_blocks]))
        mt = _unit_rows(torch.stack([b.to(dtype).mean(0) for b in teacher_blocks]))
        return (ms @ ms.t() - mt @ mt.t()).pow(2).sum() / (kk * kk)
    n = student_blocks[0].size(0)
    if any(b.size(0) != n for b in student_blocks):
        raise ValueError("gkdfast.losses.relation: mode='gram' needs every block to have the same rows (one per node)")
    ds, dt = student_blocks[0].size(1), teacher_blocks[0].size(1)  # explicit widths: N = 0 reshapes too
    us = _unit_rows(torch.stack(student_blocks, 1).reshape(n * kk, ds)).reshape(n, kk, ds)
    ut = _unit_rows(torch.stack([b.to(dtype) for b in teacher_blocks], 1).reshape(n * kk, dt)).reshape(n, kk, dt)
    rs, rt = us @ us.transpose(1, 2), ut @ ut.transpose(1, 2)
    return (wide_sum((rs - rt).pow(2)) / (max(n, 1) * kk * kk)).to(dtype)  # (half: N K^2 terms in float32)
