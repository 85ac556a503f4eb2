"""``gkdfast distill`` for large graphs: the flags of the out-of-core pipeline and the command that runs
it (:func:`gkdfast.distill.large.distill_large`).  Kept apart from :mod:`gkdfast.cli` so the main
command stays readable; ``cli.py`` only adds these flags and hands over when the graph is large.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_large_args", "wants_large", "run_large", "parse_fanouts", "DEFAULT_SAMPLED_ABOVE"]

DEFAULT_SAMPLED_ABOVE = 1_000_000  # nodes: above this, full-batch training does not fit a 24 GiB machine
# The students' schedule flags (distill_large's patience, student_min_steps, min/max_patience_steps): the
# pipeline's own, so given without it they stop the run rather than being ignored.
PIPELINE_STEPS = {"patience": 5, "min_steps": 600, "min_patience_steps": 100, "max_patience_steps": 3000}
# The pipeline's other flags and their defaults.  Every pipeline flag defaults to None on the command
# line, so a run that does not go through the pipeline can refuse them instead of ignoring them.
PIPELINE_FLAGS = {"fanouts": "15,10", "batch_size": 4096, "teacher_batch_size": 1024, "teacher_epochs": 3,
                  "teacher_validations": 20, "chunk_rows": 65536, "no_memory_check": False}
PIPELINE_NAMES = (*PIPELINE_STEPS, *PIPELINE_FLAGS)


def parse_fanouts(text: str) -> tuple:
    """``"15,10"`` -> ``(15, 10)``; ValueError naming ``--fanouts`` otherwise.

    Example:
        >>> parse_fanouts("15, 10")
        (15, 10)
    """
    try:
        out = tuple(int(t) for t in str(text).split(","))
    except ValueError:
        out = ()
    if not out or any(k < 1 for k in out):
        raise ValueError(f"--fanouts {text!r}: expected positive ints separated by commas, e.g. 15,10")
    return out


def add_large_args(parser) -> None:
    """Adds the out-of-core pipeline's flags to the ``distill`` sub-parser.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_large_args(p)
        >>> args = p.parse_args(["--sampled", "--fanouts", "10,5"])
        >>> args.sampled, parse_fanouts(args.fanouts), args.sampled_above, args.batch_size  # None: the default
        (True, (10, 5), 1000000, None)
    """
    g = parser.add_argument_group("large graphs (out-of-core pipeline: sampled teacher, layer-wise "
                                  "inference into a memory-mapped cache, mini-batch MLP student)")
    g.add_argument("--sampled", action="store_true",
                   help="use the out-of-core pipeline (automatic above --sampled-above nodes)")
    g.add_argument("--sampled-above", type=int, default=DEFAULT_SAMPLED_ABOVE, metavar="N",
                   help=f"switch to the pipeline for graphs with at least N nodes (default {DEFAULT_SAMPLED_ABOVE}; "
                        "0 never switches automatically)")
    g.add_argument("--fanouts", default=None, help="neighbours sampled per teacher layer (default 15,10)")
    g.add_argument("--batch-size", type=int, default=None, help="student node mini-batch (default 4096)")
    g.add_argument("--teacher-batch-size", type=int, default=None,
                   help="seed nodes per sampled teacher batch (default 1024)")
    g.add_argument("--teacher-epochs", type=int, default=None, help="sampled teacher epochs (default 3)")
    g.add_argument("--teacher-validations", type=int, default=None,
                   help="validate the sampled teacher about this many times, the last epoch included (default 20)")
    g.add_argument("--patience", type=int, default=None,
                   help=f"students' early-stopping patience in epochs (default {PIPELINE_STEPS['patience']}; "
                        "at least --min-patience-steps steps, at most --max-patience-steps)")
    g.add_argument("--min-steps", type=int, default=None,
                   help="each student's step budget is at least this, the label-only baseline's too (default "
                        f"{PIPELINE_STEPS['min_steps']}; early stopping may end it sooner): with few labels "
                        "one of its epochs is one step")
    g.add_argument("--min-patience-steps", type=int, default=None,
                   help=f"early-stopping patience in steps at least (default {PIPELINE_STEPS['min_patience_steps']})")
    g.add_argument("--max-patience-steps", type=int, default=None,
                   help="early-stopping patience in steps at most, rounded up to whole epochs (default "
                        f"{PIPELINE_STEPS['max_patience_steps']}; 0: no ceiling; --min-patience-steps wins over "
                        "it): on a huge graph one epoch is thousands of steps")
    g.add_argument("--chunk-rows", type=int, default=None,
                   help="rows per block of layer-wise teacher inference (default 65536; lower = less memory)")
    g.add_argument("--no-memory-check", action="store_true",
                   help="run a stage even when its memory estimate exceeds the available memory")


def wants_large(args, data) -> bool:
    """Whether this ``distill`` run goes through the out-of-core pipeline.  A run that does not but was
    given the pipeline's flags (``--patience``, ``--min-steps``, ``--batch-size``, ``--fanouts``,
    ``--chunk-rows`` ...) stops with a ValueError naming ``--set METHOD.patience=N``, the per-recipe way.

    Example:
        >>> from gkdfast.cli import build_parser
        >>> from gkdfast.data import csbm
        >>> d, parse = csbm(num_nodes=100), build_parser().parse_args
        >>> wants_large(parse(["distill"]), d), wants_large(parse(["distill", "--sampled"]), d)
        (False, True)
        >>> wants_large(parse(["distill", "--sampled-above", "100"]), d)  # at least 100 nodes
        True
        >>> wants_large(parse(["distill", "--patience", "3"]), d)
        Traceback (most recent call last):
        ValueError: --patience: the out-of-core pipeline's schedule (--sampled, or graphs above --sampled-above ...
    """
    above = getattr(args, "sampled_above", 0) or 0
    large = bool(getattr(args, "sampled", False)) or (above > 0 and data.num_nodes >= above)
    from gkdfast.cli import flags_given

    given = flags_given(args, PIPELINE_NAMES)
    if given and not large:
        raise ValueError(f"{', '.join(given)}: the out-of-core pipeline's schedule (--sampled, or graphs above "
                         f"--sampled-above nodes); {data.num_nodes} nodes run full-batch, where each recipe has "
                         "its own: --set METHOD.patience=N, --set METHOD.epochs=N, --set METHOD.batch_size=N")
    return large


def run_large(args, data, log=None, group=None) -> int:
    """Runs :func:`distill_large` from parsed ``distill`` arguments; prints the results and stage
    tables and writes ``results.json`` (with the ``stages`` table), ``results.png`` and ``stages.md``.
    ``group``: under ``--distributed`` the :class:`gkdfast.distill.ddp.Dist` of this rank; every rank
    runs the pipeline, rank 0 alone logs, prints and writes.

    Example:
        >>> import contextlib, io, json, os, tempfile
        >>> from gkdfast.cli import build_parser
        >>> from gkdfast.data import csbm
        >>> out = tempfile.mkdtemp()
        >>> args = build_parser().parse_args(["distill", "--sampled", "--teacher", "sage:16", "--teacher-epochs", "1",
        ...                                   "--epochs", "1", "--fanouts", "5,5", "--batch-size", "64",
        ...                                   "--min-steps", "1", "--min-patience-steps", "1", "--quiet",
        ...                                   "--no-progress", "--out", out])
        >>> with contextlib.redirect_stdout(io.StringIO()):  # the results and stage tables
        ...     code = run_large(args, csbm(num_nodes=200, num_classes=3, feature_dim=8))
        >>> with open(os.path.join(out, "results.json")) as f: results = json.load(f)
        >>> code, [(r["method"], r["model"]) for r in results["rows"]], os.path.exists(os.path.join(out, "stages.md"))
        (0, [('teacher', 'SAGE(16)'), ('none', 'MLP(16)'), ('glnn', 'MLP(16)')], True)
    """
    from gkdfast.cli import student_dropout
    from gkdfast.distill import recipes
    from gkdfast.distill.experiment import parse_model
    from gkdfast.distill.large import LARGE_METHODS

    for k, default in {**PIPELINE_STEPS, **PIPELINE_FLAGS}.items():  # the flags not given: their defaults
        if getattr(args, k, None) is None:
            setattr(args, k, default)
    for flag, v in (("--batch-size", args.batch_size), ("--teacher-batch-size", args.teacher_batch_size),
                    ("--teacher-epochs", args.teacher_epochs), ("--chunk-rows", args.chunk_rows),
                    ("--teacher-validations", args.teacher_validations),
                    ("--patience", args.patience)):
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    for flag, v in (("--min-steps", args.min_steps),
                    ("--min-patience-steps", args.min_patience_steps)):
        if v < 0:
            raise ValueError(f"{flag} must be >= 0, got {v}")
    if args.max_patience_steps < 0:
        raise ValueError(f"--max-patience-steps must be >= 0 (0: no ceiling), got {args.max_patience_steps}")
    if args.setting != "transductive":
        raise ValueError("--setting inductive is not supported with --sampled (the out-of-core pipeline is "
                         "transductive: the teacher's outputs cover every node)")
    if args.device and args.device != "cpu":
        raise ValueError(f"--device {args.device}: the out-of-core pipeline (--sampled) runs on the CPU")
    from gkdfast.distill.large_gnn import GNN_STUDENTS

    if getattr(args, "seeds", None) is not None:
        raise ValueError("--seeds: the out-of-core pipeline runs one seed per command; pick it with --seed S")
    if (args.teacher or "").strip().lower() == "auto":
        raise ValueError("--teacher auto: not available in the out-of-core pipeline (--sampled), which trains one "
                         "sampled teacher; name it, e.g. --teacher sage:256")
    teacher = parse_model(args.teacher or "sage")
    from gkdfast.nn.models import _MODELS

    if not hasattr(_MODELS[teacher.name], "forward_blocks"):  # the sampled teacher trains on sampled blocks
        raise ValueError(f"--teacher {args.teacher}: the out-of-core pipeline trains its teacher on sampled "
                         "neighbourhoods, which this model does not run on; use gcn, sage, gat or gin")
    one = "," not in (args.student or "")  # (checked before parsing: "mlp,gcn" is no model name)
    student = parse_model(args.student or "mlp:" + str(teacher.hidden), dropout=student_dropout(args)) if one else None
    if not one or student.name not in ("mlp",) + GNN_STUDENTS:
        raise ValueError(f"--student {args.student}: the out-of-core pipeline trains one student: mlp[:HIDDEN] "
                         f"(node batches) or one of {', '.join(GNN_STUDENTS)}[:HIDDEN] (neighbour-sampled batches "
                         "with --fanouts)")
    methods = [recipes.get(m).name for m in (args.methods or "glnn").split(",") if m.strip()]
    if not methods or any(m not in LARGE_METHODS for m in methods) or len(set(methods)) != len(methods):
        raise ValueError(f"--methods {args.methods}: the out-of-core pipeline runs distinct methods among "
                         f"{', '.join(LARGE_METHODS)}")
    fanouts = parse_fanouts(args.fanouts)
    overrides = {}
    for item in args.set or ():
        key, _, value = item.partition("=")
        m, _, param = key.partition(".")
        name = recipes.get(m).name
        if name in methods:
            import ast

            try:
                overrides[f"{name}.{param}"] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                overrides[f"{name}.{param}"] = value
    from gkdfast.distill.large import _method_overrides

    _method_overrides(methods, overrides)  # unknown hyperparameter: fail before any work
    main = group is None or group.is_main
    quiet = args.quiet or not main
    log = log or ((lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    log(f"{data.name}: {data.num_nodes} nodes, {data.graph.num_edges} edges, {data.num_features} features, "
        f"{data.num_classes} classes; out-of-core pipeline (seed {args.seed})"
        + (f"; {group.world_size} processes ({group.backend})" if group is not None else ""))
    from gkdfast._io import exclusive_dir

    # one run per --out: they would share checkpoints and cache (under torchrun rank 0 holds the lock)
    with exclusive_dir(args.out, "--out folder", enabled=main):
        return _run(args, data, teacher, student, methods, fanouts, overrides, log, main)


def _run(args, data, teacher, student, methods, fanouts, overrides, log, main=True) -> int:
    from gkdfast.distill.large import distill_large, format_stages
    from gkdfast.distill.results import format_table, save_json, save_png

    results = distill_large(
        data, teacher=teacher.name, hidden=teacher.hidden, num_layers=len(fanouts), fanouts=fanouts,
        teacher_epochs=args.teacher_epochs, teacher_batch_size=args.teacher_batch_size,
        teacher_validations=args.teacher_validations, batch_size=args.batch_size, chunk_rows=args.chunk_rows,
        student=student.name, student_hidden=student.hidden,
        student_dropout=student.dropout, method=methods, student_epochs=args.epochs or 20,
        patience=args.patience,
        student_min_steps=args.min_steps, min_patience_steps=args.min_patience_steps,
        max_patience_steps=args.max_patience_steps or None,
        seed=args.seed,
        out_dir=args.out, cache_dir=args.cache_dir, progress=not args.quiet and not args.no_progress,
        check_memory_first=not args.no_memory_check, overrides=overrides, log=log)
    if not main:
        return 0
    save_json(results, os.path.join(args.out, "results.json"))  # saved before printing, as distill's
    save_png(results, os.path.join(args.out, "results.png"))
    from gkdfast._io import atomic_write

    stages_md = (format_stages(results["stages"], markdown=True) + "\n").encode()
    atomic_write(os.path.join(args.out, "stages.md"), lambda f: f.write(stages_md))
    print(format_table(results))
    print()
    print(format_stages(results["stages"]))
    print(f"wrote {os.path.join(args.out, 'results.json')}, results.png and stages.md")
    return 0
