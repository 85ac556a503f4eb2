"""Top-k personalised PageRank of every node: forward push (native ``ppr_topk``, O(N / (α·eps)) work)
vs the blocked power iteration over ``spmm`` (O(N²) work), both from ``gkdfast.distill.ppr.topk_ppr``.

Runner:  ``python benchmarks/bench_ppr.py [--out DIR] [--data FOLDER]``
pytest:  ``pytest benchmarks/bench_ppr.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Graph: a stochastic block model from ``gkdfast.data.csbm`` (20,000 nodes, average degree 15; 2,000
with ``GKDFAST_BENCH_SMALL``), or ``--data`` (any folder ``gkdfast.data.load`` reads, e.g. Facebook).
k = 20, α = 0.15, each method at its default eps (push 1e-5, power 1e-4).  Besides the time, each row
has ``mass``: the exact PPR mass of the k chosen targets over the best possible, measured on the
first 256 sources against a power iteration run to 1e-10.  Prints a table; writes ppr.json and
ppr.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.distill.ppr import ppr_rows, topk_ppr  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
NUM_NODES = 2_000 if SMALL else 20_000
K = 20
METHODS = ("push", "power")


def graph(data=None):
    if data:
        from gkdfast.data.loader import load

        return load(data).graph
    from gkdfast.data import csbm

    return csbm(num_nodes=NUM_NODES, avg_degree=15, seed=0).graph


def captured_mass(g, idx, sources=256):
    """Exact PPR mass of the chosen targets over the best possible k, on the first ``sources`` rows."""
    s = min(sources, g.num_nodes)
    exact = exact_rows(g, s)
    chosen = exact.gather(1, idx[:s]).clamp(min=0).sum()
    best = exact.topk(K, dim=1).values.clamp(min=0).sum()
    return float(chosen / best)


def exact_rows(g, s, alpha=0.15):
    """``[s, N]`` PPR rows of sources 0..s-1 (float64 power iteration to 1e-10), source entries -1."""
    first = torch.arange(s)
    rows = ppr_rows(g, first, alpha=alpha)
    rows[first, first] = -1.0
    return rows


def rows_for(g, repeats, max_seconds):
    rows = []
    size = f"N={g.num_nodes} E={g.num_edges} k={K}"
    for method in METHODS:
        out = {}

        def run():
            out["idx"] = topk_ppr(g, K, method=method)[0]
        ms = _report.time_fn(run, repeats=repeats, warmup=0, max_seconds=max_seconds)
        mass = captured_mass(g, out["idx"])
        rows.append(dict(size=size, case="top-k PPR, all sources", impl="gkdfast" if method == "push" else
                         "power iteration (spmm blocks)", ms=ms, mass=round(mass, 6)))
        print(f"  {method:<6} {ms / 1e3:8.2f} s  captured mass {mass:.6f}")
    return _report.add_ratios(rows)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("method", METHODS)
def test_bench_topk_ppr(benchmark, method):
    g = graph()
    benchmark.pedantic(lambda: topk_ppr(g, K, method=method), rounds=1, iterations=1)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=1, max_seconds=600.0)
    p.add_argument("--data", help="a dataset folder instead of the synthetic graph")
    args = p.parse_args(argv)
    g = graph(args.data)
    print(f"top-{K} PPR of every node, {g.num_nodes} nodes, {g.num_edges} edges, CPU "
          f"({torch.get_num_threads()} threads)")
    rows = rows_for(g, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "ppr", "top-k PPR of every node (median ms)", extra_cols=("mass",),
                   table_title="\nratio = impl time / gkdfast (push) time (>1: push faster)", small=SMALL,
                   data=os.path.basename(os.path.normpath(args.data)) if args.data else "csbm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
