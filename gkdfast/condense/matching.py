"""Distance between the real and the synthetic graph's gradients (GCond's ``match_loss``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["gradient_distance", "METRICS"]

METRICS = ("ours", "mse", "cos")
_EPS = 1e-6  # added to the norm product, as published: an all-zero gradient row costs 1, not NaN


def gradient_distance(g_syn: Sequence[Tensor], g_real: Sequence[Tensor], metric: str = "ours") -> Tensor:
    """Gradient-matching distance summed over parameters.

    ``ours`` (GCond's default): for each 2-D weight ``[out, in]``, ``sum over output neurons i of
    1 - cos(g_syn[i, :], g_real[i, :])``; biases and other 1-D parameters are skipped.
    ``mse``: squared L2 distance of all gradients flattened together (biases included; DosCond's choice).
    ``cos``: ``1 - cos`` of all gradients flattened together.

    Shapes: two equally long lists of tensors with matching shapes -> scalar.

    Example:
        >>> w = torch.tensor([[1., 0.], [0., 1.]])
        >>> round(float(gradient_distance([w, torch.ones(2)], [w, torch.zeros(2)])), 4)   # bias skipped
        0.0
        >>> round(float(gradient_distance([w], [-w])), 4)       # two neurons, each 1 - (-1)
        4.0
    """
    if metric not in METRICS:
        raise ValueError(f"gradient matching metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if len(g_syn) != len(g_real):
        raise ValueError(f"gradient_distance: {len(g_syn)} synthetic vs {len(g_real)} real gradients")
    if metric == "ours":
        total = g_syn[0].new_zeros(())
        for s, r in zip(g_syn, g_real):
            if s.dim() < 2:
                continue
            s, r = s.reshape(s.size(0), -1), r.reshape(r.size(0), -1)
            cos = (s * r).sum(-1) / (s.norm(dim=-1) * r.norm(dim=-1) + _EPS)
            total = total + (1 - cos).sum()
        return total
    s = torch.cat([t.reshape(-1) for t in g_syn])
    r = torch.cat([t.reshape(-1) for t in g_real])
    if metric == "mse":
        return ((s - r) ** 2).sum()
    return 1 - (s * r).sum() / (s.norm() * r.norm() + _EPS)
