"""Inverse-CDF search of random values in a long cumulative array (weighted draws): the native
guided ``cdf_search`` against ``torch.searchsorted``, the same search with the values grouped by
region first (the synthetic generator's pure-PyTorch path, ``dcsbm._grouped_search``) and
``numpy.searchsorted``.

Runner:  ``python benchmarks/bench_inverse_cdf.py [--out DIR] [--sizes 1e5,1e6,1e7] [--queries Q]
[--device cpu|cuda]``
pytest:  ``pytest benchmarks/bench_inverse_cdf.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

The array is the cumulative sum of Pareto weights drawn as ``dcsbm`` draws its node weights
(degree exponent 2.5, here uncapped), float64; the values are uniform over its range.  Default:
4·10⁶ values (one chunk of the generator's draws) into 10⁵, 10⁶ and 10⁷ entries; 10⁴ and 2·10⁵ entries, 2·10⁵ values with
``GKDFAST_BENCH_SMALL``.  The guide is built once per array (its own row, "guide build"); every
search's indices are checked against ``torch.searchsorted`` before they are timed.  Prints a table;
writes inverse_cdf.json and inverse_cdf.png under --out.
"""
from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.inverse_cdf import cdf_guide, cdf_search  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
SIZES = (10_000, 200_000) if SMALL else (100_000, 1_000_000, 10_000_000)
QUERIES = 200_000 if SMALL else 4_000_000


def problem(n, queries, device="cpu", seed=0):
    """(cdf [n] float64, values [queries] float64) on ``device``."""
    g = torch.Generator().manual_seed(seed)
    w = (1.0 - torch.rand(n, generator=g, dtype=torch.float64)).pow(-1.0 / 1.5)
    cdf = torch.cumsum(w, 0)
    values = torch.rand(queries, generator=g, dtype=torch.float64) * float(cdf[-1])
    return cdf.to(device), values.to(device)


def grouped(cdf, values):
    """The generator's pure-PyTorch path: values grouped by region of the array, then searched."""
    return importlib.import_module("gkdfast.data.dcsbm")._grouped_search(cdf, values)


def impls(device):
    out = {"gkdfast": None,  # set per array: the search with its prebuilt guide
           "torch.searchsorted": torch.searchsorted}
    if device == "cpu":  # the grouped search and numpy are CPU paths
        out["grouped torch.searchsorted"] = grouped
        out["numpy.searchsorted"] = lambda c, v: torch.from_numpy(np.searchsorted(c.numpy(), v.numpy(), side="left"))
    return out


def rows_for(sizes, queries, device, repeats, max_seconds):
    rows = []
    for n in sizes:
        cdf, values = problem(n, queries, device)
        size = f"n={n:,}"  # the value count is the run's (JSON meta): short labels for the chart
        want = torch.searchsorted(cdf, values)
        ms = _report.time_fn(lambda: cdf_guide(cdf), repeats=repeats, warmup=1, max_seconds=max_seconds)
        rows.append(dict(size=size, case="guide build", impl="gkdfast", ms=ms))
        print(f"  {size:<14} {'guide build':<28} {ms:9.2f} ms")
        guide = cdf_guide(cdf)
        for name, fn in impls(device).items():
            fn = fn or (lambda c, v: cdf_search(c, v, guide))
            got = fn(cdf, values)
            if not torch.equal(got.cpu().long(), want.cpu()):
                raise AssertionError(f"bench_inverse_cdf: {name} differs from torch.searchsorted at n={n}")
            ms = _report.time_fn(lambda: fn(cdf, values), repeats=repeats, warmup=1, max_seconds=max_seconds)
            rows.append(dict(size=size, case="search", impl=name, ms=ms, ns_per_value=1e6 * ms / queries))
            print(f"  {size:<14} {name:<28} {ms:9.2f} ms")
    return _report.add_ratios(rows)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("impl", ["gkdfast", "torch.searchsorted", "grouped torch.searchsorted"])
def test_bench_inverse_cdf(benchmark, impl):
    cdf, values = problem(SIZES[-1], QUERIES)
    guide = cdf_guide(cdf)
    fn = impls("cpu")[impl] or (lambda c, v: cdf_search(c, v, guide))
    benchmark.pedantic(lambda: fn(cdf, values), rounds=3, iterations=1)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=5, max_seconds=60.0)
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES),
                   help="array lengths, comma-separated (1e6 notation accepted)")
    p.add_argument("--queries", type=int, default=QUERIES)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    print(f"inverse-CDF search of {args.queries} values, {args.device} "
          f"({torch.get_num_threads()} threads)")
    rows = rows_for(sizes, args.queries, args.device, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "inverse_cdf", "inverse-CDF search (median ms)", extra_cols=("ns_per_value",),
                   small=SMALL, sizes=sizes, queries=args.queries, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
