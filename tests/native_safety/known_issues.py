"""Kernel behaviours the fuzz suite found that differ from the reference and need a change in csrc/
(each pinned by a strict xfail test in tests/test_fuzz.py, so fixing the kernel turns that test red
until the entry is removed here).  The fuzzers count an example that hits one instead of comparing it.
"""
from __future__ import annotations

import re
from typing import Optional

import torch
from torch import Tensor

ISSUES = {
    "msg_dtype_mismatch": "infonce family: 'dtype mismatch Long vs Float' names no argument",
    "msg_expected_floating": "gram_lse / infonce: 'expected a floating tensor, got Long' names no argument",
    "spmm_max_nan": "spmm max/min: a NaN message is ignored unless it is its row's first edge "
                    "(the reference, like torch.amax, propagates it)",
    "lsp_nonfinite": "lsp: NaN/Inf in the embeddings (or kernel values that overflow to Inf) gives a per-node "
                     "loss of 0 (the reference gives NaN)",
    "edge_softmax_nan": "edge_softmax: a NaN score gives NaN on its own edge and 0 on the row's other edges "
                        "(the reference, like torch.softmax, gives NaN on the whole row)",
    "infonce_nonfinite": "infonce with sampled negatives: when every logit of a row is -inf (infinite "
                         "inputs), the kernel's log-sum-exp is NaN (the reference gives -inf)",
    "gsp_nonfinite": "gsp_tiled with the l2 / rbf / laplace kernels: NaN/Inf in the embeddings gives a finite "
                     "loss (the distance clamp drops the NaN; the reference gives NaN)",
}


def spmm_issue(col: Tensor, x: Tensor, reduce: str, weight: Optional[Tensor]) -> Optional[str]:
    """``"spmm_max_nan"`` when a max/min spmm over these (valid) arrays has a NaN message."""
    if reduce not in ("max", "min", "amax", "amin") or x.dim() != 2 or col.numel() == 0:
        return None
    msg = x[col.long()]
    if weight is not None:
        msg = msg * weight.reshape(-1, 1).to(msg.dtype)
    return "spmm_max_nan" if bool(msg.isnan().any()) else None


def _tame(*tensors: Tensor) -> bool:
    """Finite, and small enough that no kernel value (a product or squared distance of two rows)
    overflows float32."""
    return all(bool(torch.isfinite(t).all()) and (t.numel() == 0 or float(t.abs().max()) < 1e15) for t in tensors)


def lsp_issue(student: Tensor, teacher: Tensor) -> Optional[str]:
    """``"lsp_nonfinite"`` when either embedding has a NaN, an infinity or a value that overflows."""
    return None if _tame(student, teacher) else "lsp_nonfinite"


def edge_softmax_issue(scores: Tensor) -> Optional[str]:
    """``"edge_softmax_nan"`` when a score is NaN."""
    return "edge_softmax_nan" if bool(scores.isnan().any()) else None


# One-line messages that name no argument (the rule of the fuzz suite), keyed like ISSUES.
MESSAGES = {
    "msg_dtype_mismatch": re.compile(r"^gkdfast\.[a-z_]+: dtype mismatch \w+ vs \w+$"),
    "msg_expected_floating": re.compile(r"^gkdfast\.[a-z_]+: expected a floating tensor, got \w+$"),
}


def message_issue(message: str) -> Optional[str]:
    """The ISSUES key of a known message that names no argument, or None."""
    return next((k for k, pat in MESSAGES.items() if pat.match(message)), None)


def gsp_issue(student: Tensor, teacher: Tensor, kernel: str) -> Optional[str]:
    """``"gsp_nonfinite"`` for a distance kernel over embeddings with a NaN or an infinity."""
    if kernel not in ("l2", "rbf", "laplace"):
        return None
    return None if _tame(student, teacher) else "gsp_nonfinite"


def infonce_issue(a: Tensor, c: Tensor, num_negatives: int) -> Optional[str]:
    """``"infonce_nonfinite"`` for the sampled kernel over inputs with an infinity or a NaN."""
    if num_negatives <= 0:
        return None
    return None if _tame(a, c) else "infonce_nonfinite"
