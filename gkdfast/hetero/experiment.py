"""Teacher, student without KD, with logit KD and with HIRE on a :class:`HeteroGraph`, over seeds.

Per seed: the teacher (supervised, Adam, early-stopped on validation accuracy, best weights kept),
its logits and per-type embeddings computed once in eval mode, then every student method from the
same initial weights.  Returns the ``gkdfast distill`` results dictionary (schema in
:mod:`gkdfast.distill.results`), with ``peak_mb`` of the process and seconds per epoch in the log.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gkdfast.distill import recipes as _recipes
from gkdfast.distill.distiller import accuracy
from gkdfast.distill.experiment import summarize_runs
from gkdfast.hetero.graph import HeteroGraph
from gkdfast.hetero.hire import relation_loss
from gkdfast.hetero.models import build_hetero_model

__all__ = ["train_hetero", "run_hetero_experiment", "select_hetero_teacher", "HETERO_METHODS",
           "HETERO_TEACHER_CANDIDATES"]

HETERO_METHODS = ("none", "kd", "hire")
HETERO_TEACHER_CANDIDATES = ("rgcn:64", "hgt:64", "han:64")
_TRAIN_KEYS = ("lr", "weight_decay", "epochs", "patience")


def train_hetero(model: nn.Module, hg: HeteroGraph, loss_fn: Callable, *, lr: float = 0.01,
                 weight_decay: float = 5e-4, epochs: int = 200, patience: Optional[int] = 50) -> dict:
    """Full-batch Adam on ``loss_fn(logits, hidden)``; early stopping on validation accuracy; the best
    epoch's weights are loaded back.  Returns ``{"best_val", "best_epoch", "epochs", "seconds"}``.

    Example:
        >>> from gkdfast.hetero import HeteroGraph
        >>> from gkdfast.hetero.models import RGCN
        >>> hg = HeteroGraph.toy()
        >>> m = RGCN(hg, 8, 2)
        >>> info = train_hetero(m, hg, lambda z, h: F.cross_entropy(z[hg.train_mask], hg.y[hg.train_mask]), epochs=3)
        >>> info["epochs"]
        3
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_epoch, bad, state, seconds, epoch = -1.0, 0, 0, None, 0.0, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        logits, hidden = model(hg, return_hidden=True)
        loss = loss_fn(logits, hidden)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            val = accuracy(model(hg), hg.y, hg.val_mask)
        seconds += time.perf_counter() - t0
        if val > best:
            best, best_epoch, bad, state = val, epoch, 0, copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if patience is not None and bad >= patience:
                break
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    return {"best_val": best, "best_epoch": best_epoch, "epochs": epoch, "seconds": seconds}


def _supervised(hg: HeteroGraph):
    tr = hg.train_mask
    return lambda logits, hidden: F.cross_entropy(logits[tr], hg.y[tr])


def _hetero_selection_key(hg: HeteroGraph, candidates: Sequence[str], seed: int, train: Optional[dict]) -> str:
    """Hex SHA-256 (first 40 digits) of what the selection's outcome depends on: the graph's tensors
    (features, relations, meta-paths, labels, training / validation masks), the candidates, the seed,
    the training settings, the device type and the versions."""
    import hashlib

    from gkdfast import __version__
    from gkdfast.distill.teacher_cache import hash_dropout_implementation, hash_edge_weights, hash_tensor

    h = hashlib.sha256()
    hash_dropout_implementation(h)  # (how every candidate trains)
    h.update(f"hetero-select1;gkdfast{__version__};torch{torch.__version__};{hg.y.device.type};seed{seed};"
             f"{sorted((train or {}).items())!r};{list(candidates)!r};{hg.target};"
             f"{sorted(hg.num_nodes.items())!r}".encode())
    for t in sorted(hg.x):
        hash_tensor(h, hg.x[t])
    for graphs in (hg.relations, hg.metapaths):
        for key in sorted(graphs, key=repr):
            h.update(repr(key).encode())
            hash_tensor(h, graphs[key].rowptr)
            hash_tensor(h, graphs[key].col)
            hash_edge_weights(h, graphs[key])  # (nothing for an unweighted graph: its key is unchanged)
    for t in (hg.y, hg.train_mask, hg.val_mask):
        hash_tensor(h, t)
    return h.hexdigest()[:40]


def select_hetero_teacher(hg: HeteroGraph, candidates: Sequence[str] = HETERO_TEACHER_CANDIDATES, *, seed: int = 0,
                          train: Optional[dict] = None, log: Callable[[str], None] = lambda s: None,
                          cache_dir: Optional[str] = None):
    """Trains each candidate teacher (supervised, :func:`train_hetero` with ``train``) from ``seed``
    and returns ``(spec, model, table)`` of the best by validation accuracy (ties: the earlier one);
    ``table`` has one row per candidate: ``model``, ``val_acc``, ``seconds``, and the training's
    ``info`` (:func:`train_hetero`).  HAN is skipped on a graph without meta-path graphs.  Test labels
    are not read.

    With ``cache_dir`` the table is kept in ``hetero-teacher-select-<key>.json`` (the key covers the
    graph, the split's training and validation nodes, the candidates, ``seed`` and ``train``); a later
    call that finds it trains nothing and returns ``model = None`` and rows without ``info`` (the
    caller trains the picked teacher again from ``seed``: the same model on the same device).

    Example:
        >>> from gkdfast.hetero import HeteroGraph
        >>> spec, model, table = select_hetero_teacher(HeteroGraph.toy(), ["rgcn:8", "hgt:8"], train={"epochs": 2})
        >>> spec in ("rgcn:8", "hgt:8"), [row["model"] for row in table]
        (True, ['rgcn:8', 'hgt:8'])
    """
    import os

    from gkdfast.distill.teacher_select import best_candidate, read_cached_selection, write_cached_selection

    usable = [c for c in candidates if hg.metapaths or not str(c).lower().startswith("han")]
    if not usable:
        raise ValueError(f"select_hetero_teacher: no candidate runs on {hg.name} (HAN needs meta-path graphs)")
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, f"hetero-teacher-select-{_hetero_selection_key(hg, usable, seed, train)}.json")
        cached = read_cached_selection(path, usable, usable)
        if cached is not None:
            for row in cached:
                log(f"teacher candidate {row['model']:<10} val acc {row['val_acc']:.4f} (cached)")
            best = best_candidate(cached)
            log(f"teacher auto: picked {usable[best]} (best validation accuracy {cached[best]['val_acc']:.4f})")
            return usable[best], None, cached
    best, table = None, []
    for spec in usable:
        torch.manual_seed(seed)
        model = build_hetero_model(spec, hg).to(hg.y.device)
        info = train_hetero(model, hg, _supervised(hg), **(train or {}))
        table.append({"model": spec, "val_acc": info["best_val"], "seconds": info["seconds"], "info": info})
        log(f"teacher candidate {spec:<10} val acc {info['best_val']:.4f} ({info['seconds']:.1f}s)")
        if best is None or info["best_val"] > best[2]:
            best = (spec, model, info["best_val"])
    if path is not None:
        write_cached_selection(path, usable, [{k: v for k, v in row.items() if k != "info"} for row in table])
    log(f"teacher auto: picked {best[0]} (best validation accuracy {best[2]:.4f})")
    return best[0], best[1], table


def _kd(s, t, temperature):
    from gkdfast.losses import kd

    return kd(s, t, temperature=temperature, reduction="batchmean")


def _loss(method: str, recipe, hg: HeteroGraph, t_logits, t_hidden):
    ce = _supervised(hg)
    if method == "none":
        return ce
    a, temp = float(recipe.alpha), float(recipe.temperature)
    if method == "kd":
        return lambda logits, hidden: (1 - a) * ce(logits, hidden) + a * _kd(logits, t_logits, temp)
    beta = float(recipe.beta)
    return lambda logits, hidden: ((1 - a) * ce(logits, hidden) + a * _kd(logits, t_logits, temp)
                                   + beta * relation_loss(hidden, t_hidden, hg.target))


def _peak_mb(device) -> float:
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# What this runner reads of each method's settings (the rest of a recipe's options, batch sizes, tie
# rules, ..., belong to the homogeneous Distiller and would be ignored here).
_METHOD_KEYS = {"none": _TRAIN_KEYS, "kd": _TRAIN_KEYS + ("alpha", "temperature"),
                "hire": _TRAIN_KEYS + ("alpha", "temperature", "beta")}


def _check_overrides(overrides: Dict[str, dict], run: Sequence[str]) -> None:
    """Refuses a setting this runner would silently drop: one for a method that does not run, or a key it
    does not read."""
    for method, kw in overrides.items():
        if method not in run:
            raise ValueError(f"--set {method}.* (overrides[{method!r}]): method {method!r} does not run here "
                             f"(methods: {', '.join(run)})")
        bad = sorted(set(kw) - set(_METHOD_KEYS[method]))
        if bad:
            raise ValueError(f"--set {method}.{bad[0]} (overrides[{method!r}][{bad[0]!r}]): not used on a "
                             f"heterogeneous graph; {method} reads "
                             f"{', '.join(_METHOD_KEYS[method])}")


def run_hetero_experiment(hg: HeteroGraph, *, teacher: str = "rgcn:64", students: Sequence[str] = ("rgcn:16",),
                          methods: Sequence[str] = ("kd", "hire"), seeds: Sequence[int] = (0,),
                          epochs: Optional[int] = None, device="cpu", overrides: Optional[Dict[str, dict]] = None,
                          teacher_params: Optional[dict] = None, log: Callable[[str], None] = lambda s: None,
                          details: Optional[list] = None, cache_dir: Optional[str] = None) -> dict:
    """Runs teacher / no-KD / KD / HIRE rows and returns the results dictionary.

    Args:
        hg: the graph.  teacher, students: ``name[:hidden[xlayers]]`` of :func:`build_hetero_model`
            (``rgcn``, ``han``, ``hgt``); ``teacher="auto"``: :func:`select_hetero_teacher` on the first
            seed picks it from :data:`HETERO_TEACHER_CANDIDATES`.  methods: subset of ``kd``, ``hire``
            (``none`` always runs).
        seeds: one run of everything per seed (the split is the shipped one).  epochs: maximum epochs.
        overrides: per-method hyperparameters, e.g. ``{"hire": {"beta": 10.0}}``.
        teacher_params: the teacher's own ``lr`` / ``weight_decay`` / ``epochs`` / ``patience``
            (default: the students' settings), e.g. ``{"epochs": 300, "patience": 100}``.
        details: if a list, one dict per training run is appended (with ``relation_gap``: HIRE's
            relation term between the trained student and the teacher, for every student method; ``None``
            for the teacher).
        cache_dir: where ``teacher="auto"`` keeps its selection (:func:`select_hetero_teacher`);
            ``None``: no cache.

    Example:
        >>> from gkdfast.hetero import HeteroGraph
        >>> res = run_hetero_experiment(HeteroGraph.toy(), teacher="rgcn:8", students=["rgcn:4"], epochs=2)
        >>> [r["method"] for r in res["rows"]]
        ['teacher', 'none', 'kd', 'hire']
    """
    names = [_recipes.get(m).name for m in methods]
    bad = [m for m in names if m not in HETERO_METHODS]
    if bad:
        raise ValueError(f"method {bad[0]!r} does not run on a heterogeneous graph; choose from kd, hire")
    names = [m for m in names if m != "none"]
    bad = sorted(set(teacher_params or {}) - set(_TRAIN_KEYS))
    if bad:
        raise ValueError(f"teacher_params: unknown key {bad[0]!r}; known: {', '.join(_TRAIN_KEYS)}")
    overrides = {_recipes.get(k).name: v for k, v in (overrides or {}).items()}
    _check_overrides(overrides, ["none"] + names)
    dev = torch.device(device)
    g = hg.to(dev)
    runs: List[dict] = []

    def record(seed, method, label, model, info, t_hidden=None):
        with torch.no_grad():
            t0 = time.perf_counter()
            logits = model(g)
            infer = (time.perf_counter() - t0) * 1e6 / max(g.num_nodes[g.target], 1)
            # how far the student's cross-type similarities end from the teacher's (HIRE's relation term,
            # measured for every student method, so what KD alone transfers of them can be read too)
            gap = None if t_hidden is None else float(relation_loss(model(g, return_hidden=True)[1], t_hidden,
                                                                    g.target))
        acc = accuracy(logits.cpu(), hg.y, hg.test_mask)
        per_epoch = info["seconds"] / max(info["epochs"], 1)
        run = {"seed": seed, "method": method, "model": label, "test_acc": acc, "seconds": info["seconds"],
               "epochs": info["epochs"], "best_epoch": info["best_epoch"], "inference_ms_per_1k_nodes": infer,
               "seconds_per_epoch": per_epoch, "peak_mb": _peak_mb(dev), "relation_gap": gap}
        runs.append(run)
        if details is not None:
            details.append(dict(run))
        log(f"seed {seed}  {method:<8} {label:<10} test acc {acc:.4f}  ({info['seconds']:.1f}s, "
            f"{1000 * per_epoch:.1f} ms/epoch, peak {run['peak_mb']:.0f} MB"
            + ("" if gap is None else f", relation gap to the teacher {gap:.4g}") + ")")

    def params(method):
        r = _recipes.get("kd" if method == "none" else method, **overrides.get(method, {}))
        kw = {"lr": r.lr, "weight_decay": r.weight_decay, "epochs": epochs or r.epochs, "patience": r.patience}
        return r, kw

    tkw = dict(params("none")[1], **(teacher_params or {}))
    selection, picked = None, None
    if str(teacher).strip().lower() == "auto":
        teacher, model, table = select_hetero_teacher(g, seed=seeds[0], train=tkw, log=log, cache_dir=cache_dir)
        if model is not None:  # trained just now (not read from the cache): seed 0's teacher as it is
            picked = (model, next(row["info"] for row in table if row["model"] == teacher))
        selection = [{k: v for k, v in row.items() if k != "info"} for row in table]
    for seed in seeds:
        if picked is not None and seed == seeds[0]:  # the winner of the selection is this seed's teacher
            tmodel, info = picked
        else:
            torch.manual_seed(seed)
            tmodel = build_hetero_model(teacher, g).to(dev)
            info = train_hetero(tmodel, g, _supervised(g), **tkw)
        record(seed, "teacher", teacher.upper(), tmodel, info)
        with torch.no_grad():
            t_logits, t_hidden = tmodel(g, return_hidden=True)
        for spec in students:
            for method in ["none"] + names:
                recipe, kw = params(method)
                torch.manual_seed(seed)  # the same initial student weights for every method
                model = build_hetero_model(spec, g).to(dev)
                info = train_hetero(model, g, _loss(method, recipe, g, t_logits, t_hidden), **kw)
                record(seed, method, spec.upper(), model, info, t_hidden)
    res = summarize_runs(runs, dataset=hg.name, num_nodes=sum(hg.num_nodes.values()),
                         num_edges=sum(r.num_edges for r in hg.relations.values()))
    if selection is not None:
        res["teacher_selection"] = selection
    return res
