"""GCond's evaluation: a GCN trained on a (condensed or whole) graph, the epoch kept by validation
accuracy on the real graph, then tested on the real graph's test nodes."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast.graph import Graph

__all__ = ["EvalResult", "check_split", "train_and_test"]


@dataclass(frozen=True)
class EvalResult:
    """Test / best-validation accuracy (fractions), training seconds and inference ms per 1k real nodes."""

    test_acc: float
    val_acc: float
    train_seconds: float
    inference_ms_per_1k_nodes: float


def _accuracy(logits: Tensor, y: Tensor, idx: Tensor) -> float:
    return float((logits[idx].argmax(1) == y[idx]).float().mean())


def check_split(real, fn: str = "gkdfast condense") -> None:
    """Refuses a real graph without training, validation or test nodes: the evaluation keeps the epoch of
    the best validation accuracy and tests on the test nodes (an empty set would keep the first epoch
    and report 0).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=200, num_classes=2, seed=0)
        >>> check_split(d)  # train, validation and test nodes: passes
        >>> d.val_mask = torch.zeros_like(d.val_mask)
        >>> check_split(d)
        Traceback (most recent call last):
        ValueError: gkdfast condense: the graph's split has no val nodes (val_mask is empty); give it a split ...
    """
    for name in ("train_mask", "val_mask", "test_mask"):
        mask = getattr(real, name, None)
        if mask is None or not bool(mask.any()):
            raise ValueError(f"{fn}: the graph's split has no {name.split('_')[0]} nodes ({name} is "
                             f"{'missing' if mask is None else 'empty'}); give it a split with train, "
                             "validation and test nodes")


def train_and_test(x: Tensor, graph: Graph, y: Tensor, train_idx: Tensor, real, real_x: Tensor, seed: int = 0,
                   hidden: int = 256, epochs: int = 600, lr: float = 0.01, weight_decay: float = 5e-4,
                   dropout: float = 0.5) -> EvalResult:
    """Trains a 2-layer GCN on ``(x, graph)``'s ``train_idx`` nodes (GCond's evaluation: hidden 256, dropout 0.5,
    Adam lr 0.01 and weight decay 5e-4, ``epochs`` full-batch steps with lr / 10 for the second half), keeps the
    weights of the best validation accuracy on the real graph ``real`` (features ``real_x``) and tests them there.

    ``graph`` may carry edge weights (a condensed graph's dense adjacency): the GCN normalises
    ``A + I`` with weighted degrees.  Shapes: ``x`` ``[n, d]``, ``y`` ``[n]``, ``real_x`` ``[N, d]``.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=300, num_classes=3, feature_dim=8)
        >>> r = train_and_test(d.x, d.graph, d.y, d.train_mask.nonzero().flatten(), d, d.x, epochs=20)
        >>> 0.0 <= r.test_acc <= 1.0
        True
    """
    from gkdfast.nn import GCN

    if epochs < 1:
        raise ValueError(f"evaluation epochs must be >= 1, got {epochs}")
    check_split(real, "gkdfast.condense.train_and_test")
    if train_idx.numel() == 0:
        raise ValueError("gkdfast.condense.train_and_test: train_idx is empty")
    torch.manual_seed(int(seed))
    model = GCN(x.size(1), hidden, int(real.num_classes), num_layers=2, dropout=dropout)
    val_idx, test_idx = real.val_mask.nonzero().flatten(), real.test_mask.nonzero().flatten()
    best_val, best_state = -1.0, None
    t0 = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for epoch in range(epochs):
        if epoch == epochs // 2:  # published: a fresh Adam at a tenth of the rate for the second half
            opt = torch.optim.Adam(model.parameters(), lr=lr * 0.1, weight_decay=weight_decay)
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x, graph)[train_idx], y[train_idx]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            acc = _accuracy(model(real_x, real.graph), real.y, val_idx)
        if acc > best_val:
            best_val, best_state = acc, copy.deepcopy(model.state_dict())
    seconds = time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()
    t1 = time.perf_counter()
    with torch.no_grad():
        logits = model(real_x, real.graph)
    infer_ms = (time.perf_counter() - t1) * 1000 * 1000 / max(1, real.num_nodes)
    return EvalResult(_accuracy(logits, real.y, test_idx), best_val, seconds, infer_ms)
