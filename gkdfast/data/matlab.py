"""MATLAB ``.mat`` graphs (BlogCatalog, Wiki, Flickr-attributed ...): ``network`` + ``feature`` + ``group``.

Variables looked up (first one present wins):

* adjacency: ``network``, ``Network``, ``A``, ``adj`` -- square (sparse or dense), symmetrised,
  de-duplicated, self-loops dropped;
* features: ``feature``, ``Attributes``, ``attributes``, ``features``, ``X`` -- absent: ``x`` is
  the ``[N, 1]`` all-ones column;
* labels: ``group``, ``Label``, ``labels``, ``label``, ``Y`` -- either an ``[N, C]`` indicator
  matrix or an ``[N]`` / ``[N, 1]`` vector of class ids.

**Multi-label reduction** (single-label node classification needs one class per node): from an
``[N, C]`` indicator matrix, columns that no node uses are dropped and the rest renumbered
``0..C'-1`` in column order (``extras["label_columns"]`` maps new id -> original column).  A node
with exactly one label keeps it.  A node with several labels gets the one among them that is
**most frequent over the whole dataset** (ties: lowest column); a node with none gets ``-1``
(unlabelled).  ``extras["num_labels_per_node"]`` keeps the original counts.  BlogCatalog and Wiki
as shipped here are single-label (Wiki has 2 empty columns -> 17 classes).

No public split: random 20/30 per class from ``seed``.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
import torch

from gkdfast.data._util import check_sparse, dense_array, fail, to_float_features, undirected_graph
from gkdfast.data.graphdata import GraphData
from gkdfast.data.splits import random_split

__all__ = ["load_mat", "reduce_multilabel"]

_ADJ = ("network", "Network", "A", "adj")
_FEAT = ("feature", "Attributes", "attributes", "features", "X")
_LAB = ("group", "Label", "labels", "label", "Y")


def reduce_multilabel(ind: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[N, C]`` 0/1 indicator -> (``y [N]`` int64 with -1 for none, kept column ids, labels per node).

    Rule (see module doc): drop empty columns; several labels -> the globally most frequent one.

    Example:
        >>> reduce_multilabel(np.array([[1, 0, 1], [0, 0, 1], [0, 0, 0]]))[0]
        array([ 1,  1, -1])
    """
    ind = np.asarray(ind) != 0
    counts = ind.sum(0)
    cols = np.nonzero(counts)[0]
    ind = ind[:, cols]
    counts = counts[cols]
    per_node = ind.sum(1)
    # Score each of a node's labels by global frequency; argmax picks the most frequent (first on ties).
    score = np.where(ind, counts[None, :].astype(np.int64) + 1, 0)
    y = score.argmax(1).astype(np.int64)
    y[per_node == 0] = -1
    return y, cols, per_node


def _get(m, names):
    for k in names:
        if k in m:
            return m[k]
    return None


def load_mat(path, seed: int = 0, name: Optional[str] = None) -> GraphData:
    """Reads a ``.mat`` attributed graph; see the module doc for variables and label reduction.

    Example:
        >>> d = load_mat("../shared/data/blogcatalog/BlogCatalog.mat")
        >>> d.num_nodes, d.num_edges // 2, d.num_features, d.num_classes
        (5196, 171743, 8189, 6)
    """
    import scipy.io

    try:
        m = scipy.io.loadmat(os.fspath(path))
    except FileNotFoundError:
        raise fail(path, "no such file") from None
    except Exception as exc:  # scipy raises several types for a broken file
        raise fail(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {str(exc)[:60]})") from None
    adj = _get(m, _ADJ)
    if adj is None:
        raise fail(path, f"no adjacency variable (looked for {', '.join(_ADJ)})")
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise fail(path, f"adjacency must be square, got {adj.shape}")
    n = adj.shape[0]
    import scipy.sparse as sp

    coo = sp.coo_matrix(check_sparse(adj, path, "the adjacency") if sp.issparse(adj) else adj)
    coo.eliminate_zeros()  # an explicitly stored 0 is no edge
    g = undirected_graph(coo.row, coo.col, n)
    feat = _get(m, _FEAT)
    x = torch.ones(n, 1) if feat is None else to_float_features(feat, path)
    lab = _get(m, _LAB)
    if lab is None:
        raise fail(path, f"no label variable (looked for {', '.join(_LAB)})")
    lab = dense_array(lab, path, "the label variable")
    if lab.ndim == 2 and lab.shape[0] == 1 and lab.shape[1] == n and n > 1:  # savemat's 1 x N label vector
        lab = lab.reshape(-1)
    extras = {"format": "mat"}
    if lab.ndim == 2 and lab.shape[1] > 1:
        if lab.shape[0] != n:
            raise fail(path, f"label matrix has {lab.shape[0]} rows for {n} nodes")
        y, cols, per_node = reduce_multilabel(lab)
        extras["label_columns"] = cols.tolist()
        extras["num_labels_per_node"] = torch.from_numpy(per_node.astype(np.int64))
        extras["multi_label"] = bool((per_node > 1).any())
        num_classes = int(cols.size)
    else:
        raw = lab.reshape(-1)
        if raw.size != n:
            raise fail(path, f"label vector has {raw.size} entries for {n} nodes")
        classes, y = np.unique(raw, return_inverse=True)
        y = y.astype(np.int64)
        num_classes = int(classes.size)
        extras["class_values"] = classes.tolist()
    if x.size(0) != n:
        raise fail(path, f"features have {x.size(0)} rows for {n} nodes")
    yt = torch.from_numpy(y)
    tr, va, te = random_split(yt, 20, 30, seed)
    extras["split"] = f"random(20/30 per class, seed={seed})"
    nm = name or os.path.splitext(os.path.basename(os.fspath(path)))[0].lower()
    return GraphData(g, x, yt, tr, va, te, num_classes, nm, None, extras).validate()
