"""``gkdfast distill --protocol published``: every recipe in the setting it was published in.

Kept apart from :mod:`gkdfast.cli`, which only adds ``--protocol`` and hands over here.  The settings
(split, preprocessing, teacher, students, hyperparameters per recipe and dataset) are in
:mod:`gkdfast.distill.protocols`; ``docs/protocols.md`` explains them.  Prints the usual table and
writes ``OUT/results.json`` (with a ``protocol`` entry naming each setting) and ``OUT/results.png``.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_protocol_args", "run_published_cli"]


def add_protocol_args(parser) -> None:
    """Adds ``--protocol`` to the ``distill`` sub-parser.

    Example:
        >>> import argparse
        >>> p = argparse.ArgumentParser()
        >>> add_protocol_args(p)
        >>> p.parse_args([]).protocol, p.parse_args(["--protocol", "published"]).protocol
        ('common', 'published')
    """
    parser.add_argument("--protocol", choices=("common", "published"), default="common",
                        help="common (default): every recipe into the same --student on the data's split; "
                             "published: each recipe with the split, preprocessing, teacher, student and "
                             "hyperparameters of its paper (docs/protocols.md); --methods picks among "
                             "glnn, nosmog, graphmlp, kd, lsp, gsp, gcrd, kd_gcrd (the default) and freekd, oad, gsdn, "
                             "sail, t2gnn, ta_ensemble, coldbrew, --student gcn, "
                             "sage or gat keeps some of the GNN students, --set teacher.KEY=VALUE changes the "
                             "teacher (model, hidden, num_layers, dropout, heads, input_dropout, lr, ...), "
                             "--set data.row_normalize=True / data.lcc=True the data preparation")


def _check_flags(args) -> None:
    """The published protocol fixes the models and the setting: flags that would change them fail."""
    clashes = [("--teacher", args.teacher and args.teacher.strip().lower() != "auto"),
               ("--setting inductive", args.setting != "transductive"), ("--missing-rate", args.missing_rate),
               ("--sampled", getattr(args, "sampled", False)), ("--fairness", args.fairness),
               ("--dropout", args.dropout is not None), ("--autocast", getattr(args, "autocast", None)),
               ("--cache-dir", getattr(args, "cache_dir", None) is not None)]  # each setting caches in OUT/<setting>
    from gkdfast.cli import _schedule_flags

    clashes += _schedule_flags(args)
    for flag, given in clashes:
        if given:
            hint = (" (--teacher auto picks each setting's teacher by validation; --set teacher.KEY=VALUE changes "
                    "it, e.g. teacher.hidden=64)") if flag == "--teacher" else ""
            raise ValueError(f"--protocol published sets the models and setting of each recipe; drop {flag} "
                             f"(or use --protocol common){hint}")


def _published_students(text):
    """``--student gcn`` under the published protocol: names (no widths) of the published students to
    keep (the gnn setting has GCN, SAGE and GAT); anything else fails."""
    if not text:
        return None
    from gkdfast.cli import _split_list

    names = _split_list(text, "student")
    bad = [n for n in names if n.lower() not in ("gcn", "sage", "gat", "mlp", "gmlp")]
    if bad or any(":" in n for n in names):
        raise ValueError(f"--protocol published sets the models of each recipe; --student only picks among its "
                         f"students by name (gcn, sage, gat, mlp, gmlp), got {text!r}")
    return [n.lower() for n in names]


def _check_distributable(settings, overrides) -> None:
    """Under ``--distributed``: fails before any training when a setting's recipe (with the setting's
    and the user's hyperparameters) or one of its models cannot train data-parallel."""
    from gkdfast.distill import recipes
    from gkdfast.nn.models import _MODELS

    for s in settings:
        for m in s.methods:
            kw = dict(s.overrides.get(recipes.get(m).name, {}), **overrides.get(recipes.get(m).name, {}))
            problem = recipes.get(m, **kw).distributed_problem()
            if problem:
                raise ValueError(f"--distributed: method {m!r} in the published {s.key} setting cannot train across "
                                 f"processes: {problem}; choose --methods without it or run without --distributed")
        for spec in ((s.teacher,) if s.teacher else ()) + tuple(s.students):
            if callable(getattr(_MODELS.get(spec.name), "regularization", None)):
                raise ValueError(f"--distributed: the published {s.key} setting trains {spec.label}, which adds its "
                                 "own regularization() to the loss (not data-parallel); run it without --distributed")


def run_published_cli(args, device: str) -> int:
    """Runs :func:`gkdfast.distill.protocols.run_published` for ``gkdfast distill`` and writes the results;
    under ``--distributed`` every rank trains (data-parallel) and rank 0 alone logs and writes.

    Example:
        >>> import contextlib, io, json, os, tempfile
        >>> from gkdfast.cli import build_parser
        >>> out = tempfile.mkdtemp()
        >>> args = build_parser().parse_args(["distill", "--protocol", "published", "--methods", "glnn",
        ...                                   "--epochs", "1", "--seeds", "1", "--nodes", "500", "--quiet",
        ...                                   "--no-progress", "--out", out])
        >>> with contextlib.redirect_stdout(io.StringIO()):  # the results table
        ...     code = run_published_cli(args, "cpu")
        >>> with open(os.path.join(out, "results.json")) as f: results = json.load(f)
        >>> code, [(r["method"], r["model"]) for r in results["rows"]]
        (0, [('teacher', 'SAGE(128)'), ('none', 'MLP(128)'), ('glnn', 'MLP(128)')])
    """
    from gkdfast._io import exclusive_dir
    from gkdfast.cli import _init_distributed, _load_data, _parse_set, _split_list, num_seeds, runs_log
    from gkdfast.distill.protocols import published_settings, run_published
    from gkdfast.distill.results import format_table, save_json, save_png

    _check_flags(args)
    methods = _split_list(args.methods, "methods") if args.methods else None
    students = _published_students(args.student)
    overrides = _parse_set(args.set)
    auto_teacher = (args.teacher or "").strip().lower() == "auto"
    if args.distributed and auto_teacher:
        raise ValueError("--teacher auto: pick the teachers in one process first (results.json names them), then "
                         "pass them with --set teacher.KEY=VALUE under --distributed")
    group, device = _init_distributed(args, device)
    data = _load_data(args)
    settings = published_settings(data.name, methods)  # a recipe without a published setting fails before training
    if group is not None:
        from gkdfast.distill import recipes

        _check_distributable(settings, recipes.by_name({k: v for k, v in overrides.items()
                                                       if k not in ("teacher", "data")}))
    main = group is None or group.is_main
    log = (lambda s: None) if args.quiet or not main else (lambda s: print(s, file=sys.stderr, flush=True))
    log(f"{data.name}: {data.num_nodes} nodes, {data.graph.num_edges} edges, {data.x.size(1)} features, "
        f"{data.num_classes} classes; split {data.extras.get('split', 'given')}; device {device}; published protocol"
        + (f"; {group.world_size} processes ({group.backend})" if group is not None else ""))
    os.makedirs(args.out, exist_ok=True)
    with exclusive_dir(args.out, "--out folder", enabled=main):
        results = run_published(data, methods=methods, seeds=list(range(args.seed, args.seed + num_seeds(args))),
                                epochs=args.epochs, device=device, out=args.out, log=log, overrides=overrides,
                                progress=main and not args.quiet and not args.no_progress, students=students,
                                auto_teacher=auto_teacher,
                                details=runs_log(args, data, device, main, protocol="published"))
        if not main:
            return 0
        save_json(results, os.path.join(args.out, "results.json"))  # saved before printing, as distill's
        save_png(results, os.path.join(args.out, "results.png"))
        print(format_table(results))
    print(f"wrote {os.path.join(args.out, 'results.json')} and {os.path.join(args.out, 'results.png')}")
    return 0
