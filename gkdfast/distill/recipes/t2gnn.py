"""T2-GNN: a feature teacher and a structure teacher distilled into a GNN student on graphs with
missing features and edges (:func:`gkdfast.data.mask_missing`).

Example:
    >>> T2GNN().topk, T2GNN().temperature, T2GNN().lamb
    (20, 5.0, 0.7)
"""
from __future__ import annotations

import hashlib
import time
import weakref
from typing import List, Optional

import torch
from torch import Tensor, nn

from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.graph import cache_mode
from gkdfast.distill.terms import CrossEntropy, LossTerm, StepContext, _group, _sample

__all__ = ["T2GNN", "ImputingMLP", "EmbeddingGCN", "FixedTargetKD", "FixedTargetContrast"]


class _ImputedLinear(nn.Module):
    """The feature teacher's first layer: ``lin(x')`` where ``x'`` is ``x`` with its missing entries
    replaced by learnable values, computed as ``lin(x with missing entries 0)`` (a sparse product for
    bag-of-words features, :func:`gkdfast.nn.sparse_input.sparse_linear`) plus, on the learnable
    rows only, ``(imputed ⊙ missing) @ Wᵀ``."""

    def __init__(self, lin: nn.Linear, missing: Tensor, rows: Optional[Tensor]):
        super().__init__()
        self.lin = lin
        n = missing.size(0)
        rows = torch.arange(n) if rows is None else torch.as_tensor(rows, dtype=torch.long).flatten().unique()
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise ValueError(f"ImputingMLP: rows must be node ids in [0, {n}), got {int(rows.min())}..{int(rows.max())}")
        self.register_buffer("missing", missing.bool(), persistent=False)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("row_missing", missing.bool()[rows], persistent=False)
        self.imputed = nn.Parameter(torch.zeros(rows.numel(), missing.size(1)))
        # (x held weakly, its version and storage when the copy was made; x with missing entries 0): made
        # once per feature tensor and content
        self._zeroed = (None, None, None)

    def _zero_missing(self, x: Tensor) -> Optional[Tensor]:
        """``x`` with the missing entries 0, or ``None`` when they already are (mask_missing zeroes them:
        then x itself serves, no second [N, F] copy).  logical_and, not masked_select: one vectorised
        pass (Facebook's 106 M entries: 0.3 s, not 5 s)."""
        miss = self.missing.to(x.device)
        return None if not bool(torch.logical_and(x, miss).any()) else x.masked_fill(miss, 0.0)

    def _observed(self, x: Tensor) -> Tensor:
        if x.is_inference():  # no version counter to stamp a copy with: made for this call only
            zeroed = self._zero_missing(x)
            return x if zeroed is None else zeroed
        ref, stamp, zeroed = self._zeroed
        if ref is None or ref() is not x or stamp != (x._version, x.data_ptr()):
            with cache_mode():  # built under inference mode, it would break later training
                zeroed = self._zero_missing(x)
            self._zeroed = (weakref.ref(x), (x._version, x.data_ptr()), zeroed)
        return x if zeroed is None else zeroed

    def __getstate__(self):  # (a weak reference does not pickle; the copy is rebuilt on first use)
        state = dict(super().__getstate__())
        state["_zeroed"] = (None, None, None)
        return state

    def forward(self, x: Tensor) -> Tensor:
        from gkdfast.nn.sparse_input import sparse_linear

        if x.shape != self.missing.shape:
            raise ValueError(f"ImputingMLP: x is {list(x.shape)}, the missing mask {list(self.missing.shape)}")
        out = sparse_linear(self.lin, self._observed(x))
        fill = torch.where(self.row_missing, self.imputed, torch.zeros((), dtype=x.dtype, device=x.device))
        return out.index_add(0, self.rows, fill @ self.lin.weight.T)


class ImputingMLP(nn.Module):
    """T2-GNN's feature teacher: an MLP on ``x`` whose missing entries (bool ``[N, F]``) are learnable
    parameters instead of zeros.  Runs on all N rows at once (``uses_graph``: the Distiller then
    passes every row; the graph itself is ignored).

    Args:
        missing: bool ``[N, F]``, True where an entry of ``x`` is missing.
        hidden, out, dropout: the MLP's (2 layers).
        rows: node ids whose missing entries are learnable (default: every row); the others stay 0.
            A row that no loss term reads gets a zero gradient, and Adam with weight decay leaves a
            zero-initialised parameter with zero gradient at exactly 0, so its imputed values stay 0
            whether or not they are parameters: passing the rows the loss reads (T2-GNN's
            cross-entropy: the training nodes) gives the same model without ``N x F`` parameters and
            their optimiser state (Facebook: 106 M entries, 1.3 GB with Adam's moments).

    Shapes: ``x`` ``[N, F]`` -> logits ``[N, out]`` (and hidden ``[N, hidden]``).

    Example:
        >>> miss = torch.rand(6, 5) < 0.3
        >>> m = ImputingMLP(miss, 8, 3, rows=torch.tensor([0, 2]))
        >>> m(torch.rand(6, 5)).shape, tuple(m.imputed.shape)
        (torch.Size([6, 3]), (2, 5))
    """

    uses_graph = True

    def __init__(self, missing: Tensor, hidden: int, out: int, dropout: float = 0.5,
                 rows: Optional[Tensor] = None):
        super().__init__()
        from gkdfast.nn import MLP

        self.mlp = MLP(missing.size(1), hidden, out, dropout=dropout)
        self.mlp.layers[0] = _ImputedLinear(self.mlp.layers[0], missing, rows)

    @property
    def imputed(self) -> Tensor:
        """The learnable values, ``[R, F]`` for the R distinct ``rows`` in ascending order (``layers[0].rows``);
        entries outside ``missing`` are unused."""
        return self.mlp.layers[0].imputed

    def forward(self, x: Tensor, graph=None, return_hidden: bool = False):
        return self.mlp(x, return_hidden=return_hidden)


class EmbeddingGCN(nn.Module):
    """T2-GNN's structure teacher: a GCN over its own graph (``A + A_PPR``) whose input is a learnable
    ``[N, emb_dim]`` node embedding — the same function as the reference's ``Linear(N, F)(eye(N))``
    without the ``N x N`` identity.  ``x`` and the passed graph are ignored."""

    uses_graph = True

    def __init__(self, graph, emb_dim: int, hidden: int, out: int, dropout: float = 0.5):
        super().__init__()
        from gkdfast.nn import GCN

        self.emb = nn.Embedding(graph.num_nodes, emb_dim)
        self.gcn = GCN(emb_dim, hidden, out, dropout=dropout)
        self._graph = [graph]  # not a module attribute: moved per call
        # The graph (A + top-k PPR) enters the checkpoint fingerprint through this plain setting: changed PPR
        # settings between a kill and its resume went through silently (helper 118).
        self.graph_key = _key(graph.rowptr, graph.col, *([] if graph.edge_weight is None else [graph.edge_weight]))

    def forward(self, x: Tensor, graph=None, return_hidden: bool = False):
        g = self._graph[0]
        if g.device != self.emb.weight.device:
            g = self._graph[0] = g.to(self.emb.weight.device)
        return self.gcn(self.emb.weight, g, return_hidden=return_hidden)


def _key(*tensors: Tensor) -> str:
    from gkdfast.distill.teacher_cache import hash_tensor

    h = hashlib.sha256()
    for t in tensors:
        hash_tensor(h, t)
    return h.hexdigest()[:16]


class FixedTargetKD(LossTerm):
    """``T²·KL(softmax(t/T) ‖ softmax(s/T))`` against fixed ``[N, C]`` target logits (a second
    teacher next to the Distiller's own), on every observed row of the batch."""

    name = "kd_fixed"

    def __init__(self, target: Tensor, weight: float = 1.0, temperature: float = 1.0, name: str = "kd_fixed"):
        super().__init__(weight, nodes="all")
        self.target, self.temperature, self.name = target, float(temperature), name
        self.target_key = _key(target)  # enters the checkpoint fingerprint

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import kd

        rows = ctx.observed
        t = self.target.to(ctx.logits.device)[ctx.nodes][rows]
        return kd(ctx.logits[rows], t, temperature=self.temperature, reduction="batchmean")


class FixedTargetContrast(LossTerm):
    """T2-GNN's ``semi_loss(h^S, P h^T) + semi_loss(z^S, z^T)`` as GRACE's NT-Xent
    (:func:`gkdfast.losses.nt_xent`, τ = 0.5) between the student's hidden layer and a learned
    projection P of a fixed teacher's hidden layer, and between the two logit matrices, over a
    sample of at most ``max_samples`` rows per step (all rows when ``None``).  Unlike the reference,
    ``nt_xent`` averages both anchor directions (its ``semi_loss`` anchors the student only) and the
    hidden layers are post-activation (the reference contrasts the first layers' pre-activation outputs)."""

    name = "contrast_fixed"
    needs_hidden = True
    # Under DDP each rank samples up to max_samples of its own rows and NT-Xent runs over the union
    # (every rank's rows against all ranks' rows, as GSP / G-CRD do with theirs).
    all_pairs_loss = "nt_xent"

    def __init__(self, hidden: Tensor, logits: Tensor, weight: float = 1.0, tau: float = 0.5,
                 max_samples: Optional[int] = 2048, name: str = "contrast_fixed"):
        super().__init__(weight, nodes="all")
        self.hidden_t, self.logits_t, self.tau, self.max_samples, self.name = hidden, logits, float(tau), \
            max_samples, name
        self.target_key = _key(hidden, logits)
        self.proj: Optional[nn.Module] = None

    def setup(self, dims) -> None:
        self.proj = nn.Linear(self.hidden_t.size(1), dims.student_hidden)

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import nt_xent

        dev = ctx.logits.device
        rows = ctx.nodes[ctx.observed]
        hs, zs = ctx.hidden[ctx.observed], ctx.logits[ctx.observed]
        pick = _sample(rows.numel(), self.max_samples, dev)
        if pick is not None:
            rows, hs, zs = rows[pick], hs[pick], zs[pick]
        ht, zt = self.hidden_t.to(dev)[rows], self.logits_t.to(dev)[rows]
        # (nt_xent averages both anchor directions; the reference's semi_loss anchors the student only)
        return nt_xent(hs, self.proj(ht), tau=self.tau, **_group(ctx)) + nt_xent(zs, zt, tau=self.tau, **_group(ctx))


class T2GNN(Recipe):
    """T2-GNN (Huo et al., "T2-GNN: Graph Neural Networks for Graphs with Incomplete Features and
    Structure via Teacher-Student Distillation", AAAI 2023; code ``jindi-tju/T2-GNN``).

    1. feature teacher: 2-layer MLP (512 hidden) with learnable imputation of the missing entries
       (:class:`ImputingMLP`, ``data.extras["missing_features"]`` from :func:`gkdfast.data.mask_missing`;
       none missing without it);
    2. structure teacher: 2-layer GCN (128 hidden) on ``A + top-k PPR`` (:func:`gkdfast.distill.ppr.ppr_graph`,
       α = 0.15, k = 20, sparse: blocked power iteration (ε = 1e-4) below 10,000 nodes, forward push
       (ε = 1e-5) above; ``ppr_method`` = ``"push"`` / ``"power"`` forces one) over learnable node
       embeddings (:class:`EmbeddingGCN`);
       both pre-trained with cross-entropy (Adam lr 1e-3, weight decay 5e-4, up to 400 epochs,
       patience 100, best validation epoch kept), then frozen;
    3. the student (the caller's GNN on the incomplete graph, missing entries 0) minimises
       ``CE + λ·[KD_T(s, t_fea) + C_fea] + (1−λ)·[KD_T(s, t_str) + C_str]`` (:class:`FixedTargetKD`,
       :class:`FixedTargetContrast`), Adam lr 0.01, weight decay 5e-4, 400 epochs.

    Defaults are the reference's Cora command (T = 5, top-k 20, λ = 0.7; CiteSeer: ``topk=0,
    lamb=0.9``; ``topk=0`` means A alone).  What we chose: the teachers are frozen during student
    training (the reference keeps them in the graph but never steps them); the contrastive term
    samples ``contrast_samples`` = 2048 nodes per step (the reference uses all N with N x N matrices);
    early stopping with patience 100 (the reference reports its best validation epoch of 400);
    ``structure_emb_dim`` = 128 (the reference: F).  The PPR runs on A itself (no self-loops), each
    node's own score is left out of its top-k, and the structure teacher GCN-normalises ``A + A_PPR``
    (self-loops added there); a reading of the reference suggests it pushes on ``A + I``, keeps the
    source and does not normalise the sum, which we have not verified.

    Shapes: student ``[N, F] -> [N, C]`` with ``return_hidden``; never an ``N x N`` tensor.

    Example:
        >>> from gkdfast.data import csbm, mask_missing
        >>> d = mask_missing(csbm(num_nodes=200, num_classes=3, feature_dim=16, seed=0), 0.3, seed=0)
        >>> r = T2GNN(epochs=2, teacher_epochs=2, topk=5)
        >>> t = r.fit(lambda f: gkdfast.nn.GCN(f, 16, 3), d)
        >>> sorted(t.extras)
        ['feature_teacher_val_acc', 'ppr_edges', 'structure_teacher_val_acc']
    """

    name = "t2gnn"
    needs_teacher = False
    temperature = 5.0
    lamb = 0.7
    topk = 20
    ppr_alpha = 0.15
    ppr_eps = None  # the method's default (push 1e-5, power 1e-4)
    ppr_method = "auto"
    feature_hidden = 512
    structure_hidden = 128
    structure_emb_dim = 128
    teacher_lr = 1e-3
    teacher_epochs = 400
    stage_epochs = ("teacher_epochs",)
    teacher_patience: Optional[int] = 100
    contrast_tau = 0.5
    contrast_samples: Optional[int] = 2048
    epochs = 400
    patience: Optional[int] = 100

    def _check(self) -> None:
        if not 0.0 <= float(self.lamb) <= 1.0:
            raise ValueError(f"t2gnn: lamb must be in [0, 1], got {self.lamb}")
        if not isinstance(self.topk, int) or self.topk < 0:
            raise ValueError(f"t2gnn: topk must be an int >= 0, got {self.topk!r}")

    def terms(self) -> List[LossTerm]:
        return [CrossEntropy(1.0)]  # the teacher terms need the teachers: built in fit

    def _teacher(self, model: nn.Module, data, tag: str, seed: int, **kw):
        from gkdfast.distill.distiller import Distiller, accuracy, call_model

        kw = dict(kw, desc=f"t2gnn: {tag} teacher", seed=seed)
        if kw.get("checkpoint_dir"):
            kw["checkpoint_dir"] = f"{kw['checkpoint_dir']}-{tag}"
        res = Distiller(model, [CrossEntropy(1.0)], None, lr=self.teacher_lr, weight_decay=self.weight_decay,
                        epochs=self.teacher_epochs, patience=self.teacher_patience, **kw).fit(data)
        dev = kw.get("device") or "cpu"
        with torch.no_grad():
            logits, hidden = call_model(model.eval(), data.x.to(dev), data.graph.to(dev), True, True)
        return logits.detach(), hidden.detach(), accuracy(logits.cpu(), data.y.cpu(), data.val_mask.cpu())

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        """Pre-trains both teachers, then the student (see the class docstring)."""
        from gkdfast.distill.ppr import ppr_graph

        self.check_fit_arguments(make_student, data)
        self._check()
        t0 = time.perf_counter()
        n, f = data.x.shape
        missing = data.extras.get("missing_features")
        if missing is None:
            missing = torch.zeros(n, f, dtype=torch.bool)
        if tuple(missing.shape) != (n, f):
            raise ValueError(f"t2gnn: extras['missing_features'] is {list(missing.shape)}, x is {[n, f]}")
        c = data.num_classes
        graph = (ppr_graph(data.graph, self.topk, self.ppr_alpha, self.ppr_eps, method=self.ppr_method)
                 if self.topk else data.graph)
        cuda = [torch.device(distiller_kw.get("device") or "cpu").index or 0] \
            if torch.device(distiller_kw.get("device") or "cpu").type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the student starts as every method's student does
            torch.manual_seed(seed + 7919)
            rows = data.train_mask.nonzero().flatten()  # the rows its cross-entropy reads (ImputingMLP's `rows`)
            fea = self._teacher(ImputingMLP(missing, self.feature_hidden, c, rows=rows), data, "feature", seed,
                                **distiller_kw)
            st = self._teacher(EmbeddingGCN(graph, self.structure_emb_dim, self.structure_hidden, c), data,
                               "structure", seed, **distiller_kw)
        prep = time.perf_counter() - t0
        lam, t = float(self.lamb), self.temperature
        terms: List[LossTerm] = [CrossEntropy(1.0)]
        for w, (logits, hidden, _), tag in ((lam, fea, "fea"), (1 - lam, st, "str")):
            if w > 0:
                terms += [FixedTargetKD(logits, w, t, name=f"kd_{tag}"),
                          FixedTargetContrast(hidden, logits, w, self.contrast_tau, self.contrast_samples,
                                              name=f"contrast_{tag}")]
        student = make_student(f)
        distiller_kw.setdefault("seed", seed)
        result = self.distiller(student, None, terms, **distiller_kw).fit(data, data.x)
        from gkdfast.distill.distiller import uses_graph

        return Trained(result.student, data.x, uses_graph(result.student), result, prep + result.seconds,
                       extras={"feature_teacher_val_acc": fea[2], "structure_teacher_val_acc": st[2],
                               "ppr_edges": graph.num_edges - data.graph.num_edges})
