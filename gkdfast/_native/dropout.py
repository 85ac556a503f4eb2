"""``gkdfast::dropout`` (csrc/ops/dropout.h): fake kernel.  Its autograd is C++
(csrc/autograd/dropout_autograd.cpp): dropout is its own adjoint, the gradient is the same op with the
same ``(p, seed)`` on the upstream gradient, so the mask is re-drawn instead of stored, and any order of
derivative follows."""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake(x, p, seed):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def register() -> None:
    """Registers dropout's fake kernel (its autograd kernel is C++)."""
    if not has_op("dropout"):  # an extension built before the op existed
        return
    register_op("dropout", _fake)
