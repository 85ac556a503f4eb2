"""Spends torch's once-per-process warnings that gkdfast triggers on purpose, once, hidden.

``warnings.catch_warnings()`` swaps the process-wide filter list and is not thread-safe: entered on every
call from several threads, it left an "ignore UserWarning" filter behind for good, which then hid the
user's own warnings (helper 116).  The warnings in question are torch's ``TORCH_WARN_ONCE`` kind (a
read-only buffer or NumPy array made into a tensor, a sparse CSR tensor), so triggering each once on a
tiny input under the filter, under a lock, is enough: later calls warn nothing without any filter.
"""
from __future__ import annotations

import threading
import warnings
from typing import Callable

_SPENT: set = set()
_LOCK = threading.Lock()


def spend_once(key: str, trigger: Callable[[], object]) -> None:
    """Runs ``trigger`` (which makes torch emit its once-per-process warning ``key``) the first time only,
    with UserWarnings ignored; cheap afterwards.

    Example:
        >>> import torch
        >>> spend_once("frombuffer", lambda: torch.frombuffer(b"\\0", dtype=torch.uint8))
    """
    if key in _SPENT:
        return
    with _LOCK:
        if key in _SPENT:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trigger()
        _SPENT.add(key)
