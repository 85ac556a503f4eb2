"""``gkdfast::ppr_topk`` (csrc/ops/ppr.h): fake kernel (indices and scores, no gradient)."""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake(rowptr, col, sources, k, alpha, eps):
    s = sources.shape[0]
    return sources.new_empty((s, k), dtype=torch.int64), sources.new_empty((s, k), dtype=torch.float32)


def register() -> None:
    """Registers the fake kernel of ppr_topk (nothing on a build without the op)."""
    if has_op("ppr_topk"):
        register_op("ppr_topk", _fake)
