"""Memory checks and per-stage measurements for the out-of-core pipeline (:mod:`gkdfast.distill.large`).

Before a stage runs, its memory need is estimated from the sizes involved and compared with what the
kernel says is available (``MemAvailable`` in ``/proc/meminfo``): a stage that cannot fit stops at
once with one line saying what it needs, what is free and which flag lowers it, instead of being
killed by the OOM killer an hour in.  While it runs, :class:`StageTimer` records wall time and the
stage's own peak resident set size (Linux lets a process reset its high-water mark through
``/proc/self/clear_refs``; elsewhere the process-wide ``ru_maxrss`` is reported).
"""
from __future__ import annotations

import resource
import sys
import time
from typing import Dict, Optional

from gkdfast.cpu_memory import release_freed_memory

__all__ = ["InsufficientMemory", "mem_available", "check_memory", "format_bytes", "StageTimer", "peak_rss"]

GiB = float(1 << 30)


class InsufficientMemory(MemoryError):
    """A stage's estimated memory need exceeds the available memory."""


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``; binary units.

    Example:
        >>> format_bytes(3 * 2**30), format_bytes(512)
        ('3.00 GiB', '512 B')
    """
    n = float(n)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if unit == "GiB" else f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def mem_available() -> Optional[int]:
    """Bytes the kernel estimates can be allocated without swapping (``MemAvailable``), or ``None``
    where ``/proc/meminfo`` does not exist (then no check is made).

    Example:
        >>> m = mem_available()
        >>> m is None or m > 0
        True
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(stage: str, parts: Dict[str, float], hint: str, available: Optional[int] = None,
                 fraction: float = 0.9) -> int:
    """Raises :class:`InsufficientMemory` when ``sum(parts)`` exceeds ``fraction`` of the available
    memory; returns the estimated total in bytes.

    Args:
        stage: the stage's name (for the message).  parts: named byte counts making up the estimate.
        hint: which settings lower the need, e.g. ``"lower --chunk-rows (now 65536) or --hidden (now 256)"``.
        available: bytes free (default :func:`mem_available`; ``None`` there skips the check).
        fraction: share of the available memory a stage may plan to use (headroom for the rest).

    Example:
        >>> check_memory("inference", {"layer matrices": 2**20}, "lower --chunk-rows", available=2**30)
        1048576
        >>> check_memory("inference", {"layer matrices": 2**31}, "lower --chunk-rows", available=2**30)
        Traceback (most recent call last):
        ...
        gkdfast.distill.memory.InsufficientMemory: stage 'inference' needs about 2.00 GiB (layer matrices 2.00 GiB) but only 1.00 GiB is available (MemAvailable; 90% may be planned): lower --chunk-rows
    """
    total = int(sum(parts.values()))
    if available is None:  # memory this process freed but kept for reuse (gkdfast.cpu_memory) is free
        release_freed_memory()
    free = mem_available() if available is None else int(available)
    if free is not None and total > fraction * free:
        detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
                           if v >= 1 << 20) or "small parts"
        raise InsufficientMemory(f"stage '{stage}' needs about {format_bytes(total)} ({detail}) but only "
                                 f"{format_bytes(free)} is available (MemAvailable; {fraction:.0%} may be "
                                 f"planned): {hint}")
    return total


def peak_rss() -> int:
    """The process's peak resident set size in bytes (``ru_maxrss``; KiB on Linux, bytes on macOS).

    Example:
        >>> peak_rss() > 0
        True
    """
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _vm_status(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads): unlike wall time, barely affected by
    other jobs competing for the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class StageTimer:
    """Context manager measuring one stage: wall seconds, CPU seconds and its peak RSS.

    ``peak_rss_bytes`` is the stage's own high-water mark where the kernel allows resetting it
    (``peak_rss_scope == "stage"``), else the process's peak so far (``"process"``);
    ``rss_start_bytes`` the resident set when the stage began (what the stage added is the difference).

    Example:
        >>> with StageTimer("demo") as st:
        ...     _ = sum(range(1000))
        >>> sorted(st.record)
        ['cpu_seconds', 'estimate_bytes', 'peak_rss_bytes', 'peak_rss_scope', 'rss_start_bytes', 'seconds', 'stage']
    """

    def __init__(self, stage: str, estimate_bytes: int = 0):
        self.record = {"stage": stage, "estimate_bytes": int(estimate_bytes)}

    def __enter__(self) -> "StageTimer":
        release_freed_memory()  # the earlier stages' kept free pages are not this stage's
        self.record["rss_start_bytes"] = int(_vm_status("VmRSS") or 0)
        self._scoped = _reset_hwm() and _vm_status("VmHWM") is not None
        self._t0, self._cpu0 = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.record["seconds"] = time.perf_counter() - self._t0
        self.record["cpu_seconds"] = _cpu_seconds() - self._cpu0
        hwm = _vm_status("VmHWM") if self._scoped else None
        self.record["peak_rss_bytes"] = int(hwm if hwm is not None else peak_rss())
        self.record["peak_rss_scope"] = "stage" if hwm is not None else "process"
