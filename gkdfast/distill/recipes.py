"""Published graph-distillation methods as short compositions of :mod:`gkdfast.distill.terms`.

Each recipe holds its paper's hyperparameters as defaults (override any by keyword:
``GLNN(lamb=0.3, lr=0.005)``), says what student input it needs (:meth:`Recipe.inputs`) and which
weighted terms it trains with (:meth:`Recipe.terms`); :meth:`Recipe.fit` runs a
:class:`~gkdfast.distill.Distiller`.  Where we depart from the reference code, the docstring says so.

Conventions shared by all recipes: teacher-matching terms use every observed node (the transductive
setting of GLNN/NOSMOG: the teacher's outputs exist for all nodes), labels only the training nodes,
``gkdfast.losses.kd`` uses ``batchmean``.

Example:
    >>> from gkdfast.distill import recipes
    >>> r = recipes.get("glnn")
    >>> trained = r.fit(lambda f: gkdfast.nn.MLP(f, 128, data.num_classes), data, teacher)  # doctest: +SKIP
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from gkdfast.distill.distiller import Distiller, FitResult, uses_graph
from gkdfast.distill.terms import (CRD, GSP, LSP, RSD, Adversarial, CrossEntropy, HiddenMSE, LogitKD, LossTerm,
                                   NContrast)

__all__ = ["Recipe", "Trained", "NoKD", "KD", "GLNN", "LSPRecipe", "GSPRecipe", "GCRD", "NOSMOG", "GraphMLP",
           "ColdBrew", "RECIPES", "get", "names"]


@dataclass
class Trained:
    """A recipe's result: ``model(inputs[, graph])`` gives the logits used for evaluation/timing.

    Attributes:
        model: the student ready for inference (for Cold Brew, MLP + retrieval + classifier).
        inputs: the ``[N, F']`` features ``model`` takes.  uses_graph: whether ``model`` needs the graph.
        fit: the (last) :class:`FitResult`.  seconds: total wall time incl. preprocessing.
    """

    model: nn.Module
    inputs: Tensor
    uses_graph: bool
    fit: FitResult
    seconds: float


class Recipe:
    """Base class: hyperparameters are class attributes, overridable per instance by keyword.

    Training hyperparameters every recipe has: ``lr``, ``weight_decay``, ``epochs``, ``patience``,
    ``batch_size`` (``None`` = full batch).
    """

    name = "recipe"
    needs_teacher = True
    lr = 0.01
    weight_decay = 5e-4
    epochs = 200
    patience: Optional[int] = 50
    batch_size: Optional[int] = None

    def __init__(self, **overrides):
        for k, v in overrides.items():
            if k.startswith("_") or not hasattr(type(self), k) or callable(getattr(type(self), k)):
                raise ValueError(f"{self.name}: unknown hyperparameter {k!r}; known: {', '.join(self.params())}")
            setattr(self, k, v)

    def params(self) -> Dict[str, object]:
        """All hyperparameters and their current values."""
        out = {}
        for cls in reversed(type(self).__mro__):
            for k, v in vars(cls).items():
                if not k.startswith("_") and k not in ("name", "needs_teacher") and not callable(v) \
                        and not isinstance(v, (property, staticmethod, classmethod)):
                    out[k] = getattr(self, k)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    # -- to override ----------------------------------------------------------------------------
    def inputs(self, data, seed: int = 0) -> Tensor:
        """The student's input features (default: ``data.x``)."""
        return data.x

    def inputs_on(self, full, split, seen: Tensor) -> Tensor:
        """The student's inputs for every node of ``full`` after training on ``split.observed``
        (inductive evaluation, :class:`gkdfast.data.splits.InductiveSplit`); ``seen`` is what
        :meth:`inputs` gave for the observed nodes.  Default: the raw features, which need no graph.
        A recipe whose :meth:`inputs` read the graph must say how a new node gets them."""
        if type(self).inputs is not Recipe.inputs:
            raise NotImplementedError(f"recipe {self.name!r} has graph-derived inputs and no inductive version")
        return full.x

    def terms(self) -> List[LossTerm]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- running --------------------------------------------------------------------------------
    def distiller(self, student, teacher, **kw) -> Distiller:
        opts = dict(lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs, patience=self.patience,
                    batch_size=self.batch_size)
        opts.update(kw)
        return Distiller(student, self.terms(), teacher if self.needs_teacher else None, **opts)

    def fit(self, make_student: Callable[[int], nn.Module], data, teacher=None, seed: int = 0,
            **distiller_kw) -> Trained:
        """Builds the inputs, the student (``make_student(input_width)``) and trains it.

        Args:
            make_student: ``in_features -> nn.Module`` (the runner builds the same architecture for
                every recipe).  data: :class:`gkdfast.data.GraphData`.
            teacher: trained teacher module or :class:`TeacherOutputs` (``None`` for teacher-free recipes).
            seed: seeds preprocessing (random walks) and the batch order.
            distiller_kw: forwarded to :class:`Distiller` (device, checkpoint_dir, cache_dir, progress, ...).
        """
        if self.needs_teacher and teacher is None:
            raise ValueError(f"recipe {self.name!r} needs a teacher")
        t0 = time.perf_counter()
        x = self.inputs(data, seed)
        prep = time.perf_counter() - t0
        student = make_student(x.size(1))
        distiller_kw.setdefault("seed", seed)
        result = self.distiller(student, teacher, **distiller_kw).fit(data, x)
        # result.seconds sums training time over resumes, so a resumed run still reports its full cost.
        return Trained(result.student, x, uses_graph(result.student), result, prep + result.seconds)


class NoKD(Recipe):
    """The student trained on labels alone (cross-entropy on the training nodes): the baseline."""

    name = "none"
    needs_teacher = False

    def terms(self):
        return [CrossEntropy(1.0)]


class KD(Recipe):
    """Vanilla knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network", 2015): ``(1−α)·CE + α·T²·KL(p_T^τ ‖ p_S^τ)``.

    Defaults α = 0.9, T = 4 (the values Joshi et al. use for graphs).  KL on every node (the reference
    uses ``reduction='mean'`` over N·C on training nodes; ours is ``batchmean`` on all nodes).
    """

    name = "kd"
    alpha = 0.9
    temperature = 4.0

    def terms(self):
        return [CrossEntropy(1 - self.alpha), LogitKD(self.alpha, self.temperature)]


class GLNN(Recipe):
    """GLNN (Zhang, Liu, Sun & Shah, "Graph-less Neural Networks: Teaching Old MLPs New Tricks via
    Distillation", ICLR 2022): ``λ·CE(labelled) + (1−λ)·KL(p_T ‖ p_S)`` on all nodes, T = 1.

    Defaults follow the reference code (``--lamb 0``: pure soft-label matching; Adam lr 0.01,
    200 epochs, patience 50).  The reference runs the two terms as two passes with an optimiser step
    each; we sum them in one step.
    """

    name = "glnn"
    lamb = 0.0
    temperature = 1.0
    weight_decay = 5e-3

    def terms(self):
        return [CrossEntropy(self.lamb), LogitKD(1 - self.lamb, self.temperature)]


class LSPRecipe(Recipe):
    """LSP (Yang, Qiu, Song, Tao & Wang, "Distilling Knowledge from Graph Convolutional Networks",
    CVPR 2020): ``CE + β·L_LSP``, where L_LSP compares, per node, the softmax over its in-neighbours of
    a kernel between hidden embeddings, teacher vs student (KL(teacher ‖ student)).

    Defaults from the official code: Laplace kernel ``exp(−0.01·‖h_i − h_j‖₁)`` (γ = 0.01), τ = 1,
    β = 1, Adam lr 0.005.  The official code applies LSP only for the first 30 epochs; we keep it on
    throughout.  Set ``kd_weight > 0`` to add logit KD (Joshi's "KD+LSP").
    """

    name = "lsp"
    beta = 1.0
    kernel = "laplace"
    gamma = 0.01
    tau = 1.0
    kd_weight = 0.0
    lr = 0.005

    def terms(self):
        out = [CrossEntropy(1.0), LSP(self.beta, self.kernel, self.gamma, self.tau)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out


class GSPRecipe(Recipe):
    """GSP (Joshi, Liu, Teo, Sun & Wang, "On Representation Knowledge Distillation for Graph Neural
    Networks", TNNLS 2022): ``CE + β·MSE(K^S, K^T)`` over all pairs of a node sample, after
    ProjectionHeads (Linear→BN→ReLU→Linear to ``proj_dim``) on both sides.

    Defaults from the reference scripts: cosine kernel, β = 100, ``max_samples`` = 4096,
    ``proj_dim`` = 128.  Our loss is exact over the whole sample without the S×S(×d) tensors; the
    sample is drawn from all nodes (the reference draws from training nodes).
    """

    name = "gsp"
    beta = 100.0
    kernel = "cosine"
    proj_dim = 128
    max_samples = 4096
    kd_weight = 0.0

    def terms(self):
        out = [CrossEntropy(1.0), GSP(self.beta, self.kernel, "mse", proj_dim=self.proj_dim,
                                      max_samples=self.max_samples)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out


class GCRD(Recipe):
    """G-CRD (Joshi et al., TNNLS 2022): ``CE + β·InfoNCE(ẑ^S, ẑ^T)``, L2-normalised projections,
    the student row as anchor and the teacher rows as candidates (positive = same node).

    Defaults from the reference scripts: τ = 0.075, β = 0.1 (representation-only runs),
    ``proj_dim`` = 256, ``max_samples`` = 16384 in-batch negatives (all of them, exact, tiled).
    """

    name = "gcrd"
    beta = 0.1
    tau = 0.075
    proj_dim = 256
    max_samples = 16384
    kd_weight = 0.0

    def terms(self):
        out = [CrossEntropy(1.0), CRD(self.beta, self.tau, self.proj_dim, self.max_samples)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out


class NOSMOG(Recipe):
    """NOSMOG (Tian, Zhang, Guo, Chawla, "Learning MLPs on Graphs: A Unified View of Effectiveness,
    Robustness, and Efficiency", ICLR 2023): the student sees ``[x ; p]`` with random-walk position
    features p (:func:`gkdfast.distill.positional.position_features`), and minimises
    ``KL(p_T ‖ p_S) + 0.1·KL at x+δ* (PGD, 5 steps of ε/4) + μ·RSD`` over node mini-batches of 512.

    Defaults (Cora settings of the reference): μ = 0.1, ε = 0.05, position width 64, walks of
    length 30, 5 per node, window 5; soft-label pass weight 1, hard-label pass weight 0
    (``lamb = 1``; we keep a ``ce_weight`` knob).  Position features come from a PPMI/SVD
    factorisation instead of word2vec (see :mod:`~gkdfast.distill.positional`).
    """

    name = "nosmog"
    rsd_weight = 0.1
    adv_weight = 0.1
    adv_eps = 0.05
    adv_steps = 5
    ce_weight = 0.0
    temperature = 1.0
    pos_dim = 64
    walk_length = 30
    walks_per_node = 5
    window = 5
    batch_size = 512
    weight_decay = 5e-3

    def inputs(self, data, seed=0):
        from gkdfast.distill.positional import position_features

        p = position_features(data.graph, self.pos_dim, self.walk_length, self.walks_per_node, self.window,
                              seed=seed)
        return torch.cat([data.x, p.to(data.x.device, data.x.dtype)], dim=1)

    def inputs_on(self, full, split, seen: Tensor) -> Tensor:
        """Observed nodes keep the position features they trained with; a held-out node gets the mean
        of its observed neighbours' (zeros without one), as the reference does for inductive nodes."""
        from gkdfast import spmm

        f = full.x.size(1)
        dev = full.x.device
        p_seen = seen[:, f:].to(dev, full.x.dtype)
        obs_idx = split.obs_idx.to(dev)
        p = full.x.new_zeros(full.num_nodes, p_seen.size(1))
        p[obs_idx] = p_seen
        known = full.x.new_zeros(full.num_nodes, 1)
        known[obs_idx] = 1.0
        graph = full.graph.to(dev)
        mean = spmm(graph, p, "sum") / spmm(graph, known, "sum").clamp(min=1.0)  # unseen rows of p are 0
        ind = split.ind_idx.to(dev)
        p[ind] = mean[ind]
        return torch.cat([full.x, p], dim=1)

    def terms(self):
        base = [CrossEntropy(self.ce_weight), LogitKD(1.0, self.temperature)]
        out = [CrossEntropy(self.ce_weight), LogitKD(1.0, self.temperature),
               RSD(self.rsd_weight)]
        if self.adv_weight and self.adv_eps:
            out.append(Adversarial([b for b in base if b.weight > 0], self.adv_weight, self.adv_eps, self.adv_steps))
        return out


class GraphMLP(Recipe):
    """Graph-MLP (Hu et al., "Graph-MLP: Node Classification without Message Passing in Graph",
    arXiv 2106.04051): ``CE + α·L_NC`` with the neighbour contrastive loss on the student's hidden
    embedding, positives weighted by Â^r (r = ``hops``).  No teacher.

    Defaults (Cora): α = 10, τ_GraphMLP = 2 (it multiplies the cosine, so our ``tau`` = 1/2), r = 2,
    Adam lr 0.001, weight decay 5e-3, 400 epochs.  The reference uses random batches of 2000 nodes
    with a dense Â^r; we use every node at once, exactly, with Â^r kept sparse.  The reference encoder
    ends with a Linear (width 256) before the loss; ``proj_dim`` = 256 adds that Linear on the
    student's (post-ReLU, non-negative) hidden layer — without it, Cora accuracy drops by ~15 points.
    """

    name = "graphmlp"
    needs_teacher = False
    alpha = 10.0
    tau = 0.5
    hops = 2
    num_negatives: Optional[int] = None
    proj_dim: Optional[int] = 256
    lr = 0.001
    weight_decay = 5e-3
    epochs = 400

    def terms(self):
        return [CrossEntropy(1.0), NContrast(self.alpha, self.tau, self.hops, self.num_negatives, self.proj_dim)]


class _ConcatScale(nn.Module):
    """``classifier([x ; α·e])`` for inputs ``[x ; e]`` (e = retrieved embedding, α learnable)."""

    uses_graph = False

    def __init__(self, classifier: nn.Module, num_features: int, alpha_init: float):
        super().__init__()
        self.classifier, self.num_features = classifier, num_features
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    def forward(self, x, graph=None, return_hidden=False):
        z = torch.cat([x[:, :self.num_features], self.alpha * x[:, self.num_features:]], dim=1)
        return self.classifier(z, return_hidden=return_hidden) if return_hidden else self.classifier(z)


class ColdBrewStudent(nn.Module):
    """Inference-time Cold Brew model: ``g(x)`` → top-k retrieval over the teacher embeddings →
    ``classifier([x ; α·ẽ])``.  Graph-free: an isolated or new node needs only its features."""

    uses_graph = False

    def __init__(self, g: nn.Module, keys: Tensor, head: _ConcatScale, k: int):
        super().__init__()
        self.g, self.head, self.k = g, head, int(k)
        self.register_buffer("keys", keys)

    def retrieve(self, x: Tensor) -> Tensor:
        from gkdfast import topk_similar

        q = self.g(x)
        values, idx = topk_similar(q, self.keys, self.k)
        w = torch.softmax(values, dim=-1)
        return (w.unsqueeze(-1) * self.keys[idx]).sum(1)

    def forward(self, x, graph=None, return_hidden=False):
        return self.head(torch.cat([x, self.retrieve(x)], dim=1), return_hidden=return_hidden)


class ColdBrew(Recipe):
    """Cold Brew (Zheng et al., "Cold Brew: Distilling Graph Node Representations with Incomplete or
    Missing Neighborhoods", ICLR 2022), for isolated / tail nodes:

    1. an MLP ``g`` regresses the teacher's structural embedding (we use the teacher's last hidden
       layer; the paper trains a GCN with extra learnable per-node embeddings) with MSE;
    2. each node retrieves its top-k most similar teacher embeddings (``gkdfast.topk_similar`` on
       ``g(x)``, no N×N matrix), ẽ = softmax-weighted sum of them;
    3. the student classifies ``[x ; α·ẽ]`` (α learnable, initialised at 1e-4) with cross-entropy.

    Defaults: k = 3, α₀ = 1e-4.  Stage 1 regresses on ``regress_nodes="all"`` (no labels are involved;
    the reference uses training nodes only, see its issue #12).  ``kd_weight`` > 0 adds logit KD.
    """

    name = "coldbrew"
    topk = 3
    alpha_init = 1e-4
    regress_nodes = "all"
    regress_epochs = 200
    regress_lr = 0.01
    hidden = 128
    kd_weight = 0.0

    def terms(self):
        out = [CrossEntropy(1.0)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        from gkdfast.distill.teacher_cache import TeacherOutputs, teacher_outputs
        from gkdfast.nn import MLP

        if teacher is None:
            raise ValueError("recipe 'coldbrew' needs a teacher")
        dev = distiller_kw.get("device") or "cpu"
        if not isinstance(teacher, TeacherOutputs):
            teacher = teacher_outputs(teacher, data.x.to(dev), data.graph.to(dev),
                                      cache_dir=distiller_kw.get("cache_dir"))
        if teacher.hidden is None:
            raise ValueError("recipe 'coldbrew' needs the teacher's hidden embedding")
        keys = teacher.hidden.to(dev).clone()
        f = data.x.size(1)
        # Stage 1: g(x) -> teacher embedding.  Early stopping on a regression has no accuracy to watch,
        # so it runs a fixed number of epochs.
        g = MLP(f, self.hidden, keys.size(1), num_layers=2, dropout=0.0)
        kw1 = {k: v for k, v in distiller_kw.items() if k not in ("checkpoint_dir", "desc")}
        if distiller_kw.get("checkpoint_dir"):
            kw1["checkpoint_dir"] = distiller_kw["checkpoint_dir"] + "-stage1"
        kw1.setdefault("seed", seed)
        stage1 = Distiller(g, [HiddenMSE(1.0, nodes=self.regress_nodes)], teacher, lr=self.regress_lr,
                           weight_decay=0.0, epochs=self.regress_epochs, patience=None, desc="coldbrew: g", **kw1
                           ).fit(data, data.x, select_best=False)
        g.eval()
        for p in g.parameters():
            p.requires_grad_(False)
        t1 = time.perf_counter()
        # Stage 2: retrieve once (g is frozen), then train the classifier on [x ; e].
        student_probe = ColdBrewStudent(g, keys, None, self.topk)
        with torch.no_grad():
            e = torch.cat([student_probe.retrieve(data.x[i:i + 8192].to(dev))
                           for i in range(0, data.x.size(0), 8192)])
        x2 = torch.cat([data.x.to(dev), e], dim=1)
        t_retrieve = time.perf_counter() - t1
        classifier = make_student(x2.size(1))
        if uses_graph(classifier):
            raise ValueError("recipe 'coldbrew' needs a graph-free student (e.g. mlp)")
        head = _ConcatScale(classifier, f, self.alpha_init)
        distiller_kw.setdefault("seed", seed)
        result = self.distiller(head, teacher, **distiller_kw).fit(data, x2)
        model = ColdBrewStudent(g, keys, head, self.topk).eval()
        return Trained(model, data.x, False, result, stage1.seconds + t_retrieve + result.seconds)


RECIPES = {r.name: r for r in (NoKD, KD, GLNN, LSPRecipe, GSPRecipe, GCRD, NOSMOG, GraphMLP, ColdBrew)}


def names() -> List[str]:
    """Recipe names, ``"none"`` (no KD) first.

    Example:
        >>> names()[:3]
        ['none', 'kd', 'glnn']
    """
    return list(RECIPES)


def get(name: str, **overrides) -> Recipe:
    """The recipe called ``name`` (see :func:`names`) with hyperparameter overrides.

    Example:
        >>> get("kd", temperature=2.0).temperature
        2.0
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    aliases = {"gcrd": "gcrd", "crd": "gcrd", "graphmlp": "graphmlp", "gmlp": "graphmlp", "nokd": "none",
               "hinton": "kd", "vanilla": "kd"}
    key = aliases.get(key, key)
    if key not in RECIPES:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[key](**overrides)


def _register_extensions() -> None:
    """Recipes that live in their own modules (they subclass the ones above, so load them last)."""
    from gkdfast.distill.hire import HIRE
    from gkdfast.distill.reliant import RELIANT

    for r in (RELIANT, HIRE):
        RECIPES[r.name] = r


_register_extensions()
