"""Pure-PyTorch guided inverse-CDF search: the oracle of ``gkdfast::cdf_guide`` / ``cdf_search``
and their fallback (docs/ops.md, "Inverse-CDF search").

The guide is defined by the bucket of each entry (equal-width buckets over ``[cdf[0], cdf[-1]]``,
computed in float64 by the same steps as ``csrc/common/cdf_buckets.h``, so both give the same
guide); the search is ``torch.searchsorted(cdf, values)``, which the guide only speeds up.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bucket_of", "cdf_guide", "cdf_search"]


def _check_cdf(cdf: Tensor, op: str) -> None:
    if cdf.dim() != 1:
        raise ValueError(f"gkdfast.{op}: cdf must be 1-D, got {cdf.dim()}-D")
    if cdf.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"gkdfast.{op}: cdf must be float32 or float64, got {cdf.dtype}")


def bucket_of(values: Tensor, first: float, last: float, num_buckets: int) -> Tensor:
    """The bucket (int64, ``values``' shape) of each value among ``num_buckets`` equal-width buckets
    over ``[first, last]``, by the steps of ``csrc/common/cdf_buckets.h``: 0 when not ``v > first``
    (NaN excepted), the last bucket when not ``v < last`` and for NaN, else ``floor(t)`` capped at
    ``num_buckets - 1``, with ``t = (v - first) * scale`` and ``scale = num_buckets / (last - first)``
    (0 unless ``last - first > 0``), in float64 and in that order (``t`` NaN or past the last bucket:
    the last bucket).

    Example:
        >>> bucket_of(torch.tensor([0.0, 1.0, 2.5, 4.0, float("nan")]), 1.0, 4.0, 3).tolist()
        [0, 0, 1, 2, 2]
    """
    v = values.to(torch.float64)
    width = last - first
    scale = num_buckets / width if width > 0 else 0.0
    t = (v - first) * scale
    top = torch.full((), num_buckets - 1, dtype=torch.int64)
    fits = (t >= 0) & (t < num_buckets)  # false for NaN and past the last bucket: the last bucket
    inner = torch.where(fits, t, torch.zeros((), dtype=torch.float64)).to(torch.int64)
    inner = torch.where(fits, inner, top)
    out = torch.where(~(v < last), top, inner)  # as C++'s !(v < hi)
    out = torch.where(v > first, out, torch.zeros((), dtype=torch.int64))  # checked first, as in C++
    return torch.where(torch.isnan(v), top, out)


def cdf_guide(cdf: Tensor, num_buckets: int) -> Tensor:
    """``guide [num_buckets + 1]`` int64: ``guide[b]`` is the first index whose entry lies in bucket
    ``>= b`` (:func:`bucket_of`), ``guide[num_buckets] = len(cdf)``.

    Example:
        >>> cdf_guide(torch.tensor([1.0, 2.0, 4.0]), 3).tolist()   # buckets [1, 2), [2, 3), [3, 4]
        [0, 1, 2, 3]
    """
    _check_cdf(cdf, "cdf_guide")
    num_buckets = int(num_buckets)
    if not 1 <= num_buckets < 2**62:
        raise ValueError(f"gkdfast.cdf_guide: num_buckets must be in [1, 2^62), got {num_buckets}")
    n = cdf.numel()
    if n == 0:
        return torch.zeros(num_buckets + 1, dtype=torch.int64, device=cdf.device)
    bad = torch.isnan(cdf[:1]) if n == 1 else torch.cat([torch.isnan(cdf[:1]), ~(cdf[:-1] <= cdf[1:])])
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        what = " is NaN" if i == 0 else " is smaller than the one before it (or NaN)"
        raise ValueError(f"gkdfast.cdf_guide: cdf must be non-decreasing and free of NaN; entry {i}{what}")
    b = bucket_of(cdf, float(cdf[0]), float(cdf[-1]), num_buckets)
    return torch.searchsorted(b, torch.arange(num_buckets + 1, device=cdf.device))


def cdf_search(cdf: Tensor, guide: Tensor, values: Tensor) -> Tensor:
    """The first index ``i`` with ``cdf[i] >= value`` for each value (``len(cdf)`` where there is none,
    and for NaN): ``torch.searchsorted(cdf, values)``, int64, ``values``' shape.

    Example:
        >>> cdf = torch.tensor([1.0, 2.0, 4.0])
        >>> cdf_search(cdf, cdf_guide(cdf, 3), torch.tensor([0.5, 2.0, 3.5, 9.0])).tolist()
        [0, 1, 2, 3]
    """
    _check_cdf(cdf, "cdf_search")
    if guide.dim() != 1 or guide.numel() < 2:
        raise ValueError("gkdfast.cdf_search: guide must be 1-D with at least 2 entries (from cdf_guide), "
                         f"got shape {list(guide.shape)}")
    if guide.dtype != torch.int64:
        raise TypeError(f"gkdfast.cdf_search: guide must be int64 (from cdf_guide), got {guide.dtype}")
    if values.dtype != cdf.dtype:
        raise TypeError(f"gkdfast.cdf_search: values must have cdf's dtype ({cdf.dtype}), got {values.dtype}")
    if not cdf.device == guide.device == values.device:
        raise ValueError(f"gkdfast.cdf_search: cdf, guide and values must be on one device, got {cdf.device}, "
                         f"{guide.device} and {values.device}")
    return torch.searchsorted(cdf, values.contiguous())
