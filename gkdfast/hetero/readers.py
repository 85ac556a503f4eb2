"""Readers for heterogeneous node-classification data: the HeCo layout and MAGNN's IMDB.

**HeCo layout** (HeCo's IMDB/Freebase/AMiner, MEOW's IMDB): ``labels.npy`` (target type), relation
files ``<x><y>.txt`` (one ``x_id y_id`` pair per line, each type numbered from 0), meta-path graphs
``<x><y><x>.npz`` (scipy sparse, among target nodes), splits ``{train,val,test}_{20,40,60}.npy``
(target ids), optional ``<t>_feat.npz`` features.  The target type is the letter that starts and
ends every meta-path file (``pap.npz`` → ``p``; ``--target-type`` overrides); a type's node count is
1 + its largest id over the relation files (the target's: the number of labels).  Letters are
named after the data sets (``m`` movie, ``a`` actor — author when the target is ``p`` —, ``d``
director, ``k`` keyword, ``w`` writer, ``p`` paper, ``r`` reference); other letters keep their letter.
Labels that start at 1 (MEOW's IMDB) are shifted to start at 0; repeated training ids (MEOW sampled
with replacement) are kept once.

**MAGNN IMDB**: ``adjM.npz`` (one symmetric adjacency over all nodes), ``node_types.npy`` (0 movie,
1 director, 2 actor), ``features_{0,1,2}.npz``, ``labels.npy``, ``train_val_test_idx.npz``.

Both add every relation's reverse (``rev_<name>``).  Types without features get none (the models
learn an embedding for them).
"""
from __future__ import annotations

import glob
import os
import re
from typing import Dict, Optional

import numpy as np
import torch

from gkdfast.data._util import (check_npz_members, check_sparse, fail, listing, mask_from_index, open_npz,
                                parse_int_table, to_float_features)
from gkdfast.graph import Graph
from gkdfast.hetero.graph import HeteroGraph

__all__ = ["load_heco", "load_magnn_imdb", "is_heco_dir", "is_magnn_dir", "load_hetero", "infer_target"]

_LETTERS = {"m": "movie", "a": "actor", "d": "director", "k": "keyword", "w": "writer", "p": "paper",
            "r": "reference"}


def _type_name(letter: str, target: str) -> str:
    if letter == "a" and target == "p":
        return "author"
    return _LETTERS.get(letter, letter)


def is_heco_dir(directory) -> bool:
    """Whether ``directory`` holds the HeCo layout (labels.npy and at least one ``xyx.npz``).

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> open(os.path.join(d, "labels.npy"), "w").close()
        >>> is_heco_dir(d)
        False
        >>> open(os.path.join(d, "pap.npz"), "w").close()  # a meta-path file (only the names are checked)
        >>> is_heco_dir(d), is_magnn_dir(d)
        (True, False)
    """
    d = os.fspath(directory)
    return os.path.isfile(os.path.join(d, "labels.npy")) and bool(_metapath_files(d))


def is_magnn_dir(directory) -> bool:
    """Whether ``directory`` holds MAGNN's preprocessed IMDB (adjM.npz + node_types.npy).

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for f in ("adjM.npz", "node_types.npy"): open(os.path.join(d, f), "w").close()
        >>> is_magnn_dir(d), is_heco_dir(d)
        (True, False)
    """
    d = os.fspath(directory)
    return all(os.path.isfile(os.path.join(d, f)) for f in ("adjM.npz", "node_types.npy"))


def _metapath_files(d):
    return sorted(p for p in glob.glob(os.path.join(d, "*.npz"))
                  if re.fullmatch(r"([a-z])[a-z]+\1", os.path.basename(p)[:-4]))


def infer_target(directory) -> str:
    """The target type's letter from the meta-path file names (``pap.npz`` → ``"p"``).

    Example:
        >>> infer_target("../shared/data/hetero_heco_format/aminer")
        'p'
    """
    d = os.fspath(directory)
    starts = sorted({os.path.basename(p)[0] for p in _metapath_files(d)})
    if len(starts) != 1:
        raise fail(d, f"meta-path files start with {starts or 'nothing'}; cannot tell the target type: pass "
                      "target_type= (gkdfast distill: --target-type)")
    return starts[0]


def _load_sparse(path):
    import scipy.sparse as sp

    check_npz_members(path)  # (before scipy inflates them)
    try:
        m = sp.load_npz(path)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise fail(path, f"not a scipy sparse .npz ({type(exc).__name__}: {str(exc)[:60]}); re-create it with "
                         "scipy.sparse.save_npz") from None
    return check_sparse(m, path, "the stored matrix").tocoo()


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise fail(path, "no such file") from None
    except (ValueError, OSError) as exc:
        raise fail(path, f"not a readable .npy array ({str(exc)[:60]})") from None


def _pairs(path) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    e = parse_int_table(path, text, 2, "relation file")
    if e.size and int(e.min()) < 0:
        raise fail(path, f"relation file has the negative id {int(e.min())}; ids start at 0")
    return e


def _add_relation(rels, src, name, dst, e: np.ndarray, n_src: int, n_dst: int):
    g = Graph(torch.from_numpy(np.ascontiguousarray(e.T)), num_nodes=max(n_src, n_dst))
    rels[(src, name, dst)] = g
    rels[(dst, "rev_" + name, src)] = g.t()


def _checked_mask(where: str, idx, y, n: int) -> torch.Tensor:
    """The mask of target ids ``idx`` (read from ``where``): every id in ``[0, n)`` and labelled, else a
    one-line error naming the file (a bare index would wrap around or raise IndexError)."""
    idx = np.unique(np.asarray(idx).astype(np.int64).reshape(-1))
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise fail(where, f"target id {int(idx.max() if idx.max() >= n else idx.min())} outside [0, {n})")
    if idx.size and bool((y[torch.from_numpy(idx)] < 0).any()):
        raise fail(where, "lists a target node without a label; fix the labels or drop the id from the split")
    return mask_from_index(idx, n)


def _split_masks(d, y, n, split: int):
    paths = [os.path.join(d, f"{part}_{split}.npy") for part in ("train", "val", "test")]
    return _disjoint(paths, [_checked_mask(p, _load_npy(p), y, n) for p in paths])


def _disjoint(names, masks):
    """``masks`` (train, val, test), refused with the two files named when they share a node (a test node
    in the training split would leak its label)."""
    for i in range(3):
        for j in range(i + 1, 3):
            both = masks[i] & masks[j]
            if bool(both.any()):
                raise fail(names[j], f"shares {int(both.sum())} node(s) with {names[i]} (first: id "
                                     f"{int(both.nonzero()[0])}); the train / val / test splits must be disjoint")
    return masks


def _labels(path, arr: np.ndarray) -> np.ndarray:
    """Target labels as int64 ``[N]``: whole numbers (-1 for unknown), one per node; else a one-line error
    naming the file (float labels were truncated, NaN became a huge negative, one-hot [N, C] was flattened)."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise fail(path, f"labels must be one class id per node ([N]), got shape {list(a.shape)} (one-hot labels: "
                         "store their argmax)")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or bool((a != np.round(a)).any()):
            bad = int(np.flatnonzero(~np.isfinite(a) | (a != np.round(a)))[0])
            raise fail(path, f"label {a[bad]} of node {bad} is not a whole number (class ids, -1 for unknown)")
    elif a.dtype.kind not in "iub":
        raise fail(path, f"labels must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _finite(path, x: torch.Tensor) -> torch.Tensor:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise fail(path, f"NaN or inf in the features (row {int(bad.any(1).nonzero()[0])})")
    return x


def load_heco(path, target_type: Optional[str] = None, split: int = 20, name: Optional[str] = None) -> HeteroGraph:
    """Reads a folder in the HeCo layout (module doc).

    Args:
        path: the folder.  target_type: a type letter or name (default: inferred from the meta-path
            files).  split: 20, 40 or 60 labelled nodes per class for training (the shipped splits).
        name: dataset name (default: the folder name).

    Example:
        >>> hg = load_heco("../shared/data/hetero_heco_format/aminer")
        >>> hg.target, hg.num_nodes["paper"], hg.num_nodes["author"], hg.num_nodes["reference"]
        ('paper', 6564, 13329, 35890)
    """
    d = os.fspath(path)
    if not os.path.isdir(d):
        raise fail(d, "no such directory")
    letters_of = dict({v: k for k, v in _LETTERS.items()}, author="a")
    t = infer_target(d) if target_type is None else letters_of.get(str(target_type).lower(), str(target_type).lower())
    label_path = os.path.join(d, "labels.npy")
    y = _labels(label_path, _load_npy(label_path))
    labelled = y[y >= 0]
    if labelled.size and labelled.min() == 1:  # MEOW's IMDB labels are 1..C (-1, unlabelled, stays -1)
        y = np.where(y >= 0, y - 1, y)
    y_t = torch.from_numpy(y)
    counts: Dict[str, int] = {t: int(y.size)}
    rel_files = sorted(p for p in glob.glob(os.path.join(d, "*.txt")) if re.fullmatch(r"[a-z]{2}",
                                                                                      os.path.basename(p)[:-4]))
    if not rel_files:
        raise fail(d, "no relation files (<x><y>.txt, e.g. ma.txt)")
    try:
        inferred = infer_target(d)
    except ValueError:
        inferred = None
    # the labels were shipped for `inferred` (unknown when it cannot be inferred: then no such claim)
    other_type = target_type is not None and inferred is not None and t != inferred
    edges = {}
    for p in rel_files:
        a, b = os.path.basename(p)[:2]
        e = _pairs(p)
        edges[(a, b, p)] = e
        for letter, col in ((a, 0), (b, 1)):
            hi = int(e[:, col].max()) + 1 if e.size else 0
            if letter == t and hi > counts[t] and other_type:
                owner = f" ({_type_name(inferred, inferred)})" if inferred else ""
                raise fail(label_path, f"has {counts[t]} labels, but {os.path.basename(p)} names nodes of the target "
                                       f"type {target_type!r} up to id {hi - 1}: the labels belong to another "
                                       f"type{owner}; check target_type")
            if letter == t and hi > counts[t]:
                raise fail(p, f"target id {hi - 1} is out of range: {label_path} has {counts[t]} labels; the target "
                              f"type {_type_name(t, t)!r} needs one label per node (add the missing labels, -1 for "
                              "unknown)")
            counts[letter] = max(counts.get(letter, 0), hi)
    if t not in {k for a, b, _ in edges for k in (a, b)}:
        raise fail(d, f"no relation file involves the target type {t!r} (files: "
                      f"{listing(os.path.basename(p) for p in rel_files)}); check target_type")
    seen = max((int(e[:, col].max()) + 1 for (a, b, _), e in edges.items() for letter, col in ((a, 0), (b, 1))
                if letter == t and e.size), default=0)
    # labels of another type put on this one (the count check only where the override names another type
    # than the meta-path files: the shipped target may have isolated nodes past its last relation id)
    if other_type and seen != counts[t]:
        raise fail(label_path, f"has {counts[t]} labels, but the relation files name {seen} nodes of the "
                               f"target type {target_type!r}: the labels belong to another type; check target_type")
    names = {k: _type_name(k, t) for k in counts}
    if target_type is not None and len(str(target_type)) > 1:  # a name given: keep it ("author", not "actor")
        names[t] = str(target_type).lower()
    rels = {}
    for (a, b, p), e in edges.items():
        _add_relation(rels, names[a], a + b, names[b], e, counts[a], counts[b])
    # a file naming a type no relation file has: a typo or a missing relation, never silently dropped
    for fp in sorted(glob.glob(os.path.join(d, "*_feat.npz"))):
        k = os.path.basename(fp)[:-len("_feat.npz")]
        if k not in counts:
            raise fail(fp, f"features of the unknown node type {k!r}: no relation file (<x><y>.txt) names it; add "
                           f"its relation (e.g. {t}{k}.txt) or remove the file")
    x = {}
    for k in counts:
        fp = os.path.join(d, f"{k}_feat.npz")
        if os.path.isfile(fp):
            f = _load_sparse(fp).tocsr()
            if f.shape[0] != counts[k]:
                raise fail(fp, f"has {f.shape[0]} rows, but type {names[k]!r} has {counts[k]} nodes")
            x[names[k]] = _finite(fp, to_float_features(f, fp))
    metapaths = {}
    for p in _metapath_files(d):
        mp = os.path.basename(p)[:-4]
        if mp[0] != t:
            continue
        unknown = [k for k in mp if k not in counts]
        if unknown:
            raise fail(p, f"meta-path through the unknown node type {unknown[0]!r}: no relation file (<x><y>.txt) "
                          f"names it; add its relation (e.g. {t}{unknown[0]}.txt) or remove the file")
        m = _load_sparse(p)
        if m.shape != (counts[t], counts[t]):
            raise fail(p, f"meta-path matrix is {m.shape}, expected ({counts[t]}, {counts[t]}) target nodes")
        keep = m.row != m.col
        metapaths[mp] = Graph(torch.from_numpy(np.stack([m.row[keep], m.col[keep]]).astype(np.int64)),
                              num_nodes=counts[t])
    valid = [s for s in (20, 40, 60) if os.path.isfile(os.path.join(d, f"train_{s}.npy"))]
    if split not in valid:
        raise fail(d, f"no split {split} (train_{split}.npy); available: {valid}")
    masks = _split_masks(d, y_t, counts[t], split)
    num_classes = int(y.max()) + 1 if y.size else 0
    hg = HeteroGraph({names[k]: v for k, v in counts.items()}, x, rels, names[t], y_t, *masks, num_classes,
                     metapaths, name or os.path.basename(os.path.normpath(d)),
                     {"split": f"shipped ({split} per class)", "format": "heco"})
    return hg.validate()


def load_magnn_imdb(path, name: Optional[str] = None) -> HeteroGraph:
    """Reads MAGNN's preprocessed IMDB (module doc); meta-paths MAM and MDM are composed.

    Example:
        >>> hg = load_magnn_imdb("../shared/data/hetero_imdb_magnn")
        >>> [hg.num_nodes[t] for t in ("movie", "director", "actor")], int(hg.train_mask.sum())
        ([4278, 2081, 5257], 400)
    """
    d = os.fspath(path)
    type_path = os.path.join(d, "node_types.npy")
    types = _load_npy(type_path).astype(np.int64)
    names = ["movie", "director", "actor"]
    bad = types[(types < 0) | (types > 2)]
    if bad.size:
        raise fail(type_path, f"type id {int(bad[0])} unknown; expected 0 movie, 1 director, 2 actor")
    if types.size and bool((np.diff(types) < 0).any()):  # global id - first id of the type = local id
        raise fail(type_path, "node types are not in contiguous blocks (all movies, then directors, then actors, "
                              "as MAGNN writes them); sort the nodes by type")
    adj = _load_sparse(os.path.join(d, "adjM.npz"))
    if adj.shape != (types.size, types.size):
        raise fail(os.path.join(d, "adjM.npz"), f"shape {adj.shape} does not match {types.size} node types")
    offs = {k: int(np.flatnonzero(types == k)[0]) if (types == k).any() else 0 for k in range(3)}
    counts = {names[k]: int((types == k).sum()) for k in range(3)}
    rels = {}
    for k, rel in ((1, "md"), (2, "ma")):
        keep = (types[adj.row] == 0) & (types[adj.col] == k)
        e = np.stack([adj.row[keep] - offs[0], adj.col[keep] - offs[k]], axis=1)
        _add_relation(rels, "movie", rel, names[k], e, counts["movie"], counts[names[k]])
    x = {}
    for k in range(3):
        f = _load_sparse(os.path.join(d, f"features_{k}.npz")).tocsr()
        if f.shape[0] != counts[names[k]]:
            raise fail(os.path.join(d, f"features_{k}.npz"), f"has {f.shape[0]} rows for {counts[names[k]]} "
                                                             f"{names[k]} nodes")
        fp = os.path.join(d, f"features_{k}.npz")
        x[names[k]] = _finite(fp, to_float_features(f, fp))
    label_path = os.path.join(d, "labels.npy")
    y = torch.from_numpy(_labels(label_path, _load_npy(label_path)))
    n = counts["movie"]
    if y.numel() != n:
        raise fail(os.path.join(d, "labels.npy"), f"has {y.numel()} labels for {n} movies (the target type needs "
                                                  "one label per node, -1 for unknown)")
    split = os.path.join(d, "train_val_test_idx.npz")
    try:
        with open_npz(split) as s:
            parts = {k: s[k] for k in ("train_idx", "val_idx", "test_idx")}
    except FileNotFoundError:
        raise fail(split, "no such file") from None
    except (KeyError, ValueError, OSError) as exc:
        raise fail(split, f"not an .npz with train_idx, val_idx and test_idx ({str(exc)[:60]})") from None
    names_of = [f"{split} ({k})" for k in parts]
    masks = _disjoint(names_of, [_checked_mask(w, v, y, n) for w, v in zip(names_of, parts.values())])
    hg = HeteroGraph(counts, x, rels, "movie", y, *masks, int(y.max()) + 1, {}, name or "imdb-magnn",
                     {"split": "shipped (400/400/3478)", "format": "magnn"})
    hg.metapaths["mam"] = hg.metapath("movie", "actor", "movie")
    hg.metapaths["mdm"] = hg.metapath("movie", "director", "movie")
    return hg.validate()


def load_hetero(path, target_type: Optional[str] = None, name: Optional[str] = None,
                split: Optional[int] = None) -> HeteroGraph:
    """Either layout, told apart by the files (MAGNN: adjM.npz; HeCo: labels.npy + meta-path .npz).
    ``split``: HeCo's 20 / 40 / 60 labelled nodes per class (default 20); MAGNN ships one split.

    Example:
        >>> import os, tempfile  # a HeCo folder of 4 papers: labels, paper-author pairs, the PAP meta-path, a split
        >>> import numpy as np, scipy.sparse as sp
        >>> d = tempfile.mkdtemp(); f = lambda name: os.path.join(d, name)
        >>> np.save(f("labels.npy"), np.array([0, 1, 0, 1]))
        >>> _ = open(f("pa.txt"), "w").write("0 0\\n1 1\\n2 0\\n3 1\\n")
        >>> sp.save_npz(f("pap.npz"), sp.coo_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]])))
        >>> for part, ids in (("train", [0, 1]), ("val", [2]), ("test", [3])):
        ...     np.save(f(f"{part}_20.npy"), np.array(ids))
        >>> hg = load_hetero(d)
        >>> hg.target, hg.num_nodes, sorted(hg.metapaths), int(hg.train_mask.sum())
        ('paper', {'paper': 4, 'author': 2}, ['pap'], 2)
    """
    if is_magnn_dir(path):
        if target_type is not None and str(target_type).lower() not in ("m", "movie"):
            raise fail(path, f"target_type {target_type!r}: MAGNN's IMDB labels movies only (target 'movie')")
        if split is not None:
            raise fail(path, f"split={split}: MAGNN's IMDB ships one split (train_val_test_idx.npz)")
        return load_magnn_imdb(path, name=name)
    if is_heco_dir(path):
        return load_heco(path, target_type=target_type, name=name, split=20 if split is None else split)
    raise fail(path, "neither the HeCo layout (labels.npy, <x><y>.txt, <x><y><x>.npz) nor MAGNN's IMDB (adjM.npz, "
                     "node_types.npy)")
