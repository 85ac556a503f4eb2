"""The ``gkdfast`` command: ``info`` (backends), ``distill`` (the main job), ``generate`` (a large
synthetic graph, saved memory-mappable), ``convert`` (any supported graph format, saved
memory-mappable), ``condense`` (GCond graph condensation), ``bench``."""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys


def _cmd_info(args) -> int:
    import gkdfast

    info = gkdfast.backend_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"gkdfast {info['version']}  (torch {info['torch']}, torch CUDA {info['torch_cuda']})")
    print(f"native extension: {'loaded' if info['extension_loaded'] else 'NOT loaded: ' + str(info['load_error'])}")
    print(f"compiled with CUDA: {info['compiled_with_cuda']}   CUDA device: {info['cuda_device']}")
    print(f"threads: OpenMP {info['openmp_threads']}, torch {info['torch_threads']}   mode: {info['mode']}")
    for name, b in info["backends"].items():
        status = "available" if b["available"] else "not used: " + "; ".join(b["reasons"])
        print(f"  backend {name:<9} {status}")
    if info["ops"]:
        print("ops:")
        for op, keys in info["ops"].items():
            print(f"  {op:<28} {', '.join(keys) if keys else '(no kernel)'}")
    return 0


# -- distill -------------------------------------------------------------------------------------
DEFAULT_METHODS_MLP = "kd,glnn,nosmog,graphmlp,coldbrew,gcrd"
DEFAULT_METHODS_GNN = "kd,lsp,gsp,gcrd"


def _recipe_names() -> list:
    from gkdfast.distill.recipes import names

    return names()


def _split_list(text: str, what: str) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} is empty")
    return items


def _parse_set(items) -> dict:
    """``--set glnn.lamb=0.3`` → ``{"glnn": {"lamb": 0.3}}`` (values parsed as Python literals; ``true`` /
    ``false`` / ``none`` / ``null`` in any case are the booleans and ``None``, not text)."""
    import ast

    out: dict = {}
    for item in items or ():
        key, eq, value = item.partition("=")
        method, dot, param = key.partition(".")
        if not eq or not dot or not method or not param:
            raise ValueError(f"--set {item!r}: expected METHOD.PARAM=VALUE, e.g. glnn.lamb=0.3")
        words = {"true": True, "false": False, "none": None, "null": None}  # any case: not text
        if value.strip().lower() in words:
            parsed = words[value.strip().lower()]
        else:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = value
        out.setdefault(method, {})[param] = parsed
    return out


# --avg-degree/--features/--classes/--homophily (argparse attribute -> gkdfast.data.dcsbm keyword)
_SHAPE_FLAGS = {"avg_degree": "avg_degree", "features": "feature_dim", "classes": "num_classes",
                "homophily": "homophily"}


def _synthetic_shape(args) -> dict:
    """dcsbm keywords from the shape flags that were given; {} when none was."""
    return {kw: getattr(args, a) for a, kw in _SHAPE_FLAGS.items() if getattr(args, a, None) is not None}


def _load_data(args):
    shape = _synthetic_shape(args)
    if args.data is None:
        from gkdfast.data import csbm, dcsbm

        if args.format or args.name:
            raise ValueError("--format/--name need --data PATH")
        hetero = flags_given(args, ("target_type", "split"))
        if hetero:
            raise ValueError(f"{', '.join(hetero)}: for heterogeneous data; give --data DIR (HeCo / MAGNN folder)")
        # One fixed graph (seed 0); --seed varies weights and, outside --sampled, the split.  The shape
        # flags switch to the degree-corrected SBM (power-law degrees, products-like defaults for the
        # flags not given).
        return dcsbm(num_nodes=args.nodes, seed=0, **shape) if shape else csbm(num_nodes=args.nodes, seed=0)
    if shape:
        given = ", ".join(flags_given(args, _SHAPE_FLAGS))
        raise ValueError(f"{given} shape the built-in synthetic graph; drop them or --data")
    import os

    if not os.path.exists(args.data) and not os.path.exists(args.data + ".graph"):  # (or a Planetoid prefix)
        raise FileNotFoundError(f"--data {args.data}: no such file or directory")
    from gkdfast.data import load

    from gkdfast.data import GraphDataset

    extra = {k: getattr(args, k) for k in ("target_type", "split") if getattr(args, k, None) is not None}
    if extra and not _is_hetero(args):
        given = ", ".join(flags_given(args, ("target_type", "split")))
        raise ValueError(f"{given}: for heterogeneous data (HeCo / MAGNN folders); {args.data} is not one")
    try:
        data = load(args.data, format=args.format, name=args.name, seed=args.seed, **extra)
    except (ValueError, TypeError, FileNotFoundError, NotImplementedError):
        raise
    except Exception as exc:  # a malformed file can surface as anything (pickle, zip, json, numpy ...)
        raise ValueError(f"could not read {args.data}: {type(exc).__name__}: {exc}") from None
    if isinstance(data, GraphDataset):
        raise ValueError(f"--data {args.data}: a graph-classification dataset ({len(data)} graphs); "
                         "add --task graph for graph classification")
    return data


def _init_distributed(args, device: str):
    """``--distributed``: the process group from torchrun's environment (gloo on the CPU, NCCL with this
    rank's GPU ``cuda:LOCAL_RANK``) → ``(Dist, device)``; ``(None, device)`` without the flag."""
    if not args.distributed:
        return None, device
    from gkdfast.distill.ddp import init_from_env

    group = init_from_env(device)
    if device.startswith("cuda"):
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return group, device


def _check_distributable(methods, overrides) -> None:
    """Under --distributed, fails before any training when a recipe cannot run across processes
    (:meth:`~gkdfast.distill.recipes.base.Recipe.distributed_problem`; see docs/distributed.md)."""
    from gkdfast.distill import recipes

    names = {m for ms in (methods.values() if isinstance(methods, dict) else [methods]) for m in ms}
    canonical = {recipes.get(k).name: v for k, v in overrides.items()}
    for name in sorted(names):
        problem = recipes.get(name, **canonical.get(recipes.get(name).name, {})).distributed_problem()
        if problem:
            raise ValueError(f"--distributed: method {name!r} cannot train across processes: {problem}; choose "
                             "--methods without it or run without --distributed")


def _cmd_distill(args) -> int:
    import torch.distributed

    try:
        return _distill(args)
    finally:
        if args.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _writable_dir(path: str, flag: str) -> None:
    """Creates ``path`` if needed and checks it takes files; else an error naming ``flag``."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"{flag} {path}: cannot create it ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{flag} {path}: not writable")


def _distill(args) -> int:
    import os


    from gkdfast._io import exclusive_dir
    from gkdfast.distill import recipes
    from gkdfast.distill.experiment import parse_model, run_experiment, setting_tag
    from gkdfast.distill.results import format_table, save_json, save_png

    if args.split_dir and (args.task == "graph" or args.protocol == "published"
                           or (args.data is not None and _is_hetero(args))):
        raise ValueError("--split-dir (Geom-GCN split files) applies to node classification on a homogeneous "
                         "graph with --protocol common; graph classification, heterogeneous data and the "
                         "published protocol have their own splits")
    _check_pipeline_flags(args)
    if args.task != "graph":
        from gkdfast.cli_graph import GRAPH_ONLY

        given = flags_given(args, GRAPH_ONLY)
        if given:
            raise ValueError(f"{', '.join(given)}: flags of graph classification (--task graph); node "
                             "classification splits by seed (--seeds)")
    device = _check_device(args)
    if args.task == "graph":  # graph classification on a TU folder: its own pipeline (k-fold CV)
        from gkdfast.cli_graph import run_graph

        return run_graph(args)
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.runs_log and os.environ.get("RANK", "0") == "0":  # rank 0 writes it (another host may lack the path)
        _check_runs_log(args)
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.inductive_fraction is not None and args.setting != "inductive":
        raise ValueError("--inductive-fraction: only with --setting inductive")
    if args.inductive_fraction is None:
        args.inductive_fraction = 0.2
    if not 0.0 < args.inductive_fraction < 1.0:
        raise ValueError(f"--inductive-fraction must be in (0, 1), got {args.inductive_fraction}")
    if not 0.0 <= args.missing_rate < 1.0:
        raise ValueError(f"--missing-rate must be in [0, 1), got {args.missing_rate}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.dropout is not None and not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.nodes is not None and args.data is not None:
        raise ValueError("--nodes: the size of the built-in synthetic graph; drop it or --data")
    if args.nodes is None:
        args.nodes = 2000
    if args.nodes < 500:  # 5 classes x (20 train + 30 val) = 250 nodes before any test node
        raise ValueError(f"--nodes must be >= 500, got {args.nodes}")
    if args.data is not None and _is_hetero(args):  # typed graph: R-GCN / HAN models, kd / hire
        return _distill_hetero(args)
    if args.protocol == "published":  # each recipe in its paper's setting: gkdfast/distill/protocols.py
        from gkdfast.cli_protocol import run_published_cli

        return run_published_cli(args, device)
    auto_teacher = (args.teacher or "").strip().lower() == "auto"
    teacher = None if auto_teacher else parse_model(args.teacher or "sage", dropout=0.5)
    default_students = "mlp" if args.data is not None else "mlp,gcn:16"
    students = [parse_model(s, dropout=student_dropout(args)) for s in _split_list(args.student or default_students,
                                                                          "student")]
    if len({s.label for s in students}) != len(students):
        raise ValueError("--student lists the same model twice")
    if args.methods:
        methods = _split_list(args.methods, "methods")
        seen: dict = {}
        for m in methods:  # two spellings of one recipe would run it twice and merge both into one row
            name = recipes.get(m).name
            if name in seen:
                raise ValueError(f"--methods names {seen[name]!r} and {m!r}, the same recipe ({name}); name it once")
            seen[name] = m
    else:
        methods = {s.label: _split_list(DEFAULT_METHODS_MLP if s.name == "mlp" else DEFAULT_METHODS_GNN, "methods")
                   for s in students}
    if args.teacher is None and not _any_needs_teacher(methods):
        teacher = None  # nothing would read it: no teacher row (name one with --teacher to get it anyway)
    overrides = _parse_set(args.set)
    if args.fairness and "reliant" not in (recipes.get(m).name for m in _all_methods(methods)):
        raise ValueError(f"--fairness {args.fairness}: picks the bias RELIANT reduces; add reliant to --methods "
                         "(ΔSP and ΔEO are reported for every method whenever the data has a sensitive attribute)")
    if args.fairness:  # the bias RELIANT reduces (and the one its --set reliant.* sweep is about)
        overrides.setdefault("reliant", {}).setdefault("fairness", args.fairness)
    for key, where in (("data", "--protocol published (here the data trains as loaded)"),
                       ("teacher", "--protocol published and on heterogeneous data (here name it with --teacher)")):
        if key in overrides:  # not a recipe here: say where the key belongs instead of "unknown method"
            raise ValueError(f"--set {key}.*: only under {where}")
    run = {recipes.get(m).name for m in _all_methods(methods)} | {"none"}
    for m, kw in overrides.items():
        name = recipes.get(m, **kw).name  # unknown method or hyperparameter: fail before training
        if name not in run:  # (a typo'd method or a forgotten --methods entry: silently unused)
            raise ValueError(f"--set {m}.*: {name} is not among the methods this run trains "
                             f"({', '.join(sorted(run))}); add it to --methods or drop the setting")
    if args.distributed:
        _check_distributable(methods, overrides)
    group, device = _init_distributed(args, device)
    data = _load_data(args)
    if args.split_dir:
        from gkdfast.data.geom_splits import with_split_files

        data = with_split_files(data, args.split_dir, range(args.seed, args.seed + num_seeds(args)))
    main = group is None or group.is_main  # under --distributed only rank 0 prints and writes files
    out = args.out
    os.makedirs(out, exist_ok=True)
    from gkdfast.cli_large import run_large, wants_large

    if wants_large(args, data):  # sampled teacher, layer-wise inference, mini-batch MLP student
        if args.split_dir:
            raise ValueError("--split-dir: the large-graph pipeline keeps the data's split; run without --sampled")
        if args.missing_rate:
            raise ValueError("--missing-rate: the large-graph pipeline does not mask data; run without --sampled")
        if args.autocast:
            raise ValueError("--autocast: the large-graph pipeline (--sampled, or a graph above --sampled-above) "
                             "trains in float32; drop --autocast")
        if args.runs_log:
            raise ValueError("--runs-log: the large-graph pipeline writes its stages to results.json, not a runs "
                             "log; run without --sampled")
        return run_large(args, data, group=group)
    log = (lambda s: None) if args.quiet or not main else (lambda s: print(s, file=sys.stderr, flush=True))
    if group is not None:
        log(f"distributed: {group.world_size} processes ({group.backend}), training rows sharded per rank")
    log(f"{data.name}: {data.num_nodes} nodes, {data.graph.num_edges} edges, {data.x.size(1)} features, "
        f"{data.num_classes} classes; split {data.extras.get('split', 'given')}; device {device}")
    if data.extras.get("featureless"):
        log("note: the data has no node features (x is one all-ones column): an MLP student sees nothing that "
            "separates the nodes; use a GNN student (--student gcn) or position features (--methods nosmog)")
    if teacher is None and not auto_teacher:
        log("no teacher: every method is teacher-free (--teacher NAME adds a teacher row)")
    if auto_teacher:  # picked on each seed's split where the splits differ (else the first seed's serves all)
        from gkdfast.distill.teacher_select import select_per_seed, select_teacher

        if group is not None:
            raise ValueError("--teacher auto: pick the teacher in one process first (the log names it), then "
                             "pass it with --teacher under --distributed")
    if args.setting == "inductive":
        log(f"inductive setting: {args.inductive_fraction:.0%} of the test nodes and their edges are hidden "
            "during training; accuracy is measured on those nodes")
    # One run per --out at a time: a second one would share checkpoints and results.  Under torchrun
    # rank 0 holds the lock for the whole group.  (Taken before the teacher selection, which may be long.)
    with exclusive_dir(out, "--out folder", enabled=os.environ.get("RANK", "0") == "0"):
        if args.cache_dir:  # before the teacher trains, not when its outputs are first written
            _writable_dir(args.cache_dir, "--cache-dir")
        seeds = list(range(args.seed, args.seed + num_seeds(args)))
        inductive_fraction = args.inductive_fraction if args.setting == "inductive" else None
        if auto_teacher:  # on what the experiment's teacher will see: masked data, the observed graph
            (teacher, selection), for_seed, picks = select_per_seed(
                lambda s: select_teacher(data, seed=s, epochs=args.epochs, device=device, log=log,
                                         cache_dir=args.cache_dir or os.path.join(out, "cache"),
                                         missing_rate=args.missing_rate or 0.0, inductive_fraction=inductive_fraction,
                                         autocast=args.autocast),
                data, seeds, inductive_fraction, log)
            if len(picks) > 1:
                teacher = lambda s: for_seed(s)[0]  # noqa: E731
        results = run_experiment(data, teacher=teacher, students=students, methods=methods,
                                 seeds=seeds, epochs=args.epochs,
                                 device=device, out=out, cache_dir=args.cache_dir,
                                 progress=main and not args.quiet and not args.no_progress, overrides=overrides,
                                 log=log, setting=args.setting, inductive_fraction=args.inductive_fraction,
                                 missing_rate=args.missing_rate, autocast=args.autocast,
                                 details=runs_log(args, data, device, main, protocol="common",
                                                  setting=args.setting, missing_rate=args.missing_rate or 0.0,
                                                  inductive_fraction=inductive_fraction))
        if not main:
            return 0
        if auto_teacher:
            results["teacher_selection"] = selection  # the first seed's candidates
            if len(picks) > 1:
                results["teacher_selection_per_seed"] = {str(s): t for s, t in picks.items()}
        # one file per setting, as the checkpoints: several settings can share an --out
        stem = "results" + setting_tag(args.inductive_fraction if args.setting == "inductive" else None,
                                       args.missing_rate or 0.0)
        # saved before printing: a closed pipe or an unencodable character must not lose the run
        save_json(results, os.path.join(out, f"{stem}.json"))
        save_png(results, os.path.join(out, f"{stem}.png"))
        print(format_table(results))
    print(f"wrote {os.path.join(out, stem + '.json')} and {os.path.join(out, stem + '.png')}")
    return 0


def runs_log(args, data, device, main: bool, **fields):
    """The ``--runs-log`` sink of a node-classification run (``None`` without the flag, or on a rank
    other than 0 under ``--distributed``); ``fields`` go into every record beside the dataset and
    where the run trains.  (``_distill`` checked the path before anything trained.)"""
    if not (args.runs_log and main):
        return None
    from gkdfast.distill.runs_log import RunsLog, where_fields

    return RunsLog(args.runs_log, dataset=str(data.name), **fields, **where_fields(device))


def _check_runs_log(args) -> None:
    """``--runs-log`` names a file that can be appended to (checked before anything trains, not when the
    first run finishes: opening it creates it)."""
    path = args.runs_log
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"--runs-log {path}: the folder {parent} does not exist; create it first")
    if os.path.isdir(path):
        raise ValueError(f"--runs-log {path}: is a folder; name a file in it (e.g. {os.path.join(path, 'runs.jsonl')})")
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise ValueError(f"--runs-log {path}: cannot be written ({exc.strerror or exc}); name another file") from None


def _check_device(args) -> str:
    """The device to run on: ``--device`` or cuda when available; a one-line error for a CUDA request on
    a machine without one, or a name that is neither cpu nor cuda[:i]."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"--device must be cpu or cuda[:i], got {device!r}")
    return device


def _any_needs_teacher(methods) -> bool:
    """Whether any recipe of ``methods`` (a list, or per-student lists in a dict) reads a teacher."""
    from gkdfast.distill import recipes

    return any(recipes.get(m).needs_teacher for m in _all_methods(methods))


def _all_methods(methods) -> list:
    """Every method of ``methods``: a list, or per-student lists in a dict."""
    lists = methods.values() if isinstance(methods, dict) else [methods]
    return [m for ms in lists for m in ms]


def _check_pipeline_flags(args) -> None:
    """Graph classification and heterogeneous data run their own pipelines: flags that only the
    node-classification pipeline on a homogeneous graph honours fail there instead of being ignored."""
    if args.task == "graph":
        where = "graph classification (--task graph)"
    elif args.data is not None and _is_hetero(args):
        where = "a heterogeneous graph"
    else:
        return
    given = [("--missing-rate", bool(args.missing_rate)), ("--setting inductive", args.setting != "transductive"),
             ("--fairness", bool(args.fairness)), ("--distributed", bool(args.distributed)),
             ("--sampled", bool(getattr(args, "sampled", False))),
             ("--protocol published", args.protocol == "published"),
             ("--dropout", args.dropout is not None), ("--autocast", bool(args.autocast)),
             ("--runs-log", bool(args.runs_log))] + _schedule_flags(args)
    if args.task == "graph":  # k-fold cross-validation over the folder's own graphs
        given += [(flag, True) for flag in flags_given(args, ("seeds", "cache_dir", "target_type", "split",
                                                              *_SHAPE_FLAGS))]
    bad = [flag for flag, on in given if on]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not supported on {where}, which runs its own pipeline "
                         "(these flags apply to node classification on a homogeneous graph); drop "
                         f"{'it' if len(bad) == 1 else 'them'}")


STUDENT_DROPOUT = 0.5
"""The students' dropout when ``--dropout`` is not given."""
DEFAULT_SEEDS = 3
"""Seeds a node-classification run trains when ``--seeds`` is not given."""


def num_seeds(args) -> int:
    """``--seeds``, or :data:`DEFAULT_SEEDS` when it was not given (``None`` by default, so the pipelines
    that run one seed or folds can refuse it instead of ignoring it)."""
    return DEFAULT_SEEDS if args.seeds is None else int(args.seeds)


def student_dropout(args) -> float:
    """``--dropout``, or :data:`STUDENT_DROPOUT` when it was not given (the flag defaults to ``None`` so
    that the pipelines that fix their own students can refuse it instead of ignoring it)."""
    return STUDENT_DROPOUT if args.dropout is None else float(args.dropout)


def flags_given(args, names) -> list:
    """The flags among ``names`` (argparse attribute names) given on this command line, as the user spelt
    them: the ones whose value is not the ``None`` / ``False`` they default to.

    Example:
        >>> flags_given(argparse.Namespace(batch_size=7, patience=None, no_memory_check=True),
        ...             ("batch_size", "patience", "no_memory_check"))
        ['--batch-size', '--no-memory-check']
    """
    return ["--" + k.replace("_", "-") for k in names
            if getattr(args, k, None) is not None and getattr(args, k) is not False]  # 0 is given (0 == False)


def _schedule_flags(args) -> list:
    """(flag, True) for each out-of-core pipeline flag given (``cli_large.PIPELINE_NAMES``): other
    pipelines refuse them rather than ignore them."""
    from gkdfast.cli_large import PIPELINE_NAMES

    return [(flag, True) for flag in flags_given(args, PIPELINE_NAMES)]


def _is_hetero(args) -> bool:
    from gkdfast.data import guess_format

    try:
        return guess_format(args.data, args.name)[0] == "hetero"
    except ValueError:
        return False


def _distill_hetero(args) -> int:
    """``distill`` on a typed graph (HeCo / MAGNN folder): R-GCN / HAN teacher and students, kd / hire."""
    import torch

    from gkdfast.distill.results import format_table, save_json, save_png
    from gkdfast.hetero.experiment import run_hetero_experiment

    data = _load_data(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    methods = _split_list(args.methods or "kd,hire", "methods")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    log(data.summary())
    overrides = _parse_set(args.set)
    teacher, students = args.teacher or "rgcn:64", _split_list(args.student or "rgcn:16", "student")
    from gkdfast.hetero.models import build_hetero_model

    # a bad spec fails here, not after the teacher has trained ("auto": the candidates are the runner's)
    for spec in ([] if teacher.strip().lower() == "auto" else [teacher]) + students:
        build_hetero_model(spec, data)
    if len({s.strip().lower() for s in students}) != len(students):
        raise ValueError("--student lists the same model twice")
    res = run_hetero_experiment(data, teacher=teacher, students=students,
                                methods=methods, seeds=list(range(args.seed, args.seed + num_seeds(args))),
                                epochs=args.epochs, device=device, teacher_params=overrides.pop("teacher", None),
                                overrides=overrides, log=log,
                                cache_dir=args.cache_dir or os.path.join(args.out, "cache"))
    os.makedirs(args.out, exist_ok=True)
    save_json(res, os.path.join(args.out, "results.json"))  # saved before printing, as distill's
    save_png(res, os.path.join(args.out, "results.png"))
    print(format_table(res))
    print(f"wrote {os.path.join(args.out, 'results.json')} and {os.path.join(args.out, 'results.png')}")
    return 0


# -- generate / convert -----------------------------------------------------------------------------
def _refuse_existing_out(args) -> None:
    if os.path.exists(args.out) and not args.overwrite:
        raise FileExistsError(f"--out {args.out}: already exists (pass --overwrite to replace it)")


def _save_mmap_and_report(data, args, start: float, detail: str) -> None:
    """Saves ``data`` memory-mappable at ``--out`` and prints one line: sizes, ``detail``, time, peak RSS."""
    import resource
    import time

    from gkdfast.data import save_mmap

    save_mmap(data, args.out, overwrite=args.overwrite)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    print(f"{args.out}: {data.num_nodes} nodes, {data.num_edges} directed edges, {data.num_features} features, "
          f"{data.num_classes} classes, {detail}; {time.time() - start:.1f} s, peak RSS {peak:.2f} GiB")


def _cmd_generate(args) -> int:
    """Generates the degree-corrected SBM once and saves it memory-mappable for ``distill --data``."""
    import time

    from gkdfast.data import dcsbm

    _refuse_existing_out(args)
    start = time.time()
    data = dcsbm(num_nodes=args.nodes, seed=args.seed, progress=not args.no_progress, **_synthetic_shape(args))
    _save_mmap_and_report(data, args, start, f"edge homophily {data.extras['edge_homophily']:.3f}")
    return 0


def _cmd_convert(args) -> int:
    """Reads any node-classification format once and saves it memory-mappable for ``distill --data``."""
    import time

    from gkdfast.data import GraphData, load

    _refuse_existing_out(args)
    start = time.time()
    data = load(args.data, format=args.format, name=args.name, seed=args.seed)
    if not isinstance(data, GraphData):
        raise ValueError(f"--data {args.data}: holds {type(data).__name__}, not one node-classification graph; "
                         "convert writes the memory-mapped layout of a single graph")
    _save_mmap_and_report(data, args, start, f"split {data.extras.get('split', 'as stored')}; "
                                             f"read in {time.time() - start:.1f} s")
    return 0


def _add_shape_flags(p, note: str = "") -> None:
    p.add_argument("--avg-degree", type=float, help="average degree (dcsbm default 51)" + note)
    p.add_argument("--features", type=int, help="feature dimension (dcsbm default 100)")
    p.add_argument("--classes", type=int, help="number of classes (dcsbm default 47)")
    p.add_argument("--homophily", type=float,
                   help="probability that an edge stays inside its source's class (dcsbm default 0.8; lower "
                        "makes the graph harder for GNNs)")


# -- bench ---------------------------------------------------------------------------------------
def _is_gkdfast_checkout(folder: str) -> bool:
    """Whether ``folder`` is the root of a gkdfast source tree (its pyproject.toml names the project)."""
    try:
        with open(os.path.join(folder, "pyproject.toml")) as fh:
            return 'name = "gkdfast"' in fh.read()
    except OSError:
        return False


def _cmd_bench(args) -> int:
    """Runs each ``benchmarks/bench_<name>.py --out OUT`` runner (table + JSON + PNG), or pytest-benchmark."""
    import os
    import subprocess

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # the runners beside the package only in a source checkout of gkdfast: an installed package's
    # parent is site-packages, whose top-level benchmarks/ (if any) is another project's
    bench = args.dir or (os.path.join(checkout, "benchmarks") if _is_gkdfast_checkout(checkout) else None)
    bench = os.path.abspath(bench) if bench else None  # (--pytest runs from --out: a relative --dir would break)
    runners = sorted(f[len("bench_"):-3] for f in os.listdir(bench)
                     if f.startswith("bench_") and f.endswith(".py")) if bench and os.path.isdir(bench) else []
    if not runners:
        raise FileNotFoundError(f"no benchmark runners (bench_*.py) in {bench or 'a source checkout'}; bench needs "
                                "a source checkout of gkdfast (or --dir DIR naming its benchmarks folder)")
    only = _split_list(args.only, "only") if args.only is not None else runners
    unknown = [o for o in only if o not in runners]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(runners)}")
    env = dict(os.environ)  # the runners read GKDFAST_BENCH_SMALL
    if args.size == "small":
        env["GKDFAST_BENCH_SMALL"] = "1"
    else:
        env.pop("GKDFAST_BENCH_SMALL", None)
    if args.pytest:  # pytest-benchmark's table on stdout, its JSON and storage under --out (not the checkout)
        out = os.path.abspath(args.out)
        os.makedirs(out, exist_ok=True)
        # -P and cwd: a pytest.py (or pluggy/...) in --out, a folder that may come from elsewhere, is never
        # imported (`python -m` puts the working directory first on sys.path)
        safe_path = ["-P"] if sys.version_info >= (3, 11) else []
        cmd = [sys.executable, *safe_path, "-m", "pytest", *[os.path.join(bench, f"bench_{o}.py") for o in only],
               "--benchmark-only", "-q", "-p", "no:cacheprovider", f"--rootdir={bench}",
               f"--benchmark-json={os.path.join(out, 'pytest-benchmark.json')}",
               f"--benchmark-storage=file://{os.path.join(out, '.benchmarks')}"]
        return subprocess.call(cmd, env=env, cwd=bench)
    worst = 0
    for name in only:
        print(f"== bench {name} ({args.size}) -> {args.out}", flush=True)
        rc = subprocess.call([sys.executable, os.path.join(bench, f"bench_{name}.py"), "--out", args.out], env=env)
        if rc:
            print(f"gkdfast bench: {name} exited with status {rc}", file=sys.stderr)
        worst = worst or rc
    return worst


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is ONE line on stderr (``gkdfast distill: error: ...``), exit 2."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gkdfast", description="Fast, exact knowledge distillation on graphs.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    pi = sub.add_parser("info", help="which backends and kernels are available, and why not")
    pi.add_argument("--json", action="store_true", help="print the full backend_info() as JSON")
    pi.set_defaults(func=_cmd_info)

    pd = sub.add_parser(
        "distill", help="train a teacher and distil it into students with published recipes",
        description="Without --data: a teacher on the built-in synthetic graph (contextual SBM) distilled into "
                    "an MLP and a small GCN with several recipes.  With --data: the same on a real graph.  "
                    "Rerunning with the same --out resumes a killed node-classification run (graph "
                    "classification and heterogeneous runs start over).  Ctrl-C or SIGTERM: one line, exit "
                    "130 / 143.")
    pd.add_argument("--data", metavar="PATH", help="dataset file or folder (default: built-in synthetic graph)")
    pd.add_argument("--format", help="planetoid, npz, gnn-benchmark, musae, mat, ogb, ... (default: guessed)")
    pd.add_argument("--name", help="dataset inside a folder holding several (e.g. cora in the Planetoid folder)")
    pd.add_argument("--teacher", help="teacher model name[:hidden] (default sage, hidden 128; rgcn:64 on a "
                                      "heterogeneous graph, or han:64, hgt:64; --task graph: gin:128x5), or "
                                      "'auto': train GCN, SAGE and GAT at hidden 64 and 256 (heterogeneous data: "
                                      "rgcn:64, hgt:64, han:64) on the first seed's split (each seed's own where the "
                                      "split is re-drawn per seed) and keep the best by validation accuracy.  Not "
                                      "trained when every method is teacher-free unless named here")
    pd.add_argument("--target-type", help="heterogeneous data: the labelled node type (default: inferred from the "
                                          "meta-path file names, pap.npz -> paper)")
    pd.add_argument("--split", type=int, choices=(20, 40, 60), help="heterogeneous data in the HeCo layout: the "
                                                                       "shipped split with 20, 40 or 60 labelled "
                                                                       "nodes per class (default 20)")
    pd.add_argument("--student", help="student model(s), comma-separated name[:hidden] "
                                      "(default: mlp,gcn:16 on the synthetic graph, mlp with --data; heterogeneous "
                                      "data: rgcn/han/hgt[:hidden], default rgcn:16; --task graph: "
                                      "conv[:hidden[xlayers]][/norm], default gin,gcn)")
    pd.add_argument("--methods", help="comma-separated recipes: " + ", ".join(
        n for n in ("kd", "glnn", "lsp", "gsp", "gcrd", "kd_gcrd", "nosmog", "graphmlp", "coldbrew", "freekd", "oad",
                    "t2gnn", "gsdn", "sail", "ta_ensemble", "reliant", "hire") if n in _recipe_names()) +
        f" (default: {DEFAULT_METHODS_MLP} for an MLP, {DEFAULT_METHODS_GNN} for a GNN).  freekd and oad train "
        "the --student GNN with its peers (teacher-free), gsdn and coldbrew need an mlp student; reliant needs a "
        "sensitive attribute; hire heterogeneous data (default there kd,hire).  --task graph: kd, dfad, gfkd "
        "(default kd)")
    pd.add_argument("--fairness", choices=("sp", "eo"),
                    help="bias RELIANT reduces: sp (statistical parity, default) or eo (equal opportunity); "
                         "with a sensitive attribute every row reports both ΔSP and ΔEO")
    pd.add_argument("--seeds", type=int, default=None,
                    help=f"number of seeds (default {DEFAULT_SEEDS}): seeds SEED .. SEED+N-1")
    pd.add_argument("--seed", type=int, default=0,
                    help="first seed (default 0).  Each seed draws the initial weights and, for data without "
                         "train/val/test masks, a random split of 20 / 30 labelled nodes per class (not under "
                         "--sampled, which keeps the graph's own split: there it seeds weights, batches, "
                         "sampling and positions)")
    pd.add_argument("--setting", choices=("transductive", "inductive"), default="transductive",
                    help="transductive (default: students matched to the teacher on every node) or inductive "
                         "(GLNN: a fraction of the test nodes and their edges hidden while training; accuracy "
                         "on those nodes)")
    pd.add_argument("--inductive-fraction", type=float,
                    help="fraction of the test nodes held out in the inductive setting (default 0.2)")
    pd.add_argument("--epochs", type=int, help="override every recipe's maximum epochs (--task graph: every "
                                               "student's; GFKD's inversion keeps --set gfkd.iterations, "
                                               "DFAD's generator --dfad-epochs)")
    pd.add_argument("--split-dir", metavar="DIR",
                    help="Geom-GCN 60/20/20 split files (<name>_split_0.6_0.2_<i>.npz, e.g. "
                         "../shared/data/planetoid_geom_gcn_splits): seed i trains on split i (seeds 0-9)")
    pd.add_argument("--missing-rate", type=float, default=0.0, metavar="R",
                    help="remove a fraction R of the feature entries and of the edges, seeded per seed, for "
                         "every method (T2-GNN's incomplete-graph setting; default 0)")
    pd.add_argument("--dropout", type=float, default=None,
                    help="student dropout (default 0.5; --protocol published, --task graph and "
                         "heterogeneous data set their own students' and refuse it)")
    pd.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                    help="override a recipe hyperparameter, e.g. --set glnn.lamb=0.3 (repeatable; the recipe must "
                         "be among the methods run); on heterogeneous data also the teacher's training: "
                         "teacher.epochs, teacher.patience, teacher.lr, teacher.weight_decay; --task graph: "
                         "kd.*, dfad.* and gfkd.* (GraphTrainConfig, DFADConfig, GFKDConfig fields)")
    pd.add_argument("--nodes", type=int,
                    help="nodes of the built-in synthetic graph (default 2000, at least 500; not with --data)")
    _add_shape_flags(pd, ".  Any of --avg-degree/--features/--classes/--homophily switches the built-in graph from the "
                         "small 5-class CSBM to the degree-corrected SBM (gkdfast.data.dcsbm) with --nodes nodes")
    pd.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    pd.add_argument("--autocast", choices=("bf16", "fp16"),
                    help="mixed-precision training of the teacher and the students (torch.autocast on the device, "
                         "float32 weights, fp16 with a gradient scaler; Distiller(autocast=)); test accuracy "
                         "is measured in float32.  Worth it on GPUs (on CPUs bf16 at best, fp16 is far slower there)")
    pd.add_argument("--out", default="gkdfast-results", help="output folder (default ./gkdfast-results)")
    pd.add_argument("--cache-dir", help="teacher-output cache (default OUT/cache)")
    pd.add_argument("--runs-log", metavar="PATH",
                    help="append one JSON line per finished training run to PATH (seed, method, model, test "
                         "accuracy, epochs, the recipe's extras, where it ran): per-seed details that results.json "
                         "averages away (docs/data-and-results.md, \"Run logs\")")
    pd.add_argument("--no-progress", action="store_true", help="no progress bars")
    pd.add_argument("--quiet", action="store_true", help="print only the final table")
    pd.add_argument("--distributed", action="store_true",
                    help="data-parallel training across the processes of torchrun (torchrun --nproc_per_node=P "
                         "-m gkdfast.cli distill --distributed ...): gloo on the CPU, NCCL on CUDA; rank 0 prints "
                         "and writes the results")
    from gkdfast.cli_large import add_large_args

    add_large_args(pd)
    from gkdfast.cli_graph import add_graph_args

    add_graph_args(pd)
    from gkdfast.cli_protocol import add_protocol_args

    add_protocol_args(pd)
    pd.set_defaults(func=_cmd_distill)

    pg = sub.add_parser(
        "generate", help="generate the products-sized synthetic graph once, saved memory-mappable",
        description="Writes a degree-corrected contextual SBM (gkdfast.data.dcsbm) as a memory-mappable folder "
                    "(gkdfast.data.save_mmap); gkdfast distill --data OUT then reads it without loading it in RAM.")
    pg.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist)")
    pg.add_argument("--nodes", type=int, default=2_450_000, help="number of nodes (default 2450000, ogbn-products)")
    _add_shape_flags(pg)
    pg.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    pg.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    pg.add_argument("--no-progress", action="store_true", help="no progress bars")
    pg.set_defaults(func=_cmd_generate)

    pc = sub.add_parser(
        "convert", help="read a graph in any supported format once, save it memory-mappable",
        description="Reads --data as `gkdfast distill --data` does (OGB, MUSAE, Planetoid, npz, .mat, ...) and "
                    "writes it as a memory-mappable folder (gkdfast.data.save_mmap): later runs open it in "
                    "well under a second, paging rows in as they are read, instead of parsing the text again. "
                    "Formats with a random split store the split drawn from --seed.")
    pc.add_argument("--data", required=True, metavar="PATH", help="dataset file or folder")
    pc.add_argument("--format", help="planetoid, npz, gnn-benchmark, musae, mat, ogb, ... (default: guessed)")
    pc.add_argument("--name", help="dataset inside a folder holding several")
    pc.add_argument("--seed", type=int, default=0, help="seed of the random split, for formats without one (default 0)")
    pc.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist)")
    pc.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    pc.set_defaults(func=_cmd_convert)

    from gkdfast.cli_condense import add_condense_parser

    add_condense_parser(sub)

    pb = sub.add_parser("bench", help="run the benchmark runners in benchmarks/ (tables, JSON, PNG)")
    pb.add_argument("--size", choices=("small", "full"), default="small",
                    help="small: tiny smoke sizes (GKDFAST_BENCH_SMALL=1, seconds); full: the quoted sizes")
    pb.add_argument("--only", help="comma-separated runners, e.g. spmm,structure (default: all)")
    pb.add_argument("--out", default="bench-out",
                    help="output folder for each runner's JSON and PNG (with --pytest: pytest-benchmark.json)")
    pb.add_argument("--pytest", action="store_true", help="run them under pytest-benchmark instead")
    pb.add_argument("--dir", help="benchmarks folder (default: the checkout's benchmarks/)")
    pb.set_defaults(func=_cmd_bench)
    return p


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):  # KeyError's str() is the repr of the key
        text = f"missing {text}"
    return " ".join(text.split())


def _resume_hint(args) -> str:
    """What a rerun of an interrupted command does: only the node-classification runs keep checkpoints."""
    if getattr(args, "task", None) == "graph":
        return "graph classification keeps no per-fold state: a rerun starts over"
    if args.command == "condense":
        return "condensation keeps no checkpoints: a rerun starts over"
    if args.command == "distill" and getattr(args, "data", None) is not None and _is_hetero(args):
        return "heterogeneous runs keep no checkpoints: a rerun starts over"
    if args.command == "distill":
        return "rerun the same command to resume"
    return "rerun the same command"


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's cancel, ``timeout``, ``docker stop``, torchrun stopping its workers) raised
    where the program is, as Ctrl-C's KeyboardInterrupt is: the same clean-ups (temporary files, partial
    cache entries) and the same one line run, instead of a silent death that leaves them behind."""


def _raise_terminated(signum, frame):
    raise _Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`_Terminated` (main thread only: elsewhere Python cannot
    install a handler, and the default stays)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(args, exc: BaseException = None) -> int:
    terminated = isinstance(exc, _Terminated)
    print(f"gkdfast {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'} "
          f"({_resume_hint(args)})", file=sys.stderr)
    return 143 if terminated else 130  # 128 + the signal, as a shell reports it


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout (captured)
        return False


# Characters of our tables and help (mean ± std, ΔSP, 2×) on a stream whose encoding lacks them (a
# Latin-1 or C locale with Python's UTF-8 mode off): their ASCII spelling, not a UnicodeEncodeError
# after the whole run.
_ASCII_SPELLING = {"±": "+-", "Δ": "d", "×": "x", "−": "-", "≤": "<=", "≥": ">=", "→": "->", "…": "...",
                   "²": "^2", "·": "*", "≈": "~"}


def _ascii_spelling(err: UnicodeError):
    if not isinstance(err, UnicodeEncodeError):
        raise err
    bad = err.object[err.start:err.end]
    return "".join(_ASCII_SPELLING.get(c, "?") for c in bad), err.end


def _spell_unencodable_characters() -> None:
    import codecs

    codecs.register_error("gkdfast-ascii", _ascii_spelling)
    for stream in (sys.stdout, sys.stderr):
        try:
            "±Δ×".encode(stream.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            with contextlib.suppress(AttributeError, ValueError):  # (not a TextIOWrapper, or closed)
                stream.reconfigure(errors="gkdfast-ascii")
        except (AttributeError, TypeError):
            pass


def _debug() -> bool:
    """``GKDFAST_DEBUG`` set to anything but empty, 0, false, no or off: tracebacks instead of one line."""
    return os.environ.get("GKDFAST_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


# OSErrors that name a path the user gave (exit 2, as a bad argument); others (disk full, I/O error)
# are the machine's, exit 1, which a batch system may retry.
_PATH_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


def main(argv=None) -> int:
    _spell_unencodable_characters()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # `gkdfast` alone (or `gkdfast $UNSET_VARIABLE`): a usage error
        parser.print_help(sys.stderr)
        return 2
    if os.environ.get("GKDFAST_KEEP_FREED_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off"):
        # large per-step temporaries reuse mapped pages instead of faulting in fresh ones every step
        from gkdfast.cpu_memory import keep_freed_memory

        keep_freed_memory()
    try:
        with _sigterm_as_interrupt():
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a reader gone (`| head`) shows here, in the branch below, not at exit
            return code
    except KeyboardInterrupt as exc:
        return _interrupted(args, exc)
    except BrokenPipeError as exc:
        if not _stdout_reader_gone():  # another pipe (a subprocess, a socket): an error like any OSError
            if _debug():
                raise
            print(f"gkdfast {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        # the reader of stdout went away (`gkdfast info | head -3`): stop quietly, as a shell command does;
        # stdout goes to devnull so that the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE
    except (ValueError, TypeError, OSError, KeyError, NotImplementedError) as exc:
        if _debug():
            raise
        if isinstance(exc, OSError) and not isinstance(exc, _PATH_ERRORS):
            print(f"gkdfast {args.command}: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return 1
        print(f"gkdfast {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (RuntimeError, IndexError, MemoryError, EOFError) as exc:  # e.g. CUDA out of memory, a corrupt file
        if isinstance(exc.__context__, KeyboardInterrupt):  # (torch.save turns a Ctrl-C inside write into this)
            return _interrupted(args, exc.__context__)
        if _debug():
            raise
        print(f"gkdfast {args.command}: error: {type(exc).__name__}: {_one_line(exc)} "
              "(GKDFAST_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
