"""One comparison: a teacher, the student without KD, and the student with each recipe, over seeds.

This is what ``gkdfast distill`` and ``scripts/quality.py`` run.  Per seed: the split (per-seed
random 20/30-per-class split when the data's split was random; the given split otherwise), the
teacher (supervised, early-stopped on validation accuracy), its outputs (cached on disk), then every
(student, method) pair from the same initial weights.  Every training run checkpoints under
``out/checkpoints/`` so a killed command, started again with the same ``--out``, resumes.
"""
from __future__ import annotations

import os
import re
import statistics
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from gkdfast._autocast import autocast_dtype
from gkdfast.data.splits import inductive_split
from gkdfast.distill import recipes as _recipes
from gkdfast.distill.distiller import accuracy, eval_logits
from gkdfast.distill.teacher_cache import teacher_outputs

__all__ = ["ModelSpec", "parse_model", "default_depth", "run_experiment", "summarize_runs", "seed_split",
           "inference_ms_per_1k"]

DEFAULT_HIDDEN = 128


@dataclass(frozen=True)
class ModelSpec:
    """An architecture from :func:`gkdfast.nn.build_model`: name, hidden width, layers, dropout."""

    name: str
    hidden: int = DEFAULT_HIDDEN
    num_layers: int = 2
    dropout: float = 0.5
    options: Tuple[Tuple[str, object], ...] = ()  # more constructor keywords, e.g. (("heads", 4),)

    @property
    def label(self) -> str:
        return f"{self.name.upper()}({self.hidden})"

    @property
    def needs_num_nodes(self) -> bool:
        """Whether the model keeps per-node parameters (``segcn``): it is sized to the graph it trains on."""
        from gkdfast.nn.models import _MODELS

        return bool(getattr(_MODELS.get(self.name), "needs_num_nodes", False))

    def build(self, in_dim: int, num_classes: int, num_nodes: Optional[int] = None) -> nn.Module:
        """The model; ``num_nodes`` (the graph it trains on) goes to models with per-node parameters
        (``needs_num_nodes``, e.g. ``segcn``) and is ignored by the others."""
        from gkdfast.nn import build_model

        extra = {}
        if self.needs_num_nodes and num_nodes is not None:
            extra["num_nodes"] = int(num_nodes)
        return build_model(self.name, in_dim, self.hidden, num_classes, num_layers=self.num_layers,
                           dropout=self.dropout, **dict(self.options), **extra)


def default_depth(name: str) -> int:
    """The ``num_layers`` default of model ``name``'s constructor (2 for the usual GNNs and MLPs, 64 for
    :class:`gkdfast.nn.GCNII`); 2 when the constructor has none.

    Example:
        >>> default_depth("gcn"), default_depth("gcnii")
        (2, 64)
    """
    import inspect

    from gkdfast.nn.models import _MODELS

    cls = _MODELS.get(str(name).lower())
    param = inspect.signature(cls.__init__).parameters.get("num_layers") if cls is not None else None
    return param.default if param is not None and isinstance(param.default, int) else 2


def parse_model(spec: str, dropout: float = 0.5, num_layers: Optional[int] = None) -> ModelSpec:
    """``"sage"`` or ``"sage:64"`` (name[:hidden]) → :class:`ModelSpec`; ValueError for unknown names.
    ``num_layers=None``: the model's own default depth (:func:`default_depth`).

    Example:
        >>> parse_model("sage:64").label
        'SAGE(64)'
        >>> parse_model("mlp").hidden, parse_model("gcnii").num_layers
        (128, 64)
    """
    from gkdfast.nn import model_names

    name, _, hidden = str(spec).strip().lower().partition(":")
    known = list(model_names())
    if name not in known:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(known)}")
    num_layers = default_depth(name) if num_layers is None else num_layers
    if hidden:
        if not hidden.isdigit() or int(hidden) < 1:
            raise ValueError(f"bad hidden width in {spec!r}: expected name:positive_int, e.g. sage:64")
        return ModelSpec(name, int(hidden), num_layers, dropout)
    return ModelSpec(name, DEFAULT_HIDDEN, num_layers, dropout)


def setting_tag(inductive_fraction: Optional[float] = None, missing_rate: float = 0.0) -> str:
    """The suffix that keeps a setting's checkpoints and result files apart in one ``--out``:
    ``""`` for the plain transductive run, e.g. ``"-inductive-0.2-missing-0.3"`` otherwise.

    Example:
        >>> setting_tag(0.2), setting_tag(None, 0.3), setting_tag()
        ('-inductive-0.2', '-missing-0.3', '')
    """
    tag = f"-inductive-{float(inductive_fraction):g}" if inductive_fraction is not None else ""
    return tag + (f"-missing-{float(missing_rate):g}" if missing_rate else "")


def seed_data(data, seed: int, missing_rate: float = 0.0, inductive_fraction: Optional[float] = None):
    """``(d, split, train_data)`` of one seed: ``d`` the seed's split (:func:`seed_split`) with its
    missing features and edges masked under ``missing_rate`` (:func:`gkdfast.data.mask_missing`), ``split``
    the inductive split of ``d`` (``None`` unless ``inductive_fraction`` is given), and ``train_data`` what
    teacher and students may see: ``split.observed`` in the inductive setting, else ``d``.

    Example:
        >>> from gkdfast.data import csbm
        >>> d, split, seen = seed_data(csbm(num_nodes=300, num_classes=3, seed=0), 1, inductive_fraction=0.2)
        >>> seen.num_nodes < d.num_nodes
        True
    """
    d = seed_split(data, seed)
    if missing_rate:
        from gkdfast.data.missing import mask_missing

        d = mask_missing(d, missing_rate, seed)
    split = inductive_split(d, inductive_fraction, seed) if inductive_fraction is not None else None
    return d, split, (split.observed if split is not None else d)


def seed_split(data, seed: int):
    """``data`` with the split for ``seed``: re-drawn with the same per-class counts (e.g. 20/30) when the
    data's split was a random one, the CPF codes' own draw for the seed when marked ``cpf(...)``
    (:func:`gkdfast.data.cpf_split`), a stratified 60/20/20 drawn for the seed when it is marked
    ``fraction(...)``, Cold Brew's cold-start masks when marked ``isolation(...)``
    (:func:`gkdfast.data.isolation.cold_start_masks`), Geom-GCN split file ``seed`` when marked by
    :func:`gkdfast.data.geom_splits.with_split_files`, unchanged
    when it is a given split (Planetoid public split, masks in the file).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=300, num_classes=3, seed=0)
        >>> a, b = seed_split(d, 1), seed_split(d, 2)
        >>> int(a.train_mask.sum()), bool((a.train_mask != b.train_mask).any())
        (60, True)
    """
    how = str(data.extras.get("split", "")) if hasattr(data, "extras") else ""
    if how.startswith("fair("):  # the fairness sets' NIFTY split, re-drawn with the seed
        from gkdfast.data.fairness import fairness_split

        number = int(data.extras["label_number"])
        tr, va, te = fairness_split(data.y, number, seed)
        extras = dict(data.extras, split=f"fair(NIFTY, label_number={number}, seed={seed})")
        return replace(data, train_mask=tr, val_mask=va, test_mask=te, extras=extras)
    if how == "geom-gcn files":  # gkdfast distill --split-dir: seed i trains on split file i
        from gkdfast.data.geom_splits import geom_gcn_split

        return geom_gcn_split(data, data.extras["split_dir"], seed, name=data.extras.get("split_name"))
    if how.startswith("isolation("):  # Cold Brew's setting: validation nodes drawn per seed, test = isolated
        from gkdfast.data.isolation import cold_start_masks

        tr, va, te = cold_start_masks(data, seed)
        return replace(data, train_mask=tr, val_mask=va, test_mask=te)
    if how.startswith("cpf("):  # the CPF protocol: the GLNN / NOSMOG codes' own draw of split `seed`
        from gkdfast.data.splits import cpf_split

        tr, va, te = cpf_split(data.y, 20, 30, seed=seed)
        extras = dict(data.extras, split=f"cpf(20/30 per class, the reference's draw, seed={seed})")
        return replace(data, train_mask=tr, val_mask=va, test_mask=te, extras=extras)
    if how.startswith("fraction("):  # a stratified 60/20/20 split (T2-GNN's published setting), per seed
        from gkdfast.data.splits import fraction_split

        tr, va, te = fraction_split(data.y, 0.6, 0.2, seed=seed)
        extras = dict(data.extras, split=f"fraction(60/20/20 per class, seed={seed})")
        return replace(data, train_mask=tr, val_mask=va, test_mask=te, extras=extras)
    if not how.startswith("random("):
        return data
    try:
        from gkdfast.data import random_split
    except ImportError:  # the package's public names not exported yet
        from gkdfast.data.splits import random_split

    # the per-class counts the split was drawn with (dcsbm's 5/30, the readers' 20/30), not always 20/30
    counts = re.match(r"random\((\d+)/(\d+) per class", how)
    train_k, val_k = (int(counts.group(1)), int(counts.group(2))) if counts else (20, 30)
    tr, va, te = random_split(data.y, train_k, val_k, seed=seed)
    extras = dict(data.extras, split=f"random({train_k}/{val_k} per class, seed={seed})")
    return replace(data, train_mask=tr, val_mask=va, test_mask=te, extras=extras)


@torch.no_grad()
def inference_ms_per_1k(model: nn.Module, inputs, graph, with_graph: bool, repeats: int = 5) -> float:
    """Median wall time of one eval-mode forward over every node, in ms per 1,000 nodes
    (``with_graph``: the model takes ``(x, graph)``; otherwise ``x`` only).

    Example:
        >>> from gkdfast.nn import MLP
        >>> ms = inference_ms_per_1k(MLP(8, 16, 3), torch.randn(500, 8), None, with_graph=False)
        >>> ms > 0
        True
    """
    model.eval()
    n = max(inputs.size(0), 1)
    sync = torch.cuda.synchronize if inputs.is_cuda else (lambda: None)
    for _ in range(2):  # warm-up (allocations, cached transposes, lazy kernel loading)
        eval_logits(model, inputs, graph, with_graph)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        eval_logits(model, inputs, graph, with_graph)  # (graph-free models in row chunks, as deployed)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0 * 1000.0 / n


def _mean_std(vals: List[float]) -> Tuple[float, float]:
    mean = sum(vals) / len(vals)
    return mean, (sum((a - mean) ** 2 for a in vals) / len(vals)) ** 0.5


def _summary(method: str, model: str, accs: List[float], secs: List[float], infer: List[float],
             gaps: Optional[Dict[str, List[float]]] = None) -> dict:
    mean, std = _mean_std(accs)
    row = {"method": method, "model": model, "test_acc_mean": mean, "test_acc_std": std,
           "test_acc": list(accs), "train_seconds": sum(secs) / len(secs),
           "inference_ms_per_1k_nodes": statistics.median(infer)}
    for key, vals in (gaps or {}).items():  # delta_sp / delta_eo: only with a sensitive attribute
        row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(vals)
        row[key] = list(vals)
    return row


def _format_extras(extras: dict) -> str:
    """``key=value`` pairs of a recipe's extras, floats to 4 digits, for the run log."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{fmt(k)}: {fmt(x)}" for k, x in v.items()) + "}"
        return str(v)

    return "  ".join(f"{k}={fmt(v)}" for k, v in sorted(extras.items()))


def summarize_runs(runs: Sequence[dict], *, dataset: str, num_nodes: int, num_edges: int) -> dict:
    """Builds the ``results.json`` dictionary from per-run records.

    Args:
        runs: dicts with at least ``method``, ``model``, ``test_acc`` (fraction), ``seconds`` and
            ``inference_ms_per_1k_nodes`` — what :func:`run_experiment` appends to ``details``, possibly
            gathered from several processes (e.g. seeds split across workers).  Rows keep the order in
            which each (method, model) pair first appears.

    Returns:
        ``{"dataset", "num_nodes", "num_edges", "rows"}``; each row has the mean / population std of
        test accuracy over its runs, the mean train seconds and the median inference time; when every
        run has ``delta_sp`` / ``delta_eo`` (data with a sensitive attribute), also their mean, std
        and list (``delta_sp_mean``, ``delta_sp_std``, ``delta_sp``, the same for ``delta_eo``).

    Example::

        >>> r = summarize_runs([{"method": "none", "model": "MLP(8)", "test_acc": 0.5, "seconds": 1.0,
        ...                      "inference_ms_per_1k_nodes": 0.1}], dataset="g", num_nodes=3, num_edges=4)
        >>> r["rows"][0]["test_acc_mean"]
        0.5
    """
    grouped: Dict[Tuple[str, str], tuple] = {}
    fair = bool(runs) and all(r.get("delta_sp") is not None for r in runs)
    for r in runs:
        accs, secs, infer, gaps = grouped.setdefault((r["method"], r["model"]), ([], [], [], {}))
        accs.append(float(r["test_acc"]))
        secs.append(float(r["seconds"]))
        infer.append(float(r["inference_ms_per_1k_nodes"]))
        if fair:
            for key in ("delta_sp", "delta_eo"):
                gaps.setdefault(key, []).append(float(r[key]))
    rows = [_summary(m, model, *vals) for (m, model), vals in grouped.items()]
    return {"dataset": str(dataset), "num_nodes": int(num_nodes), "num_edges": int(num_edges), "rows": rows}


def _train_teacher(teacher, d, train_data, graph, y, test, seed, dev, epochs, teacher_params, ckpt, cache_dir,
                   progress, record, log, autocast=None):
    """One seed's teacher: supervised, early-stopped on validation accuracy, recorded as the teacher
    row; returns its outputs on what the students may see (cached on disk)."""
    torch.manual_seed(seed)
    tmodel = teacher.build(d.x.size(1), d.num_classes, train_data.graph.num_nodes)
    trecipe = _recipes.NoKD(**dict({"epochs": epochs} if epochs else {}, **(teacher_params or {})))
    tt = trecipe.fit(lambda f: tmodel, train_data, None, seed, device=dev, autocast=autocast,
                     # one folder per teacher: a rerun in the same --out with another teacher (or another
                     # --teacher auto pick) trains it instead of finding the first one's checkpoint
                     checkpoint_dir=ckpt(f"seed{seed}", f"teacher-{teacher.label}"), progress=progress,
                     desc=f"seed {seed}: teacher {teacher.label}")
    tlogits = eval_logits(tmodel, d.x.to(dev), graph, True)  # the full graph
    tacc = accuracy(tlogits.cpu(), y, test)
    record("teacher", teacher.label, tacc, tt.seconds, inference_ms_per_1k(tmodel, d.x.to(dev), graph, True),
           seed, tt.fit, tlogits, test)
    log(f"seed {seed}  teacher {teacher.label:<10} test acc {tacc:.4f}  ({tt.seconds:.1f}s)")
    # The students are matched to the teacher's outputs on what they may see.
    return teacher_outputs(tmodel, train_data.x.to(dev), train_data.graph.to(dev), cache_dir=cache_dir, device=dev)


def run_experiment(data, *, teacher: Union[None, ModelSpec, Callable[[int], ModelSpec]], students: Sequence[ModelSpec],
                   methods: Union[Sequence[str], Dict[str, Sequence[str]]],
                   seeds: Sequence[int] = (0,), epochs: Optional[int] = None, device="cpu",
                   out: Optional[str] = None, cache_dir: Optional[str] = None, progress: bool = False,
                   overrides: Optional[Dict[str, dict]] = None, log: Callable[[str], None] = lambda s: None,
                   teacher_params: Optional[dict] = None, details: Optional[list] = None,
                   setting: str = "transductive", inductive_fraction: float = 0.2,
                   missing_rate: float = 0.0, autocast=None) -> dict:
    """Runs the comparison and returns the ``results.json`` dictionary.

    Args:
        data: a :class:`gkdfast.data.GraphData`.
        teacher: teacher :class:`ModelSpec`, or ``None`` when every method is teacher-free (no
            teacher row; e.g. Graph-MLP's published setting), or a function ``seed -> ModelSpec`` (a
            teacher picked per seed, e.g. by ``--teacher auto`` on a split re-drawn per seed).
            students: student specs (each gets a "none" row and a row per method). methods: recipe names
            (see :func:`gkdfast.distill.recipes.names`), or a dict from a student's ``label`` (e.g.
            ``"MLP(128)"``) to its own list.
        seeds: one run of everything per seed.  epochs: override every recipe's maximum epochs.
        device: training device.  out: folder for checkpoints (resume) — ``None``: no checkpoints.
        cache_dir: teacher-output cache (default ``out/cache`` when ``out`` is given).
        overrides: per-method hyperparameters, e.g. ``{"glnn": {"lamb": 0.3}}``.
        log: called with one line per finished run.
        teacher_params: hyperparameters for the teacher's supervised training (``lr``, ``epochs``, ...).
        details: if a list, one dict per training run is appended (seed, method, model, test_acc,
            seconds, epochs, best_epoch; ``extras`` where the recipe reports any, e.g. SAIL's picked
            ``intra_weight``; ``params``, the method's ``overrides`` — a published setting's and
            ``--set``'s — as ``{"sail.inter": "fade"}``, where any were given, on its baseline rows
            too) — per-run data the summary rows do not keep.
        setting: ``"transductive"`` (default; GLNN/NOSMOG's main tables: the teacher sees the whole
            graph, students are matched to its outputs on every node, test accuracy on the test nodes)
            or ``"inductive"`` (GLNN's inductive setting, :func:`gkdfast.data.inductive_split`: a
            ``inductive_fraction`` of the test nodes and every edge touching them are hidden while the
            teacher and the students train; accuracy is measured on those held-out nodes, with the
            full graph given at inference).  The returned ``dataset`` is then labelled
            ``"<name> [inductive 20%]"``; checkpoints go to ``out/checkpoints-inductive-<fraction>``.
        missing_rate: T2-GNN's incomplete-graph setting (:func:`gkdfast.data.mask_missing`): per seed, a
            fraction of the feature entries and of the edges is removed (seeded by the seed) before
            the teacher and the students train, and stays removed at evaluation.  ``0`` (default):
            the data as given.  The dataset is labelled ``"<name> [missing 30%]"``.
        autocast: mixed-precision training for the teacher and every student (``torch.bfloat16`` /
            ``torch.float16`` or ``"bf16"`` / ``"fp16"``; :class:`~gkdfast.distill.Distiller`'s
            ``autocast``); the test rows evaluate the float32 weights in float32.  The returned
            dictionary then has ``"autocast": "bfloat16"`` (or ``"float16"``).

    Under torch.distributed (every rank calling with the same arguments, e.g. ``gkdfast distill
    --distributed`` under torchrun) the teacher and every student train data-parallel through the
    :class:`~gkdfast.distill.Distiller` (the teacher once, over all ranks, ending with the same
    weights on each), teacher inference is sharded by node range into the shared cache, and every
    rank returns the same accuracies; ``out`` and ``cache_dir`` must be shared by the ranks.

    Returns:
        ``{"dataset", "num_nodes", "num_edges", "rows": [...]}`` (schema in
        :mod:`gkdfast.distill.results`); accuracies are fractions, ``train_seconds`` is the mean per
        seed, inference time the median.

    Example:
        >>> from gkdfast.data import csbm
        >>> res = run_experiment(csbm(num_nodes=300, num_classes=3, seed=0), teacher=parse_model("sage:16"),
        ...                      students=[parse_model("mlp:16")], methods=["glnn"], seeds=[0], epochs=5)
        >>> [(r["method"], r["model"], len(r["test_acc"])) for r in res["rows"]]
        [('teacher', 'SAGE(16)', 1), ('none', 'MLP(16)', 1), ('glnn', 'MLP(16)', 1)]
    """
    if not seeds:
        raise ValueError("run_experiment: give at least one seed")
    autocast = autocast_dtype(autocast, "run_experiment")
    per_student = {spec.label: list(methods.get(spec.label, ()) if isinstance(methods, dict) else methods)
                   for spec in students}
    # Canonical names, "none" dropped (it always runs); unknown names fail here, before any training.
    per_student = {k: [m for m in (_recipes.get(x).name for x in v) if m != "none"] for k, v in per_student.items()}
    overrides = _recipes.by_name(overrides)  # two spellings of one recipe: their values merged
    if setting not in ("transductive", "inductive"):
        raise ValueError(f"run_experiment: setting must be 'transductive' or 'inductive', got {setting!r}")
    inductive = setting == "inductive"

    def check_inductive(spec):  # a model with per-node tables is sized to the nodes it trains on
        if inductive and spec.needs_num_nodes:
            raise ValueError(f"run_experiment: {spec.label} keeps a table row per training node, so it cannot "
                             "score the nodes the inductive setting holds out; use another model or "
                             "setting='transductive'")

    for spec in ([teacher] if isinstance(teacher, ModelSpec) else []) + list(students):
        check_inductive(spec)
    if inductive and not 0.0 < float(inductive_fraction) < 1.0:
        raise ValueError(f"run_experiment: inductive_fraction must be in (0, 1), got {inductive_fraction}")
    if cache_dir is None and out is not None:
        cache_dir = os.path.join(out, "cache")
    if not 0.0 <= float(missing_rate) < 1.0:
        raise ValueError(f"run_experiment: missing_rate must be in [0, 1), got {missing_rate}")
    # The settings train on different data: separate checkpoint folders, so they can share an --out.
    tag = setting_tag(inductive_fraction if inductive else None, missing_rate)
    ckpt_root = os.path.join(out, "checkpoints" + tag) if out is not None else None
    dev = torch.device(device)

    def ckpt(*parts):
        return os.path.join(ckpt_root, *parts) if ckpt_root else None

    runs: List[dict] = []
    sensitive = getattr(data, "sensitive", None)

    def record(method, model, acc, secs, infer, seed=None, fit=None, logits=None, test=None, extras=None,
               given=None):
        run = {"seed": seed, "method": method, "model": model, "test_acc": acc, "seconds": secs,
               "epochs": fit.epochs if fit else None, "best_epoch": fit.best_epoch if fit else None,
               "inference_ms_per_1k_nodes": infer}
        if extras:
            run["extras"] = dict(extras)
        if sensitive is not None and logits is not None:  # group-fairness gaps on the same test nodes
            from gkdfast.distill.fairness import fairness_gaps

            run["delta_sp"], run["delta_eo"] = fairness_gaps(logits.cpu(), data.y, sensitive, test)
        runs.append(run)
        if details is not None:  # (a run record also says which hyperparameters trained it)
            details.append(dict(run, params=dict(given)) if given else dict(run))

    for seed in seeds:
        d, split, train_data = seed_data(data, seed, missing_rate, inductive_fraction if inductive else None)
        graph = d.graph.to(dev)  # the graph every model is evaluated on (incomplete under missing_rate)
        y, test = d.y, (split.ind_test_mask.cpu() if inductive else d.test_mask)
        if int(test.sum()) == 0 or int(d.train_mask.sum()) == 0:
            raise ValueError(f"the split of seed {seed} leaves no training or no test node "
                             f"({int(d.train_mask.sum())} train, {int(test.sum())} test"
                             f"{', inductive' if inductive else ''})")
        tspec = teacher(seed) if callable(teacher) else teacher
        if tspec is not None:
            check_inductive(tspec)
        tout = None if tspec is None else _train_teacher(
            tspec, d, train_data, graph, y, test, seed, dev, epochs, teacher_params, ckpt, cache_dir, progress,
            record, log, autocast)

        # Students --------------------------------------------------------------------------------
        for spec in students:
            for method in ["none"] + per_student[spec.label]:
                recipe_kw = dict(overrides.get(method, {}))
                if epochs:
                    for field in ("epochs",) + tuple(_recipes.get(method).stage_epochs):
                        recipe_kw.setdefault(field, epochs)
                recipe = _recipes.get(method, **recipe_kw)
                if getattr(recipe, "graph_free_student", False) and spec.name != "mlp":
                    log(f"seed {seed}  skip {recipe.name} for {spec.label}: it needs a graph-free (mlp) student")
                    continue
                torch.manual_seed(seed)  # the same initial student weights for every method
                n_seen = train_data.graph.num_nodes  # models with per-node parameters are sized to it
                trained = recipe.fit(lambda f: spec.build(f, d.num_classes, n_seen), train_data, tout, seed, device=dev,
                                     checkpoint_dir=ckpt(f"seed{seed}", f"{spec.label}-{recipe.name}"),
                                     cache_dir=cache_dir, progress=progress, autocast=autocast,
                                     desc=f"seed {seed}: {recipe.name} -> {spec.label}")
                given = {f"{recipe.name}.{k}": v for k, v in overrides.get(method, {}).items()}
                # the recipe's model, then any baseline it trained in the same run (own rows)
                for name, t in [(recipe.name, trained)] + list(trained.baselines.items()):
                    inputs = (recipe.inputs_on(d, split, t.inputs) if inductive else t.inputs).to(dev)
                    logits = eval_logits(t.model, inputs, graph, t.uses_graph)
                    acc = accuracy(logits.cpu(), y, test)
                    infer = inference_ms_per_1k(t.model, inputs, graph, t.uses_graph)
                    record(name, spec.label, acc, t.seconds, infer, seed, t.fit, logits, test, t.extras, given)
                    log(f"seed {seed}  {name:<9} {spec.label:<10} test acc {acc:.4f}  ({t.seconds:.1f}s)")
                    if t.extras:  # what the recipe chose or measured on the way
                        log(f"seed {seed}  {name:<9} {spec.label:<10} " + _format_extras(t.extras))

    name = str(getattr(data, "name", "graph"))
    if inductive:  # the schema has no setting field: the dataset label carries it into tables and plots
        name = f"{name} [inductive {float(inductive_fraction):.0%}]"
    if missing_rate:
        name = f"{name} [missing {float(missing_rate):.0%}]"
    summary = summarize_runs(runs, dataset=name, num_nodes=data.graph.num_nodes, num_edges=data.graph.num_edges)
    if autocast is not None:
        summary["autocast"] = str(autocast).replace("torch.", "")
    return summary
