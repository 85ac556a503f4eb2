"""Pure-PyTorch dropout with the kernels' Philox mask (``docs/ops.md``, "dropout").

Element ``e`` of the flattened tensor is kept when word ``e % 4`` of the Philox-4x32-10 block with
counter ``(lo32(e // 4), hi32(e // 4), 0, DROPOUT_DOMAIN)`` and key ``seed`` is at least
``floor(p * 2**32)``; the output is ``x * (1 / (1 - p))`` where kept and ``x * 0`` elsewhere, the
product formed in float32 (float64 for float64 inputs).  The
words come from :func:`gkdfast.reference.contrastive.philox_words`, the same vectorised Philox the
negative sampler's oracle uses, so this is bit-identical to ``csrc/cpu/dropout_cpu.cpp`` and
``csrc/cuda/dropout_cuda.cu``.  It is the test oracle and the fallback of
:func:`gkdfast.nn.philox_dropout.dropout`; its ten Philox rounds in int64 tensor arithmetic make it slow.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gkdfast.reference.contrastive import philox_words

__all__ = ["DROPOUT_DOMAIN", "dropout_keep", "dropout"]

DROPOUT_DOMAIN = 0x64720000  # "dr"; csrc/common/philox.h kDropoutDomain


def dropout_keep(numel: int, p: float, seed: int, device=None) -> Tensor:
    """``[numel]`` bool: which flattened positions the kernels keep for ``(p, seed)``.

    Example:
        >>> keep = dropout_keep(10_000, 0.3, seed=1)
        >>> abs(keep.float().mean().item() - 0.7) < 0.02
        True
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"gkdfast.dropout: p must be in [0, 1], got {p}")
    if p == 1.0:
        return torch.zeros(numel, dtype=torch.bool, device=device)
    e = torch.arange(numel, dtype=torch.int64, device=device)
    words = philox_words(e >> 2, e & 3, DROPOUT_DOMAIN, int(seed) & ((1 << 64) - 1))
    return words >= math.floor(p * 2.0 ** 32)


def dropout(x: Tensor, p: float, seed: int) -> Tensor:
    """``x * (1 / (1 - p))`` where :func:`dropout_keep` keeps, ``x * 0`` elsewhere (same shape and
    dtype as ``x``; the product in float32, float64 for float64).

    Example:
        >>> x = torch.ones(2, 3)
        >>> out = dropout(x, 0.5, seed=0)
        >>> bool(((out == 0) | (out == 2)).all())
        True
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    keep = dropout_keep(x.numel(), p, seed, x.device).view(x.shape)
    factor = torch.where(keep, torch.tensor(1.0 / (1.0 - p) if p < 1.0 else 0.0, dtype=acc, device=x.device),
                         torch.zeros((), dtype=acc, device=x.device))
    return (x.to(acc) * factor).to(x.dtype)
