"""``.npz`` files: our own bundle (read + write) and the gnn-benchmark / APPNP layout.

Our bundle (``save_npz`` writes it, ``load(path)`` / ``load(path, format="npz")`` reads it):

===============  ==========================  =========================================
key              dtype / shape               meaning
===============  ==========================  =========================================
``edge_index``   int (any width) ``[2, E]``  edges ``src -> dst``, used **as given**
                                             (store both directions for an undirected
                                             graph; no symmetrising, no de-duplication)
``x``            float ``[N, F]``            node features (stored float32)
``y``            int ``[N]``                 class ids, ``-1`` = unlabelled
``train_mask``   bool ``[N]``                optional; ``val_mask``/``test_mask`` too.
                                             All three or none: without them a random
                                             20/30-per-class split is drawn from ``seed``
``sensitive``    int ``[N]``                 optional sensitive attribute
``num_classes``  int scalar                  optional (default ``max(y) + 1``)
``name``         str scalar                  optional (default: file name)
``edge_weight``  float ``[E]``               optional, finite
``extras_json``  str scalar                  optional: the data's JSON-able extras
                                             (split marker, label_number, format ...)
``extra__<k>``   any ``[N, ...]``            optional: per-node tensor extras
===============  ==========================  =========================================

``N`` is ``x.shape[0]``.  Files are read with ``allow_pickle=False``.

gnn-benchmark (Shchur et al.) keys ``adj_data/adj_indices/adj_indptr/adj_shape``,
``attr_*`` and ``labels``; the APPNP copy (Cora-ML) uses ``adj_matrix.data`` etc.  The stored
adjacency is directed (citations); it is symmetrised, de-duplicated and self-loops are dropped.
There is no public split: a random 20/30-per-class split is drawn from ``seed``.
"""
from __future__ import annotations

import contextlib
import json
import os
import zipfile
from typing import Optional

import numpy as np
import torch

from gkdfast._io import atomic_write
from gkdfast._checks import check_binary_sensitive
from gkdfast.data._util import (DataFormatError, check_edge_range, check_npz_members, check_sparse, dense_array,
                                fail, parse_json, to_float_features, undirected_graph)
from gkdfast.data.graphdata import GraphData, is_per_node
from gkdfast.data.mmap import EXTRA_PREFIX, _jsonable
from gkdfast.data.splits import random_split
from gkdfast.graph import Graph

__all__ = ["save_npz", "load_npz_bundle", "load_gnn_benchmark", "npz_kind"]

_MASKS = ("train_mask", "val_mask", "test_mask")


def _open(path):
    check_npz_members(path)  # (before numpy inflates anything; a missing file is np.load's to report)
    try:
        return np.load(os.fspath(path), allow_pickle=False)
    except FileNotFoundError:
        raise fail(path, "no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise fail(path, f"not a readable .npz file ({str(exc)[:80]})") from None


@contextlib.contextmanager
def _reading(path):
    """Opens ``path`` and turns what reading a damaged member raises (numpy's ValueError for a
    truncated array, zipfile's BadZipFile for a bad CRC, EOFError, OSError) into one-line
    DataFormatErrors naming the file; an object array keeps its own message."""
    with _open(path) as f:
        try:
            yield f
        except DataFormatError:
            raise
        except ValueError as exc:
            if "allow_pickle" in str(exc):  # object arrays need pickle: refuse
                raise fail(path, f"contains an object array ({str(exc)[:60]}); store plain numeric arrays") from None
            raise fail(path, f"has a truncated or malformed member ({str(exc)[:80]}); re-create the file") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise fail(path, f"is corrupt ({type(exc).__name__}: {str(exc)[:60]}); re-create the file") from None


def npz_kind(path) -> str:
    """``"npz"`` (our bundle), ``"gnn-benchmark"``, or raises ValueError (e.g. a split-only file).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from gkdfast.data import csbm
        >>> d = tempfile.mkdtemp()
        >>> save_npz(csbm(num_nodes=50), os.path.join(d, "g.npz"))
        >>> npz_kind(os.path.join(d, "g.npz"))
        'npz'
        >>> adj = dict(adj_data=np.ones(1), adj_indices=np.zeros(1), adj_indptr=np.array([0, 1]))  # a CSR matrix
        >>> np.savez(os.path.join(d, "a.npz"), **adj)
        >>> npz_kind(os.path.join(d, "a.npz"))
        'gnn-benchmark'
    """
    with _open(path) as f:
        keys = set(f.files)
    if "edge_index" in keys:
        return "npz"
    if {"adj_data", "adj_indices", "adj_indptr"} <= keys or {"adj_matrix.data", "adj_matrix.indices"} <= keys:
        return "gnn-benchmark"
    if keys and keys <= set(_MASKS):
        raise fail(path, "holds only split masks (train / val / test), not a graph: pass the graph as the data "
                         "(e.g. the Planetoid folder with name='cora') and these masks' folder as the split "
                         "files (gkdfast.data.with_split_files; gkdfast distill: --split-dir)")
    raise fail(path, f"unknown .npz layout (keys {sorted(keys)[:8]}); expected 'edge_index', 'x', 'y' "
                     "(gkdfast bundle) or gnn-benchmark 'adj_*'/'attr_*' arrays")


def save_npz(data: GraphData, path, compressed: bool = True) -> None:
    """Writes ``data`` as a gkdfast ``.npz`` bundle (see the module doc for the keys).

    ``load(path)`` gives back equal tensors (the graph's edge order is ``data.graph.edge_index``).  The
    file is written whole or not at all (a temporary file renamed into place), at ``path`` exactly
    (numpy's own savez would add ``.npz`` to a path without it).

    Example:
        >>> import os, tempfile
        >>> from gkdfast.data import csbm, load
        >>> path = os.path.join(tempfile.mkdtemp(), "g.npz")
        >>> save_npz(csbm(num_nodes=100), path)
        >>> load(path).num_nodes
        100
    """
    d = data.to("cpu")
    arrays = {
        "edge_index": d.graph.edge_index.to(torch.int64).numpy(),
        "x": d.x.to(torch.float32).numpy(),
        "y": d.y.to(torch.int64).numpy(),
        "train_mask": d.train_mask.numpy(), "val_mask": d.val_mask.numpy(), "test_mask": d.test_mask.numpy(),
        "num_classes": np.int64(d.num_classes),
        "name": np.str_(d.name),
    }
    if d.sensitive is not None:
        check_binary_sensitive(d.sensitive, "save_npz")  # (load would refuse the file it wrote)
        arrays["sensitive"] = d.sensitive.to(torch.int64).numpy()
    if d.graph.edge_weight is not None:
        arrays["edge_weight"] = d.graph.edge_weight.to(torch.float32).numpy()
    # The extras travel too: the split marker (without it every seed of a reloaded bundle would train on
    # the saved masks), the fairness split's label_number, and per-node tensors (Cold Brew's isolated
    # nodes, PubMed's feature mask) as extra__<key> arrays.
    arrays["extras_json"] = np.str_(json.dumps(_jsonable(d.extras)))
    for k, v in d.extras.items():
        if is_per_node(v, d.num_nodes):
            arrays[EXTRA_PREFIX + str(k)] = v.detach().cpu().numpy()
    save = np.savez_compressed if compressed else np.savez
    atomic_write(os.fspath(path), lambda f: save(f, **arrays))  # a file object: no suffix added


def load_npz_bundle(path, seed: int = 0, name: Optional[str] = None) -> GraphData:
    """Reads a gkdfast ``.npz`` bundle; see the module doc.  Random per-class split from ``seed``
    when the file has no masks.  A bundle written by :func:`save_npz` brings back the data's extras
    (``extras_json``, ``extra__<key>`` arrays), its split marker included, so an experiment re-draws a
    random split per seed as it would have in memory.

    Example:
        >>> import os, tempfile
        >>> from gkdfast.data import csbm
        >>> path = os.path.join(tempfile.mkdtemp(), "g.npz")
        >>> save_npz(csbm(num_nodes=100), path)
        >>> load_npz_bundle(path).extras["split"]   # csbm's own marker: seeds re-draw the split
        'random(20/30 per class, seed=0)'
    """
    with _reading(path) as f:
        keys = set(f.files)
        for k in ("edge_index", "x", "y"):
            if k not in keys:
                raise fail(path, f"missing array {k!r} (a gkdfast .npz needs edge_index, x, y)")
        arr = {k: f[k] for k in keys if k in {"edge_index", "x", "y", "sensitive", "num_classes", "name",
                                               "edge_weight", "extras_json", *_MASKS} or k.startswith(EXTRA_PREFIX)}
    ei, x, y = arr["edge_index"], arr["x"], arr["y"]
    if ei.ndim != 2 or ei.shape[0] != 2 or not np.issubdtype(ei.dtype, np.integer):
        raise fail(path, f"edge_index must be an integer [2, E] array, got {ei.dtype} {list(ei.shape)}")
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
                           or x.dtype == bool):
        raise fail(path, f"x must be a numeric [N, F] array, got {x.dtype} {list(x.shape)}")
    n = x.shape[0]
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise fail(path, f"y must be an integer [N={n}] array, got {y.dtype} {list(y.shape)}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise fail(path, "x contains NaN or inf")
    check_edge_range(path, ei[0], ei[1], n, "edge_index")
    if y.size and int(y.min()) < -1:
        raise fail(path, f"y has label {int(y.min())}; labels must be >= 0 (or -1 for unlabelled)")
    if "num_classes" in arr and np.ndim(arr["num_classes"]) != 0:
        raise fail(path, f"num_classes must be one number, got an array of shape {list(np.shape(arr['num_classes']))}")
    num_classes = int(arr["num_classes"]) if "num_classes" in arr else (int(y.max()) + 1 if y.size else 0)
    if y.size and int(y.max()) >= num_classes:
        raise fail(path, f"y has label {int(y.max())} but num_classes is {num_classes}")
    w = None
    if "edge_weight" in arr:
        w = torch.from_numpy(np.asarray(arr["edge_weight"], dtype=np.float32))
        if w.shape != (ei.shape[1],):
            raise fail(path, f"edge_weight must be [E={ei.shape[1]}], got {list(w.shape)}")
        if not bool(torch.isfinite(w).all()):
            raise fail(path, "edge_weight contains NaN or inf")
    g = Graph(torch.from_numpy(ei.astype(np.int64)), n, w)
    yt = torch.from_numpy(y.astype(np.int64))
    present = [k for k in _MASKS if k in arr]
    if present and len(present) != 3:
        raise fail(path, f"has {present} but not all of train_mask, val_mask, test_mask")
    if present:
        masks = []
        for k in _MASKS:
            m = arr[k]
            if m.dtype != bool or m.shape != (n,):
                raise fail(path, f"{k} must be a bool [N={n}] array, got {m.dtype} {list(m.shape)}")
            masks.append(torch.from_numpy(m.copy()))
        if bool(((masks[0].long() + masks[1].long() + masks[2].long()) > 1).any()):
            raise fail(path, "train_mask, val_mask and test_mask overlap")
        if any(bool((m & (yt < 0)).any()) for m in masks):
            raise fail(path, "a mask contains unlabelled nodes (y == -1)")
        split = "file"
    else:
        masks = list(random_split(yt, 20, 30, seed))
        split = f"random(20/30 per class, seed={seed})"
    sens = None
    if "sensitive" in arr:
        s = arr["sensitive"]
        if s.shape != (n,):
            raise fail(path, f"sensitive must be [N={n}], got {list(s.shape)}")
        from gkdfast.data.fairness import check_sensitive

        sens = torch.from_numpy(check_sensitive(path, np.asarray(s), "sensitive"))
    nm = name or (str(arr["name"]) if "name" in arr else os.path.splitext(os.path.basename(os.fspath(path)))[0])
    extras = {"split": split, "format": "npz"}
    if "extras_json" in arr and split == "file":  # saved by save_npz: the data's own extras, split marker included
        saved = parse_json(path, str(arr["extras_json"]), "JSON in extras_json")
        extras.update(saved if isinstance(saved, dict) else {})
        extras.update({k[len(EXTRA_PREFIX):]: torch.from_numpy(np.ascontiguousarray(arr[k])) for k in arr
                       if k.startswith(EXTRA_PREFIX)})
    data = GraphData(g, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), yt, *masks, num_classes, nm,
                     sens, extras)
    return data.validate()


def _csr(f, path, prefixes):
    import scipy.sparse as sp

    for p in prefixes:
        if p + "data" in f.files:
            try:
                m = sp.csr_matrix((f[p + "data"], f[p + "indices"], f[p + "indptr"]), shape=tuple(f[p + "shape"]))
            except (KeyError, ValueError) as exc:
                raise fail(path, f"broken sparse matrix {p}* ({str(exc)[:60]})") from None
            return check_sparse(m, path, f"{p}*")
    return None


def load_gnn_benchmark(path, seed: int = 0, name: Optional[str] = None) -> GraphData:
    """Reads a gnn-benchmark / APPNP ``.npz`` (Cora, CiteSeer, Cora-ML, Amazon, Coauthor...).

    Example:
        >>> d = load_gnn_benchmark("../shared/data/cora_ml/cora_ml.npz")
        >>> d.num_nodes, d.num_edges // 2
        (2995, 8158)
    """
    with _reading(path) as f:
        adj = _csr(f, path, ("adj_", "adj_matrix."))
        if adj is None:
            raise fail(path, "no adjacency (adj_data/adj_matrix.data) in this .npz")
        if adj.shape[0] != adj.shape[1]:
            raise fail(path, f"adjacency must be square, got {adj.shape}")
        n = adj.shape[0]
        attr = _csr(f, path, ("attr_", "attr_matrix."))
        if attr is None and "attr_matrix" in f.files:
            attr = np.asarray(f["attr_matrix"])
        if "labels" in f.files:
            labels = np.asarray(f["labels"]).astype(np.int64)
        else:
            lab = _csr(f, path, ("labels_", "labels."))
            if lab is None:
                raise fail(path, "no labels in this .npz")
            labels = _reduce_multilabel(dense_array(lab, path, "the label matrix"))
        class_names = [str(c) for c in f["class_names"]] if "class_names" in f.files else None
    if attr is None:
        x = torch.ones(n, 1)
    else:
        x = to_float_features(attr, path)
    if x.size(0) != n or labels.shape != (n,):
        raise fail(path, f"adjacency has {n} nodes but features/labels have {x.size(0)}/{labels.shape[0]} rows")
    coo = adj.tocoo()
    coo.eliminate_zeros()  # an explicitly stored 0 is no edge
    g = undirected_graph(coo.row, coo.col, n)
    y = torch.from_numpy(labels)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    tr, va, te = random_split(y, 20, 30, seed)
    nm = name or os.path.splitext(os.path.basename(os.fspath(path)))[0]
    extras = {"split": f"random(20/30 per class, seed={seed})", "format": "gnn-benchmark"}
    if class_names is not None:
        extras["class_names"] = class_names
    return GraphData(g, x, y, tr, va, te, num_classes, nm, None, extras).validate()


def _reduce_multilabel(mat: np.ndarray) -> np.ndarray:
    from gkdfast.data.matlab import reduce_multilabel

    return reduce_multilabel(mat)[0]


__all__ += ["DataFormatError"]
