"""``gkdfast::deepwalk`` (csrc/ops/deepwalk.h): fake kernel (an embedding matrix, no gradient)."""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake(rowptr, col, starts, dim, walk_length, window, negative, lr, seed, deterministic):
    return rowptr.new_empty((rowptr.shape[0] - 1, dim), dtype=torch.float32)


def register() -> None:
    """Registers the fake kernel of deepwalk (nothing on a build without the op)."""
    if has_op("deepwalk"):
        register_op("deepwalk", _fake)
