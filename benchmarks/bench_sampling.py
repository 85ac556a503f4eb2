"""Neighbour-sampling throughput and one epoch of sampled SAGE training on a power-law graph.

    python benchmarks/bench_sampling.py --nodes 200000 --avg-degree 20 --features 100 --out /tmp/bs
    GKDFAST_BENCH_SMALL=1 python benchmarks/bench_sampling.py            # smoke (tiny sizes)

Prints a table and (with ``--out``) writes ``sampling.json`` (atomically, with the machine's description)
and ``sampling.png`` (time per million sampled edges, native against the reference, and the epoch):
* ``sampler``: ``gkdfast.sampling.sample_neighbors`` over every node in batches (one hop),
  sampled edges per second, native kernel and (on a slice, checked equal to the native samples of it
  first, timed as often) the pure-PyTorch reference;
* ``blocks``: ``NeighborLoader`` batches (all hops + local relabelling), seeds and sampled edges/s;
* ``epoch``: ``fit_sampled`` of a 2-layer SAGE for one epoch (no validation), training nodes/s;
* ``rows``: the printed table's rows (ms per million sampled edges, the epoch's ms, ratios).
Timings are wall-clock medians on whatever else the machine is running: quote them as such.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import pytest
import torch

import gkdfast
from gkdfast.data import GraphData, power_law_graph
from gkdfast.reference import sampling as ref
from gkdfast.sampling import NeighborLoader, fit_sampled, sample_neighbors

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_sampler(g, fanouts, batch_size, repeats):
    rows = []
    order = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0)).to(g.col.dtype)
    batches = [order[i:i + batch_size] for i in range(0, order.numel(), batch_size)]
    for k in fanouts:
        edges = sum(int(sample_neighbors(g, b, k, seed=0)[1].numel()) for b in batches)
        sec = _median_time(lambda: [sample_neighbors(g, b, k, seed=0) for b in batches], repeats)
        # The reference on a slice of the batches (it is slow), checked equal to the native samples of the
        # same slice first, and timed as often as the native run (after one untimed call each)
        part = batches[:max(1, len(batches) // 20)]
        ref_edges = 0
        for b in part:
            theirs = ref.sample_neighbors(g.rowptr, g.col, b, k, 0, 0)
            if not all(torch.equal(x.long(), y.long()) for x, y in zip(sample_neighbors(g, b, k, seed=0), theirs)):
                raise AssertionError(f"fanout {k}: the native sampler and the reference disagree")
            ref_edges += int(theirs[1].numel())
        ref_sec = _median_time(lambda: [ref.sample_neighbors(g.rowptr, g.col, b, k, 0, 0) for b in part], repeats)
        rows.append({"fanout": k, "sampled_edges": edges, "seconds": sec, "edges_per_s": edges / sec,
                     "reference_edges_per_s": ref_edges / ref_sec})
        print(f"sampler   fanout {k:>3}: {edges:>10} edges in {sec * 1e3:8.1f} ms = {edges / sec / 1e6:7.2f} M edges/s"
              f"  (reference {ref_edges / ref_sec / 1e6:6.2f} M/s)")
    return rows


def bench_blocks(g, fanouts, batch_size, max_batches):
    loader = NeighborLoader(g, torch.arange(g.num_nodes), fanouts, batch_size=batch_size, shuffle=True, seed=0)
    seeds = edges = nodes = 0
    t0 = time.perf_counter()
    count = 0
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        count += 1
        seeds += batch.num_seeds
        nodes += batch.n_id.numel()
        edges += sum(b.num_edges for b in batch.blocks)
    sec = time.perf_counter() - t0
    row = {"fanouts": list(fanouts), "batch_size": batch_size, "batches": min(max_batches, len(loader)),
           "seeds_per_s": seeds / sec, "edges_per_s": edges / sec, "nodes_per_batch": nodes / max(1, count)}
    print(f"blocks    fanouts {fanouts}: {seeds / sec:9.0f} seeds/s, {edges / sec / 1e6:6.2f} M sampled edges/s, "
          f"{row['nodes_per_batch']:.0f} nodes per batch")
    return row


def bench_epoch(g, features, classes, fanouts, batch_size, train_fraction):
    gen = torch.Generator().manual_seed(0)
    n = g.num_nodes
    x = torch.randn(n, features, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    train = torch.rand(n, generator=gen) < train_fraction
    none = torch.zeros(n, dtype=torch.bool)
    data = GraphData(g, x, y, train, none, none, classes, name="power-law")
    model = gkdfast.nn.SAGE(features, 128, classes, num_layers=len(fanouts), dropout=0.5)
    stats = fit_sampled(model, data, fanouts=fanouts, batch_size=batch_size, epochs=1, progress=True)
    row = {"train_nodes": int(train.sum()), "seconds": stats["seconds"], "nodes_per_s": stats["nodes_per_s"]}
    print(f"epoch     SAGE fanouts {fanouts}: {row['train_nodes']} training nodes in {row['seconds']:.1f} s = "
          f"{row['nodes_per_s']:.0f} nodes/s")
    return row


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("impl", ["gkdfast", "reference"])
def test_bench_sample_neighbors(benchmark, impl):
    # one hop, fan-out 15, four batches of 1024 seeds of a 20,000-node power-law graph (the same for both)
    g = power_law_graph(20_000, 200_000, seed=0, exponent=2.2).to(index_dtype=torch.int32)
    order = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0)).to(g.col.dtype)
    batches = [order[i:i + 1024] for i in range(0, 4 * 1024, 1024)]
    if impl == "gkdfast":
        run = lambda: [sample_neighbors(g, b, 15, seed=0) for b in batches]  # noqa: E731
    else:
        run = lambda: [ref.sample_neighbors(g.rowptr, g.col, b, 15, 0, 0) for b in batches]  # noqa: E731
    benchmark.pedantic(run, rounds=3, iterations=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=2000 if SMALL else 200_000)
    p.add_argument("--avg-degree", type=float, default=10 if SMALL else 20)
    p.add_argument("--features", type=int, default=16 if SMALL else 100)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--fanouts", type=int, nargs="+", default=[15, 10])
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--train-fraction", type=float, default=1.0 if SMALL else 0.25)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-epoch", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    g = power_law_graph(args.nodes, int(args.nodes * args.avg_degree), seed=0, exponent=2.2).to(
        index_dtype=torch.int32)
    deg = g.rowptr[1:] - g.rowptr[:-1]
    print(f"graph: {g.num_nodes} nodes, {g.num_edges} edges (int32), max in-degree {int(deg.max())}, "
          f"built in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}; "
          f"backend {gkdfast.explain('sample_neighbors', 'cpu', None)['chosen']}")
    out = {"nodes": g.num_nodes, "edges": g.num_edges, "threads": torch.get_num_threads(),
           "sampler": bench_sampler(g, sorted(set(args.fanouts + [25])), args.batch_size, args.repeats),
           "blocks": bench_blocks(g, args.fanouts, args.batch_size, 20 if SMALL else 50)}
    if not args.skip_epoch:
        out["epoch"] = bench_epoch(g, args.features, args.classes, args.fanouts, args.batch_size, args.train_fraction)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/_report
    import _report  # the shared table, atomic machine-stamped JSON and chart

    rows = _table_rows(out)
    title = "\nms per million sampled edges (epoch: ms); ratio = impl / gkdfast (>1: gkdfast faster)"
    if args.out:
        _report.report(rows, args.out, "sampling", f"neighbour sampling, {g.num_nodes} nodes / {g.num_edges} edges: "
                       "ms per million sampled edges (the epoch's row: ms per epoch)",
                       extra_cols=("rate",), table_title=title, **out)
    else:
        print(_report.format_table(_report.add_ratios(rows), extra_cols=("rate",), title=title))


def _table_rows(out):
    """The measurements as the shared report's rows: time per million sampled edges for the sampler
    (native and reference) and the loader, the epoch's wall time; ``rate`` says the throughput."""
    import _report

    rows = []
    for r in out["sampler"]:
        case = f"sampler k={r['fanout']}"
        rows.append({"case": case, "impl": "gkdfast", "ms": 1e9 / r["edges_per_s"],
                     "rate": f"{r['edges_per_s'] / 1e6:.1f} M edges/s"})
        rows.append({"case": case, "impl": "reference", "ms": 1e9 / r["reference_edges_per_s"],
                     "rate": f"{r['reference_edges_per_s'] / 1e6:.1f} M edges/s"})
    b = out["blocks"]
    rows.append({"case": "loader " + ",".join(map(str, b["fanouts"])), "impl": "gkdfast", "ms": 1e9 / b["edges_per_s"],
                 "rate": f"{b['seeds_per_s']:.0f} seeds/s"})
    if "epoch" in out:
        e = out["epoch"]
        rows.append({"case": "SAGE epoch", "impl": "gkdfast", "ms": 1e3 * e["seconds"],
                     "rate": f"{e['nodes_per_s']:.0f} nodes/s"})
    return _report.add_ratios(rows)


if __name__ == "__main__":
    main()
