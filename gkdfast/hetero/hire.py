"""HIRE (Liu, Zheng & Hao, "HIRE: Distilling High-order Relational Knowledge From Heterogeneous Graph
Neural Networks", Neurocomputing; arXiv 2207.11887): node-level KD on logits plus relation-level KD
that matches the correlation between embeddings of different node types.

No public code exists; we implement the abstract's two levels as

    L = (1−α)·CE + α·T²·KL(p_T^τ ‖ p_S^τ) + β·Σ_{(a, b)} R(a, b),

    R(a, b) = ‖ Ŝ_a Ŝ_bᵀ − T̂_a T̂_bᵀ ‖²_F / (n_a·n_b),

where ``Ŝ_a`` (``[n_a, d_S]``) / ``T̂_a`` (``[n_a, d_T]``) are the row-L2-normalised student /
teacher embeddings of type ``a`` (so each entry is a cosine similarity), over the pairs
(target, t) for every type t both models embed (the target with itself included).  The two
similarity matrices are never formed: with ``A = Ŝ_a, B = Ŝ_b, C = T̂_a, D = T̂_b``,

    ‖ABᵀ − CDᵀ‖²_F = ⟨AᵀA, BᵀB⟩ − 2⟨AᵀC, BᵀD⟩ + ⟨CᵀC, DᵀD⟩,

only ``d × d`` Gram matrices (O((n_a + n_b)·d²) time, O(d²) memory), so a 33,401-node actor type
costs no ``n × n`` matrix.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast._autocast import float32_loss

__all__ = ["cross_similarity_gap", "relation_loss"]


@float32_loss
def cross_similarity_gap(s_a: Tensor, s_b: Tensor, t_a: Tensor, t_b: Tensor, normalize: bool = True) -> Tensor:
    """``‖ŝ_a ŝ_bᵀ − t̂_a t̂_bᵀ‖²_F / (n_a·n_b)`` via Gram identities (module doc); differentiable.

    Args:
        s_a ``[n_a, d_S]``, s_b ``[n_b, d_S]``: student embeddings of two types.
        t_a ``[n_a, d_T]``, t_b ``[n_b, d_T]``: teacher embeddings (widths may differ from the student's).
        normalize: L2-normalise rows first (cosine similarities).

    Example:
        >>> a, b = torch.randn(5, 3), torch.randn(4, 3)
        >>> float(cross_similarity_gap(a, b, a, b))
        0.0
    """
    if s_a.size(0) != t_a.size(0) or s_b.size(0) != t_b.size(0):
        raise ValueError(f"cross_similarity_gap: student and teacher rows differ ({s_a.size(0)}/{t_a.size(0)}, "
                         f"{s_b.size(0)}/{t_b.size(0)})")
    if normalize:
        s_a, s_b, t_a, t_b = (F.normalize(v, dim=-1) for v in (s_a, s_b, t_a, t_b))
    # The three Gram terms cancel when the student is close to the teacher (a float32 gap of 7e-9 came
    # out 24% off): they are formed in float64, d x d matrices, O((n_a + n_b) d^2) work.
    out_dtype = s_a.dtype
    s_a, s_b, t_a, t_b = (v.to(torch.float64) for v in (s_a, s_b, t_a, t_b))
    ss = (s_a.T @ s_a * (s_b.T @ s_b)).sum()
    st = (s_a.T @ t_a * (s_b.T @ t_b)).sum()
    tt = (t_a.T @ t_a * (t_b.T @ t_b)).sum()
    return ((ss - 2 * st + tt).clamp(min=0) / (s_a.size(0) * s_b.size(0))).to(out_dtype)


def relation_loss(student: Dict[str, Tensor], teacher: Dict[str, Tensor], target: str,
                  types: Optional[Sequence[str]] = None) -> Tensor:
    """HIRE's relation-level term: Σ over (target, t) of :func:`cross_similarity_gap`, for each type
    ``t`` in ``types`` (default: every type both dictionaries hold).

    Example:
        >>> s = {"movie": torch.randn(6, 4, requires_grad=True), "actor": torch.randn(3, 4)}
        >>> t = {"movie": torch.randn(6, 8), "actor": torch.randn(3, 8)}
        >>> loss = relation_loss(s, t, "movie")
        >>> loss.backward(); bool(loss > 0), s["movie"].grad.abs().sum() > 0
        (True, tensor(True))
    """
    if target not in student or target not in teacher:
        raise ValueError(f"relation_loss: both models must embed the target type {target!r}")
    pick = [t for t in (types if types is not None else sorted(set(student) & set(teacher)))]
    missing = [t for t in pick if t not in student or t not in teacher]
    if missing:
        raise ValueError(f"relation_loss: type {missing[0]!r} is not embedded by both models (student: "
                         f"{sorted(student)}, teacher: {sorted(teacher)})")
    total = student[target].sum() * 0.0
    for t in pick:
        total = total + cross_similarity_gap(student[target], student[t], teacher[target], teacher[t])
    return total
