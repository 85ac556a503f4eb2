"""Projected gradient ascent on input features (NOSMOG's adversarial feature augmentation)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["pgd_delta"]


def pgd_delta(loss_fn: Callable[[Tensor], Tensor], x: Tensor, eps: float, steps: int = 5,
              step_size: float | None = None) -> Tensor:
    """A perturbation δ with ‖δ‖∞ ≤ ε that (approximately) maximises ``loss_fn(x + δ)``.

    δ₀ ~ U[−ε, ε]; then ``steps`` times ``δ ← clip(δ + step_size·sign(∇δ loss), −ε, ε)``
    (``step_size`` defaults to ε/4, as in NOSMOG).  Only δ receives gradients here: the model's
    parameter gradients are left untouched (``torch.autograd.grad`` w.r.t. δ only).

    Args:
        loss_fn: maps perturbed inputs ``[*, F]`` to a scalar loss.
        x: ``[*, F]`` inputs (not modified).  eps: ε ≥ 0.  steps: PGD iterations.

    Returns:
        δ, detached, same shape as ``x``.

    Example:
        >>> w = torch.randn(4, 1)
        >>> d = pgd_delta(lambda z: (z @ w).sum(), torch.zeros(3, 4), eps=0.1)
        >>> bool(d.abs().max() <= 0.1)
        True
    """
    if eps < 0:
        raise ValueError(f"pgd_delta: eps must be >= 0, got {eps}")
    if eps == 0 or steps <= 0:
        return torch.zeros_like(x)
    step_size = eps / 4 if step_size is None else step_size
    x = x.detach()
    delta = torch.empty_like(x).uniform_(-eps, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn(x + delta)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step_size * grad.sign()).clamp_(-eps, eps)
    return delta.detach()
