"""Pure-Python reading of the numbers of a text table: the oracle of ``gkdfast::parse_numbers`` and
its fallback (docs/ops.md, "Reading numbers from text").

Tokens are what ``text.replace(",", " ").split()`` gives; numpy converts them as a whole (strings to
float64, then float32 where asked, as numpy rounds; integers exactly, and integers written as floats
exactly too, past 2**53 through :class:`decimal.Decimal`).  Only when that fails is the first token
that is not a number located, by bisection over prefixes (each prefix converted as a whole), so a
large table that reads costs one vectorised conversion.
"""
from __future__ import annotations

import decimal
import itertools
import re
from typing import List, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["parse_numbers"]

_NUMPY = {torch.int64: np.int64, torch.float32: np.float32, torch.float64: np.float64}
_TOKEN = re.compile(r"[^\s,]+")
_INT64 = (-(2**63), 2**63 - 1)


class _NotNumbers(ValueError):
    """Some token of the list is not a number of the asked kind."""


def _integers(tokens: List[str]) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:  # integers written as floats ("12.0", "1.2e+03")
        as_float = np.array(tokens, dtype=np.float64)
    except ValueError:
        raise _NotNumbers from None
    if not np.all(np.isfinite(as_float) & (as_float == np.round(as_float))):
        raise _NotNumbers
    if as_float.size == 0 or float(np.abs(as_float).max()) < 2.0 ** 53:
        return as_float.astype(np.int64)  # every integer below 2**53 is exact in float64
    out = []
    for t in tokens:  # rare: huge ids written as floats; exact decimal arithmetic
        d = decimal.Decimal(t)
        if d != d.to_integral_value() or not _INT64[0] <= int(d) <= _INT64[1]:
            raise _NotNumbers
        out.append(int(d))
    return np.array(out, dtype=np.int64)


def _convert(tokens: List[str], dtype: torch.dtype) -> np.ndarray:
    if dtype == torch.int64:
        return _integers(tokens)
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, as numpy rounds it
            return np.array(tokens, dtype=_NUMPY[dtype])
    except (ValueError, OverflowError):
        raise _NotNumbers from None


def _status(code: int, offset: int) -> Tensor:
    return torch.tensor([code, offset], dtype=torch.int64)


def parse_numbers(text, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """``(values, status)`` as ``torch.ops.gkdfast.parse_numbers(text, dtype)`` (csrc/ops/number_table.h),
    except that this is Python's own parser, so the status is never 2.

    Args:
        text: ``bytes`` (decoded as UTF-8; an undecodable byte makes its token not a number) or ``str``.
        dtype: ``torch.int64``, ``torch.float32`` or ``torch.float64``.

    Returns:
        ``values`` 1-D ``dtype``; ``status`` int64 ``[0, -1]``, or ``[1, offset]`` with the byte offset
        (in the UTF-8 text) of the first token that is not a number, ``values`` then holding the
        tokens before it.

    Example:
        >>> parse_numbers(b"0,1\\n1,2.0\\n", torch.int64)
        (tensor([0, 1, 1, 2]), tensor([ 0, -1]))
    """
    if dtype not in _NUMPY:
        raise TypeError(f"gkdfast.parse_numbers: dtype must be int64, float32 or float64, got {dtype}")
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="surrogateescape")
    tokens = text.replace(",", " ").split()
    try:
        return torch.from_numpy(_convert(tokens, dtype)), _status(0, -1)
    except _NotNumbers:
        pass
    lo, hi = 0, len(tokens)  # tokens[:lo] convert, tokens[:hi] do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            _convert(tokens[:mid], dtype)
            lo = mid
        except _NotNumbers:
            hi = mid
    bad = next(itertools.islice(_TOKEN.finditer(text), hi - 1, None))
    offset = len(text[:bad.start()].encode("utf-8", errors="surrogateescape"))
    return torch.from_numpy(_convert(tokens[:hi - 1], dtype)), _status(1, offset)
