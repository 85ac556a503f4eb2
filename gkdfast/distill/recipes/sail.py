"""SAIL: self-supervised node embeddings with intra- and inter-graph self-distillation, scored by a
linear probe against a GRACE encoder trained in the same run.

Example:
    >>> SAIL().tau, SAIL().epochs
    (0.4, 200)
"""
from __future__ import annotations

import json
from typing import Optional

import torch
from torch import Tensor, nn

from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.distill.terms import CrossEntropy, LossTerm, StepContext

__all__ = ["SAIL", "GraceTerm", "SailTerm", "ProbeModel", "augment", "edgeless", "faded_parameters",
           "feature_uniformity", "linear_probe", "pick_intra_weight_per_dataset"]

INTRA_KINDS = ("shallow", "features")
INTER_KINDS = ("views", "fade", "both")


def edgeless(num_nodes: int, device=None):
    """A graph with ``num_nodes`` nodes and no edge: a GNN run on it uses each node's own features
    only (its "shallow", MLP-like mode).

    Example:
        >>> edgeless(3).num_edges
        0
    """
    from gkdfast.graph import Graph

    return Graph(torch.empty(2, 0, dtype=torch.long, device=device), num_nodes=num_nodes)


def augment(x: Tensor, graph, feature_drop: float, edge_drop: float):
    """GRACE's view: feature columns zeroed with probability ``feature_drop`` and edges removed with
    probability ``edge_drop`` (global RNG, which the Distiller checkpoints).

    Args:
        x: ``[N, F]``.  graph: :class:`gkdfast.Graph`.

    Returns:
        ``(x_view [N, F], graph_view)``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> xv, gv = augment(torch.ones(3, 4), g, 0.0, 0.0)
        >>> bool(torch.equal(xv, torch.ones(3, 4))), gv.num_edges
        (True, 3)
    """
    from gkdfast.graph import Graph

    keep_cols = (torch.rand(x.size(1), device=x.device) >= feature_drop).to(x.dtype)
    ei = graph.edge_index.to(x.device)
    keep = torch.rand(ei.size(1), device=x.device) >= edge_drop
    return x * keep_cols, Graph(ei[:, keep], num_nodes=graph.num_nodes)


def feature_uniformity(hidden: Tensor, features: Tensor, tau: float = 0.25,
                       samples: Optional[int] = 1024) -> Tensor:
    """SAIL's intra-graph distillation as its paper describes it: over randomly sampled nodes, the
    distribution of each node's cosine similarities to the others in the learned embedding is matched
    to the same distribution in the input features (the features teach, detached).

    ``(1/m) Σ_i KL(softmax_j(cos(x_i, x_j)/τ) ‖ softmax_j(cos(h_i, h_j)/τ))`` over a uniform sample
    of ``m = samples`` nodes (all nodes when ``samples`` is ``None`` or ≥ N), through
    :func:`gkdfast.losses.kd` on the two ``[m, m]`` similarity blocks: memory is bounded by the
    sample, never by N.  (:func:`gkdfast.losses.gsp` with ``kernel="cosine", loss="kl"`` is the
    all-pairs version; its tiled path recomputes the ``F``-wide feature products in backward as
    well, where here the teacher block is one product, computed once per step without gradient.)

    τ = 0.25 by default: on unit vectors ``exp(cos/0.25)`` is, up to a constant, the Gaussian
    potential ``exp(-2‖u - v‖²)`` of the uniformity loss (Wang & Isola, 2020), the "uniformity
    distribution" the paper names.

    Args:
        hidden: ``[N, H]`` embeddings (differentiable).  features: ``[N, F]`` input features, used
            detached (all-zero rows allowed: their teacher row is uniform).  samples: ``m``.

    Returns:
        scalar tensor.

    Example:
        >>> h = torch.randn(50, 8, requires_grad=True)
        >>> feature_uniformity(h, torch.rand(50, 30), samples=20).backward()
    """
    from gkdfast.losses import kd

    n = hidden.size(0)
    if samples is not None and samples < n:
        pick = torch.randperm(n, device=hidden.device)[:samples]
        hidden, features = hidden[pick], features[pick]
    h = nn.functional.normalize(hidden, dim=1)
    with torch.no_grad():  # (only the sampled rows are normalised: no per-step pass over all N)
        unit = nn.functional.normalize(features.to(h.dtype), dim=1)
        teacher = unit @ unit.t()
    return kd((h @ h.t()) / tau, teacher / tau, temperature=1.0)


def faded_parameters(module: nn.Module, keep: float) -> dict:
    """SAIL's model augmentation: every parameter faded towards noise, ``w·θ + (1 − w)·ε`` with
    ``w = keep`` and ``ε ~ N(0, std(θ)²)`` drawn per tensor (the noise has each tensor's own scale,
    so a layer of small weights is not swamped).  Differentiable in θ (gradient ``w``); for
    :func:`torch.func.functional_call`.

    Example:
        >>> lin = torch.nn.Linear(4, 3)
        >>> sorted(faded_parameters(lin, 0.9))
        ['bias', 'weight']
    """
    out = {}
    for name, p in module.named_parameters():
        out[name] = keep * p + (1.0 - keep) * p.detach().std(unbiased=False) * torch.randn_like(p)
    return out


def _projection(width: int, proj_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, proj_dim), nn.ELU(), nn.Linear(proj_dim, width))


class _ViewTerm(LossTerm):
    """A term that re-runs the encoder (held by reference) on other views of the graph."""

    needs_hidden = needs_graph = True

    def __init__(self, weight: float, tau: float, proj_dim: int, drops):
        super().__init__(weight, nodes="all")
        self.tau, self.proj_dim = float(tau), int(proj_dim)
        self.fd1, self.ed1, self.fd2, self.ed2 = (float(v) for v in drops)
        self._encoder: list = []
        self.proj: Optional[nn.Module] = None

    def supports_process_group(self) -> bool:
        return False  # NT-Xent over all nodes of views built on the whole graph: one process only

    def bind(self, encoder: nn.Module) -> "_ViewTerm":
        self._encoder = [encoder]
        return self

    def setup(self, dims) -> None:
        self.proj = _projection(dims.student_hidden, self.proj_dim)

    def embed(self, x: Tensor, graph) -> Tensor:
        return self._encoder[0](x, graph, return_hidden=True)[1]

    def check(self, ctx: StepContext) -> None:
        if not ctx.full_batch:
            raise ValueError(f"{self.name}: the views need the whole graph (batch_size=None)")

    def two_views(self, ctx: StepContext) -> Tensor:
        """GRACE's loss: ``nt_xent`` between two augmented views (drops 1 and drops 2)."""
        from gkdfast.losses import nt_xent

        x1, g1 = augment(ctx.inputs, ctx.full_graph, self.fd1, self.ed1)
        x2, g2 = augment(ctx.inputs, ctx.full_graph, self.fd2, self.ed2)
        return nt_xent(self.proj(self.embed(x1, g1)), self.proj(self.embed(x2, g2)), tau=self.tau)


class GraceTerm(_ViewTerm):
    """GRACE (Zhu et al., 2020): ``nt_xent(g(z₁), g(z₂))`` between two augmented views."""

    name = "grace"

    def forward(self, ctx: StepContext) -> Tensor:
        self.check(ctx)
        return self.two_views(ctx)


class SailTerm(_ViewTerm):
    """SAIL's two self-distillation losses (the teacher side detached):

    * inter-graph (``inter``):

      - ``"views"``: the original view's embedding ``z`` teaches an augmented view's (GRACE's edge and
        feature drops), ``nt_xent(g(z_aug), g(z)ᵀ)``;
      - ``"fade"`` (the paper's description): a model-augmented view. The encoder itself, with every
        parameter faded towards noise (:func:`faded_parameters`, ``w = fade_keep``, fresh noise each
        step), is the student, and the unfaded encoder's ``z`` on the same graph teaches it:
        ``nt_xent(g(z_faded), g(z)ᵀ)``;
      - ``"both"``: the sum of the two.

    * intra-graph (``intra``, weighted by ``intra_weight``):

      - ``"shallow"``: the propagated embedding ``z`` teaches the encoder's own shallow output, the
        same encoder on the edgeless graph (:func:`edgeless`), ``nt_xent(g(z_shallow), g(z)ᵀ)``, so
        the features alone come to carry what propagation adds;
      - ``"features"`` (the paper's description): the node features teach the similarity
        distribution of ``z`` over sampled nodes (:func:`feature_uniformity`).

    * optionally (``grace_weight`` > 0) GRACE's own two-view loss beside them, the two losses above
      then acting as regularisers of a contrastive objective.
    """

    name = "sail"

    def __init__(self, weight: float, tau: float, proj_dim: int, drops, intra_weight: float = 1.0,
                 grace_weight: float = 0.0, intra: str = "shallow", inter: str = "views",
                 fade_keep: float = 0.9, intra_tau: float = 0.25, intra_samples: Optional[int] = 1024):
        super().__init__(weight, tau, proj_dim, drops)
        if intra not in INTRA_KINDS:
            raise ValueError(f"sail: intra must be one of {', '.join(INTRA_KINDS)}, got {intra!r}")
        if inter not in INTER_KINDS:
            raise ValueError(f"sail: inter must be one of {', '.join(INTER_KINDS)}, got {inter!r}")
        if isinstance(fade_keep, bool) or not 0.0 < float(fade_keep) <= 1.0:
            raise ValueError(f"sail: fade_keep must be in (0, 1], got {fade_keep!r}")
        if isinstance(intra_tau, bool) or not float(intra_tau) > 0:
            raise ValueError(f"sail: intra_tau must be > 0, got {intra_tau!r}")
        if intra_samples is not None and (isinstance(intra_samples, bool) or not isinstance(intra_samples, int)
                                          or intra_samples < 2):
            raise ValueError(f"sail: intra_samples must be None or an int >= 2, got {intra_samples!r}")
        self.intra_weight, self.grace_weight = float(intra_weight), float(grace_weight)
        self.intra, self.inter = intra, inter
        self.fade_keep, self.intra_tau, self.intra_samples = float(fade_keep), float(intra_tau), intra_samples

    def faded_embed(self, x: Tensor, graph) -> Tensor:
        from torch.func import functional_call

        enc = self._encoder[0]
        return functional_call(enc, faded_parameters(enc, self.fade_keep), (x, graph),
                               {"return_hidden": True})[1]

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import nt_xent

        self.check(ctx)
        z = ctx.hidden
        target = self.proj(z).detach()
        parts = []  # (inter is never empty: the first part is always there)
        if self.inter in ("views", "both"):
            xa, ga = augment(ctx.inputs, ctx.full_graph, self.fd2, self.ed2)
            parts.append(nt_xent(self.proj(self.embed(xa, ga)), target, tau=self.tau))
        if self.inter in ("fade", "both"):
            parts.append(nt_xent(self.proj(self.faded_embed(ctx.inputs, ctx.full_graph)), target, tau=self.tau))
        loss = sum(parts[1:], parts[0])
        if self.intra_weight and self.intra == "shallow":
            shallow = self.embed(ctx.inputs, edgeless(ctx.full_graph.num_nodes, ctx.inputs.device))
            loss = loss + self.intra_weight * nt_xent(self.proj(shallow), target, tau=self.tau)
        elif self.intra_weight:
            loss = loss + self.intra_weight * feature_uniformity(z, ctx.inputs, self.intra_tau, self.intra_samples)
        if self.grace_weight:
            loss = loss + self.grace_weight * self.two_views(ctx)
        return loss


class ProbeModel(nn.Module):
    """``probe(encoder's hidden embedding)``: the frozen encoder + a trained linear classifier."""

    uses_graph = True

    def __init__(self, encoder: nn.Module, probe: nn.Module):
        super().__init__()
        self.encoder, self.probe = encoder, probe

    def forward(self, x: Tensor, graph=None, return_hidden: bool = False):
        with torch.no_grad():
            h = self.encoder.eval()(x, graph, return_hidden=True)[1]
        out = self.probe(h)
        return (out, h) if return_hidden else out


def linear_probe(embeddings: Tensor, data, seed: int = 0, epochs: int = 300, **distiller_kw):
    """A linear classifier trained with cross-entropy on frozen ``[N, H]`` embeddings (Adam lr 0.01,
    weight decay 0, early stopping on validation accuracy).  Returns the :class:`FitResult`.

    Example:
        >>> linear_probe(h, data).best_val_acc                    # doctest: +SKIP
    """
    from gkdfast.distill.distiller import Distiller
    from gkdfast.nn import MLP

    torch.manual_seed(seed)
    probe = MLP(embeddings.size(1), 1, data.num_classes, num_layers=1, dropout=0.0)
    kw = {k: v for k, v in distiller_kw.items() if k in ("device", "progress")}
    return Distiller(probe, [CrossEntropy(1.0)], None, lr=0.01, weight_decay=0.0, epochs=epochs, patience=50,
                     seed=seed, desc="linear probe", **kw).fit(data, embeddings.detach())


class SAIL(Recipe):
    """SAIL (Yu et al., "Self-Augmented Graph Contrastive Learning" with intra- and inter-graph
    knowledge distillation, AAAI 2022): the ``--student`` GNN trained without labels by
    :class:`SailTerm`, evaluated by a linear probe on its frozen hidden embedding; a GRACE encoder
    (:class:`GraceTerm`) with the same architecture and initial weights is trained and probed in the
    same run (``trained.baselines["grace"]``, encoder + probe, which ``gkdfast distill`` reports as a
    ``grace`` row; its accuracies also in ``trained.extras["grace_probe_acc"]`` / ``["sail_probe_val_acc"]``,
    fractions).  The returned model is encoder + probe, so a results row's ``test_acc`` is SAIL's
    linear-probe accuracy.

    No public code and no formulas: what we chose.  Both losses are GRACE's NT-Xent (τ = 0.4) after a
    shared 2-layer ELU projection head, the teacher side detached; "shallow layer" = the same
    encoder run on the edgeless graph (an MLP with the GNN's weights); views as GRACE's Cora setting
    (feature drop 0.3 / 0.4, edge drop 0.2 / 0.4); GRACE's Cora training (Adam lr 5e-4, weight
    decay 1e-5, 200 epochs, last epoch kept — no labels are used to pick an epoch); ``intra_weight`` 1;
    ``grace_weight`` 0 (the distillation losses alone; > 0 adds GRACE's two-view loss, reading the
    abstract's "self-distillation regularisers" as terms added to a contrastive objective).

    The paper's own description of the two modules (a third-party summary of it; no formulas) reads
    differently, and is here as options (:class:`SailTerm`): ``inter="fade"`` — the inter-graph
    teacher is a copy of the model and the student the model with its parameters faded towards
    noise, ``w·θ + (1 − w)·ε`` (``fade_keep`` w = 0.9, our choice, as is ε's per-tensor scale and
    fresh noise at every step); ``intra="features"`` — the learnt embedding's similarity
    distribution over randomly sampled nodes is made consistent with the node features'
    (``intra_samples`` 1024, ``intra_tau`` 0.25: our choices).  Measured against the defaults in
    ``docs/results-recipes-more.md``.

    ``intra_weight`` may also be a sequence of candidates (``--set sail.intra_weight=0,1``): one SAIL
    encoder per candidate, each trained exactly as a run with that weight alone would train it (same
    initial weights, same random stream), and the one whose linear probe scores
    best on the *validation* nodes is kept (the first on a tie).  The pick and every candidate's
    validation accuracy are in ``trained.extras["sail_intra_weight"]`` /
    ``["sail_probe_val_acc_by_intra_weight"]``; the row's training time counts every candidate.  Every
    candidate's test accuracy is in ``["sail_probe_test_acc_by_intra_weight"]``, for a pick of one weight
    per dataset by the validation accuracy averaged over seeds (:func:`pick_intra_weight_per_dataset`).

    Shapes: ``make_student(F)`` must return its hidden layer ``[N, H]`` (``return_hidden=True``).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=200, num_classes=3, feature_dim=16, seed=0)
        >>> t = SAIL(epochs=2).fit(lambda f: gkdfast.nn.GCN(f, 16, 3), d)
        >>> sorted(t.extras)
        ['grace_probe_acc', 'grace_probe_val_acc', 'sail_probe_val_acc']
    """

    name = "sail"
    needs_teacher = False
    # every stage trains full-batch to its last epoch (no labels to pick one by): batch_size and ties
    # are refused, patience taken only as None (what every stage runs with)
    _not_used = ("batch_size", "ties")
    tau = 0.4
    proj_dim = 128
    feature_drop_1, edge_drop_1 = 0.3, 0.2
    feature_drop_2, edge_drop_2 = 0.4, 0.4
    intra_weight = 1.0
    grace_weight = 0.0
    intra = "shallow"
    inter = "views"
    fade_keep = 0.9
    intra_tau = 0.25
    intra_samples: Optional[int] = 1024
    lr = 5e-4
    weight_decay = 1e-5
    epochs = 200
    patience: Optional[int] = None
    probe_epochs = 300
    stage_epochs = ("probe_epochs",)  # a quick run (--epochs N) caps the linear probes too
    baseline = True

    def _check_overrides(self, overrides):
        if self.patience is not None:
            raise ValueError(f"sail: patience={self.patience!r}: SAIL trains every stage to its last epoch "
                             "(patience None)")
        super()._check_overrides(overrides)

    def _intra_candidates(self) -> tuple:
        """``intra_weight`` as a tuple of candidate weights (one element unless a sequence was given)."""
        w = self.intra_weight
        cands = tuple(w) if isinstance(w, (tuple, list)) else (w,)
        try:
            cands = tuple(float(v) for v in cands)
        except (TypeError, ValueError):
            raise ValueError(f"sail: intra_weight must be a number or a sequence of numbers, got {w!r}") from None
        if not cands or any(not v >= 0 for v in cands) or len(set(cands)) != len(cands):
            raise ValueError(f"sail: intra_weight must be >= 0 (candidates: non-empty, distinct), got {w!r}")
        return cands

    def _checked_drops(self):
        """The four drop rates, after checking every setting (a bad one fails before any training)."""
        drops = (self.feature_drop_1, self.edge_drop_1, self.feature_drop_2, self.edge_drop_2)
        if any(not 0.0 <= float(v) < 1.0 for v in drops):
            raise ValueError(f"sail: feature/edge drop rates must be in [0, 1), got {drops}")
        self._intra_candidates()
        if not float(self.grace_weight) >= 0:
            raise ValueError(f"sail: grace_weight must be >= 0, got {self.grace_weight}")
        return drops

    def terms(self):
        """One :class:`SailTerm` per ``intra_weight`` candidate."""
        drops = self._checked_drops()
        return [SailTerm(1.0, self.tau, self.proj_dim, drops, w, self.grace_weight, self.intra, self.inter,
                         self.fade_keep, self.intra_tau, self.intra_samples) for w in self._intra_candidates()]

    def _train(self, encoder, term, data, seed, tag, **distiller_kw):
        from gkdfast.distill.distiller import call_model

        term.bind(encoder)
        kw = dict(distiller_kw, seed=seed, desc=f"sail: {tag}")
        kw.pop("batch_size", None)
        if kw.get("checkpoint_dir") and tag != "sail":
            kw["checkpoint_dir"] = f"{kw['checkpoint_dir']}-{tag}"
        # (no accuracy to watch in an embedding stage: patience would stop on an argmax of embeddings)
        res = self.distiller(encoder, None, [term], batch_size=None, **dict(kw, patience=None)).fit(
            data, data.x, select_best=False)
        dev = kw.get("device") or "cpu"
        with torch.no_grad():
            h = call_model(encoder.eval(), data.x.to(dev), data.graph.to(dev), True, True)[1]
        probe = linear_probe(h, data, seed, self.probe_epochs, **distiller_kw)
        return res, probe, h

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        """Trains SAIL (and the GRACE baseline), probes both, returns SAIL's encoder + probe."""
        from gkdfast.distill.checkpoint_file import rng_states as _rng_states, set_rng_states as _set_rng_states
        from gkdfast.distill.distiller import accuracy, uses_graph

        self.check_fit_arguments(make_student, data)
        drops = self._checked_drops()
        terms = self.terms()
        state = torch.get_rng_state()
        encoder = make_student(data.x.size(1))
        if not uses_graph(encoder):
            raise ValueError("recipe 'sail' needs a GNN student (its losses compare graph views)")
        after = torch.get_rng_state()

        def same_start():
            """Another encoder with ``encoder``'s initial weights; the global RNG is left as it was."""
            torch.set_rng_state(state)
            enc = make_student(data.x.size(1))
            torch.set_rng_state(after)
            return enc

        extras = {}
        baselines = {}
        if self.baseline:
            grace_enc = same_start()
            res_g, probe_g, h_g = self._train(grace_enc, GraceTerm(1.0, self.tau, self.proj_dim, drops), data,
                                              seed, "grace", **distiller_kw)
            logits = probe_g.student(h_g)
            extras["grace_probe_acc"] = accuracy(logits.cpu(), data.y.cpu(), data.test_mask.cpu())
            extras["grace_probe_val_acc"] = probe_g.best_val_acc
            baselines["grace"] = Trained(ProbeModel(grace_enc, probe_g.student).eval(), data.x, True, res_g,
                                         res_g.seconds + probe_g.seconds)
        # Every candidate trains as it would alone: same initial weights, and the same RNG stream for its
        # projection head, augmentations and dropout (the one the first candidate starts from), so a
        # candidate of a list reproduces the single-weight run exactly.
        # (the training device's CUDA stream too: rng_states() alone skips CUDA before it is initialised)
        device = distiller_kw.get("device") or next((p.device for p in encoder.parameters()), torch.device("cpu"))
        start_rng = _rng_states(device)
        best, seconds, by_weight, test_by_weight = None, 0.0, {}, {}
        for i, term in enumerate(terms):
            enc = encoder if i == 0 else same_start()
            _set_rng_states(start_rng)
            tag = "sail" if len(terms) == 1 else f"sail-intra{term.intra_weight:g}"
            res, probe, h = self._train(enc, term, data, seed, tag, **distiller_kw)
            seconds += res.seconds + probe.seconds
            by_weight[term.intra_weight] = probe.best_val_acc
            if len(terms) > 1:  # reported beside the pick (a per-dataset pick needs every candidate's)
                with torch.no_grad():
                    test_by_weight[term.intra_weight] = accuracy(probe.student(h).cpu(), data.y.cpu(),
                                                                 data.test_mask.cpu())
            if best is None or probe.best_val_acc > best[2].best_val_acc:  # validation nodes only
                best = (enc, res, probe, term.intra_weight, _rng_states(device))
        enc, res, probe, weight, end_rng = best
        _set_rng_states(end_rng)  # the RNG as the picked candidate alone would have left it
        extras["sail_probe_val_acc"] = probe.best_val_acc
        if len(terms) > 1:
            extras["sail_intra_weight"] = weight
            extras["sail_probe_val_acc_by_intra_weight"] = by_weight
            extras["sail_probe_test_acc_by_intra_weight"] = test_by_weight  # never read for the pick
        model = ProbeModel(enc, probe.student).eval()
        # seconds: SAIL's own training and probes (every candidate); the baseline's are in its own row
        return Trained(model, data.x, True, res, seconds, extras=extras, baselines=baselines)


def pick_intra_weight_per_dataset(runs, **match) -> dict:
    """One ``intra_weight`` for a whole dataset: the candidate whose linear probe has the highest
    validation accuracy averaged over the seeds (the first candidate on a tie), from the run records
    of ``gkdfast distill --methods sail --set sail.intra_weight=W1,W2,... --runs-log PATH``.

    The per-seed pick of :class:`SAIL` follows validation differences of a few nodes; averaging over
    seeds is the usual way to tune a hyperparameter per dataset.  Test accuracies are only reported
    (measured on the nodes the recipe was given: in the inductive setting, not the held-out ones the
    row reports).

    Args:
        runs: run records (dicts, e.g. :func:`gkdfast.distill.runs_log.read_runs`); those of method
            ``sail`` with candidate accuracies in their extras are used (one per seed: a seed recorded
            twice, by a resumed run, keeps its first record, as :func:`~gkdfast.distill.runs_log.merge_runs`).
        match: record fields the runs must have, e.g. ``dataset="cora"``, ``model="GCN(128)"``.  A log
            holding SAIL runs of several datasets, students, settings, protocols or hyperparameters
            (the records' ``params``, e.g. ``params={"sail.intra_weight": [0, 1], "sail.inter": "fade"}``)
            needs them: mixing those is refused.

    Returns:
        ``{"weight": w, "val_mean": {w: float}, "test_mean": {w: float}, "seeds": [int],
        "test_acc": [float]}`` — ``test_acc``: the picked weight's test accuracy per seed, in
        ``seeds``' order (fractions).

    Example:
        >>> runs = [{"method": "sail", "seed": s, "dataset": "g", "extras": {
        ...     "sail_probe_val_acc_by_intra_weight": {"0.0": 0.70 + s / 100, "1.0": 0.69},
        ...     "sail_probe_test_acc_by_intra_weight": {"0.0": 0.66, "1.0": 0.67}}} for s in (0, 1)]
        >>> pick = pick_intra_weight_per_dataset(runs, dataset="g")
        >>> pick["weight"], pick["test_acc"]
        (0.0, [0.66, 0.66])
    """
    kinds = ("dataset", "model", "protocol", "setting", "missing_rate", "inductive_fraction", "params")
    chosen = [r for r in runs if r.get("method") == "sail"
              and "sail_probe_test_acc_by_intra_weight" in (r.get("extras") or {})
              and all(r.get(k) == v for k, v in match.items())]
    if not chosen:
        raise ValueError("pick_intra_weight_per_dataset: no sail run with candidate accuracies"
                         f"{' matching ' + str(match) if match else ''}; run --methods sail "
                         "--set sail.intra_weight=W1,W2 with --runs-log")
    groups = {tuple(json.dumps(r.get(k), sort_keys=True) for k in kinds) for r in chosen}  # (params: a dict)
    if len(groups) > 1:
        differ = [k for i, k in enumerate(kinds) if len({g[i] for g in groups}) > 1]
        raise ValueError(f"pick_intra_weight_per_dataset: the sail runs differ in {', '.join(differ)}; pick one "
                         f"with {', '.join(f'{k}=...' for k in differ)}")
    by_seed = {}
    for run in chosen:
        by_seed.setdefault(int(run["seed"]), run["extras"])
    seeds = sorted(by_seed)

    def table(key):  # {weight: [acc per seed]}; JSON turned the float keys into strings
        cols = {}
        for s in seeds:
            for w, acc in by_seed[s][key].items():
                cols.setdefault(float(w), []).append(float(acc))
        return cols

    val, test = table("sail_probe_val_acc_by_intra_weight"), table("sail_probe_test_acc_by_intra_weight")
    if any(len(v) != len(seeds) for v in (*val.values(), *test.values())) or set(val) != set(test):
        raise ValueError("pick_intra_weight_per_dataset: the seeds' runs trained different candidates")
    val_mean = {w: sum(v) / len(v) for w, v in val.items()}
    weight = max(val_mean, key=val_mean.get)  # (max keeps the first of equal values: the first candidate)
    return {"weight": weight, "val_mean": val_mean, "test_mean": {w: sum(v) / len(v) for w, v in test.items()},
            "seeds": seeds, "test_acc": test[weight]}
