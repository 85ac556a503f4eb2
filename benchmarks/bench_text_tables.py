"""Reading the numbers of a text table (edge lists and feature rows as OGB ships them): gkdfast's
``parse_numbers`` against the readers' previous path (``str.split`` into Python strings, then
``numpy.array(tokens, dtype)``) and ``numpy.loadtxt``.

Runner:  ``python benchmarks/bench_text_tables.py [--out DIR] [--edges E] [--rows N] [--memory]``
pytest:  ``pytest benchmarks/bench_text_tables.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Two texts, generated once in memory: an edge list of ``E`` lines ``src,dst`` (ids below 2.45 M, as
ogbn-products' ``edge.csv``) and ``N`` rows of 100 comma-separated floats with 6 decimals (its
``node-feat.csv``).  Default E = 4·10⁶, N = 2·10⁵ (10⁵ / 10⁴ with ``GKDFAST_BENCH_SMALL``).  Every
reader's result is checked equal to the previous path's before it is timed.  ``--memory`` also
runs each reader once in a fresh process on the text written to a file and reports its peak RSS
above the RSS before the read (Linux: the peak is reset through ``/proc/self/clear_refs``; the
Python strings are the old path's cost).  Prints a table; writes
text_tables.json and text_tables.png under --out.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.data.text_tables import parse_numbers  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
EDGES = 100_000 if SMALL else 4_000_000
ROWS = 10_000 if SMALL else 200_000
FEATURES = 100


def _digits(a: np.ndarray) -> np.ndarray:
    """Decimal digit count of non-negative integers (at least 1)."""
    return np.maximum(1, np.floor(np.log10(np.maximum(a, 1))).astype(np.int64) + 1)


def _starts(width: np.ndarray) -> np.ndarray:
    """Where each number's text begins, given each one's width."""
    return np.concatenate([[0], np.cumsum(width)[:-1]])


def _put_digits(out: np.ndarray, last: np.ndarray, values: np.ndarray, nd: np.ndarray) -> None:
    """Writes each of ``values`` (non-negative) in ``nd`` decimal digits, its last digit at ``out[last]``
    (leading zeros where ``nd`` exceeds its own digit count)."""
    rest = values.copy()
    for k in range(int(nd.max()) if nd.size else 0):  # the k-th digit from the right, where there is one
        has = nd > k
        out[(last - k)[has]] = (48 + rest[has] % 10).astype(np.uint8)
        rest //= 10


def format_ints(values: np.ndarray, seps: np.ndarray) -> bytes:
    """``values`` (non-negative int64) as decimal text, each followed by its separator byte:
    vectorised (Python's formatting takes minutes at 10⁸ numbers)."""
    nd = _digits(values)
    start = _starts(nd + 1)
    out = np.empty(int((nd + 1).sum()), dtype=np.uint8)
    _put_digits(out, start + nd - 1, values, nd)
    out[start + nd] = seps
    return out.tobytes()


def format_fixed(values: np.ndarray, seps: np.ndarray, decimals: int = 6) -> bytes:
    """``values`` as ``-?int.dddddd`` text, each followed by its separator byte (vectorised)."""
    scaled = np.rint(np.abs(values) * 10 ** decimals).astype(np.int64)
    ip, fp = scaled // 10 ** decimals, scaled % 10 ** decimals
    neg = (values < 0) & (scaled > 0)
    nd = _digits(ip)
    width = neg + nd + 1 + decimals + 1
    start = _starts(width)
    out = np.empty(int(width.sum()), dtype=np.uint8)
    out[start[neg]] = ord("-")
    dot = start + neg + nd
    _put_digits(out, dot - 1, ip, nd)
    out[dot] = ord(".")
    _put_digits(out, dot + decimals, fp, np.full_like(nd, decimals))
    out[dot + decimals + 1] = seps
    return out.tobytes()


def tables(edges: int, rows: int, seed: int = 0):
    """{"edge list": (text, dtype, ncols), "features": ...}."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, 2_450_000, size=2 * edges)
    seps = np.tile(np.array([ord(","), ord("\n")], dtype=np.uint8), edges)
    feats = rng.standard_normal(rows * FEATURES) * 0.3
    fseps = np.full(rows * FEATURES, ord(","), dtype=np.uint8)
    fseps[FEATURES - 1::FEATURES] = ord("\n")
    return {"edge list": (format_ints(pairs, seps), torch.int64, 2),
            "features": (format_fixed(feats, fseps), torch.float32, FEATURES)}


def split_numpy(text: bytes, dtype):
    """The readers' previous path: Python strings, then numpy."""
    return np.array(text.decode().replace(",", " ").split(), dtype=np.dtype(str(dtype).replace("torch.", "")))


def loadtxt(text: bytes, dtype, ncols):
    return np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.dtype(str(dtype).replace("torch.", "")),
                      ndmin=2).reshape(-1)


IMPLS = {
    "gkdfast": lambda text, dtype, ncols: parse_numbers(text, dtype).numpy(),
    "str.split + numpy": lambda text, dtype, ncols: split_numpy(text, dtype),
    "numpy.loadtxt": loadtxt,
}

_CHILD = """
import sys, time
sys.path.insert(0, {bench!r})
import bench_text_tables as b, torch
def status(key):  # kB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
dtype = {{'int64': torch.int64, 'float32': torch.float32}}[{dtype!r}]
with open({path!r}, 'rb') as f:
    text = f.read()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current RSS
base = status("VmRSS")
t = time.perf_counter()
out = b.IMPLS[{impl!r}](text, dtype, {ncols})
secs = time.perf_counter() - t
print((status("VmHWM") - base) / 1024, secs, out.size)
"""


def peak_mib(impl: str, path: str, dtype, ncols: int):
    """(peak RSS growth MiB, seconds, count) of one read in a fresh process."""
    code = _CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), dtype=str(dtype).replace("torch.", ""),
                         path=path, impl=impl, ncols=ncols)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def rows_for(edges, rows, repeats, max_seconds, memory):
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, (text, dtype, ncols) in tables(edges, rows).items():
            size = f"{case}, {len(text) / 2**20:.0f} MiB"
            want = split_numpy(text, dtype)
            path = os.path.join(tmp, "table.csv")
            if memory:
                with open(path, "wb") as f:
                    f.write(text)
            for name, fn in IMPLS.items():
                got = fn(text, dtype, ncols)
                if not np.array_equal(got, want):
                    raise AssertionError(f"bench_text_tables: {name} differs from the previous path on {case}")
                ms = _report.time_fn(lambda: fn(text, dtype, ncols), repeats=repeats, warmup=0,
                                     max_seconds=max_seconds)
                row = dict(size=size, case=case, impl=name, ms=ms, mb_per_s=len(text) / 1e3 / ms)
                if memory:
                    row["peak_mib"] = peak_mib(name, path, dtype, ncols)[0]
                out.append(row)
                print(f"  {size:<26} {name:<20} {ms:10.1f} ms" + (f"  {row['peak_mib']:8.0f} MiB" if memory else ""))
    return _report.add_ratios(out)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("case", ["edge list", "features"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_bench_text_tables(benchmark, impl, case):
    text, dtype, ncols = tables(EDGES // 4, ROWS // 4)[case]
    benchmark.pedantic(lambda: IMPLS[impl](text, dtype, ncols), rounds=3, iterations=1)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=3, max_seconds=60.0)
    p.add_argument("--edges", type=float, default=EDGES, help="edge-list lines (1e6 notation accepted)")
    p.add_argument("--rows", type=float, default=ROWS, help="feature rows of 100 floats")
    p.add_argument("--memory", action="store_true", help="also the peak RSS of one read per reader (fresh processes)")
    args = p.parse_args(argv)
    print(f"text tables: {int(args.edges)} edge lines, {int(args.rows)} feature rows ({torch.get_num_threads()} threads)")
    rows = rows_for(int(args.edges), int(args.rows), args.repeats, args.max_seconds, args.memory)
    _report.report(rows, args.out, "text_tables", "reading text tables (median ms)",
                   extra_cols=("mb_per_s", "peak_mib") if args.memory else ("mb_per_s",),
                   small=SMALL, edges=int(args.edges), feature_rows=int(args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
