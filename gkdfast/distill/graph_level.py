"""Graph classification with distillation: supervised training, logit KD on real graphs, evaluation.

Protocol (per fold of a stratified k-fold split): 10 % of the training graphs (stratified) are held
out for model selection, the model with the best validation accuracy is kept (ties: the earlier
epoch), and its accuracy on the fold's test graphs is reported.  The teacher is trained once per
fold; every student starts from the same initial weights for every method in that fold.

KD (Hinton) on real graphs: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.data.batching import GraphLoader, graph_ids, select_graphs

__all__ = ["GraphTrainConfig", "train_graph_classifier", "graph_accuracy", "kd_loss", "split_validation",
           "inference_ms_per_1k_nodes"]


@dataclass
class GraphTrainConfig:
    """Hyperparameters of supervised / KD training on real graphs (GIN paper defaults: Adam lr 0.01,
    halved every 50 epochs, batch 32).  ``temperature``/``alpha`` are for KD only."""

    epochs: int = 100
    lr: float = 0.01
    weight_decay: float = 0.0
    batch_size: int = 32
    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"GraphTrainConfig: batch_size must be a positive int, got {self.batch_size!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"GraphTrainConfig: epochs must be an int >= 0, got {self.epochs!r}")


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, y: Optional[Tensor], temperature: float = 2.0,
            alpha: float = 0.5) -> Tensor:
    """Hinton KD on ``[B, C]`` logits; ``y`` ``[B]`` adds the CE term with weight ``1 - alpha``.

    Example:
        >>> s = torch.tensor([[2.0, 0.0]]); t = torch.tensor([[2.0, 0.0]])
        >>> float(kd_loss(s, t, None, 2.0, 1.0))
        0.0
    """
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    reduction="batchmean", log_target=True) * t * t
    if y is None or alpha >= 1.0:
        return alpha * soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, y)


@torch.no_grad()
def graph_accuracy(model: nn.Module, dataset, index, batch_size: int = 256, device=None) -> float:
    """Fraction of graphs ``index`` of ``dataset`` whose argmax logit equals the label (eval mode).

    Example:
        >>> from gkdfast.data import load_tu
        >>> from gkdfast.nn.graph_models import GraphClassifier
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> 0.0 <= graph_accuracy(GraphClassifier("gcn", 7, 16, 2, 2), ds, range(20)) <= 1.0
        True
    """
    was = model.training
    model.eval()
    correct = total = 0
    for b in GraphLoader(dataset, index, batch_size=batch_size, device=device):
        correct += int((model(b).argmax(-1) == b.y).sum())
        total += b.num_graphs
    model.train(was)
    return correct / max(total, 1)


def split_validation(y: Tensor, train_idx: Tensor, fraction: float = 0.1, seed: int = 0):
    """Splits ``train_idx`` into (train, validation) with ``fraction`` of each class held out (>= 1 per class
    with >= 2 members).

    Example:
        >>> tr, va = split_validation(torch.tensor([0, 0, 1, 1] * 5), torch.arange(20), 0.2)
        >>> len(tr), len(va)
        (16, 4)
    """
    gen = torch.Generator().manual_seed(int(seed))
    y = y[train_idx]
    keep, held = [], []
    for c in torch.unique(y):
        members = train_idx[y == c]
        members = members[torch.randperm(members.numel(), generator=gen)]
        k = int(round(fraction * members.numel()))
        k = max(k, 1) if members.numel() >= 2 else 0
        held.append(members[:k])
        keep.append(members[k:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def train_graph_classifier(model: nn.Module, dataset, train_idx, val_idx, cfg: GraphTrainConfig, seed: int = 0,
                           device=None, teacher: Optional[nn.Module] = None) -> nn.Module:
    """Trains ``model`` on graphs ``train_idx`` (CE, or KD from ``teacher`` when given) and returns it with
    the weights of its best validation epoch (the last epoch's when ``val_idx`` is empty).

    Shapes: the model maps a :class:`~gkdfast.data.batching.GraphBatch` of ``B`` graphs to ``[B, C]``.

    Example:
        >>> from gkdfast.data import load_tu
        >>> from gkdfast.nn.graph_models import GraphClassifier
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> m = train_graph_classifier(GraphClassifier("gcn", 7, 16, 2, 2), ds, range(150), range(150, 188),
        ...                            GraphTrainConfig(epochs=2))
        >>> type(m).__name__
        'GraphClassifier'
    """
    model.to(device or "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
    if teacher is not None:
        teacher.eval()
    loader = GraphLoader(dataset, train_idx, batch_size=cfg.batch_size, shuffle=True, seed=seed, device=device)
    # no validation graph (e.g. one training graph per class): nothing to select on, keep the last epoch
    select = graph_ids(val_idx, len(dataset)).numel() > 0
    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if batch_norm and cfg.batch_size < 2:  # every batch would be one graph, which BatchNorm cannot take
        raise ValueError(f"train_graph_classifier: {type(model).__name__} has BatchNorm, which needs batches of at "
                         f"least 2 graphs; got batch_size={cfg.batch_size}")
    best, best_state = -1.0, None
    for _ in range(cfg.epochs):
        model.train()
        steps = 0
        for b in loader:
            if batch_norm and (b.num_graphs < 2 or b.num_nodes < 2):
                continue  # BatchNorm over one row (a lone last graph, or one node in all) would fail: skip it
            steps += 1
            logits = model(b)
            if teacher is None:
                loss = F.cross_entropy(logits, b.y)
            else:
                with torch.no_grad():
                    t = teacher(b)
                loss = kd_loss(logits, t, b.y, cfg.temperature, cfg.alpha)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if steps == 0:
            raise ValueError(f"train_graph_classifier: no training batch has the 2 graphs and 2 nodes BatchNorm "
                             f"needs ({loader.index.numel()} training graphs, batch size {cfg.batch_size})")
        sched.step()
        if select:
            acc = graph_accuracy(model, dataset, val_idx, device=device)
            if acc > best:
                best, best_state = acc, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


@torch.no_grad()
def inference_ms_per_1k_nodes(model: nn.Module, dataset, index, device=None) -> float:
    """Wall time of one eval forward over graphs ``index`` (one batch), per 1,000 nodes, in ms.

    Example:
        >>> from gkdfast.data import load_tu
        >>> from gkdfast.nn.graph_models import GraphClassifier
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> inference_ms_per_1k_nodes(GraphClassifier("gcn", 7, 16, 2, 2), ds, range(10)) > 0
        True
    """
    b = select_graphs(dataset, index)
    b = b if device is None else b.to(device)
    model.eval()
    model(b)  # warm-up
    if b.x.is_cuda:  # the warm-up's kernels finish before the clock starts
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(b)
    if b.x.is_cuda:
        torch.cuda.synchronize()
    return max((time.perf_counter() - t0) * 1e6 / max(b.num_nodes, 1), 1e-9)
