"""Cold Brew: an MLP regresses the teacher's embeddings, retrieves its nearest ones, and classifies.

Example:
    >>> ColdBrew().topk
    3
"""
from __future__ import annotations

import time
from typing import Optional

import torch
from torch import Tensor, nn

from gkdfast.distill.distiller import Distiller, uses_graph
from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.distill.terms import CrossEntropy, HiddenMSE, LogitKD

__all__ = ["ColdBrew", "ColdBrewStudent"]


def _attend(feats: Tensor, f: int, d: int, k: int, a0: Optional[Tensor]) -> Tensor:
    """ẽ ``[B, D]`` from retrieval features ``[x ; q ; s ; e_1 .. e_k]``: ``Σ_j softmax(s)_j e_j``
    (``softmax(α₀·s)`` when ``a0`` is given)."""
    s, cand = feats[:, f + d:f + d + k], feats[:, f + d + k:].reshape(-1, k, d)
    w = torch.softmax(s if a0 is None else a0 * s, dim=-1)
    return (w.unsqueeze(-1) * cand).sum(1)


def _classifier_width(f: int, d: int, alpha_query: bool) -> int:
    """Width of ``[x ; α·ẽ (; α₀·q)]``."""
    return f + d * (2 if alpha_query else 1)


class _RetrievalHead(nn.Module):
    """``classifier([x ; α·ẽ (; α₀·q)])`` from the retrieval features ``[x ; q ; s ; e_1 .. e_k]``
    (:meth:`ColdBrewStudent.features`): ``ẽ = Σ_j softmax(s)_j e_j``, or ``softmax(α₀·s)`` when the
    query is scaled by a learnable ``α₀`` (the public code's ``alphas[0]``), which then also feeds the
    classifier.  α and α₀ start at ``alpha_init``."""

    uses_graph = False

    def __init__(self, classifier: nn.Module, num_features: int, dim: int, k: int, alpha_init: float,
                 alpha_query: bool = False):
        super().__init__()
        self.classifier, self.num_features, self.dim, self.k = classifier, num_features, dim, k
        # kept as a plain setting so a checkpoint's fingerprint (hash_module_settings) covers it: the
        # parameters' values are overwritten on resume, the value they started from is not
        self.alpha_init = float(alpha_init)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.alpha_query = nn.Parameter(torch.tensor(float(alpha_init))) if alpha_query else None

    def classifier_width(self) -> int:
        return _classifier_width(self.num_features, self.dim, self.alpha_query is not None)

    def mix(self, feats: Tensor) -> Tensor:
        """``[B, F + D + k + k·D]`` retrieval features → the classifier's input ``[B, classifier_width()]``."""
        f, d, a0 = self.num_features, self.dim, self.alpha_query
        x, q = feats[:, :f], feats[:, f:f + d]
        e = _attend(feats, f, d, self.k, a0)
        parts = [x, self.alpha * e] + ([a0 * q] if a0 is not None else [])
        return torch.cat(parts, dim=1)

    def forward(self, feats, graph=None, return_hidden=False):
        z = self.mix(feats)
        return self.classifier(z, return_hidden=return_hidden) if return_hidden else self.classifier(z)


class ColdBrewStudent(nn.Module):
    """Inference-time Cold Brew model: ``q = g(x)`` → top-k retrieval over the teacher embeddings →
    ``classifier([x ; α·ẽ (; α₀·q)])``.  Graph-free: an isolated or new node needs only its features.

    Shapes: ``x`` ``[B, F]`` → logits ``[B, C]``; ``keys`` ``[N, D]`` (the teacher's embeddings).
    """

    uses_graph = False

    def __init__(self, g: nn.Module, keys: Tensor, head: Optional[_RetrievalHead], k: int, metric: str = "cosine"):
        super().__init__()
        self.g, self.head, self.k, self.metric = g, head, int(k), metric
        self.register_buffer("keys", keys)

    def features(self, x: Tensor) -> Tensor:
        """``[x ; q ; s ; e_1 .. e_k]`` ``[B, F + D + k + k·D]``: the query ``q = g(x)``, its top-k
        similarities ``s`` to the keys (``gkdfast.topk_similar`` with ``metric``, no B×N matrix) and
        those keys."""
        from gkdfast import topk_similar

        q = self.g(x)
        values, idx = topk_similar(q, self.keys, self.k, metric=self.metric)
        return torch.cat([x, q, values, self.keys[idx].flatten(1)], dim=1)

    def retrieve(self, x: Tensor) -> Tensor:
        """ẽ ``[B, D]``: the softmax-weighted sum of each row's top-k keys (weights as the head's)."""
        a0 = None if self.head is None else self.head.alpha_query
        return _attend(self.features(x), x.size(1), self.keys.size(1), self.k, a0)

    def forward(self, x, graph=None, return_hidden=False):
        return self.head(self.features(x), return_hidden=return_hidden)


class ColdBrew(Recipe):
    """Cold Brew (Zheng et al., "Cold Brew: Distilling Graph Node Representations with Incomplete or
    Missing Neighborhoods", ICLR 2022), for isolated / tail nodes:

    1. an MLP ``g`` (2 layers, width ``hidden``, dropout ``g_dropout``) regresses the teacher's
       embedding with MSE for ``regress_epochs`` epochs: the teacher's last hidden layer, or with an
       SE-GCN teacher (:class:`gkdfast.nn.SEGCN`, as the paper) its structural embedding;
    2. each node retrieves its top-k most similar teacher embeddings (``gkdfast.topk_similar`` on
       ``q = g(x)``, no N×N matrix), ẽ = softmax-weighted sum of them;
    3. the student classifies ``[x ; α·ẽ]`` (α learnable, initialised at 1e-4) with cross-entropy;
       with ``alpha_query`` as the public code: ``[x ; α·ẽ ; α₀·q]`` with the weights
       ``softmax(α₀·q·e_j)`` (α₀ learnable, also from 1e-4; near-uniform weights while α₀ is small).

    ``metric``: the retrieval similarity, ``"cosine"`` (default) or ``"dot"`` (the public code's).
    Defaults: k = 3, α₀ = 1e-4.  Stage 1 regresses on ``regress_nodes="all"`` (no labels are involved;
    the reference uses training nodes only, see its issue #12; the published setting does too).
    ``kd_weight`` > 0 adds logit KD.
    """

    name = "coldbrew"
    graph_free_student = True
    topk = 3
    metric = "cosine"
    alpha_init = 1e-4
    alpha_query = False
    regress_nodes = "all"
    regress_epochs = 200
    regress_lr = 0.01
    regress_weight_decay = 0.0
    hidden = 128
    g_dropout = 0.0
    kd_weight = 0.0
    stage_epochs = ("regress_epochs",)

    def terms(self):
        out = [CrossEntropy(1.0)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        from gkdfast.nn import MLP

        self.check_fit_arguments(make_student, data)
        if not isinstance(self.topk, int) or isinstance(self.topk, bool) or self.topk < 1:
            raise ValueError(f"recipe 'coldbrew': topk must be a positive int, got {self.topk!r}")
        if self.metric not in ("cosine", "dot"):
            raise ValueError(f"recipe 'coldbrew': metric must be 'cosine' or 'dot', got {self.metric!r}")
        if not 0.0 <= float(self.g_dropout) < 1.0:
            raise ValueError(f"recipe 'coldbrew': g_dropout must be in [0, 1), got {self.g_dropout}")
        teacher = self.teacher_outputs_for(teacher, data, distiller_kw)
        dev = distiller_kw.get("device") or "cpu"
        if teacher.hidden is None:
            raise ValueError("recipe 'coldbrew' needs the teacher's hidden embedding")
        keys = teacher.hidden.to(dev).clone()
        if self.topk > keys.size(0):
            raise ValueError(f"recipe 'coldbrew': topk={self.topk} exceeds the {keys.size(0)} teacher embeddings")
        f = data.x.size(1)
        # Stage 1: g(x) -> teacher embedding.  Early stopping on a regression has no accuracy to watch,
        # so it runs a fixed number of epochs.
        g = MLP(f, self.hidden, keys.size(1), num_layers=2, dropout=float(self.g_dropout))
        kw1 = {k: v for k, v in distiller_kw.items() if k not in ("checkpoint_dir", "desc")}
        if distiller_kw.get("checkpoint_dir"):
            kw1["checkpoint_dir"] = distiller_kw["checkpoint_dir"] + "-stage1"
        kw1.setdefault("seed", seed)
        stage1 = Distiller(g, [HiddenMSE(1.0, nodes=self.regress_nodes)], teacher, lr=self.regress_lr,
                           weight_decay=self.regress_weight_decay, epochs=self.regress_epochs, patience=None,
                           desc="coldbrew: g", **kw1).fit(data, data.x, select_best=False)
        g.eval()
        for p in g.parameters():
            p.requires_grad_(False)
        t1 = time.perf_counter()
        # Stage 2: retrieve once (g is frozen, and a positive α₀ does not change the ranking), then
        # train the classifier on the retrieval features.
        probe = ColdBrewStudent(g, keys, None, self.topk, self.metric)
        with torch.no_grad():
            feats = torch.cat([probe.features(data.x[i:i + 8192].to(dev)) for i in range(0, data.x.size(0), 8192)])
        t_retrieve = time.perf_counter() - t1
        classifier = make_student(_classifier_width(f, keys.size(1), bool(self.alpha_query)))
        if uses_graph(classifier):
            raise ValueError("recipe 'coldbrew' needs a graph-free student (e.g. mlp)")
        head = _RetrievalHead(classifier, f, keys.size(1), self.topk, self.alpha_init, self.alpha_query)
        distiller_kw.setdefault("seed", seed)
        result = self.distiller(head, teacher, **distiller_kw).fit(data, feats)
        model = ColdBrewStudent(g, keys, head, self.topk, self.metric).eval()
        return Trained(model, data.x, False, result, stage1.seconds + t_retrieve + result.seconds)
