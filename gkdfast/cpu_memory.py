"""Reuse of freed CPU memory between training steps (glibc's allocator settings).

PyTorch takes CPU tensor memory from ``malloc``.  glibc serves any request above its mmap threshold
(at most 32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when the tensor dies, so a
step that makes a few hundred-megabyte temporaries pays a page fault for every 4 KiB page of each,
every step.  On GSDN's Facebook step (five ``[78k, 1024]`` row sets per batch) that was more than
half of the epoch: 77 s, against 33 s when freed memory is kept (``docs/cpu-memory.md``).

:func:`keep_freed_memory` tells glibc to serve large requests from the heap and not to give freed
heap memory back, so the next step's tensors land on pages that are already mapped.  The price:
the process keeps its peak heap size until :func:`release_freed_memory` (``malloc_trim``), which the
out-of-core pipeline calls before it reads the free memory of the machine.

The ``gkdfast`` command turns this on at start (``GKDFAST_KEEP_FREED_MEMORY=0`` leaves glibc's
defaults); a library caller decides for their own process.  Elsewhere than glibc (macOS, musl)
both functions do nothing and return ``False``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Optional

__all__ = ["keep_freed_memory", "release_freed_memory", "keeping_freed_memory"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# glibc's defaults, restored by keep_freed_memory(False)
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_KEEP_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest heap top glibc then leaves mapped

_libc: Optional[ctypes.CDLL] = None
_probed = False
_PROBE_LOCK = threading.Lock()
_keeping = False


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else ``None``;
    looked up once per process."""
    global _libc, _probed
    with _PROBE_LOCK:  # (a second thread saw _probed set before the lookup had set _libc)
        if not _probed and sys.platform.startswith("linux"):
            _libc = _find_glibc()
            _probed = True
    return _libc


def _find_glibc() -> Optional[ctypes.CDLL]:
    """The lookup of :func:`_glibc`."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") and hasattr(lib, "gnu_get_libc_version")):
        return None
    lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lib


def keep_freed_memory(enable: bool = True) -> bool:
    """Serve large CPU allocations from the heap and keep freed memory for reuse (``enable=True``),
    or go back to glibc's default limits (``False``; its adaptive mmap threshold stays off).

    Returns:
        whether glibc accepted the settings (``False`` on other C libraries: nothing changed).

    Example:
        >>> from gkdfast.cpu_memory import keep_freed_memory, keeping_freed_memory
        >>> ok = keep_freed_memory()
        >>> keeping_freed_memory() == ok
        True
        >>> _ = keep_freed_memory(False)
    """
    global _keeping
    lib = _glibc()
    if lib is None:
        return False
    mmap_max, trim = (0, _KEEP_TRIM_THRESHOLD) if enable else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    ok = bool(lib.mallopt(_M_MMAP_MAX, mmap_max)) and bool(lib.mallopt(_M_TRIM_THRESHOLD, trim))
    _keeping = bool(enable and ok)
    return ok


def keeping_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` is in effect in this process.

    Example:
        >>> from gkdfast.cpu_memory import keep_freed_memory, keeping_freed_memory
        >>> before = keeping_freed_memory()
        >>> ok = keep_freed_memory(); keeping_freed_memory() == ok  # on when glibc accepted the settings
        True
        >>> _ = keep_freed_memory(False); keeping_freed_memory()
        False
        >>> _ = keep_freed_memory(before)  # (leave the process as it was)
    """
    return _keeping


def release_freed_memory() -> bool:
    """Gives the heap's free pages back to the system (``malloc_trim(0)``), so that ``MemAvailable``
    and the resident set show what the process really holds.  Returns ``False`` where not glibc.

    Example:
        >>> from gkdfast.cpu_memory import release_freed_memory
        >>> release_freed_memory() in (True, False)
        True
    """
    lib = _glibc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True
