"""``gkdfast distill --task graph``: graph classification on a TU-format folder with k-fold cross-validation.

Kept apart from :mod:`gkdfast.cli`, which only adds ``--task``/``--folds`` and hands over here.  Prints the
same table as the node-level command and writes ``OUT/results.json`` (one row per method and student,
``test_acc`` = one accuracy per fold) and ``OUT/results.png``.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_graph_args", "run_graph"]

DEFAULT_TEACHER = "gin:128x5"
DEFAULT_STUDENTS = "gin,gcn"


DEFAULT_FOLDS = 10
# The flags only --task graph reads (argparse attribute names): a node-classification run refuses them.
GRAPH_ONLY = ("folds", "max_folds", "dfad_epochs", "dfad_nodes")


def add_graph_args(parser) -> None:
    """Adds the graph-classification flags to the ``distill`` sub-parser.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_graph_args(p)
        >>> args = p.parse_args(["--task", "graph", "--folds", "5", "--max-folds", "1"])
        >>> args.task, args.folds, args.max_folds, args.dfad_epochs
        ('graph', 5, 1, None)
    """
    g = parser.add_argument_group("graph classification (--task graph: TU-format folder, k-fold CV)")
    g.add_argument("--task", choices=("node", "graph"), default="node",
                   help="node classification (default) or graph classification (--data a TU folder)")
    g.add_argument("--folds", type=int, default=None,
                   help=f"k of the stratified k-fold split (default {DEFAULT_FOLDS})")
    g.add_argument("--max-folds", type=int, help="run only the first N folds (quick runs)")
    g.add_argument("--dfad-epochs", type=int, help="DFAD-GNN epochs (default 100)")
    g.add_argument("--dfad-nodes", type=int, help="nodes per generated graph (default: mean graph size, rounded)")


def _apply_set(items, train_cfg, dfad_cfg, gfkd_cfg):
    """``--set kd.temperature=4 --set dfad.bn_match=1.0 --set gfkd.iterations=500``: fields of
    GraphTrainConfig (``kd.*``, also used by the teacher and the no-KD students), DFADConfig (``dfad.*``)
    and GFKDConfig (``gfkd.*``); unknown names fail before training."""
    import dataclasses

    from gkdfast.cli import _parse_set

    cfgs = {"kd": train_cfg, "dfad": dfad_cfg, "gfkd": gfkd_cfg}
    for method, kw in _parse_set(items).items():
        if method not in cfgs:
            raise ValueError(f"--set {method}.*: graph classification takes kd.*, dfad.* and gfkd.* settings")
        known = {f.name for f in dataclasses.fields(cfgs[method])}
        bad = sorted(set(kw) - known)
        if bad:
            raise ValueError(f"--set {method}.{bad[0]}: unknown; known: {', '.join(sorted(known))}")
        cfgs[method] = dataclasses.replace(cfgs[method], **kw)
    return cfgs["kd"], cfgs["dfad"], cfgs["gfkd"]


def run_graph(args) -> int:
    """Runs :func:`gkdfast.distill.graph_experiment.run_graph_experiment` from parsed ``distill`` arguments.

    Example:
        >>> import contextlib, io, json, os, pathlib, tempfile
        >>> from gkdfast.cli import build_parser
        >>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()  # 20 graphs: triangles (label 1) and paths (label 0)
        >>> graphs = {i: [[0, 1], [1, 2], [2, 0]] if i % 2 else [[0, 1], [1, 2], [2, 3]] for i in range(20)}
        >>> _ = pathlib.Path(data, "graphs.json").write_text(json.dumps(graphs))
        >>> labels = "".join(f"{i},{i % 2}\\n" for i in range(20))
        >>> _ = pathlib.Path(data, "target.csv").write_text("id,target\\n" + labels)
        >>> args = build_parser().parse_args(["distill", "--task", "graph", "--data", data, "--teacher", "gin:8x2",
        ...                                   "--student", "gin:8x2", "--folds", "2", "--max-folds", "1",
        ...                                   "--epochs", "1", "--quiet", "--out", out])
        >>> with contextlib.redirect_stdout(io.StringIO()):  # the results table
        ...     code = run_graph(args)
        >>> with open(os.path.join(out, "results.json")) as f: results = json.load(f)
        >>> code, [(r["method"], r["model"]) for r in results["rows"]]
        (0, [('teacher', 'GIN(2x8)'), ('none', 'GIN(2x8)'), ('kd', 'GIN(2x8)')])
    """
    import torch

    from gkdfast._io import exclusive_dir
    from gkdfast.data import GraphDataset, load
    from gkdfast.distill.datafree import DFADConfig
    from gkdfast.distill.gfkd import GFKDConfig
    from gkdfast.distill.graph_experiment import GRAPH_METHODS, parse_graph_model, run_graph_experiment
    from gkdfast.distill.graph_level import GraphTrainConfig
    from gkdfast.distill.results import format_table, save_json, save_png

    if args.data is None:
        raise ValueError("--task graph needs --data DIR (a TU-format folder such as ../shared/data/tu_mutag, or "
                         "graphs.json + target.csv such as ../shared/data/reddit_threads_10k)")
    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data}: not a folder (--task graph reads TU-format or graphs.json "
                                "folders)")
    folds = DEFAULT_FOLDS if args.folds is None else args.folds
    if folds < 2:
        raise ValueError(f"--folds must be >= 2, got {folds}")
    if args.max_folds is not None and not 1 <= args.max_folds <= folds:
        raise ValueError(f"--max-folds must be in 1..{folds}, got {args.max_folds}")
    for flag in ("epochs", "dfad_epochs", "dfad_nodes"):
        v = getattr(args, flag)
        if v is not None and v < (2 if flag == "dfad_nodes" else 1):
            raise ValueError(f"--{flag.replace('_', '-')} is too small: {v}")
    methods = [m.strip() for m in (args.methods or "kd").split(",") if m.strip()]
    for m in methods:
        if m not in GRAPH_METHODS:
            raise ValueError(f"--methods {m!r}: graph classification knows {', '.join(GRAPH_METHODS)}")
    teacher = parse_graph_model(args.teacher or DEFAULT_TEACHER,
                                hidden=128, num_layers=5)
    students = [parse_graph_model(s) for s in (args.student or DEFAULT_STUDENTS).split(",") if s.strip()]
    if len({s.label for s in students}) != len(students):
        raise ValueError("--student lists the same model twice")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = load(args.data, format=args.format, name=args.name, seed=args.seed)
    if not isinstance(data, GraphDataset):
        raise ValueError(f"--data {args.data}: holds a node-classification graph; --task graph needs many small "
                         "graphs (TU format, or graphs.json + target.csv)")
    sizes = (data.ptr[1:] - data.ptr[:-1]).float()
    train_cfg = GraphTrainConfig(epochs=args.epochs or 100)
    dfad_cfg = DFADConfig(epochs=args.dfad_epochs or 100,
                          num_nodes=args.dfad_nodes or max(2, round(float(sizes.mean()))))
    # --epochs caps GFKD's student epochs as every other student's; its fake-graph inversion keeps its
    # own budget (--set gfkd.iterations=N), as DFAD's generator keeps --dfad-epochs
    gfkd_cfg = GFKDConfig(student_epochs=args.epochs) if args.epochs else GFKDConfig()
    train_cfg, dfad_cfg, gfkd_cfg = _apply_set(args.set, train_cfg, dfad_cfg, gfkd_cfg)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    log(f"{data!r}; {folds}-fold CV{f' (first {args.max_folds})' if args.max_folds else ''}; device {device}")
    out = args.out
    os.makedirs(out, exist_ok=True)
    with exclusive_dir(out, "--out folder"):
        results = run_graph_experiment(data, teacher, students, methods, folds=folds, seed=args.seed,
                                       train_cfg=train_cfg, dfad_cfg=dfad_cfg, gfkd_cfg=gfkd_cfg, device=device,
                                       max_folds=args.max_folds, log=log)
        proto = results["protocol"]
        folds_text = (f"fold(s) of {proto['folds']}" if proto["folds_run"] < proto["folds"] else "fold(s)")
        save_json(results, os.path.join(out, "results.json"))  # saved before printing, as distill's
        save_png(results, os.path.join(out, "results.png"))
        print(format_table(results).replace("seed(s)", folds_text, 1))
    print(f"wrote {os.path.join(out, 'results.json')} and {os.path.join(out, 'results.png')}")
    return 0
