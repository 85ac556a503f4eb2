"""Dropout whose mask is a counter-based function of ``(seed, position)`` (native op
``torch.ops.gkdfast.dropout``, CPU and CUDA; pure-PyTorch oracle
:func:`gkdfast.reference.dropout.dropout`).

Why not ``torch.nn.functional.dropout``: on CPU it draws a Bernoulli tensor (12-16 ns per
element on one thread) and keeps a mask as large as the input, in the input's dtype, until the
backward.  Here the mask is Philox-4x32-10 of the element's position (``docs/ops.md``, "dropout"):
drawn in 0.6-1.5 ns per element (one thread; AVX-512 / AVX2 machines), never stored (the backward re-draws it from the seed), and
identical on CPU and CUDA for the same seed.  The seed of a call comes from torch's default CPU
generator, so ``torch.manual_seed`` makes runs repeatable, checkpoints restore it, and the draws of
``F.dropout`` elsewhere are not disturbed more than by one 64-bit draw per call.

gkdfast's models drop out through :func:`model_dropout`, which takes this op unless
``gkdfast.settings.dropout_impl("torch")`` (``GKDFAST_DROPOUT=torch``) asks for torch's, or the call is
being traced by ``torch.compile`` (whose generated code fuses torch's own dropout; the seed draw here
would break the graph).

Example:
    >>> import torch
    >>> from gkdfast.nn import Dropout
    >>> _ = torch.manual_seed(0)
    >>> out = Dropout(0.5)(torch.ones(4, 8))
    >>> sorted(set(out.flatten().tolist()))
    [0.0, 2.0]
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast import _backend
from gkdfast.reference import dropout as _ref
from gkdfast._tracing import tracing

__all__ = ["dropout", "model_dropout", "Dropout", "draw_seed", "dropout_implementation"]


def draw_seed(generator: Optional[torch.Generator] = None) -> int:
    """A 63-bit seed from ``generator`` (default: torch's global CPU generator).

    Example:
        >>> _ = torch.manual_seed(0); a = draw_seed(); _ = torch.manual_seed(0)
        >>> a == draw_seed()
        True
    """
    return int(torch.empty((), dtype=torch.int64).random_(generator=generator))


def dropout(x: Tensor, p: float = 0.5, training: bool = True, seed: Optional[int] = None) -> Tensor:
    """Zeroes each element of ``x`` with probability ``p`` and scales the rest by ``1 / (1 - p)``.

    Args:
        x: a floating tensor of any shape (native kernels for float32, float64, float16 and bfloat16
            on CPU and CUDA).
        p: drop probability in ``[0, 1]``.  training: ``False`` returns ``x`` unchanged.
        seed: the mask's seed (any int, taken modulo 2^64); ``None`` draws one with
            :func:`draw_seed`.  The same ``(seed, p, x.shape)`` gives the same mask on every device.
            Under ``torch.compile`` and ``torch.func`` transforms a ``None`` seed runs
            ``torch.nn.functional.dropout`` (drawing a seed reads a value, which neither traces nor
            batches under ``vmap``), as :func:`model_dropout` does.

    Returns:
        ``x`` itself when ``p == 0`` or not training; else a contiguous tensor shaped like ``x``:
        ``x * (1 / (1 - p))`` where kept, ``x * 0`` where dropped (0, or NaN where ``x`` is NaN or
        infinite, as with ``torch.nn.functional.dropout``).
        Differentiable (any order): the gradient is the same mask and scale.

    Example:
        >>> x = torch.arange(1.0, 9.0)
        >>> a = dropout(x, 0.5, seed=7)
        >>> torch.equal(a, dropout(x, 0.5, seed=7)), bool(((a == 0) | (a == 2 * x)).all())
        (True, True)
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"gkdfast.dropout: x must be a floating tensor, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"gkdfast.dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if seed is None and (tracing() or _backend.transforms_active()):
        return torch.nn.functional.dropout(x, p, True)
    seed = draw_seed() if seed is None else int(seed)
    seed = ((seed + (1 << 63)) % (1 << 64)) - (1 << 63)  # the same 64 bits, as a signed int64 for the schema
    if _backend.choose("dropout", x.device, x.dtype) == "reference":
        return _ref.dropout(x, p, seed)
    return torch.ops.gkdfast.dropout(x, p, seed)


def dropout_implementation() -> str:
    """``GKDFAST_DROPOUT``: ``"philox"`` (default) or ``"torch"``; part of every checkpoint and teacher
    selection key, since it changes how a model trains.

    Example:
        >>> dropout_implementation() in ("philox", "torch")
        True
    """
    impl = os.environ.get("GKDFAST_DROPOUT", "philox").strip().lower() or "philox"
    if impl not in ("philox", "torch"):
        raise ValueError(f"GKDFAST_DROPOUT must be 'philox' or 'torch', got {impl!r}")
    return impl


def _use_torch() -> bool:
    return dropout_implementation() == "torch" or tracing()


def model_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """The dropout of gkdfast's models: :func:`dropout`, or ``torch.nn.functional.dropout`` under
    ``GKDFAST_DROPOUT=torch`` (``gkdfast.settings.dropout_impl``) and while ``torch.compile`` traces.

    Example:
        >>> x = torch.randn(3, 4)
        >>> model_dropout(x, 0.5, training=False) is x
        True
    """
    if not training or not p:
        return x
    if _use_torch():
        return F.dropout(x, p, training=True)
    return dropout(x, p, training=True)


class Dropout(nn.Module):
    """Drop-in for ``torch.nn.Dropout`` on :func:`model_dropout` (by default the counter-based mask
    of :func:`dropout`, nothing stored for backward).  ``[*] -> [*]``.

    Example:
        >>> m = Dropout(0.1).eval()
        >>> x = torch.randn(3, 4)
        >>> m(x) is x
        True
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"gkdfast.nn.Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return model_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
