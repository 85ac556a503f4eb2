"""MUSAE / karateclub node-classification graphs (Facebook Page-Page, Twitch, GitHub, Deezer, LastFM...).

Files in one directory, found by suffix (a common prefix such as ``musae_DE_`` or ``facebook_``
names the dataset; ``name=`` picks one if several are present):

* ``*edges.csv``: header + two integer columns (``id_1,id_2`` / ``from,to`` / ``node_1,node_2``),
  undirected; symmetrised, de-duplicated, self-loops dropped.
* ``*target.csv``: header; the node id column is ``new_id`` if present (Twitch), else ``id``, else the
  first column; the label column is the first of ``page_type``, ``mature``, ``ml_target``, ``target``,
  ``label`` present, else the last column.  Label values are mapped to ``0..C-1`` in sorted order
  (``extras["class_names"]``; Twitch ``False/True`` -> ``0/1``).  Nodes missing from it get ``-1``.
* features, either ``*features.json`` / ``*.json`` ``{"<node id>": [feature index, ...]}`` made into a
  binary multi-hot ``[N, F]`` matrix (``F`` = largest index + 1, or ``feature_dim=`` to force a shared
  width, e.g. 3170 for every Twitch graph), or a karateclub ``*features.csv`` with
  ``node_id,feature_id,value`` rows.  No feature file (GitHub as shipped here): ``x`` is the
  ``[N, 1]`` all-ones column and ``extras["featureless"] = True``.

``N`` = 1 + the largest node id in any of the files (Twitch FR: 2 nodes appear only in the
target file; they get zero features and no edges).  No public split: random 20/30 per class from
``seed``.
"""
from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np
import torch

from gkdfast.data._util import PICK_ONE, csv_rows, encode_labels, fail, parse_int_table, parse_json, undirected_graph
from gkdfast.data.text_tables import parse_numbers
from gkdfast.data.graphdata import GraphData
from gkdfast.data.splits import random_split

__all__ = ["load_musae", "musae_prefixes"]

_LABEL_COLS = ("page_type", "mature", "ml_target", "target", "label")


def musae_prefixes(directory) -> list:
    """Dataset prefixes with an ``<prefix>edges.csv`` in ``directory``.

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> for f in ("musae_git_edges.csv", "musae_git_target.csv", "ENGB_edges.csv"):
        ...     open(os.path.join(d, f), "w").close()
        >>> musae_prefixes(d)
        ['ENGB_', 'musae_git_']
    """
    return sorted(os.path.basename(p)[:-len("edges.csv")] for p in glob.glob(os.path.join(directory, "*edges.csv")))


def _pick(directory, prefix, suffixes):
    for s in suffixes:
        p = os.path.join(directory, prefix + s)
        if os.path.exists(p):
            return p
    return None


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise fail(path, "not UTF-8 text") from None


def _feature_width(cols: np.ndarray, feature_dim: Optional[int], path) -> int:
    """Columns of the feature matrix: one past the largest feature index, or ``feature_dim`` when given
    (refused when an index does not fit)."""
    width = int(cols.max()) + 1 if cols.size else 0
    if feature_dim is None:
        return width
    if feature_dim < width:
        raise fail(path, f"feature index {width - 1} >= feature_dim={feature_dim}")
    return int(feature_dim)


def load_musae(directory, name: Optional[str] = None, seed: int = 0, feature_dim: Optional[int] = None) -> GraphData:
    """Reads a MUSAE-style directory; see the module doc.

    Example:
        >>> d = load_musae("../shared/data/twitch/ENGB")
        >>> d.num_nodes, d.num_edges // 2, d.num_classes
        (7126, 35324, 2)
    """
    directory = os.fspath(directory)
    prefixes = musae_prefixes(directory)
    if not prefixes:
        raise fail(directory, "no *edges.csv file (MUSAE layout)")
    if len(prefixes) > 1:
        if name is None:
            raise fail(directory, f"holds several MUSAE graphs {prefixes}; {PICK_ONE}")
        hits = [p for p in prefixes if name.lower() in p.lower()]
        if len(hits) != 1:
            raise fail(directory, f"name={name!r} matches {hits or 'none'} of {prefixes}")
        prefix = hits[0]
    else:
        prefix = prefixes[0]
    edge_path = os.path.join(directory, prefix + "edges.csv")
    target_path = _pick(directory, prefix, ("target.csv",))
    if target_path is None:
        raise fail(directory, f"no {prefix}target.csv next to {prefix}edges.csv")
    feat_json = _pick(directory, prefix, ("features.json", ".json"))
    feat_csv = _pick(directory, prefix, ("features.csv",))

    text = _read_text(edge_path)
    head, _, body = text.partition("\n")
    header = any(c.isalpha() for c in head)
    if header:
        text = body
    edges = parse_int_table(edge_path, text, 2, "edge list", first_line=2 if header else 1)

    rows = csv_rows(target_path, _read_text(target_path))
    if len(rows) < 2:
        raise fail(target_path, "empty target file (need a header and one row per node)")
    header = [h.strip() for h in rows[0]]
    id_col = header.index("new_id") if "new_id" in header else (header.index("id") if "id" in header else 0)
    lab_col = next((header.index(c) for c in _LABEL_COLS if c in header), len(header) - 1)
    try:
        ids = np.array([int(r[id_col]) for r in rows[1:] if r], dtype=np.int64)
        raw_labels = [r[lab_col].strip() for r in rows[1:] if r]
    except (ValueError, IndexError):
        raise fail(target_path, f"bad row: expected integer '{header[id_col]}' and a '{header[lab_col]}' column") from None
    if ids.size and int(ids.min()) < 0:
        raise fail(target_path, "negative node id")
    # Numeric labels sort numerically, other values as text.
    try:
        lab_vals = np.array([int(v) for v in raw_labels])
    except ValueError:
        lab_vals = np.array(raw_labels)
    codes, class_names = encode_labels(lab_vals)
    # Some files repeat a node (Twitch FR lists 2 nodes twice); fine if the label agrees.
    uniq, first = np.unique(ids, return_index=True)
    if uniq.size != ids.size:
        seen = np.full(int(ids.max()) + 1, -1, np.int64)
        seen[ids[first]] = codes[first]
        if bool((seen[ids] != codes).any()):
            bad = int(ids[seen[ids] != codes][0])
            raise fail(target_path, f"node {bad} is listed twice with different labels")

    feats_idx = None
    if feat_json is not None:
        try:
            obj = parse_json(feat_json, _read_text(feat_json))
            feats_idx = {int(k): np.asarray(v, dtype=np.int64).reshape(-1) for k, v in obj.items()}
        except (ValueError, TypeError) as exc:
            raise fail(feat_json, f"expected JSON {{node id: [feature index, ...]}} ({str(exc)[:60]})") from None
        neg = [k for k in feats_idx if k < 0]
        if neg:  # a key "-1" would otherwise index the last node
            raise fail(feat_json, f"negative node id {neg[0]} as a key")
    elif feat_csv is not None:
        t = _read_text(feat_csv)
        h, _, b = t.partition("\n")
        has_header = any(c.isalpha() for c in h)  # as for the edge list: a first row of numbers is data
        tab = parse_numbers(b if has_header else t, torch.float64, ncols=3, source=feat_csv,
                            what="rows node_id,feature_id,value", first_line=2 if has_header else 1).numpy()
        fractional = tab[:, :2] != np.floor(tab[:, :2])
        if fractional.any():
            row = int(np.argwhere(fractional)[0][0])
            raise fail(feat_csv, f"node ids and feature indices must be integers, got {tab[row, :2].tolist()} "
                                 f"(data row {row + 1})")

    n = 0
    for arr in (edges.reshape(-1), ids):
        if arr.size:
            n = max(n, int(arr.max()) + 1)
    if edges.size and int(edges.min()) < 0:
        raise fail(edge_path, "negative node id")
    if feats_idx:
        n = max(n, max(feats_idx) + 1)

    extras = {"format": "musae", "class_names": class_names, "label_column": header[lab_col],
              "duplicate_target_rows": int(ids.size - uniq.size)}
    if feats_idx is not None:
        rows_i = np.concatenate([np.full(v.size, k, np.int64) for k, v in feats_idx.items()]) if feats_idx else \
            np.zeros(0, np.int64)
        cols_i = np.concatenate(list(feats_idx.values())) if feats_idx else np.zeros(0, np.int64)
        if cols_i.size and int(cols_i.min()) < 0:
            raise fail(feat_json, "negative feature index")
        x = torch.zeros(n, _feature_width(cols_i, feature_dim, feat_json))
        x[torch.from_numpy(rows_i), torch.from_numpy(cols_i)] = 1.0
    elif feat_csv is not None:
        r, c, v = tab[:, 0].astype(np.int64), tab[:, 1].astype(np.int64), tab[:, 2].astype(np.float32)
        if r.size and (int(r.min()) < 0 or int(c.min()) < 0):
            raise fail(feat_csv, "negative node id or feature index")
        n = max(n, int(r.max()) + 1 if r.size else 0)
        x = torch.zeros(n, _feature_width(c, feature_dim, feat_csv))
        x[torch.from_numpy(r), torch.from_numpy(c)] = torch.from_numpy(v)
    else:
        x = torch.ones(n, 1)
        extras["featureless"] = True

    y = torch.full((n,), -1, dtype=torch.int64)
    y[torch.from_numpy(ids)] = torch.from_numpy(codes)
    g = undirected_graph(edges[:, 0], edges[:, 1], n)
    tr, va, te = random_split(y, 20, 30, seed)
    extras["split"] = f"random(20/30 per class, seed={seed})"
    nm = prefix.strip("_").lower() or os.path.basename(directory.rstrip(os.sep)).lower()
    if nm.startswith("musae_"):  # LINKX's Twitch copy: musae_DE_ -> twitch-de
        nm = ("twitch-" if "twitch" in directory.lower() else "") + nm[len("musae_"):]
    return GraphData(g, x, y, tr, va, te, len(class_names), nm.lower(), None, extras).validate()
