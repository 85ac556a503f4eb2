"""GCond / DosCond: learn a tiny synthetic graph whose training gradients match the real graph's.

Per epoch a freshly initialised backbone (SGC or GCN); per outer step and class ``c`` the gradient of
the cross-entropy on the real graph's class-``c`` training nodes is matched to the gradient on the
synthetic class-``c`` nodes (:func:`gkdfast.condense.matching.gradient_distance`, weighted by
``n'_c / max n'``); the synthetic features or the PGE take one Adam step (structure for
``structure_epochs`` of every ``cycle`` epochs, features otherwise); between outer steps the backbone
trains ``inner`` steps on the synthetic graph.  One-step mode (DosCond): one outer step, no inner steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast.condense.backbone import BACKBONES, Backbone, dense_gcn_norm, propagate_features
from gkdfast.condense.graph import CondensedGraph
from gkdfast.condense.matching import METRICS, gradient_distance
from gkdfast.condense.pge import PGE
from gkdfast.condense.synthetic import class_counts, initial_features, synthetic_labels, synthetic_size

__all__ = ["CondenseConfig", "condense", "prepare_features", "published_config", "sparse_if_mostly_zero"]


@dataclass(frozen=True)
class CondenseConfig:
    """Condensation hyper-parameters; the defaults are GCond's for Cora / CiteSeer (``scripts/run_main.sh``:
    SGC backbone with 2 propagations, ``ours`` distance, lr 1e-4 for features and PGE, 600 epochs, 20 outer /
    15 inner steps).  :func:`published_config` gives DosCond's one-step values.

    Example:
        >>> CondenseConfig().outer, published_config(one_step=True).backbone
        (20, 'gcn')
    """

    epochs: int = 600
    outer: int = 20
    inner: int = 15
    lr_feat: float = 1e-4
    lr_adj: float = 1e-4
    lr_model: float = 0.01
    backbone: str = "sgc"
    metric: str = "ours"
    hidden: int = 256
    num_layers: int = 2
    pge_hidden: int = 128
    pge_layers: int = 3
    cycle: int = 50
    structure_epochs: int = 10
    one_step: bool = False

    def check(self) -> "CondenseConfig":
        """Raises ValueError on an impossible setting; returns self."""
        for name in ("epochs", "outer", "hidden", "num_layers", "pge_hidden", "cycle"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"condense: {name} must be >= 1, got {getattr(self, name)}")
        if self.inner < 0 or not 0 <= self.structure_epochs <= self.cycle:
            raise ValueError("condense: need inner >= 0 and 0 <= structure_epochs <= cycle")
        for name in ("lr_feat", "lr_adj", "lr_model"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"condense: {name} must be > 0, got {getattr(self, name)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"condense: backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.metric not in METRICS:
            raise ValueError(f"condense: metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        return self


def published_config(one_step: bool = False, **overrides) -> CondenseConfig:
    """GCond's Cora settings, or DosCond's (``one_step``: GCN backbone, ``mse`` distance, lr 1e-3, 1 outer /
    0 inner steps, 5000 epochs), with ``overrides`` (``None`` values ignored) on top.

    Example:
        >>> c = published_config(one_step=True, epochs=100, lr_feat=None)
        >>> c.epochs, c.lr_feat, c.outer, c.inner
        (100, 0.001, 1, 0)
    """
    base = CondenseConfig()
    if one_step:
        base = replace(base, one_step=True, epochs=5000, outer=1, inner=0, lr_feat=1e-3, lr_adj=1e-3,
                       backbone="gcn", metric="mse")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None}).check()


def prepare_features(x: Tensor) -> Tensor:
    """Row-normalised features (rows sum to 1, as GCond's ``normalize_features``) when ``x`` is
    non-negative (bag-of-words counts); features with negative entries are returned unchanged.

    Shapes: ``[N, d]`` -> ``[N, d]``.

    Example:
        >>> prepare_features(torch.tensor([[1., 3.], [0., 0.]]))
        tensor([[0.2500, 0.7500],
                [0.0000, 0.0000]])
    """
    x = x.float()
    if bool((x < 0).any()):
        return x
    s = x.sum(1, keepdim=True)
    return torch.where(s > 0, x / s.clamp_min(1e-12), x)


def sparse_if_mostly_zero(x: Tensor, density: float = 0.1) -> Tensor:
    """``x`` as a sparse COO matrix when under ``density`` of its entries are non-zero (bag-of-words features:
    Cora's are 1.3 % non-zero), else ``x``; the first layer's ``x W^T`` then costs O(nnz).

    Example:
        >>> sparse_if_mostly_zero(torch.eye(20)).is_sparse, sparse_if_mostly_zero(torch.ones(2, 2)).is_sparse
        (True, False)
    """
    return x.to_sparse() if float((x != 0).float().mean()) < density else x


@dataclass
class _Real:
    """What the real graph contributes to every matching step (built once)."""

    train_idx: Tensor
    class_rows: List[Tensor]  # positions in train_idx of each class's nodes
    labels: Tensor            # [n_train]
    x: Optional[Tensor] = None          # gcn backbone: features (sparse COO when mostly zeros)
    propagated: Optional[Tensor] = None  # sgc backbone: (Â^K x)[train_idx]
    graph: object = field(default=None, repr=False)


def _real_logits(net: Backbone, real: _Real) -> Tensor:
    if net.kind == "sgc":
        w, b = net.params
        return real.propagated @ w.t() + b
    return net.real(real.x, real.graph)[real.train_idx]


def _build_real(data, x: Tensor, cfg: CondenseConfig) -> _Real:
    train_idx = data.train_mask.nonzero().flatten()
    labels = data.y[train_idx]
    rows = [(labels == c).nonzero().flatten() for c in range(data.num_classes)]
    real = _Real(train_idx, rows, labels, graph=data.graph)
    if cfg.backbone == "sgc":
        real.propagated = propagate_features(x, data.graph, cfg.num_layers)[train_idx].contiguous()
    else:
        real.x = sparse_if_mostly_zero(x)
    return real


def condense(data, ratio: float, seed: int = 0, config: Optional[CondenseConfig] = None,
             progress: bool = False) -> CondensedGraph:
    """Condenses ``data`` (a :class:`gkdfast.data.GraphData`) into ``round(ratio * N)`` synthetic nodes.

    The real graph stays sparse (``gkdfast.spmm``); only the synthetic N'×N' adjacency is dense.  Seeded by
    ``seed`` (PGE and backbone weights, the choice of initial nodes); bitwise repeatable on the CPU.

    Returns a :class:`CondensedGraph` (features ``[N', d]`` in the row-normalised space of
    :func:`prepare_features`, adjacency ``[N', N']``, labels ``[N']``, the loss per epoch, seconds).

    Example:
        >>> from gkdfast.data import csbm
        >>> g = condense(csbm(num_nodes=300, num_classes=3, feature_dim=8), ratio=0.05,
        ...              config=published_config(epochs=2, outer=2, inner=1))
        >>> g.x.shape, g.adj.shape, g.y.tolist().count(0)
        (torch.Size([15, 8]), torch.Size([15, 15]), 5)
    """
    cfg = (config or CondenseConfig()).check()
    if cfg.one_step and (cfg.outer != 1 or cfg.inner != 0):
        raise ValueError("condense: one_step means outer=1, inner=0")
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))  # the PGE's nn.Linear initialisation draws from the global generator
    x = prepare_features(data.x)
    real = _build_real(data, x, cfg)
    n_syn = synthetic_size(ratio, data.num_nodes, data.num_classes, int(real.train_idx.numel()))
    counts = class_counts(real.labels, data.num_classes, n_syn)
    y_syn = synthetic_labels(counts)
    bounds = torch.cumsum(torch.tensor([0] + counts), 0).tolist()
    feat = initial_features(x, data.y, real.train_idx, counts, gen).requires_grad_()
    pge = PGE(x.size(1), cfg.pge_hidden, cfg.pge_layers)
    opt_feat = torch.optim.Adam([feat], lr=cfg.lr_feat)
    opt_pge = torch.optim.Adam(pge.parameters(), lr=cfg.lr_adj)
    coeff = [k / max(counts) for k in counts]
    history: List[float] = []
    from gkdfast._progress import progress_bar

    bar = progress_bar(range(cfg.epochs), enabled=progress, desc="condense", unit="epoch", leave=False)
    for epoch in bar:
        net = Backbone(cfg.backbone, x.size(1), data.num_classes, cfg.hidden, cfg.num_layers, gen)
        opt_model = torch.optim.Adam(net.params, lr=cfg.lr_model)
        structure_turn = epoch % cfg.cycle < cfg.structure_epochs
        epoch_loss = 0.0
        adj = pge(feat)
        for step in range(cfg.outer):
            loss = _matching_loss(net, real, feat, adj, y_syn, bounds, coeff, cfg.metric)
            epoch_loss += float(loss.detach())
            targets = list(pge.parameters()) if structure_turn else [feat]
            opt = opt_pge if structure_turn else opt_feat
            grads = torch.autograd.grad(loss, targets)
            for t, g in zip(targets, grads):
                t.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step == cfg.outer - 1:
                break
            # The next step's adjacency, built now so the inner steps use it too (nothing changes in between).
            adj = pge(feat)
            _train_inner(net, opt_model, feat.detach(), dense_gcn_norm(adj.detach()), y_syn, cfg.inner)
        history.append(epoch_loss / (cfg.outer * data.num_classes))
        bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
    with torch.no_grad():
        adj = pge(feat)
    return CondensedGraph(feat.detach().clone(), adj, y_syn, data.num_classes, history,
                          time.perf_counter() - t0, f"{data.name}-{'doscond' if cfg.one_step else 'gcond'}")


def _matching_loss(net: Backbone, real: _Real, feat: Tensor, adj: Tensor, y_syn: Tensor, bounds, coeff,
                   metric: str) -> Tensor:
    """Sum over classes of ``coeff[c] * distance(grad on synthetic class c, grad on real class c)``."""
    logits_real = _real_logits(net, real)
    out_syn = net.dense(feat, dense_gcn_norm(adj))
    loss = feat.new_zeros(())
    for c, rows in enumerate(real.class_rows):
        loss_real = F.cross_entropy(logits_real[rows], real.labels[rows])
        g_real = [g.detach() for g in torch.autograd.grad(loss_real, net.params, retain_graph=True)]
        lo, hi = bounds[c], bounds[c + 1]
        loss_syn = F.cross_entropy(out_syn[lo:hi], y_syn[lo:hi])
        g_syn = torch.autograd.grad(loss_syn, net.params, create_graph=True, retain_graph=True)
        loss = loss + coeff[c] * gradient_distance(g_syn, g_real, metric)
    return loss


def _train_inner(net: Backbone, opt, x: Tensor, adj_norm: Tensor, y_syn: Tensor, steps: int) -> None:
    """``steps`` Adam steps of the backbone on the current (frozen) synthetic graph."""
    for _ in range(steps):
        loss = F.cross_entropy(net.dense(x, adj_norm), y_syn)
        grads = torch.autograd.grad(loss, net.params)
        for p, g in zip(net.params, grads):
            p.grad = g
        opt.step()
