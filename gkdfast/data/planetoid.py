"""Planetoid raw files (``ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``) with the public split.

Assembly follows Kipf & Welling's reading of the files: features = rows of ``allx`` then ``tx``,
with the ``tx`` rows placed at the node ids listed in ``test.index``; labels likewise from
``ally``/``ty``; edges from the adjacency dict, symmetrised, de-duplicated, self-loops dropped.
Public split: train = the first ``len(y)`` nodes, val = the next 500, test = ``test.index``.

Quirks handled:

* CiteSeer: ``test.index`` spans ``[2312, 3326]`` (1015 slots) but ``tx`` has only 1000 rows.
  The 15 ids without a row (called "isolated" in Kipf's code, though they do have 16 edge ends
  in the graph dict) get all-zero features and label ``-1`` (unlabelled; PyG gives them label 0
  instead).  They are in no mask.
* PubMed without ``ind.pubmed.allx`` (as in ``shared/data``): features exist only for the
  ``x`` (train) and ``tx`` (test) rows; every other row is zero and
  ``extras["feature_mask"]`` marks the nodes that have real features.  A warning says so.

Pickles are read with a restricted unpickler (numpy / scipy.sparse / defaultdict only), so a
malicious file cannot run code, and the Python-2 module path ``scipy.sparse.csr`` is mapped to
``scipy.sparse`` (SciPy 2 drops the old path).
"""
from __future__ import annotations

import glob
import os
import pickle
import warnings
from typing import Optional

import numpy as np
import torch

from gkdfast.data._util import dense_array, fail, mask_from_index, pick_dataset, undirected_graph
from gkdfast.data.graphdata import GraphData

__all__ = ["load_planetoid", "planetoid_names"]

_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("collections", "defaultdict"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "int"),
    ("__builtin__", "list"), ("__builtin__", "dict"), ("__builtin__", "int"),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse.csc", "scipy.sparse._csc",
                      "scipy.sparse.coo", "scipy.sparse._coo", "scipy.sparse"):
            import scipy.sparse as sp
            if name in ("csr_matrix", "csc_matrix", "coo_matrix"):
                return getattr(sp, name)
        if (module, name) in _ALLOWED:
            if module == "__builtin__":
                module = "builtins"
            if module.startswith("numpy.core"):
                import numpy.core.multiarray as ma  # noqa: F401 - numpy 2 maps it to numpy._core
                return getattr(np._core.multiarray if hasattr(np, "_core") else ma, name)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a Planetoid pickle")


def _load_pickle(path):
    try:
        with open(path, "rb") as f:
            return _Unpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise fail(path, "missing Planetoid file") from None
    except Exception as exc:  # truncated / not a pickle / unexpected class
        raise fail(path, f"not a readable Planetoid pickle ({type(exc).__name__}: {str(exc)[:80]})") from None


def planetoid_names(directory) -> list:
    """Dataset names with an ``ind.<name>.graph`` file in ``directory`` (sorted).

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for f in ("ind.cora.graph", "ind.cora.x", "ind.citeseer.graph"): open(os.path.join(d, f), "w").close()
        >>> planetoid_names(d)
        ['citeseer', 'cora']
    """
    return sorted(os.path.basename(p)[4:-6] for p in glob.glob(os.path.join(os.fspath(directory), "ind.*.graph")))


def _as_dense_labels(m, path=None):
    return dense_array(m, path, "the label matrix")


def load_planetoid(directory, name: Optional[str] = None) -> GraphData:
    """Reads ``ind.<name>.*`` from ``directory``; ``name`` is needed when several datasets are there.

    Returns a :class:`GraphData` with the public split (``extras["split"] == "public"``).

    Example:
        >>> d = load_planetoid("../shared/data/planetoid", "cora")
        >>> d.num_nodes, d.num_edges // 2, d.num_features, d.num_classes
        (2708, 5278, 1433, 7)
    """
    directory = os.fspath(directory)
    name = pick_dataset(directory, planetoid_names(directory), name, "Planetoid")
    p = lambda s: os.path.join(directory, f"ind.{name}.{s}")  # noqa: E731
    x, y, tx, ty, ally, graph = (_load_pickle(p(s)) for s in ("x", "y", "tx", "ty", "ally", "graph"))
    has_allx = os.path.exists(p("allx"))
    allx = _load_pickle(p("allx")) if has_allx else None
    try:
        test_index = np.loadtxt(p("test.index"), dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise fail(p("test.index"), f"cannot read test index ({str(exc)[:60]})") from None
    y, ty, ally = _as_dense_labels(y), _as_dense_labels(ty), _as_dense_labels(ally)
    if tx.shape[0] != test_index.size or ty.shape[0] != test_index.size:
        raise fail(directory, f"{name}: tx/ty have {tx.shape[0]}/{ty.shape[0]} rows but test.index has {test_index.size}")
    if not isinstance(graph, dict):
        raise fail(p("graph"), "expected a pickled adjacency dict")

    n_all = ally.shape[0]
    lo, hi = int(test_index.min()), int(test_index.max())
    if lo < n_all:
        raise fail(p("test.index"), f"test ids start at {lo}, inside the {n_all} allx/ally rows")
    n = max(hi + 1, n_all + tx.shape[0])
    n_feat = tx.shape[1]
    num_classes = ty.shape[1]

    # Features: allx rows at [0, n_all), tx rows at their test ids; rows without data stay zero.
    feats = np.zeros((n, n_feat), dtype=np.float32)
    feature_mask = np.zeros(n, dtype=bool)
    if allx is not None:
        feats[:allx.shape[0]] = dense_array(allx, p("allx"), "the feature matrix")
        feature_mask[:allx.shape[0]] = True
    else:
        feats[:x.shape[0]] = dense_array(x, p("x"), "the feature matrix")
        feature_mask[:x.shape[0]] = True
        warnings.warn(f"Planetoid {name}: ind.{name}.allx is missing; only the {x.shape[0]} train and "
                      f"{tx.shape[0]} test nodes have features (others are zero, see extras['feature_mask'])",
                      stacklevel=2)
    feats[test_index] = dense_array(tx, p("tx"), "the feature matrix")
    feature_mask[test_index] = True

    labels = np.full(n, -1, dtype=np.int64)
    has = ally.sum(1) > 0
    labels[:n_all][has] = ally.argmax(1)[has]
    has_t = ty.sum(1) > 0
    labels[test_index[has_t]] = ty.argmax(1)[has_t]

    src, dst = [], []
    for u, nbrs in graph.items():
        src.extend([u] * len(nbrs))
        dst.extend(nbrs)
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    n = max(n, int(src.max()) + 1 if src.size else 0, int(dst.max()) + 1 if dst.size else 0)
    if n > feats.shape[0]:  # graph mentions nodes with no row at all: zero rows, unlabelled
        feats = np.vstack([feats, np.zeros((n - feats.shape[0], n_feat), np.float32)])
        labels = np.concatenate([labels, np.full(n - labels.size, -1, np.int64)])
        feature_mask = np.concatenate([feature_mask, np.zeros(n - feature_mask.size, bool)])
    g = undirected_graph(src, dst, n)

    n_train = y.shape[0]
    train = mask_from_index(np.arange(n_train), n)
    val = mask_from_index(np.arange(n_train, min(n_train + 500, n)), n)
    test = mask_from_index(np.sort(test_index), n)
    test &= torch.from_numpy(labels >= 0)
    extras = {"split": "public", "format": "planetoid",
              "feature_mask": torch.from_numpy(feature_mask)}
    data = GraphData(g, torch.from_numpy(feats), torch.from_numpy(labels), train, val, test, int(num_classes),
                     name, None, extras)
    return data.validate()
