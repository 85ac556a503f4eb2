"""NOSMOG's position features three ways: streaming DeepWalk (native ``deepwalk``, walks regenerated
from Philox words, O(N·dim) memory), the same skip-gram batched in PyTorch over stored walk pairs
(``deepwalk_features``), and the PPMI/SVD factorisation of the walks (``position_features``).

Runner:  ``python benchmarks/bench_positions.py [--out DIR] [--nodes N]``
pytest:  ``pytest benchmarks/bench_positions.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Graph: a stochastic block model from ``gkdfast.data.csbm`` (20,000 nodes, 8 classes, average degree
15; 2,000 with ``GKDFAST_BENCH_SMALL``).  Settings: width 64, walks of 30 steps, 5 per node, window 5;
the two skip-gram ways draw 5 negatives per pair, the PPMI way shifts by log 1 (its default).  Besides the time, each row has ``probe``: test accuracy of a logistic regression on the
standardised positions alone (half the nodes train it), i.e. how much of the planted community
structure the features carry, and ``peak_mb``: the process's peak RSS during the timed calls above
its RSS before them (sampled every 2 ms).
Prints a table; writes positions.json and positions.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.distill.positional import deepwalk_features, position_features, streaming_deepwalk  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
NUM_NODES = 2_000 if SMALL else 20_000
SETTINGS = dict(dim=64, walk_length=30, walks_per_node=5, window=5)
METHODS = {
    "gkdfast": lambda g: streaming_deepwalk(g, negative=5, **SETTINGS),
    "gkdfast, deterministic (1 thread)": lambda g: streaming_deepwalk(g, negative=5, deterministic=True, **SETTINGS),
    "skip-gram batched in PyTorch": lambda g: deepwalk_features(g, negative=5, **SETTINGS),
    "PPMI + truncated SVD": lambda g: position_features(g, method="svd", **SETTINGS),
}


def data(num_nodes=NUM_NODES):
    from gkdfast.data import csbm

    return csbm(num_nodes=num_nodes, num_classes=8, avg_degree=15, seed=0)


def probe_accuracy(p, y, seed=0):
    """Logistic regression on standardised ``p``, trained on a random half of the nodes, tested on the rest."""
    gen = torch.Generator().manual_seed(seed)
    train = torch.rand(p.size(0), generator=gen) < 0.5
    x = (p - p.mean(0)) / (p.std(0) + 1e-8)
    w = torch.zeros(x.size(1), int(y.max()) + 1, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(x[train] @ w, y[train]).backward()
        opt.step()
    return float(((x[~train] @ w).argmax(1) == y[~train]).float().mean())


def rows_for(d, repeats, max_seconds):
    g = d.graph
    rows = []
    size = f"N={g.num_nodes} E={g.num_edges}"
    for impl, fn in METHODS.items():
        out = {}

        def run():
            out.pop("p", None)
            out["p"] = fn(g)
        with _report.PeakMemory(torch.device("cpu")) as mem:
            ms = _report.time_fn(run, repeats=repeats, warmup=0, max_seconds=max_seconds)
        probe = probe_accuracy(out["p"], d.y)
        rows.append(dict(size=size, case="position features", impl=impl, ms=ms, probe=round(probe, 4),
                         peak_mb=round(mem.peak_bytes / 2 ** 20, 1)))
        print(f"  {impl:<36} {ms / 1e3:8.2f} s  probe {probe:.4f}")
    return _report.add_ratios(rows)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("impl", list(METHODS))
def test_bench_positions(benchmark, impl):
    g = data().graph
    benchmark.pedantic(lambda: METHODS[impl](g), rounds=1, iterations=1)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=1, max_seconds=600.0)
    p.add_argument("--nodes", type=int, default=NUM_NODES)
    args = p.parse_args(argv)
    d = data(args.nodes)
    print(f"position features of every node, {d.num_nodes} nodes, {d.graph.num_edges} edges, CPU "
          f"({torch.get_num_threads()} threads)")
    rows = rows_for(d, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "positions", "position features (median ms)", extra_cols=("probe", "peak_mb"),
                   table_title="\nratio = impl time / gkdfast (streaming, threads) time (>1: streaming faster)",
                   small=SMALL, settings={**SETTINGS, "skipgram_negatives": 5, "ppmi_shift": "log 1"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
