"""How gkdfast's functions behave inside ``torch.autocast`` regions.

PyTorch runs its own losses (``cross_entropy``, ``kl_div``, ``mse_loss``, ``log_softmax``, ...) in
float32 under autocast: they reduce over many terms and cancel large ones, which half types cannot
carry.  gkdfast's losses do the same through :func:`float32_loss`: inside an autocast region their
half / bfloat16 tensor arguments are cast to float32 and the body runs with autocast off, so

* the result is float32 (a ``GradScaler``'s scaled gradient then fits; a float16 loss overflowed at
  the default scale of 65,536),
* a float32 teacher is compared as it is, not rounded to the student's bfloat16,
* on the CPU the native float32 kernels run (O(N·d) memory) instead of the pure-PyTorch fallback,
  whose N x N / E x d products autocast would otherwise also run in bfloat16 (a crd loss came out
  negative, a float16 gsp inf).

Message passing (``spmm``) is matmul-like: it runs in the region's dtype where a kernel takes it
(CUDA) and in float32 elsewhere, with the edge weights cast alike; see :func:`message_dtype`.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from gkdfast._rows import ordered_sum

_NARROW = (torch.float16, torch.bfloat16)


def autocast_on(device_type: str) -> bool:
    """Whether an autocast region is active for ``device_type`` (``"cpu"``, ``"cuda"``, ...)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # older torch: CUDA only, no argument
        return device_type == "cuda" and torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (meta): never a region
        return False


def _widen(value):
    if isinstance(value, Tensor):
        return value.float() if value.dtype in _NARROW else value
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)(_widen(v) for v in value)
    return value


def _device_types(values: Iterable) -> set:
    out = set()
    for v in values:
        if isinstance(v, Tensor):
            out.add(v.device.type)
        elif isinstance(v, (list, tuple)):
            out |= _device_types(v)
    return out


def wide_sum(x: Tensor) -> Tensor:
    """``x.sum()``, accumulated and returned in float32 for half / bfloat16 ``x`` (a loss's sum of many
    rows passes half's 65,504 long before its mean does); the caller casts back.

    Example:
        >>> wide_sum(torch.full((1000,), 70.0, dtype=torch.float16))
        tensor(70000.)
    """
    return ordered_sum(x, torch.float32 if x.dtype in _NARROW else None)  # (the same bits for any thread count)


def float32_loss(fn: Callable) -> Callable:
    """Decorator for a public loss: inside an autocast region, half / bfloat16 tensor arguments (also
    inside lists, e.g. ``relation``'s blocks) become float32 and ``fn`` runs with autocast off; outside
    one, ``fn`` runs unchanged.

    Example:
        >>> @float32_loss
        ... def sq(x):
        ...     return (x * x).sum()
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     sq(torch.ones(3, dtype=torch.bfloat16)).dtype
        torch.float32
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        devices = sorted(d for d in _device_types(list(args) + list(kwargs.values())) if autocast_on(d))
        if not devices:
            return fn(*args, **kwargs)
        widened = tuple(_widen(a) for a in args), {k: _widen(v) for k, v in kwargs.items()}
        return _without_autocast(devices, fn, *widened)

    return wrapper


def _without_autocast(device_types, fn, args, kwargs):
    """``fn(*args, **kwargs)`` with autocast off on every device type given (plain ``with`` blocks,
    which torch.compile traces)."""
    if not device_types:
        return fn(*args, **kwargs)
    with torch.autocast(device_types[0], enabled=False):
        return _without_autocast(device_types[1:], fn, args, kwargs)


_AUTOCAST_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                   "float16": torch.float16, "half": torch.float16}


def autocast_dtype(value, who: str) -> Optional[torch.dtype]:
    """A mixed-precision setting as a dtype: ``None`` (off), ``torch.bfloat16`` / ``torch.float16`` or
    their names (``"bf16"``, ``"bfloat16"``, ``"fp16"``, ``"float16"``, ``"half"``); ValueError naming
    ``who`` otherwise.

    Example:
        >>> autocast_dtype("bf16", "Distiller")
        torch.bfloat16
    """
    if value is None or value in _NARROW:
        return value
    if isinstance(value, str) and value.lower() in _AUTOCAST_NAMES:
        return _AUTOCAST_NAMES[value.lower()]
    raise ValueError(f"{who}: autocast must be None, torch.bfloat16, torch.float16 or one of "
                     f"{', '.join(sorted(_AUTOCAST_NAMES))}, got {value!r}")


def call_without_autocast(device_type: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, with autocast off for ``device_type`` if a region is active there."""
    return _without_autocast([device_type] if autocast_on(device_type) else [], fn, args, kwargs)


def _autocast_dtype(device_type: str) -> torch.dtype:
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # older torch
        return torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.get_autocast_cpu_dtype()


def message_dtype(x: Tensor, native_dtypes) -> torch.dtype:
    """The dtype message passing runs in: ``x``'s outside autocast; inside an autocast region the
    region's dtype, as for a matmul, where a native kernel takes it (CUDA), else float32 (the CPU
    kernels), so that the fallback's E x d messages are never built.  Edge weights follow (attention
    coefficients formed against float32 parameters are float32).  float64 stays float64.

    Example:
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     message_dtype(torch.ones(2, dtype=torch.bfloat16), (torch.float32, torch.float64))
        torch.float32
    """
    if not autocast_on(x.device.type) or x.dtype == torch.float64:
        return x.dtype
    low = _autocast_dtype(x.device.type)
    return low if low in native_dtypes else torch.float32
