"""One graph-classification comparison over stratified k-fold cross-validation: a teacher, each student
without KD, and each student with each method (``kd`` on real graphs, ``dfad`` and ``gfkd`` data-free).

Per fold: the teacher is trained on the fold's training graphs (10 % of them held out for model
selection); every student starts from the same initial weights for every method.  ``dfad`` and
``gfkd`` students see generated graphs only (GFKD's fake graphs are inverted once per fold's teacher
and shared by its students) and are not model-selected (no real data); they are tested on the fold's
test graphs like the others.  The result follows :mod:`gkdfast.distill.results` (``test_acc`` holds
one accuracy per fold), so the node-level table, JSON and PNG writers apply unchanged.
"""
from __future__ import annotations

import copy
import statistics
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from gkdfast.data.batching import select_graphs, stratified_kfold
from gkdfast.distill.datafree import (DFADConfig, GraphGenerator, check_weighted_conv, distill_dfad, feature_metadata,
                                      onehot_frequencies, size_frequencies)
from gkdfast.distill.gfkd import GFKDConfig, distill_gfkd, gfkd_transfer_set
from gkdfast.distill.graph_level import (GraphTrainConfig, graph_accuracy, inference_ms_per_1k_nodes,
                                         split_validation, train_graph_classifier)
from gkdfast.nn.graph_models import NORMS, GraphClassifier, graph_model_names

__all__ = ["GraphModelSpec", "parse_graph_model", "run_graph_experiment", "GRAPH_METHODS", "dfad_generator_for"]

GRAPH_METHODS = ("kd", "dfad", "gfkd")


@dataclass(frozen=True)
class GraphModelSpec:
    """A :class:`GraphClassifier` architecture: conv name, hidden width, layers, normalisation."""

    conv: str
    hidden: int
    num_layers: int
    norm: str = "batch"

    @property
    def label(self) -> str:
        suffix = "" if self.norm == "batch" else f",{self.norm}"
        return f"{self.conv.upper()}({self.num_layers}x{self.hidden}{suffix})"

    def build(self, in_dim: int, num_classes: int) -> GraphClassifier:
        return GraphClassifier(self.conv, in_dim, self.hidden, num_classes, self.num_layers, norm=self.norm)


def parse_graph_model(spec: str, hidden: int = 64, num_layers: int = 3) -> GraphModelSpec:
    """``"gin"``, ``"gin:128"``, ``"gin:128x5"`` or any of them with ``/norm`` (``batch``, ``layer``,
    ``none``; default batch), i.e. ``conv[:hidden[xlayers]][/norm]`` -> :class:`GraphModelSpec`.

    Example:
        >>> parse_graph_model("gin:128x5").label, parse_graph_model("gcn").label
        ('GIN(5x128)', 'GCN(3x64)')
        >>> parse_graph_model("gcn/layer").label
        'GCN(3x64,layer)'
    """
    body, _, norm = str(spec).strip().lower().partition("/")
    norm = norm or "batch"
    if norm not in NORMS:
        raise ValueError(f"bad model spec {spec!r}: norm must be one of {', '.join(NORMS)} (e.g. gcn/layer)")
    name, _, rest = body.partition(":")
    if name not in graph_model_names():
        raise ValueError(f"unknown graph model {name!r}; known: {', '.join(graph_model_names())}")
    from gkdfast.nn._utils import parse_width_layers

    hidden, num_layers = parse_width_layers(rest, spec, "conv[:hidden[xlayers]][/norm]", hidden, num_layers)
    return GraphModelSpec(name, hidden, num_layers, norm)


def dfad_generator_for(dataset, train_idx, cfg: DFADConfig) -> GraphGenerator:
    """A generator shaped like the dataset's node features: the one-hot block by Gumbel-softmax (starting
    at the training nodes' class frequencies when ``cfg.onehot_prior``), the other columns continuous on
    the scale of the training graphs' columns (feature *metadata* of the training graphs, no graph).

    Example:
        >>> from gkdfast.data import load_tu
        >>> ds = load_tu("../shared/data/tu_proteins")
        >>> g = dfad_generator_for(ds, torch.arange(100), DFADConfig())
        >>> g.onehot_dim, g.cont_dim
        (3, 1)
    """
    train = select_graphs(dataset, train_idx)
    x = train.x
    k, mean, std = feature_metadata(x)
    prior = onehot_frequencies(x, k) if cfg.onehot_prior and k else None
    num_nodes, sizes = cfg.num_nodes, None
    if cfg.size_prior:
        counts = train.ptr[1:] - train.ptr[:-1]
        num_nodes = cfg.max_nodes or max(2, int(torch.quantile(counts.double(), 0.95).ceil()))
        sizes = size_frequencies(counts, num_nodes)
    return GraphGenerator(cfg.z_dim, num_nodes, k, x.size(1) - k, tau=cfg.tau, cont_mean=mean,
                          cont_std=std, num_classes=dataset.num_classes if cfg.conditional else 0,
                          onehot_prior=prior, size_prior=sizes)


def _row(method, model, accs, seconds, infer):
    return {"method": method, "model": model, "test_acc_mean": float(statistics.fmean(accs)),
            "test_acc_std": float(statistics.pstdev(accs)) if len(accs) > 1 else 0.0,
            "test_acc": [float(a) for a in accs], "train_seconds": float(statistics.fmean(seconds)),
            "inference_ms_per_1k_nodes": float(statistics.fmean(infer))}


@dataclass
class _Acc:
    accs: List[float] = field(default_factory=list)
    secs: List[float] = field(default_factory=list)
    infer: List[float] = field(default_factory=list)


def run_graph_experiment(dataset, teacher: GraphModelSpec, students: Sequence[GraphModelSpec],
                         methods: Sequence[str], folds: int = 10, seed: int = 0,
                         train_cfg: Optional[GraphTrainConfig] = None, dfad_cfg: Optional[DFADConfig] = None,
                         device=None, gfkd_cfg: Optional[GFKDConfig] = None, max_folds: Optional[int] = None,
                         log: Callable[[str], None] = lambda s: None) -> dict:
    """Runs the comparison and returns the results dict of :mod:`gkdfast.distill.results`.

    Args:
        dataset: a :class:`~gkdfast.data.GraphDataset`.  teacher/students: specs.  methods: subset of
            ``kd``, ``dfad``, ``gfkd``.  folds: k of the stratified k-fold split.  max_folds: run only the first
            folds (for quick runs; the split is still k-fold).

    Example:
        >>> from gkdfast.data import load_tu
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> res = run_graph_experiment(ds, parse_graph_model("gin:16x2"), [parse_graph_model("gcn:8x2")], ["kd"],
        ...                            folds=10, max_folds=1, train_cfg=GraphTrainConfig(epochs=1))
        >>> [r["method"] for r in res["rows"]]
        ['teacher', 'none', 'kd']
    """
    for m in methods:
        if m not in GRAPH_METHODS:
            raise ValueError(f"unknown graph-level method {m!r}; expected one of {', '.join(GRAPH_METHODS)}")
    if "dfad" in methods:  # refused here, not after the first fold's teacher and students have trained
        for who, spec in [("teacher", teacher)] + [("student", s) for s in students]:
            check_weighted_conv(who, spec.conv)
    train_cfg = train_cfg or GraphTrainConfig()
    dfad_cfg = dfad_cfg or DFADConfig()
    gfkd_cfg = gfkd_cfg or GFKDConfig()
    if max_folds is not None and not 1 <= int(max_folds) <= folds:
        raise ValueError(f"max_folds must be in [1, {folds}] or None, got {max_folds}")
    splits = stratified_kfold(dataset.y, folds, seed)[:folds if max_folds is None else int(max_folds)]
    f_in, c = dataset.num_features, dataset.num_classes
    acc: Dict[tuple, _Acc] = {}
    for k, (train_all, test) in enumerate(splits):
        torch.manual_seed(seed * 1000 + k)
        train, val = split_validation(dataset.y, train_all, 0.1, seed + k)
        t0 = time.perf_counter()
        t_model = train_graph_classifier(teacher.build(f_in, c), dataset, train, val, train_cfg, seed + k, device)
        _record(acc, ("teacher", teacher.label), t_model, dataset, test, t0, device)
        log(f"fold {k + 1}/{len(splits)}: teacher {teacher.label} test {acc[('teacher', teacher.label)].accs[-1]:.3f}")
        transfer = None
        if "gfkd" in methods:  # one inversion per teacher, shared by every student
            t0 = time.perf_counter()
            # its feature metadata from the fold's training graphs only, as DFAD's generator
            transfer = gfkd_transfer_set(t_model, dataset, gfkd_cfg, seed + k, device, graphs=train_all)
            inversion_seconds = time.perf_counter() - t0
            log(f"fold {k + 1}/{len(splits)}: GFKD inverted {len(transfer)} graphs in {inversion_seconds:.0f} s "
                f"(teacher CE {transfer.inversion_ce:.3f}, edge density {transfer.edge_density:.3f})")
        for spec in students:
            # Seeded per (fold, student) and per method by stable ids (the student's label, the method's
            # place in GRAPH_METHODS): a row does not depend on which other methods or students run.
            sid = zlib.crc32(spec.label.encode())
            torch.manual_seed(_stream(seed, k, sid))
            init = spec.build(f_in, c).state_dict()
            for method in ("none", *methods):
                torch.manual_seed(_stream(seed, k, sid, _METHOD_IDS[method]))
                s_model = spec.build(f_in, c)
                s_model.load_state_dict(init)
                t0 = time.perf_counter()
                if method == "none":
                    train_graph_classifier(s_model, dataset, train, val, train_cfg, seed + k, device)
                elif method == "kd":
                    train_graph_classifier(s_model, dataset, train, val, train_cfg, seed + k, device, teacher=t_model)
                elif method == "gfkd":
                    distill_gfkd(t_model, s_model, dataset, gfkd_cfg, seed + k, device, transfer=transfer)
                else:
                    gen = dfad_generator_for(dataset, train, dfad_cfg)
                    distill_dfad(copy.deepcopy(t_model), s_model, gen, dfad_cfg, seed + k, device)
                _record(acc, (method, spec.label), s_model, dataset, test, t0, device)
                log(f"fold {k + 1}/{len(splits)}: {method} {spec.label} test {acc[(method, spec.label)].accs[-1]:.3f}")
    rows = [_row(m, label, a.accs, a.secs, a.infer) for (m, label), a in acc.items()]
    return {"dataset": dataset.name, "num_nodes": int(dataset.num_nodes), "num_edges": int(dataset.graph.num_edges),
            "rows": rows,  # how many of how many folds: 3 of 10 is not a 3-fold cross-validation
            "protocol": {"name": "stratified k-fold", "folds": int(folds), "folds_run": len(splits),
                         "seed": int(seed)}}


_METHOD_IDS = {m: i + 1 for i, m in enumerate(("none",) + tuple(GRAPH_METHODS))}


def _stream(*parts: int) -> int:
    """A torch seed from small non-negative ints (seed, fold, student, method), one per combination."""
    out = 0
    for p in parts:
        out = (out * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return out


def _record(acc, key, model, dataset, test, t0, device) -> None:
    seconds = time.perf_counter() - t0
    a = acc.setdefault(key, _Acc())
    a.accs.append(graph_accuracy(model, dataset, test, device=device))
    a.secs.append(seconds)
    a.infer.append(inference_ms_per_1k_nodes(model, dataset, test, device))
