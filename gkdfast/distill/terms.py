"""Weighted loss terms the :class:`~gkdfast.distill.Distiller` sums each step.

A term is a small ``nn.Module``: ``forward(ctx) -> scalar`` reads what it needs from the
:class:`StepContext` (student logits/hidden for the batch rows, the teacher's rows, labels, the
graph over the batch) and returns the *unweighted* loss; the Distiller multiplies by ``weight``.
Terms with parameters (projection heads) are trained with the student and checkpointed with it.
Each term imports its gkdfast loss lazily, so a recipe only needs the losses it uses.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast._rows import take_rows
from gkdfast.nn.philox_dropout import Dropout

__all__ = [
    "StepContext", "Dims", "LossTerm", "CrossEntropy", "LogitKD", "LSP", "GSP", "RSD", "CRD",
    "NContrast", "Adversarial", "HiddenMSE", "Lambda", "TERMS",
]


@dataclass
class Dims:
    """Widths the terms need to build projection heads: student hidden, teacher hidden, classes."""

    student_hidden: Optional[int]
    teacher_hidden: Optional[int]
    num_classes: int


@dataclass
class StepContext:
    """Everything a term may read for one optimisation step (B = rows in the batch).

    Attributes:
        nodes: ``[B]`` global node ids of the batch rows.
        logits: ``[B, C]`` student logits.  hidden: ``[B, H]`` student last hidden embedding or ``None``.
        teacher_logits / teacher_hidden: ``[B, C]`` / ``[B, Ht]`` teacher rows (``None`` without teacher).
        y: ``[B]`` labels.  labelled: ``[B]`` bool, rows whose label may be used (training nodes).
        observed: ``[B]`` bool, rows the teacher may be matched on (all nodes transductively).
        inputs: the student's input for this step (``[B, F]`` for graph-free students, ``[N, F]`` else).
        forward: ``forward(inputs) -> (logits, hidden)`` for the batch rows; reruns the student on
            perturbed inputs (adversarial augmentation).
        full_graph / full_batch: the whole graph, and whether the batch is every node.
        process_group: under DDP, the group whose ranks hold the other rows of the global batch (each
            rank's batch rows are its shard; all-pairs terms pass it to their loss); ``None`` otherwise.
        all_hidden: a GNN student's hidden layer for every node (``hidden`` is its batch rows);
            ``None`` for a graph-free student.  all_teacher_hidden: the teacher's, for every node.
        student: the student module itself, for a term that runs part of it (GSDN applies a graph-free
            MLP's first layer to nodes once, then mixes its outputs); ``None`` when not given.  Outside
            DDP only: under a process group go through ``forward``.
        neighbourhood: the batch is a neighbourhood batch (``Distiller(batch_edges="neighbours")``):
            the batch nodes, then their in-neighbours; ``graph`` holds the batch nodes' in-edges only,
            and ``observed`` / ``labelled`` mark batch nodes only.  ``teacher_logits`` is read for the
            batch nodes alone and is NaN in the neighbour rows: select rows by indexing with the masks
            (``t[mask.nonzero()]``), not by multiplying or ``torch.where`` (NaN · 0 is NaN, and
            ``where``'s backward leaks it into the gradient).
    """

    nodes: Tensor
    logits: Tensor
    hidden: Optional[Tensor]
    teacher_logits: Optional[Tensor]
    teacher_hidden: Optional[Tensor]
    y: Tensor
    labelled: Tensor
    observed: Tensor
    inputs: Tensor
    forward: Callable
    full_graph: object = None
    full_batch: bool = True
    process_group: object = None
    student: object = None
    all_hidden: Optional[Tensor] = None
    all_teacher_hidden: Optional[Tensor] = None
    neighbourhood: bool = False
    _graph: object = field(default=None, repr=False)

    @property
    def graph(self):
        """The graph over the batch rows: the full graph for a full batch, else the induced subgraph."""
        if self._graph is None and self.full_graph is not None:
            self._graph = self.full_graph if self.full_batch else induced_subgraph(self.full_graph, self.nodes)
        return self._graph


def induced_subgraph(graph, nodes: Tensor):
    """The subgraph on ``nodes`` (edges with both ends inside), relabelled to ``0..len(nodes)-1``.

    Example:
        >>> sub = induced_subgraph(graph, torch.tensor([0, 5, 7]))   # doctest: +SKIP
    """
    from gkdfast.graph import Graph

    n = graph.num_nodes
    local = torch.full((n,), -1, dtype=torch.long, device=nodes.device)
    local[nodes] = torch.arange(nodes.numel(), device=nodes.device)
    ei = graph.edge_index.to(nodes.device).long()
    src, dst = local[ei[0]], local[ei[1]]
    keep = (src >= 0) & (dst >= 0)
    return Graph(torch.stack([src[keep], dst[keep]]), num_nodes=nodes.numel())


def _group(ctx: StepContext) -> dict:
    """``{"process_group": g}`` under DDP, else ``{}`` (single-process calls stay as they were)."""
    return {} if ctx.process_group is None else {"process_group": ctx.process_group}


def _rows_mean(total: Tensor, count: int, ctx: StepContext) -> Tensor:
    """``total / count`` for a term that averages over some rows of the batch.  Under DDP: the mean
    over the *global* batch's rows (the counts all-reduced) times W, because DDP averages the ranks'
    gradients; the result is the single-process gradient however unevenly the rows fall on the ranks
    (a per-rank mean would weigh one rank's few labelled rows as much as another's many).  Every rank
    must call it, with or without rows of its own."""
    if ctx.process_group is None:
        return total / max(count, 1)
    import torch.distributed as dist

    from gkdfast.distributed import global_count

    n = global_count(count, ctx.process_group)
    return total * (dist.get_world_size(ctx.process_group) / max(n, 1))


def _fewest_rows(ctx: StepContext) -> int:
    """The fewest observed rows any rank holds in this step (this batch's count outside DDP).  An
    all-pairs term skips a step when it is below 2 (its heads' BatchNorm cannot train on one row), and
    under DDP every rank must skip alike: its loss is a collective, which a rank returning early would
    leave the others waiting in."""
    from gkdfast.distributed import global_min

    return global_min(int(ctx.observed.sum()), ctx.process_group)


def _rows(mask: Tensor, *ts):
    """The rows of ``ts`` where ``mask`` holds; when it holds everywhere (GLNN's soft labels on every
    row of a batch), the tensors themselves: no copy, and no scatter of their gradients back."""
    idx = mask.nonzero().flatten()
    if idx.numel() == mask.numel():
        return list(ts)
    return [take_rows(t, idx) if t is not None else None for t in ts]


class LossTerm(nn.Module):
    """Base class.  ``weight`` scales the term; ``nodes`` says which rows it uses: ``"train"`` (the
    labelled rows) or ``"all"`` (every observed row).  Subclasses set ``needs_teacher`` /
    ``needs_hidden`` / ``needs_graph`` so the Distiller can fail early with a clear message."""

    name = "term"
    needs_teacher = False
    needs_hidden = False
    needs_graph = False
    #: True when the term reads only the rows its mask selects (``labelled`` / ``observed``), so the
    #: Distiller may run it on neighbourhood batches, whose neighbour rows both masks exclude.  It must
    #: *index* those rows: there the neighbour rows of ``teacher_logits`` are NaN (StepContext).
    masked_rows_only = False

    def __init__(self, weight: float = 1.0, nodes: str = "all"):
        super().__init__()
        if nodes not in ("train", "all"):
            raise ValueError(f"{type(self).__name__}: nodes must be 'train' or 'all', got {nodes!r}")
        if not float(weight) >= 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.nodes = nodes

    def setup(self, dims: Dims) -> None:
        """Builds parameters that depend on widths (called once, before the optimiser is made)."""

    #: the gkdfast.losses function of an all-pairs term (pairs across the whole batch, so across
    #: ranks under DDP); ``None`` for row-wise / batch-local terms, which DDP runs as they are.
    all_pairs_loss: Optional[str] = None

    def supports_process_group(self) -> bool:
        """Whether the term can run under DDP: batch-local terms always; an all-pairs term when its
        loss (``gkdfast.losses.<all_pairs_loss>``) accepts ``process_group=``."""
        if self.all_pairs_loss is None:
            return True
        import inspect

        import gkdfast.losses as losses

        return "process_group" in inspect.signature(getattr(losses, self.all_pairs_loss)).parameters

    def row_mask(self, ctx: StepContext) -> Tensor:
        return ctx.labelled if self.nodes == "train" else ctx.observed

    def step_stats(self) -> dict:
        """Diagnostics of the step just computed (``{name: float}``; none by default).  The Distiller
        averages each over the epoch's steps into its ``history`` as ``"<term name>.<name>"``, which is
        checkpointed: a resumed run's history is the whole run's, as an uninterrupted one's.

        Example:
            >>> CrossEntropy().step_stats()
            {}
        """
        return {}

    def extra_repr(self) -> str:
        return f"weight={self.weight}, nodes={self.nodes!r}"


def _positive(term, key: str, value) -> float:
    """``value`` as a float, or a ValueError naming the term when it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{type(term).__name__}: {key} must be a finite number > 0, got {value!r}")
    return float(value)


def _count(term, key: str, value, low: int = 1, allow_none: bool = False):
    """``value`` as an int >= ``low`` (or ``None`` where allowed), else a ValueError naming the term."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{type(term).__name__}: {key} must be {'None or ' if allow_none else ''}an int >= {low}, "
                         f"got {value!r}")
    return int(value)


class CrossEntropy(LossTerm):
    """Hard-label cross-entropy on the labelled rows of the batch (0 when the batch has none); under
    DDP the mean over the global batch's labelled rows."""

    name = "ce"
    masked_rows_only = True

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0):
        super().__init__(weight, nodes="train")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
                or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropy: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, ctx: StepContext, logits: Optional[Tensor] = None) -> Tensor:
        logits = ctx.logits if logits is None else logits
        rows, y = _rows(ctx.labelled, logits, ctx.y)
        total = (F.cross_entropy(rows, y, label_smoothing=self.label_smoothing, reduction="sum") if y.numel()
                 else logits.sum() * 0.0)
        return _rows_mean(total, y.numel(), ctx)


class LogitKD(LossTerm):
    """``gkdfast.losses.kd``: T² · KL(softmax(t/T) ‖ softmax(s/T)), batchmean over the rows used (under
    DDP over the global batch's rows)."""

    name = "kd"
    needs_teacher = True
    masked_rows_only = True

    def __init__(self, weight: float = 1.0, temperature: float = 1.0, nodes: str = "all"):
        super().__init__(weight, nodes)
        self.temperature = _positive(self, "temperature", temperature)

    def forward(self, ctx: StepContext, logits: Optional[Tensor] = None) -> Tensor:
        from gkdfast.losses import kd

        logits = ctx.logits if logits is None else logits
        s, t = _rows(self.row_mask(ctx), logits, ctx.teacher_logits)
        total = kd(s, t, temperature=self.temperature, reduction="sum") if s.size(0) else logits.sum() * 0.0
        return _rows_mean(total, s.size(0), ctx)


class LSP(LossTerm):
    """Local structure preservation (Yang et al., CVPR 2020) over the edges of the batch graph.

    On a neighbourhood batch the loss is the mean over the batch nodes (those with an in-edge) of their
    full-graph per-node term; under DDP the mean over the global batch's nodes (:func:`_rows_mean`)."""

    name = "lsp"
    needs_teacher = needs_hidden = needs_graph = True
    masked_rows_only = True  # (on neighbourhood batches: the batch nodes' in-edges, their own terms)

    def __init__(self, weight: float = 1.0, kernel: str = "laplace", gamma: float = 0.01, tau: float = 1.0):
        super().__init__(weight, nodes="all")
        from gkdfast.losses.structure import check_kernel

        check_kernel("lsp", kernel, gamma, tau)  # here, not at the first step
        self.kernel, self.gamma, self.tau = kernel, float(gamma), float(tau)

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import lsp

        graph, s, t = ctx.graph, ctx.hidden, ctx.teacher_hidden
        if ctx.neighbourhood:  # every centre's whole neighbourhood is in this rank's batch
            total = lsp(graph, s, t.to(s.dtype), kernel=self.kernel, gamma=self.gamma, tau=self.tau, reduction="sum")
            return _rows_mean(total, int((graph.rowptr[1:] > graph.rowptr[:-1]).sum()), ctx)
        if ctx.process_group is not None and ctx.all_teacher_hidden is not None:
            graph, s, t = self._global_batch(ctx)
        return lsp(graph, s, t.to(s.dtype), kernel=self.kernel, gamma=self.gamma, tau=self.tau, reduction="mean")

    @staticmethod
    def _global_batch(ctx: StepContext):
        """Under DDP: the global batch's edges, not only those inside this rank's shard, as one process
        sees that batch.  Every rank computes the same loss: a GNN student from its full-graph forward,
        a graph-free one from the batch rows gathered from every rank (their backward sums the ranks'
        identical gradients into each owner's rows).  Either way DDP's average of the ranks' gradients
        is the loss's gradient, so the term needs no W factor."""
        from gkdfast.distributed import all_gather_rows

        from gkdfast.distill.neighbourhood import first_positions

        ids = all_gather_rows(ctx.nodes.contiguous(), ctx.process_group)
        nodes, _, first = first_positions(ids)  # padding repeats a node: count it once
        if ctx.all_hidden is not None:
            s = ctx.all_hidden[nodes]
        else:
            s = all_gather_rows(ctx.hidden, ctx.process_group)[first]
        t = ctx.all_teacher_hidden.to(s.device)[nodes]
        return induced_subgraph(ctx.full_graph, nodes), s, t


def _sample(n: int, max_samples: Optional[int], device) -> Optional[Tensor]:
    """Uniform subset of ``max_samples`` rows (``None`` = all rows); uses the global RNG, which the
    Distiller checkpoints, so resumed runs draw the same subsets."""
    if max_samples is None or n <= max_samples:
        return None
    return torch.randperm(n, device=device)[:max_samples]


class _Projected(LossTerm):
    """A term comparing (optionally projected) student and teacher hidden embeddings."""

    needs_teacher = needs_hidden = True
    masked_rows_only = True

    def __init__(self, weight, proj_dim, max_samples, project_teacher=True):
        super().__init__(weight, nodes="all")
        for key, v, low in (("proj_dim", proj_dim, 1), ("max_samples", max_samples, 2)):
            # (a sample of 0 rows switched the term off; of 1, the heads' BatchNorm cannot train)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ValueError(f"{type(self).__name__}: {key} must be None or an int >= {low}, got {v!r}")
        self.proj_dim, self.max_samples, self.project_teacher = proj_dim, max_samples, project_teacher
        self.student_head: Optional[nn.Module] = None
        self.teacher_head: Optional[nn.Module] = None

    def setup(self, dims: Dims) -> None:
        if self.proj_dim is None:
            return
        from gkdfast.nn import ProjectionHead

        self.student_head = ProjectionHead(dims.student_hidden, self.proj_dim, self.proj_dim)
        if self.project_teacher:
            self.teacher_head = ProjectionHead(dims.teacher_hidden, self.proj_dim, self.proj_dim)

    def embeddings(self, ctx: StepContext):
        s, t = _rows(ctx.observed, ctx.hidden, ctx.teacher_hidden.to(ctx.hidden.dtype))
        pick = _sample(s.size(0), self.max_samples, s.device)
        if pick is not None:
            s, t = s[pick], t[pick]
        if self.student_head is not None:
            s = self.student_head(s)
        if self.teacher_head is not None:
            t = self.teacher_head(t)
        return s, t


class GSP(_Projected):
    """Global structure preservation (Joshi et al., TNNLS 2022): pairwise-kernel match on a node
    sample of at most ``max_samples`` rows, after Linear→BN→ReLU→Linear projection heads."""

    name = "gsp"
    all_pairs_loss = "gsp"

    def __init__(self, weight: float = 100.0, kernel: str = "cosine", loss: str = "mse", tau: float = 1.0,
                 gamma: float = 1.0, proj_dim: Optional[int] = 128, max_samples: Optional[int] = 4096):
        super().__init__(weight, proj_dim, max_samples)
        from gkdfast.losses.structure import check_kernel

        check_kernel("gsp", kernel, gamma, tau)
        if loss not in ("mse", "kl"):
            raise ValueError(f"GSP: loss must be 'mse' or 'kl', got {loss!r}")
        self.kernel, self.loss, self.tau, self.gamma = kernel, loss, float(tau), float(gamma)

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import gsp

        if _fewest_rows(ctx) < 2:  # a 1-row last batch: BatchNorm in the heads cannot train on it
            return ctx.hidden.sum() * 0.0
        s, t = self.embeddings(ctx)
        return gsp(s, t, kernel=self.kernel, loss=self.loss, tau=self.tau, gamma=self.gamma, **_group(ctx))


class CRD(_Projected):
    """G-CRD (Joshi et al.): InfoNCE between L2-normalised projections, teacher rows as candidates."""

    name = "crd"
    all_pairs_loss = "crd"

    def __init__(self, weight: float = 0.05, tau: float = 0.075, proj_dim: Optional[int] = 256,
                 max_samples: Optional[int] = 16384, num_negatives: Optional[int] = None):
        super().__init__(weight, proj_dim, max_samples)
        self.tau, self.num_negatives = _positive(self, "tau", tau), _count(self, "num_negatives", num_negatives,
                                                                            allow_none=True)

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import crd

        if _fewest_rows(ctx) < 2:  # see GSP
            return ctx.hidden.sum() * 0.0
        s, t = self.embeddings(ctx)
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if self.num_negatives else None
        return crd(s, t, tau=self.tau, num_negatives=self.num_negatives, seed=seed, **_group(ctx))


class RSD(LossTerm):
    """NOSMOG's representation similarity distillation: mean over pairs of (H^T H^Tᵀ − Ĥ^S Ĥ^Sᵀ)², with
    Ĥ^S = Dropout(ReLU(W h^S)) (a learned map of the student's hidden layer to the teacher's width)."""

    name = "rsd"
    all_pairs_loss = "rsd"  # under DDP the pairs of the global batch (d x d Grams all-reduced)
    needs_teacher = needs_hidden = True
    masked_rows_only = True

    def __init__(self, weight: float = 0.1, dropout: float = 0.0, max_samples: Optional[int] = None):
        super().__init__(weight, nodes="all")
        self.dropout, self.max_samples = dropout, max_samples
        self.head: Optional[nn.Module] = None

    def setup(self, dims: Dims) -> None:
        self.head = nn.Sequential(nn.Linear(dims.student_hidden, dims.teacher_hidden), nn.ReLU(),
                                  Dropout(self.dropout))

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import rsd

        s, t = _rows(ctx.observed, ctx.hidden, ctx.teacher_hidden.to(ctx.hidden.dtype))
        pick = _sample(s.size(0), self.max_samples, s.device)
        if pick is not None:
            s, t = s[pick], t[pick]
        return rsd(self.head(s), t, **_group(ctx))


class NContrast(LossTerm):
    """Graph-MLP's neighbour contrastive loss on the student's hidden embedding (no teacher)."""

    name = "ncontrast"
    all_pairs_loss = "ncontrast"
    needs_hidden = needs_graph = True

    def __init__(self, weight: float = 1.0, tau: float = 1.0, hops: int = 1, num_negatives: Optional[int] = None,
                 proj_dim: Optional[int] = None):
        super().__init__(weight, nodes="all")
        self.tau, self.hops = _positive(self, "tau", tau), _count(self, "hops", hops)
        self.num_negatives = _count(self, "num_negatives", num_negatives, allow_none=True)
        self.proj_dim = _count(self, "proj_dim", proj_dim, allow_none=True)
        self.head: Optional[nn.Module] = None

    def setup(self, dims: Dims) -> None:
        # Optional linear map of the hidden layer before the cosine (Graph-MLP's encoder ends with a
        # Linear; a post-ReLU hidden layer is non-negative, so its cosines cannot go below 0).
        if self.proj_dim:
            self.head = nn.Linear(dims.student_hidden, int(self.proj_dim))

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import ncontrast

        z = self.head(ctx.hidden) if self.head is not None else ctx.hidden
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if self.num_negatives else None
        if ctx.full_batch and ctx.process_group is None:
            return ncontrast(ctx.graph, z, tau=self.tau, hops=self.hops, num_negatives=self.num_negatives, seed=seed)
        # A mini-batch, or under DDP this rank's shard of the global batch: the whole graph's Â^hops
        # restricted to the (global) batch, as Graph-MLP's batches index it; not the powers of the
        # batch's induced subgraph, which lose the paths through nodes outside the batch.
        return ncontrast(ctx.full_graph, z, tau=self.tau, hops=self.hops, num_negatives=self.num_negatives,
                         seed=seed, nodes=ctx.nodes, **_group(ctx))


class HiddenMSE(LossTerm):
    """MSE between the student's *output* and the teacher's hidden embedding (regression onto teacher
    embeddings, as Cold Brew's first stage does).  Needs output width == teacher hidden width."""

    name = "hidden_mse"
    needs_teacher = needs_hidden = True
    masked_rows_only = True

    def __init__(self, weight: float = 1.0, nodes: str = "train"):
        super().__init__(weight, nodes)

    def forward(self, ctx: StepContext) -> Tensor:
        s, t = _rows(self.row_mask(ctx), ctx.logits, ctx.teacher_hidden.to(ctx.logits.dtype))
        # the mean over rows and columns; under DDP over the global batch's rows
        total = F.mse_loss(s, t, reduction="sum") / max(s.size(1), 1) if s.numel() else ctx.logits.sum() * 0.0
        return _rows_mean(total, s.size(0), ctx)


class Adversarial(LossTerm):
    """Adversarial feature augmentation (NOSMOG): the logit terms ``base`` evaluated at ``x + δ*``,
    where δ* comes from PGD: δ₀ ~ U[−ε, ε], then ``steps`` times δ ← clip(δ + α·sign(∇δ ℓ), −ε, ε)
    with α = ε/4.  The inner maximisation does not touch the model's gradients."""

    name = "adv"

    def __init__(self, base: List[LossTerm], weight: float = 0.1, eps: float = 0.05, steps: int = 5,
                 step_size: Optional[float] = None):
        super().__init__(weight, nodes="all")
        self.base = nn.ModuleList(base)
        self.eps, self.steps = float(eps), int(steps)
        self.step_size = float(step_size) if step_size is not None else self.eps / 4
        self.needs_teacher = any(b.needs_teacher for b in base)

    def _loss(self, ctx: StepContext, logits: Tensor) -> Tensor:
        return sum(b.weight * b(ctx, logits=logits) for b in self.base)

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.distill.adversarial import pgd_delta

        delta = pgd_delta(lambda x: self._loss(ctx, ctx.forward(x)[0]), ctx.inputs, self.eps, self.steps,
                          self.step_size)
        return self._loss(ctx, ctx.forward(ctx.inputs + delta)[0])


class Lambda(LossTerm):
    """Wraps any ``fn(ctx) -> scalar`` as a term (for user losses)."""

    def __init__(self, fn: Callable[[StepContext], Tensor], weight: float = 1.0, name: str = "custom",
                 needs_teacher: bool = False, needs_hidden: bool = False, needs_graph: bool = False):
        super().__init__(weight, nodes="all")
        self.fn, self.name = fn, name
        self.needs_teacher, self.needs_hidden, self.needs_graph = needs_teacher, needs_hidden, needs_graph

    def forward(self, ctx: StepContext) -> Tensor:
        return self.fn(ctx)


TERMS = {c.name: c for c in (CrossEntropy, LogitKD, LSP, GSP, RSD, CRD, NContrast, HiddenMSE)}
