"""Cold Brew: an MLP regresses the teacher's embeddings, retrieves its nearest ones, and classifies.

Example:
    >>> ColdBrew().topk
    3
"""
from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from gkdfast.distill.distiller import Distiller, uses_graph
from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.distill.terms import CrossEntropy, HiddenMSE, LogitKD

__all__ = ["ColdBrew", "ColdBrewStudent"]



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
    graph_free_student = True
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
        from gkdfast.nn import MLP

        teacher = self.teacher_outputs_for(teacher, data, distiller_kw)
        dev = distiller_kw.get("device") or "cpu"
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

