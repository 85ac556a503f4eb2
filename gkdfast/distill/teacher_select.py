"""``--teacher auto``: pick the teacher by validation accuracy instead of always training SAGE.

Published methods tune their teachers; a fixed SAGE(128) is weak on some graphs (on social graphs a
GCN is the stronger model, and a teacher that barely beats an MLP has nothing to distil).  The
selection trains every candidate (GCN, SAGE, GAT at two hidden widths by default) once on the first
seed's split, with the same supervised recipe the experiment uses for its teacher, and keeps the one
with the best validation accuracy (ties: the earlier candidate).  The experiment then trains that
teacher for every seed, once per seed, and every recipe reuses it (the teacher-output cache).
With a ``cache_dir`` the selection itself is kept too (a small JSON file keyed by the data, the split,
the candidates and the training settings), so a resumed or repeated run does not retrain every
candidate.  Test labels are never looked at.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from gkdfast._autocast import autocast_dtype
from gkdfast.distill import recipes as _recipes
from gkdfast.distill.experiment import ModelSpec, parse_model, seed_data

__all__ = ["DEFAULT_CANDIDATES", "select_teacher"]

DEFAULT_CANDIDATES: Tuple[str, ...] = ("gcn:64", "gcn:256", "sage:64", "sage:256", "gat:64", "gat:256")


def select_teacher(data, candidates: Sequence[str] = DEFAULT_CANDIDATES, *, seed: int = 0,
                   epochs: Optional[int] = None, teacher_params: Optional[dict] = None, device="cpu",
                   dropout: float = 0.5, log: Callable[[str], None] = print,
                   cache_dir: Optional[str] = None, missing_rate: float = 0.0,
                   inductive_fraction: Optional[float] = None, autocast=None) -> Tuple[ModelSpec, List[dict]]:
    """Trains each candidate teacher on ``seed``'s split and returns the best by validation accuracy.

    Args:
        data: a :class:`gkdfast.data.GraphData` (features, labels, a split or a split rule).
        candidates: model specs ``"name:hidden"`` (``gcn``, ``sage``, ``gat``, ...) or
            :class:`~gkdfast.distill.experiment.ModelSpec` objects (kept as they are, dropout included);
            at least one.
        seed: whose split and initialisation the comparison uses.
        epochs / teacher_params: as for the experiment's teacher (``NoKD`` recipe settings).
        device: where to train.  dropout: the teachers' dropout.
        cache_dir: where to keep the selection (``teacher-select-<key>.json``); a later call with the
            same data, split, candidates and settings reads it instead of training (the ``gkdfast``
            command passes the run's teacher cache, ``OUT/cache`` by default).  ``None``: no cache.
        missing_rate / inductive_fraction: the experiment's setting (:func:`~gkdfast.distill.experiment.
            seed_data`): the candidates see what the experiment's teacher sees, the seed's masked features
            and edges, and in the inductive setting the observed graph only (never the hidden test nodes).
        autocast: the candidates train in mixed precision, as the experiment's teacher will
            (:class:`~gkdfast.distill.Distiller`'s ``autocast``).

    Returns:
        ``(spec, table)``: the chosen :class:`ModelSpec` and one dict per candidate
        (``model``, ``val_acc``, ``seconds``), in the order given.

    Example:
        >>> from gkdfast.data import csbm
        >>> spec, table = select_teacher(csbm(num_nodes=200, num_classes=3, seed=0), ["mlp:8", "gcn:8"],
        ...                              epochs=20, log=lambda s: None)
        >>> spec.label in [row["model"] for row in table]
        True
    """
    if not candidates:
        raise ValueError("select_teacher: give at least one candidate model (e.g. gcn:64)")
    # unknown names fail before training
    specs = [c if isinstance(c, ModelSpec) else parse_model(c, dropout=dropout) for c in candidates]
    d = seed_data(data, seed, missing_rate, inductive_fraction)[2]
    dev = torch.device(device)
    path = None
    if cache_dir is not None:
        key = _selection_key(d, specs, seed, epochs, teacher_params, dev, autocast_dtype(autocast, "select_teacher"))
        path = os.path.join(cache_dir, f"teacher-select-{key}.json")
        cached = _read_selection(path, specs)
        if cached is not None:
            for row in cached:
                log(f"teacher candidate {row['model']:<10} val acc {row['val_acc']:.4f}  (cached)")
            return _pick(specs, cached, log)
    table: List[dict] = []
    for spec in specs:
        torch.manual_seed(seed)
        model = spec.build(d.x.size(1), d.num_classes, d.graph.num_nodes)
        recipe = _recipes.NoKD(**dict({"epochs": epochs} if epochs else {}, **(teacher_params or {})))
        out = recipe.fit(lambda f: model, d, None, seed, device=dev, progress=False, autocast=autocast,
                         desc=f"teacher candidate {spec.label}")
        table.append({"model": spec.label, "val_acc": float(out.fit.best_val_acc), "seconds": float(out.seconds)})
        log(f"teacher candidate {spec.label:<10} val acc {out.fit.best_val_acc:.4f}  ({out.seconds:.1f}s)")
    if path is not None:
        write_cached_selection(path, [repr(sp) for sp in specs], table)
    return _pick(specs, table, log)


def seeds_needing_own_selection(data, seeds: Sequence[int], inductive_fraction: Optional[float] = None) -> List[int]:
    """The seeds whose teacher must be picked on their own split: ``seeds[0]``, and every later seed
    whose evaluation nodes ``seeds[0]``'s selection read (its training or validation labels; in the
    inductive setting also every node its candidates saw).

    On a fixed split (Planetoid's public one) one pick serves every seed.  Where the split is re-drawn
    per seed (20 / 30 labels per class, 60/20/20, the inductive hold-out), the first seed's validation
    nodes are mostly test nodes of the others: picking their teacher there would let their test labels
    choose it.

    Example:
        >>> from gkdfast.data import csbm
        >>> seeds_needing_own_selection(csbm(num_nodes=300, num_classes=3, seed=0), [0, 1, 2])
        [0, 1, 2]
    """
    seeds = list(seeds)
    first, split = seed_data(data, seeds[0], 0.0, inductive_fraction)[:2]  # (masked features change no split)
    read = (first.train_mask | first.val_mask).cpu()
    if split is not None:  # inductive: the candidates also see every observed node (features, edges)
        read = read | ~split.ind_test_mask.cpu()
    own = [seeds[0]]
    for s in seeds[1:]:
        d, split = seed_data(data, s, 0.0, inductive_fraction)[:2]
        test = (split.ind_test_mask if split is not None else d.test_mask).cpu()
        if bool((test & read).any()):
            own.append(s)
    return own


def select_per_seed(select: Callable[[int], tuple], data, seeds: Sequence[int],
                    inductive_fraction: Optional[float] = None, log: Callable[[str], None] = print):
    """Runs ``select(seed) -> (spec_or_setting, record)`` for the seeds that need their own pick
    (:func:`seeds_needing_own_selection`) and returns ``(first, for_seed, records)``: the first seed's
    result, a function ``seed -> result`` (a seed that needs no pick of its own gets the first seed's),
    and ``{seed: record}`` of every pick made."""
    own = seeds_needing_own_selection(data, seeds, inductive_fraction)
    if len(own) > 1:
        log(f"--teacher auto: the split is re-drawn per seed, so seeds {', '.join(map(str, own))} each pick "
            "their teacher on their own split (one seed's validation nodes are another's test nodes)")
    picks = {s: select(s) for s in own}
    return picks[own[0]], (lambda s: picks.get(s, picks[own[0]])), {s: p[1] for s, p in picks.items()}


def best_candidate(table: Sequence[dict]) -> int:
    """Index of the row with the best ``val_acc`` in a selection table (ties: the earlier row)."""
    return max(range(len(table)), key=lambda i: (table[i]["val_acc"], -i))


def _pick(specs, table, log):
    best = best_candidate(table)
    log(f"--teacher auto: picked {specs[best].label} (validation accuracy {table[best]['val_acc']:.4f})")
    return specs[best], table


def _selection_key(d, specs, seed, epochs, teacher_params, dev, autocast=None) -> str:
    """Hex SHA-256 (first 40 digits) of everything the selection's outcome depends on."""
    from gkdfast import __version__
    from gkdfast.distill.teacher_cache import hash_dropout_implementation, hash_edge_weights, hash_tensor

    h = hashlib.sha256()
    h.update(f"teacher-select1;gkdfast{__version__};torch{torch.__version__};{dev.type};seed{seed};"
             f"epochs{epochs};{sorted((teacher_params or {}).items())!r};{[repr(sp) for sp in specs]!r}".encode())
    hash_dropout_implementation(h)  # (how every candidate trains)
    if autocast is not None:  # (off left out: existing selections keep their key)
        h.update(f"autocast={autocast}".encode())
    for t in (d.x, d.y, d.train_mask, d.val_mask, d.graph.rowptr, d.graph.col):
        hash_tensor(h, t)
    hash_edge_weights(h, d.graph)
    return h.hexdigest()[:40]


def read_cached_selection(path: str, candidates: Sequence[str], labels: Sequence[str]) -> Optional[List[dict]]:
    """The selection table cached at ``path``, or ``None`` when there is none or it does not fit:
    it must have been written for exactly ``candidates`` (their ``repr`` / spec strings, in order) and
    hold one dict per candidate whose ``model`` is the matching entry of ``labels``.  A damaged or
    foreign file is ignored (the caller trains the candidates again)."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    table = saved.get("table")
    if saved.get("candidates") != list(candidates) or not isinstance(table, list) \
            or not all(isinstance(r, dict) for r in table) \
            or [r.get("model") for r in table] != list(labels) \
            or not all(isinstance(r.get("val_acc"), (int, float)) for r in table):
        return None
    return table


def write_cached_selection(path: str, candidates: Sequence[str], table: List[dict]) -> None:
    """Writes ``table`` for ``candidates`` to ``path`` atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"candidates": list(candidates), "table": table}, f, indent=1)
    os.replace(tmp, path)


def _read_selection(path: str, specs) -> Optional[List[dict]]:
    return read_cached_selection(path, [repr(sp) for sp in specs], [sp.label for sp in specs])
