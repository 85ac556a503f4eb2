#!/usr/bin/env python
"""Scaling study of the out-of-core distillation pipeline (gkdfast.distill.large) on synthetic graphs.

For each size N (default 1e5, 1e6 and 2.45e6 nodes: the last is ogbn-products' size) a graph with
products-like shape (average degree 50, 100 features, 47 classes) is generated, then the pipeline
runs: sampled teacher -> layer-wise inference into the memory-mapped cache -> mini-batch GLNN MLP
student -> no-KD baseline -> evaluation.  Every size runs in its own process, so each has a clean
peak-RSS record.  Written to ``--out``: ``scale.md`` (the table), ``scale.json`` (every stage record)
and ``scale.png`` (seconds and peak RSS per stage against N; time per edge).

The graph comes from ``gkdfast.data.dcsbm`` (degree-corrected contextual SBM).  The teacher is trained by
``gkdfast.sampling.fit_sampled``; with ``--teacher untrained`` an untrained teacher is used, so the inference/student timings are real but accuracies
mean nothing: the table says so.

Usage::

    python scripts/scale.py --sizes 1e5 --out scale-out            # what a shared 2-core box can take
    python scripts/scale.py --sizes 1e5,1e6,2.45e6 --out scale-out  # the full study (a quiet 24 GiB machine)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from gkdfast.data import dcsbm, load_mmap, save_mmap  # noqa: E402

PRODUCTS_SHAPE = {"avg_degree": 50.0, "feature_dim": 100, "num_classes": 47}


def parse_sizes(text: str) -> list:
    """``"1e5,2.45e6"`` -> ``[100000, 2450000]``."""
    try:
        sizes = [int(float(t)) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1000 for s in sizes):
        raise SystemExit(f"scale.py: --sizes {text!r}: expected node counts >= 1000, e.g. 1e5,1e6,2.45e6")
    return sizes


def make_graph(n: int, seed: int, train_per_class: int):
    """The products-shaped synthetic graph and the generator's name."""
    shape = PRODUCTS_SHAPE
    data = dcsbm(num_nodes=n, avg_degree=shape["avg_degree"], num_classes=shape["num_classes"],
                 feature_dim=shape["feature_dim"], seed=seed, train_per_class=train_per_class)
    return data, "dcsbm"


def run_one(args) -> dict:
    """One size, in this process: generate, run the pipeline, return the record."""
    from gkdfast.distill.large import distill_large
    from gkdfast.distill.memory import StageTimer

    torch.set_num_threads(args.threads)
    n = args.worker
    with StageTimer("generate") as timer:
        data, generator = make_graph(n, args.seed, args.train_per_class)
    gen = dict(timer.record, throughput=data.num_edges / max(timer.record["seconds"], 1e-9),
               throughput_unit="edges/s")
    # Saved and read back memory-mapped, as a user of `gkdfast generate` would train on it.
    folder = os.path.join(args.work, f"data-n{n}")
    if os.path.isdir(folder):  # a rerun writes the graph afresh
        import shutil

        shutil.rmtree(folder)
    save_mmap(data, folder)
    del data
    data = load_mmap(folder)
    features = "memory-mapped"
    teacher_mode = args.teacher
    teacher = "sage"
    if teacher_mode != "sampled":
        from gkdfast.nn import SAGE

        torch.manual_seed(args.seed)
        teacher = SAGE(data.num_features, args.hidden, data.num_classes)
    out_dir = os.path.join(args.work, f"n{n}")
    res = distill_large(data, teacher=teacher, hidden=args.hidden, fanouts=(15, 10),
                        teacher_epochs=args.teacher_epochs, batch_size=args.batch_size, chunk_rows=args.chunk_rows,
                        student_epochs=args.student_epochs, seed=args.seed, out_dir=out_dir,
                        progress=not args.no_progress,
                        log=lambda s: print(f"[N={n}] {s}", file=sys.stderr, flush=True))
    data_bytes = (data.x.numel() * 4 + data.graph.col.numel() * data.graph.col.element_size()
                  + data.graph.rowptr.numel() * data.graph.rowptr.element_size())
    return {"num_nodes": data.num_nodes, "num_edges": data.num_edges, "generator": generator, "features": features,
            "teacher": teacher_mode, "threads": args.threads, "data_bytes": int(data_bytes),
            "stages": [gen] + res["stages"], "rows": res["rows"]}


def markdown(records: list) -> str:
    from gkdfast.distill.memory import format_bytes

    lines = ["| N | edges | stage | wall s | CPU s | wall ns / edge | throughput (wall) | RSS at start | "
             "peak RSS (stage) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        for s in r["stages"]:
            lines.append(f"| {r['num_nodes']:,} | {r['num_edges']:,} | {s['stage']} | {s['seconds']:.1f} | "
                         f"{s.get('cpu_seconds', float('nan')):.1f} | "
                         f"{1e9 * s['seconds'] / max(r['num_edges'], 1):.1f} | "
                         f"{s.get('throughput', 0):,.0f} {s.get('throughput_unit', '')} | "
                         f"{format_bytes(s.get('rss_start_bytes', 0))} | {format_bytes(s['peak_rss_bytes'])} |")
    lines.append("")
    lines.append("| N | generator | features | teacher | teacher acc | MLP acc | GLNN acc |")
    lines.append("|---:|---|---|---|---:|---:|---:|")
    for r in records:
        accs = {row["method"]: row["test_acc_mean"] for row in r["rows"]}
        lines.append(f"| {r['num_nodes']:,} | {r['generator']} | {r.get('features', '?')} | {r['teacher']} | "
                     f"{100 * accs.get('teacher', 0):.2f} | {100 * accs.get('none', 0):.2f} | "
                     f"{100 * accs.get('glnn', 0):.2f} |")
    return "\n".join(lines) + "\n"


def plot(records: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s["stage"] for s in records[0]["stages"]]
    ns = [r["num_nodes"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for st in stages:
        secs = [next((s["seconds"] for s in r["stages"] if s["stage"] == st), float("nan")) for r in records]
        rss = [next((s["peak_rss_bytes"] for s in r["stages"] if s["stage"] == st), float("nan")) / 2**30
               for r in records]
        per_edge = [1e9 * sec / max(r["num_edges"], 1) for sec, r in zip(secs, records)]
        axes[0].plot(ns, secs, "o-", label=st)
        axes[1].plot(ns, rss, "o-", label=st)
        axes[2].plot(ns, per_edge, "o-", label=st)
    for ax, title in zip(axes, ("wall seconds per stage", "peak RSS per stage (GiB)", "ns per edge")):
        ax.set_xscale("log")
        ax.set_xlabel("nodes N")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")  # the teacher's fixed step budget is thousands of ns per edge at small N
    axes[0].legend(fontsize=8)
    fig.suptitle("gkdfast out-of-core distillation: time, memory and per-edge cost by graph size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e5,1e6,2.45e6", help="node counts (default 1e5,1e6,2.45e6)")
    p.add_argument("--out", default="scale-out", help="folder for scale.md / scale.json / scale.png")
    p.add_argument("--work", default=None, help="pipeline folders (cache, checkpoints; default OUT/work)")
    # Defaults = `gkdfast distill --nodes N --avg-degree 51 --features 100 --classes 47` (the CLI's
    # large-graph path): SAGE(128) teacher, MLP(128) students, dcsbm's 5 labelled nodes per class.
    p.add_argument("--hidden", type=int, default=128, help="teacher and student width (default 128)")
    p.add_argument("--batch-size", type=int, default=4096, help="student node batch (default 4096)")
    p.add_argument("--chunk-rows", type=int, default=65536, help="layer-wise inference block (default 65536)")
    p.add_argument("--teacher-epochs", type=int, default=3, help="at least; raised to 200 optimiser steps")
    p.add_argument("--student-epochs", type=int, default=20, help="student epochs (early stopping, patience 5)")
    p.add_argument("--train-per-class", type=int, default=5, help="labelled nodes per class (default 5)")
    p.add_argument("--teacher", choices=("sampled", "untrained"), default="sampled")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one size, in this process
    p.add_argument("--record", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.work = args.work or os.path.join(args.out, "work")
    if args.worker:
        rec = run_one(args)
        with open(args.record, "w") as f:
            json.dump(rec, f)
        return 0
    os.makedirs(args.out, exist_ok=True)
    records = []
    for n in parse_sizes(args.sizes):
        path = os.path.join(args.out, f"record-{n}.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n), "--record", path,
               *[a for a in (argv if argv is not None else sys.argv[1:])]]
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))
        if rc != 0:
            print(f"scale.py: N={n} failed (exit {rc}); the sizes before it are in the table", file=sys.stderr)
            break
        with open(path) as f:
            records.append(json.load(f))
        print(f"N={n}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not records:
        return 1
    with open(os.path.join(args.out, "scale.json"), "w") as f:
        json.dump({"shape": PRODUCTS_SHAPE, "settings": {k: v for k, v in vars(args).items()
                                                         if k not in ("worker", "record")}, "runs": records}, f,
                  indent=2)
    table = markdown(records)
    with open(os.path.join(args.out, "scale.md"), "w") as f:
        f.write(table)
    plot(records, os.path.join(args.out, "scale.png"))
    print(table)
    print(f"wrote {args.out}/scale.md, scale.json and scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
