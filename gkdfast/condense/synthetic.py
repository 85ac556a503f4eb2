"""The synthetic graph's nodes: how many per class, their labels and their initial features."""
from __future__ import annotations

import math
from typing import List

import torch
from torch import Tensor

__all__ = ["synthetic_size", "class_counts", "synthetic_labels", "initial_features"]


def synthetic_size(ratio: float, num_nodes: int, num_classes: int, num_train: int) -> int:
    """N' = round(ratio * N), checked: at least one node per class and at most the labelled training nodes
    (the features start as copies of distinct training nodes).

    GCond's Cora "2.6 %" is 70 synthetic nodes = half the 140 training nodes, i.e. 0.026 * 2708.

    Example:
        >>> synthetic_size(0.026, 2708, 7, 140)
        70
    """
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0.0 < ratio < 1.0):
        raise ValueError(f"--ratio must be a fraction of the nodes in (0, 1), got {ratio}")
    n = int(round(ratio * num_nodes))
    if n < num_classes:
        raise ValueError(f"--ratio {ratio}: {n} synthetic node(s) for {num_nodes} nodes, fewer than the "
                         f"{num_classes} classes (need one per class: ratio >= {num_classes / num_nodes:.4g})")
    if n > num_train:
        raise ValueError(f"--ratio {ratio}: {n} synthetic nodes but only {num_train} labelled training nodes to "
                         f"initialise them from (ratio <= {num_train / num_nodes:.4g})")
    return n


def class_counts(train_labels: Tensor, num_classes: int, n_syn: int) -> List[int]:
    """Synthetic nodes per class, proportional to the training labels, at least 1 per class, summing to ``n_syn``
    (largest remainders get the leftover nodes; ties to the lower class id).

    Shapes: ``train_labels`` ``[n_train]`` int -> list of ``num_classes`` ints.

    Example:
        >>> class_counts(torch.tensor([0] * 20 + [1] * 20 + [2] * 100), 3, 14)
        [2, 2, 10]
    """
    counts = torch.bincount(train_labels.long(), minlength=num_classes).tolist()
    if n_syn < num_classes:
        raise ValueError(f"class_counts: {n_syn} synthetic nodes for {num_classes} classes (need one per class)")
    if any(c == 0 for c in counts):
        missing = [k for k, c in enumerate(counts) if c == 0]
        raise ValueError(f"class_counts: class(es) {missing} have no training node to condense from")
    total = sum(counts)
    quota = [c * n_syn / total for c in counts]
    out = [max(1, int(q)) for q in quota]
    while sum(out) > n_syn:  # the floor of 1 overshot: take from the class furthest above its quota
        k = max((k for k in range(num_classes) if out[k] > 1), key=lambda k: (out[k] - quota[k], -k))
        out[k] -= 1
    while sum(out) < n_syn:
        k = max(range(num_classes), key=lambda k: (quota[k] - out[k], -k))
        out[k] += 1
    for k in range(num_classes):
        if out[k] > counts[k]:
            raise ValueError(f"class_counts: class {k} gets {out[k]} synthetic nodes but has only {counts[k]} "
                             "training nodes; use a smaller ratio")
    return out


def synthetic_labels(counts: List[int]) -> Tensor:
    """Labels of the synthetic nodes, grouped by class: ``[sum(counts)]`` int64.

    Example:
        >>> synthetic_labels([2, 1, 3]).tolist()
        [0, 0, 1, 2, 2, 2]
    """
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.long))


def initial_features(x: Tensor, y: Tensor, train_idx: Tensor, counts: List[int], generator: torch.Generator) -> Tensor:
    """Features of ``counts[c]`` random distinct training nodes of each class c, in class order (GCond's init).

    Shapes: ``x`` ``[N, d]``, ``y`` ``[N]``, ``train_idx`` ``[n_train]`` -> ``[sum(counts), d]``.

    Example:
        >>> x = torch.arange(12.).reshape(6, 2); y = torch.tensor([0, 0, 1, 1, 1, 0])
        >>> initial_features(x, y, torch.arange(6), [1, 2], torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    rows = []
    for c, k in enumerate(counts):
        idx = train_idx[y[train_idx] == c]
        rows.append(idx[torch.randperm(idx.numel(), generator=generator)[:k]])
    return x[torch.cat(rows)].clone()
