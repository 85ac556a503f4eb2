"""Group-fairness metrics of a node classifier: statistical parity and equal opportunity gaps.

With a binary sensitive attribute ``s`` and the positive class 1:

* ``ΔSP = |P(ŷ = 1 | s = 0) − P(ŷ = 1 | s = 1)|`` (statistical parity difference);
* ``ΔEO = |P(ŷ = 1 | y = 1, s = 0) − P(ŷ = 1 | y = 1, s = 1)|`` (equal opportunity difference).

Both are fractions in [0, 1], measured on the nodes of a mask (the test nodes in the results);
a group with no node in the mask contributes a rate of 0, as in the reference's ``fair_metric``
(which would divide by zero instead).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from gkdfast._checks import check_binary_sensitive, check_node_mask

__all__ = ["delta_sp", "delta_eo", "fairness_gaps", "pick_fair_setting_on_validation"]


def _rate(pred: Tensor, keep: Tensor) -> float:
    k = int(keep.sum())
    return float((pred[keep] == 1).sum()) / k if k else 0.0


def _check(pred: Tensor, sensitive: Tensor, mask: Optional[Tensor]):
    # Each refusal below was a silent number: a third group or 1/2 coding dropped groups, one logit
    # column or 1-D probabilities never predicted class 1, node ids read as a 0/1 mask.
    if pred.dim() == 2:  # logits -> classes
        if pred.size(1) < 2:
            raise ValueError(f"fairness: logits must have a column per class (C >= 2), got {list(pred.shape)}; for "
                             "a one-column (binary cross-entropy) model pass (logit > 0).long()")
        pred = pred.argmax(-1)
    elif pred.dim() != 1 or pred.is_floating_point():
        raise TypeError(f"fairness: predictions must be [N, C] logits or [N] integer classes, got {pred.dtype} "
                        f"{list(pred.shape)} (for probabilities of class 1 pass (p > 0.5).long())")
    if pred.shape != sensitive.shape:
        raise ValueError(f"fairness: predictions {list(pred.shape)} and sensitive {list(sensitive.shape)} differ")
    pred, sensitive = pred.cpu(), sensitive.cpu()
    check_binary_sensitive(sensitive, "fairness")
    if mask is not None:
        check_node_mask(mask, sensitive.size(0), "fairness", "mask")
    keep = torch.ones_like(sensitive, dtype=torch.bool) if mask is None else mask.cpu()
    return pred, sensitive, keep


def delta_sp(pred: Tensor, sensitive: Tensor, mask: Optional[Tensor] = None) -> float:
    """Statistical parity gap of predictions (``[N]`` classes or ``[N, C]`` logits) on ``mask``.

    Example:
        >>> delta_sp(torch.tensor([1, 1, 0, 0]), torch.tensor([0, 0, 1, 1]))
        1.0
        >>> delta_sp(torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1]))
        0.0
    """
    pred, s, keep = _check(pred, sensitive, mask)
    return abs(_rate(pred, keep & (s == 0)) - _rate(pred, keep & (s == 1)))


def delta_eo(pred: Tensor, y: Tensor, sensitive: Tensor, mask: Optional[Tensor] = None) -> float:
    """Equal opportunity gap: the parity gap among nodes whose true label is 1.

    Example:
        >>> delta_eo(torch.tensor([1, 0, 0, 0]), torch.tensor([1, 1, 1, 0]), torch.tensor([0, 0, 1, 1]))
        0.5
    """
    pred, s, keep = _check(pred, sensitive, mask)
    if y.shape != s.shape:
        raise ValueError(f"fairness: y must be the [N] true labels, like sensitive {list(s.shape)}, got "
                         f"{list(y.shape)}")
    keep = keep & (y.cpu() == 1)
    return abs(_rate(pred, keep & (s == 0)) - _rate(pred, keep & (s == 1)))


def fairness_gaps(logits: Tensor, y: Tensor, sensitive: Tensor, mask: Optional[Tensor] = None
                  ) -> Tuple[float, float]:
    """``(ΔSP, ΔEO)`` of ``logits`` ``[N, C]`` on ``mask``.

    Example:
        >>> fairness_gaps(torch.tensor([[0., 1.], [1., 0.]]), torch.tensor([1, 1]), torch.tensor([0, 1]))
        (1.0, 1.0)
    """
    return delta_sp(logits, sensitive, mask), delta_eo(logits, y, sensitive, mask)


def pick_fair_setting_on_validation(runs: Sequence[dict], candidates: Sequence[str], *, fairness: str = "sp",
                                    reference: str = "kd", max_accuracy_drop: float = 0.02) -> dict:
    """One fairness setting for a dataset, chosen from validation nodes only: among ``candidates``
    (row names such as ``"reliant(α=100)"``), those whose validation accuracy, averaged over the seeds,
    is at most ``max_accuracy_drop`` below the ``reference`` row's; of those, the one with the lowest
    mean validation gap (ΔSP for ``fairness="sp"``, ΔEO for ``"eo"``); the earlier candidate on a tie.
    This is the target "a lower gap at no more than 2 points of accuracy lost", read on validation
    nodes, so the test rows of the pick are an honest estimate.

    Args:
        runs: per-run records with ``method`` and ``val_acc``, ``val_delta_sp``, ``val_delta_eo``
            (fractions), as ``scripts/fair_sweep.py`` writes them.
        candidates: the row names to choose from, in order.  reference: the row to stay close to.

    Returns:
        ``{"picked": name or None (no candidate qualifies), "val_acc": {name: mean},
        "val_gap": {name: mean}}`` over ``candidates`` and ``reference``.

    Example:
        >>> runs = [{"method": m, "val_acc": a, "val_delta_sp": g, "val_delta_eo": 0.0}
        ...         for m, a, g in [("kd", 0.90, 0.10), ("reliant(α=10)", 0.89, 0.04),
        ...                         ("reliant(α=100)", 0.85, 0.01)]]
        >>> pick_fair_setting_on_validation(runs, ["reliant(α=10)", "reliant(α=100)"])["picked"]
        'reliant(α=10)'
    """
    if fairness not in ("sp", "eo"):
        raise ValueError(f"fairness must be 'sp' or 'eo', got {fairness!r}")
    if not 0.0 <= float(max_accuracy_drop) < 1.0:
        raise ValueError(f"max_accuracy_drop is a fraction in [0, 1), got {max_accuracy_drop!r}")
    gap_key = "val_delta_" + fairness
    acc: Dict[str, list] = {}
    gap: Dict[str, list] = {}
    for r in runs:
        if r["method"] not in (reference, *candidates):
            continue
        missing = [k for k in ("val_acc", gap_key) if r.get(k) is None]
        if missing:
            raise ValueError(f"run of {r['method']!r} (seed {r.get('seed')}) has no {missing[0]!r}: the pick reads "
                             "validation nodes only")
        acc.setdefault(r["method"], []).append(float(r["val_acc"]))
        gap.setdefault(r["method"], []).append(float(r[gap_key]))
    absent = [m for m in (reference, *candidates) if m not in acc]
    if absent:
        raise ValueError(f"no run of {absent[0]!r} among the records")
    counts = {m: len(v) for m, v in acc.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"the rows have different numbers of runs ({counts}): compare the same seeds")
    val_acc = {m: sum(v) / len(v) for m, v in acc.items()}
    val_gap = {m: sum(v) / len(v) for m, v in gap.items()}
    floor = val_acc[reference] - float(max_accuracy_drop)
    picked = None
    for m in candidates:
        if val_acc[m] >= floor - 1e-12 and (picked is None or val_gap[m] < val_gap[picked]):
            picked = m
    return {"picked": picked, "val_acc": val_acc, "val_gap": val_gap}
