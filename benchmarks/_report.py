"""Small helpers every gkdfast benchmark can reuse: timing, a text table, JSON and a bar chart.

A *row* is a plain dict with at least ``case`` (what was measured, e.g. "sum fwd"), ``impl`` (who ran
it) and ``ms`` (median milliseconds, or None for "not available"); any other keys (``gbps``, ``size``,
``note``) are carried into the JSON and, when listed in ``extra_cols``, into the table.  Ratios are
computed against a baseline impl per case: ``ratio = peer_ms / baseline_ms`` (> 1: baseline is faster).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch

import gkdfast


def time_fn(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, max_seconds: float = 30.0) -> float:
    """Median wall time of ``fn()`` in milliseconds (after ``warmup`` untimed calls), CUDA work included.
    Stops early once ``max_seconds`` have been spent, so slow peers cannot stall a run."""
    return time_interleaved({"fn": fn}, repeats, warmup, max_seconds)["fn"]["ms"]


def time_interleaved(fns: Dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                     max_seconds: float = 30.0) -> Dict[str, dict]:
    """``{name: {"ms": median, "samples": count}}`` of every ``fns`` entry, timed round-robin (one call
    of each per round, after ``warmup`` rounds): the implementations see the same machine load, which
    on a shared machine moves a block-by-block comparison by several times.  An entry whose own time
    passes ``max_seconds`` stops being timed (its samples so far count).

    Example:
        >>> r = time_interleaved({"a": lambda: None, "b": lambda: None}, repeats=3)
        >>> sorted(r), r["a"]["samples"]
        (['a', 'b'], 3)
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    # CUDA work is asynchronous: wait for it on both sides of each timed call (a no-op on CPU runs).
    # Decided after the warm-up, which initialises CUDA when a closure is the first to use it.
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    wait = torch.cuda.synchronize if cuda else (lambda: None)
    times: Dict[str, List[float]] = {k: [] for k in fns}
    spent = {k: 0.0 for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if spent[name] > max_seconds:
                continue
            wait()
            t0 = time.perf_counter()
            fn()
            wait()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            spent[name] += dt
    return {k: {"ms": 1e3 * statistics.median(v), "samples": len(v)} for k, v in times.items()}


def sync(device: torch.device) -> None:
    """Waits for queued CUDA work (a no-op on CPU), so a timing or memory reading covers all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def _release_free_heap() -> None:
    """Hands the C heap's free pages back to the system (glibc ``malloc_trim``), so that a block which
    reuses memory an earlier run freed is charged for it: RSS counts mapped pages, and without this a
    measurement taken after the timed runs of the same function read a fraction of a cold one.  A no-op
    where glibc is not the allocator."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def drop_grads() -> None:
    """Sets ``.grad`` of every live leaf tensor to None.  A memory measurement starts from here: a step
    that frees the last run's gradients and makes new ones would otherwise never count them (they
    were in the starting value), on one side of a comparison and not the other."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (isinstance on deprecated module aliases warns)
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and obj.is_leaf and obj.grad is not None:
                    obj.grad = None
            except Exception:  # (objects that fail isinstance / attribute access mid-teardown)
                continue


def measure_step(step, device, repeats: int, max_seconds: float):
    """(median ms, peak extra MiB) of ``step()``: timed first, then one separate run for the memory,
    from a clean state (no gradient left over from the timed runs, the heap's free pages released)."""
    def run():
        step()
        sync(device)

    ms = time_fn(run, repeats=repeats, warmup=1, max_seconds=max_seconds)
    drop_grads()
    sync(device)
    with PeakMemory(device) as pm:
        run()
    return ms, pm.peak_bytes / 2**20


class PeakMemory:
    """Peak extra memory while the block runs: CUDA allocator peak, or process RSS sampled every
    ``interval`` seconds on CPU (plus once at the end), minus the value on entry.  Example::

        with PeakMemory(torch.device("cpu")) as pm:
            x = torch.empty(1 << 26).fill_(1)
        print(pm.peak_bytes / 2**20)  # about 256 (MiB)
    """

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval = device, interval
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        gc.collect()
        if self.device.type != "cuda":
            _release_free_heap()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._max = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._max, self._rss()) - self._base
        return False


class _KeepFreedMemory(argparse.Action):
    """``--keep-freed-memory``: :func:`gkdfast.cpu_memory.keep_freed_memory` as the flag is parsed
    (before the runner allocates anything).  The ``gkdfast`` command's training runs keep freed memory by
    default; runners (also those ``gkdfast bench`` starts) do only with this flag."""

    def __call__(self, parser, namespace, values, option_string=None):
        from gkdfast.cpu_memory import keep_freed_memory

        setattr(namespace, self.dest, keep_freed_memory())


def runner_parser(doc: str, repeats: int, max_seconds: float) -> argparse.ArgumentParser:
    """The arguments every standalone runner takes (``--out``, ``--repeats``, ``--max-seconds``,
    ``--keep-freed-memory``), described by the first paragraph of the runner's module docstring
    ``doc``; callers add their own."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", default="bench-out")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--max-seconds", type=float, default=max_seconds)
    p.add_argument("--keep-freed-memory", action=_KeepFreedMemory, nargs=0, default=False,
                   help="reuse freed CPU memory between steps (gkdfast.cpu_memory; the gkdfast command's default)")
    return p


def add_ratios(rows: List[dict], baseline: str = "gkdfast") -> List[dict]:
    """Sets ``row["ratio"] = row.ms / baseline.ms`` for the baseline row of the same case (and size)."""
    base: Dict[tuple, float] = {}
    for r in rows:
        if r["impl"] == baseline and r.get("ms"):
            base[(r.get("size"), r["case"])] = r["ms"]
    for r in rows:
        b = base.get((r.get("size"), r["case"]))
        r["ratio"] = (r["ms"] / b) if (b and r.get("ms")) else None
    return rows


def format_table(rows: Sequence[dict], extra_cols: Sequence[str] = ("gbps",), title: Optional[str] = None) -> str:
    """A fixed-width text table: size, case, impl, ms, ratio (x slower than the baseline), extras."""
    cols = ["size", "case", "impl", "ms", "ratio", *extra_cols, "note"]
    has = [c for c in cols if any(r.get(c) is not None for r in rows)]

    def cell(r, c):
        v = r.get(c)
        if v is None:
            return "n/a" if c in ("ms", "ratio") else ""
        if c == "ms":
            return f"{v:.3f}"
        if c == "ratio":
            return f"{v:.2f}x"
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v)

    body = [[cell(r, c) for c in has] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(has)]
    lines = [] if title is None else [title]
    lines.append("  ".join(c.ljust(w) for c, w in zip(has, widths)))
    lines.append("  ".join("-" * w for w in widths))
    prev_key = None
    for r, b in zip(rows, body):
        key = (r.get("size"), r["case"])
        if prev_key is not None and key != prev_key:
            lines.append("")
        prev_key = key
        lines.append("  ".join(v.ljust(w) for v, w in zip(b, widths)))
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _source_revision() -> Optional[str]:
    """The checkout's commit, with ``+dirty`` for uncommitted changes (None outside a git checkout)."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty else "")


def machine_info() -> dict:
    """What the numbers were measured on, and with which code."""
    return {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gkdfast": getattr(gkdfast, "__version__", None),
        "gkdfast_revision": _source_revision(),
        "native_loaded": gkdfast.backend_info()["extension_loaded"],
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_json(rows: Iterable[dict], path: str, **meta) -> str:
    from gkdfast._io import atomic_write  # a run killed mid-write leaves the previous file whole

    text = json.dumps({"machine": machine_info(), **meta, "rows": list(rows)}, indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def bar_chart(rows: Sequence[dict], path: str, title: str = "", baseline: str = "gkdfast") -> Optional[str]:
    """Grouped bars of time per case (one colour per impl, log scale); None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return None
    cases = list(dict.fromkeys(f"{r['size']}\n{r['case']}" if r.get("size") else r["case"] for r in rows))
    # implementations with no timing (a peer not installed) get neither a bar nor a legend entry, and
    # each keeps one colour (an empty entry took the next colour: a missing peer showed as gkdfast's)
    impls = list(dict.fromkeys(r["impl"] for r in rows if r.get("ms")))
    if baseline in impls:
        impls.remove(baseline)
        impls.insert(0, baseline)
    fig_width = max(6.0, 1.1 * len(cases) * max(1, len(impls)) / 3)
    fig, ax = plt.subplots(figsize=(fig_width, 4.5))
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        xs, ys = [], []
        for c, case in enumerate(cases):
            for r in rows:
                label = f"{r['size']}\n{r['case']}" if r.get("size") else r["case"]
                if r["impl"] == impl and label == case and r.get("ms"):
                    xs.append(c + (k - (len(impls) - 1) / 2) * width)
                    ys.append(r["ms"])
        ax.bar(xs, ys, width=width, label=impl, color=f"C{k % 10}")
    ax.set_xticks(range(len(cases)))
    # labels wider than their slot (7-point text: about 0.055 inch a character) are slanted, not overlapped
    longest = max((len(line) for c in cases for line in c.split("\n")), default=0)
    crowded = longest * 0.055 > 0.9 * fig_width / max(1, len(cases))
    ax.set_xticklabels(cases, fontsize=7, rotation=30 if crowded else 0, ha="right" if crowded else "center",
                       rotation_mode="anchor")
    ax.set_yscale("log")
    ax.set_ylabel("ms (median, lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(rows: Sequence[dict], out_dir: str, name: str, chart_title: str, extra_cols: Sequence[str] = (),
           table_title: str = "\nratio = impl time / gkdfast time (>1: gkdfast faster)", **meta) -> None:
    """What every runner does with its rows: prints the table, writes ``OUT/<name>.json`` (with
    ``meta``) and ``OUT/<name>.png``, and says where."""
    print(format_table(rows, extra_cols=extra_cols, title=table_title))
    os.makedirs(out_dir, exist_ok=True)
    js = write_json(rows, os.path.join(out_dir, f"{name}.json"), benchmark=name, **meta)
    png = bar_chart(rows, os.path.join(out_dir, f"{name}.png"), title=chart_title)
    print(f"\nwrote {js}" + (f" and {png}" if png else ""))
