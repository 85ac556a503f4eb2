"""Building an undirected graph's CSR from a list of pairs (repeats, both directions, self-loops):
the native ``symmetric_csr`` against the pure-PyTorch reference (one sort per destination range), one
global sort of all (destination, source) keys (what gkdfast's loaders did before), and PyG's
``to_undirected`` (coalesce by sort; COO out) when installed.

Runner:  ``python benchmarks/bench_graph_build.py [--out DIR] [--nodes N] [--degree D]``
pytest:  ``pytest benchmarks/bench_graph_build.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Pairs: ``N * D / 2`` draws of a Chung-Lu graph (``_peers.chung_lu``, power-law degrees, ids
shuffled), as int64 (what the loaders read) and int32 (the synthetic generator's).  Default N = 10⁶,
D = 50 (25 M pairs, 50 M directed entries); 20,000 nodes with ``GKDFAST_BENCH_SMALL``.  Every
implementation's result is checked against the native one before it is timed.  Prints a table;
writes graph_build.json and graph_build.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers  # noqa: E402
import _report  # noqa: E402

from gkdfast.reference import graph_build as ref  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
NUM_NODES = 20_000 if SMALL else 1_000_000
DEGREE = 50


def pairs(num_nodes=NUM_NODES, degree=DEGREE, dtype=torch.int64):
    ei = _peers.chung_lu(num_nodes, num_nodes * degree // 2, seed=0)
    return ei[0].to(dtype), ei[1].to(dtype)


def global_sort(src, dst, n):
    """One sort of all 2E int64 (destination, source) keys, duplicates dropped."""
    keep = src != dst
    s, d = src[keep].long(), dst[keep].long()
    key = torch.unique(torch.cat([s, d]) * n + torch.cat([d, s]))
    counts = torch.bincount(key // n, minlength=n)
    rowptr = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return rowptr, key % n


def pyg_to_undirected(src, dst, n):
    """PyG's to_undirected (self-loops dropped first, as ours drop them): COO sorted by row."""
    from torch_geometric.utils import to_undirected

    keep = src != dst
    return to_undirected(torch.stack([src[keep], dst[keep]]).long(), num_nodes=n)


def impls():
    out = {"gkdfast": lambda s, d, n: torch.ops.gkdfast.symmetric_csr(s, d, n),
           "reference (per-range sorts)": ref.symmetric_csr,
           "global sort (torch.unique)": global_sort}
    try:
        import torch_geometric  # noqa: F401

        out["PyG to_undirected"] = pyg_to_undirected
    except ImportError:
        pass
    return out


def same_edges(name, got, want_rowptr, want_col):
    """Every implementation's edge set equals the native one (PyG's COO compared by rows)."""
    if name == "PyG to_undirected":
        # PyG sorts by (row, col) with row = source; the set is symmetric, so rows read as destinations
        counts = torch.bincount(got[0], minlength=want_rowptr.numel() - 1)
        ok = torch.equal(torch.cumsum(counts, 0), want_rowptr[1:]) and torch.equal(got[1], want_col.long())
    else:
        ok = torch.equal(got[0], want_rowptr) and torch.equal(got[1].long(), want_col.long())
    if not ok:
        raise AssertionError(f"bench_graph_build: {name} builds a different graph")


def rows_for(num_nodes, degree, repeats, max_seconds):
    rows = []
    for dtype in (torch.int64, torch.int32):
        src, dst = pairs(num_nodes, degree, dtype)
        n = num_nodes
        want = torch.ops.gkdfast.symmetric_csr(src, dst, n)
        size = f"N={n} pairs={src.numel()} {str(dtype).replace('torch.', '')} ids"
        for name, fn in impls().items():
            same_edges(name, fn(src, dst, n), *want)
            ms = _report.time_fn(lambda: fn(src, dst, n), repeats=repeats, warmup=0, max_seconds=max_seconds)
            rows.append(dict(size=size, case="undirected CSR", impl=name, ms=ms, nnz=int(want[1].numel())))
            print(f"  {size:<40} {name:<28} {ms / 1e3:8.3f} s")
    return _report.add_ratios(rows)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("impl", ["gkdfast", "reference (per-range sorts)", "global sort (torch.unique)"])
def test_bench_graph_build(benchmark, impl):
    src, dst = pairs()
    fn = impls()[impl]
    benchmark.pedantic(lambda: fn(src, dst, NUM_NODES), rounds=3, iterations=1)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=3, max_seconds=120.0)
    p.add_argument("--nodes", type=int, default=NUM_NODES)
    p.add_argument("--degree", type=int, default=DEGREE)
    args = p.parse_args(argv)
    print(f"undirected CSR from {args.nodes * args.degree // 2} pairs on {args.nodes} nodes, CPU "
          f"({torch.get_num_threads()} threads)")
    rows = rows_for(args.nodes, args.degree, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "graph_build", "undirected CSR from pairs (median ms)", extra_cols=("nnz",),
                   small=SMALL, nodes=args.nodes, degree=args.degree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
