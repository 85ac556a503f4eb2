"""``gkdfast condense``: GCond graph condensation (DosCond's one-step matching with ``--one-step``).

Kept apart from :mod:`gkdfast.cli`, which only registers the sub-command.  Prints a table (whole graph vs
condensed graph: nodes, edges, test accuracy, seconds), writes each seed's condensed graph as a gkdfast
``.npz`` bundle, ``OUT/results.json`` and ``OUT/results.png``.
"""
from __future__ import annotations

import json
import os
import sys

__all__ = ["add_condense_parser", "run_condense_cmd", "format_condense_table"]


def add_condense_parser(sub) -> None:
    """Registers ``condense`` on the ``gkdfast`` sub-parsers.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser(prog="gkdfast")
        >>> add_condense_parser(p.add_subparsers(dest="command"))
        >>> args = p.parse_args(["condense", "--ratio", "0.026", "--one-step"])
        >>> args.ratio, args.one_step, args.eval_runs, args.func is run_condense_cmd
        (0.026, True, 3, True)
    """
    p = sub.add_parser(
        "condense", help="condense a graph into a tiny synthetic one (GCond / DosCond gradient matching)",
        description="Learns N' = ratio * N synthetic nodes (features + a PGE adjacency) whose GCN training "
                    "gradients match the real graph's, class by class; then trains a GCN on the condensed graph "
                    "and on the whole graph and tests both on the real test nodes.  Defaults are GCond's published "
                    "Cora settings (--one-step: DosCond's).  See docs/condense.md.")
    p.add_argument("--data", metavar="PATH", help="dataset file or folder (default: built-in synthetic CSBM graph)")
    p.add_argument("--format", help="planetoid, npz, gnn-benchmark, ... (default: guessed)")
    p.add_argument("--name", help="dataset inside a folder holding several (e.g. cora in the Planetoid folder)")
    p.add_argument("--ratio", type=float, required=True,
                   help="synthetic nodes as a fraction of ALL nodes (GCond's reduction rate: Cora 0.026 = 70 nodes)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1): SEED .. SEED+N-1")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--one-step", action="store_true",
                   help="DosCond: one matching step per fresh network (GCN backbone, mse, lr 1e-3, 5000 epochs)")
    p.add_argument("--epochs", type=int, help="condensation epochs (default 600; --one-step 5000)")
    p.add_argument("--outer", type=int, help="matching steps per epoch (default 20; --one-step 1)")
    p.add_argument("--inner", type=int, help="network steps between matching steps (default 15; --one-step 0)")
    p.add_argument("--lr-feat", type=float, help="Adam lr of the synthetic features (default 1e-4; --one-step 1e-3)")
    p.add_argument("--lr-adj", type=float, help="Adam lr of the PGE (default 1e-4; --one-step 1e-3)")
    p.add_argument("--backbone", choices=("sgc", "gcn"), help="network whose gradients are matched "
                                                              "(default sgc; --one-step gcn)")
    p.add_argument("--metric", choices=("ours", "mse", "cos"),
                   help="gradient distance (default ours = per-output-neuron cosine; --one-step mse)")
    p.add_argument("--eval-epochs", type=int, default=600, help="GCN training steps in evaluation (default 600)")
    p.add_argument("--eval-runs", type=int, default=3,
                   help="GCNs trained per condensed graph, accuracies averaged (default 3, as GCond)")
    p.add_argument("--nodes", type=int, default=None,
                   help="nodes of the built-in synthetic graph (default 2000; not with --data)")
    p.add_argument("--out", default="gkdfast-condense", help="output folder (default ./gkdfast-condense)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    p.set_defaults(func=run_condense_cmd)


def format_condense_table(results: dict) -> str:
    """Plain-text table of :func:`gkdfast.condense.run_condense`'s rows.

    Example:
        >>> row = {"method": "gcond", "model": "GCN(256)", "num_nodes": 70, "num_edges": 4830,
        ...        "test_acc_mean": 0.8, "test_acc_std": 0.01, "test_acc": [0.79, 0.81], "train_seconds": 3.0,
        ...        "condense_seconds_mean": 300.0}
        >>> print(format_condense_table({"dataset": "cora", "ratio": 0.026, "rows": [row]}))
        cora, ratio 0.026, 2 seed(s)
        method  model     nodes  edges  test acc (%)   condense s  GCN train s
        ----------------------------------------------------------------------
        gcond   GCN(256)     70   4830  80.00 ±  1.00       300.0          3.0
    """
    rows = results["rows"]
    n_seeds = max((len(r["test_acc"]) for r in rows), default=0)
    cols = ("method", "model", "nodes", "edges", "test acc (%)", "condense s", "GCN train s")
    body = [(r["method"], r["model"], str(r["num_nodes"]), str(r["num_edges"]),
             f"{100 * r['test_acc_mean']:5.2f} ± {100 * r['test_acc_std']:5.2f}",
             f"{r['condense_seconds_mean']:.1f}" if "condense_seconds_mean" in r else "-",
             f"{r['train_seconds']:.1f}") for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [f"{results['dataset']}, ratio {results['ratio']:g}, {n_seeds} seed(s)", line, "-" * len(line)]
    for b in body:
        out.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(b, widths))))
    return "\n".join(out)


def _load(args):
    if args.data is None:
        from gkdfast.data import csbm

        if args.format or args.name:
            raise ValueError("--format/--name need --data PATH")
        return csbm(num_nodes=2000 if args.nodes is None else args.nodes, seed=0)
    if args.nodes is not None:
        raise ValueError("--nodes sizes the built-in synthetic graph; with --data the graph is the file's")
    if not os.path.exists(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such file or directory")
    from gkdfast.data import GraphDataset, load

    data = load(args.data, format=args.format, name=args.name, seed=args.seed)
    if isinstance(data, GraphDataset) or not hasattr(data, "train_mask"):
        raise ValueError(f"--data {args.data}: condensation needs one node-classification graph")
    from gkdfast.condense.evaluate import check_split

    check_split(data, f"--data {args.data}")
    return data


def _save(results: dict, out: str) -> None:
    """results.json (rows checked against the common schema, plus the condensation keys) and results.png."""
    from gkdfast._io import atomic_write
    from gkdfast.distill.results import ROW_KEYS, save_png, validate

    common = {"dataset": results["dataset"], "num_nodes": results["num_nodes"], "num_edges": results["num_edges"],
              "rows": [{k: r[k] for k in ROW_KEYS} for r in results["rows"]]}
    validate(common)
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(os.path.join(out, "results.json"), lambda f: f.write(text.encode()))
    for row, r in zip(common["rows"], results["rows"]):  # the bar labels name the graph size
        row["model"] = f"{r['model']}, {r['num_nodes']} nodes"
    save_png(common, os.path.join(out, "results.png"))


def run_condense_cmd(args) -> int:
    """Runs ``gkdfast condense`` from parsed arguments; returns the exit code.

    Example:
        >>> import contextlib, io, os, tempfile
        >>> from gkdfast.cli import build_parser
        >>> out = tempfile.mkdtemp()
        >>> args = build_parser().parse_args(["condense", "--ratio", "0.1", "--nodes", "300", "--epochs", "1",
        ...                                   "--outer", "1", "--inner", "0", "--eval-epochs", "2", "--eval-runs", "1",
        ...                                   "--quiet", "--out", out])
        >>> with contextlib.redirect_stdout(io.StringIO()) as table:
        ...     code = run_condense_cmd(args)
        >>> code, sorted(f for f in os.listdir(out) if not f.startswith("."))
        (0, ['csbm-gcond-r0.1-seed0.npz', 'results.json', 'results.png'])
        >>> [line.split()[:3] for line in table.getvalue().splitlines() if line.startswith("gcond")]  # 30 nodes
        [['gcond', 'GCN(256)', '30']]
    """
    from gkdfast._io import exclusive_dir
    from gkdfast.condense import published_config, run_condense
    from gkdfast.condense.synthetic import class_counts, synthetic_size

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.eval_epochs < 1:
        raise ValueError(f"--eval-epochs must be >= 1, got {args.eval_epochs}")
    if args.eval_runs < 1:
        raise ValueError(f"--eval-runs must be >= 1, got {args.eval_runs}")
    if args.one_step and ((args.outer or 1) != 1 or (args.inner or 0) != 0):
        raise ValueError("--one-step matches once per network: drop --outer/--inner")
    config = published_config(one_step=args.one_step, epochs=args.epochs, outer=args.outer, inner=args.inner,
                              lr_feat=args.lr_feat, lr_adj=args.lr_adj, backbone=args.backbone, metric=args.metric)
    data = _load(args)
    # Fail on a bad ratio, or a class without training nodes, before any training.
    n_syn = synthetic_size(args.ratio, data.num_nodes, data.num_classes, int(data.train_mask.sum()))
    class_counts(data.y[data.train_mask], data.num_classes, n_syn)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    log(data.summary())
    with exclusive_dir(args.out, "--out folder"):
        results = run_condense(data, args.ratio, list(range(args.seed, args.seed + args.seeds)), config, out=args.out,
                               eval_epochs=args.eval_epochs, eval_runs=args.eval_runs, progress=not (args.quiet or args.no_progress), log=log)
        _save(results, args.out)  # before printing: a closed pipe must not lose the condensation
        print(format_condense_table(results))
    print(f"wrote {os.path.join(args.out, 'results.json')}, results.png and the condensed graph(s)")
    return 0
