"""Kernel behaviours the fuzz suite found that differ from the reference and need a change in csrc/
(each pinned by a strict xfail test in tests/test_fuzz.py, so fixing the kernel turns that test red
until the entry is removed here).  The fuzzers count an example that hits one instead of comparing it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

ISSUES = {
    "lsp_nonfinite": "lsp: Inf in the embeddings (or kernel values that overflow to Inf) can give a finite per-node "
                     "loss where the reference gives NaN (NaN inputs propagate)",
    "infonce_nonfinite": "infonce with sampled negatives: when a row holds +inf logits more than once (infinite "
                         "inputs), the kernel's log-sum-exp is NaN (the reference gives +inf); -inf logits are "
                         "skipped as the reference's, since session 34",
    "gsp_nonfinite": "gsp_tiled with the l2 / rbf / laplace kernels: Inf in the embeddings gives distances from "
                     "||a||^2 + ||b||^2 - 2 a.b (NaN) where the reference's direct differences give Inf (NaN "
                     "inputs propagate)",
}


def _tame(*tensors: Tensor) -> bool:
    """No infinity, and small enough that no kernel value (a product or squared distance of two
    rows) overflows float32; NaN entries are allowed (the kernels propagate them)."""
    def ok(t: Tensor) -> bool:
        v = t[~t.isnan()]
        return bool(torch.isfinite(v).all()) and (v.numel() == 0 or float(v.abs().max()) < 1e15)
    return all(ok(t) for t in tensors)


def lsp_issue(student: Tensor, teacher: Tensor) -> Optional[str]:
    """``"lsp_nonfinite"`` when either embedding has an infinity or a value that overflows."""
    return None if _tame(student, teacher) else "lsp_nonfinite"


# One-line messages that name no argument (the rule of the fuzz suite), keyed like ISSUES.
MESSAGES: dict = {}  # every kernel message names its argument now


def message_issue(message: str) -> Optional[str]:
    """The ISSUES key of a known message that names no argument, or None."""
    return next((k for k, pat in MESSAGES.items() if pat.match(message)), None)


def gsp_issue(student: Tensor, teacher: Tensor, kernel: str) -> Optional[str]:
    """``"gsp_nonfinite"`` for a distance kernel over embeddings with an infinity or a huge value."""
    if kernel not in ("l2", "rbf", "laplace"):
        return None
    return None if _tame(student, teacher) else "gsp_nonfinite"


def infonce_issue(a: Tensor, c: Tensor, num_negatives: int) -> Optional[str]:
    """``"infonce_nonfinite"`` for the sampled kernel over inputs with an infinity or a NaN."""
    if num_negatives <= 0:
        return None
    return None if _tame(a, c) else "infonce_nonfinite"
