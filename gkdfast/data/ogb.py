"""OGB node-property-prediction directory layout (ogbn-arxiv, ogbn-products, ... as downloaded).

::

    <root>/raw/edge.csv.gz            "src,dst" per line, 0-based, no header
    <root>/raw/node-feat.csv.gz       N lines of comma-separated floats (optional: absent -> [N, 1] ones)
    <root>/raw/node-label.csv.gz      N lines, one class id (``nan`` / empty -> -1, unlabelled)
    <root>/raw/num-node-list.csv.gz   optional: one line with N
    <root>/split/<scheme>/{train,valid,test}.csv.gz   node ids, one per line

``<root>`` may also be the ``raw`` directory's parent given without ``raw/`` (files directly in it).
Edges are symmetrised, de-duplicated and self-loops dropped (OGB stores ogbn-arxiv directed and
ogbn-products one direction per pair; node classification uses them undirected).  The split
scheme is the only directory in ``split/`` (or the one named by ``scheme=``); the masks are that
split (``extras["split"] = "ogb:<scheme>"``).  Without ``split/``: random 20/30 per class from ``seed``.
Plain ``.csv`` files (not gzipped) are read too.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch

from gkdfast.data._util import check_edge_range, fail, mask_from_index, undirected_graph
from gkdfast.data.graphdata import GraphData
from gkdfast.data.splits import random_split
from gkdfast.data.text_tables import open_table_file, parse_numbers, read_errors, read_numbers

__all__ = ["load_ogb", "is_ogb_dir"]


def _find(base, stem):
    for ext in (".csv.gz", ".csv"):
        p = os.path.join(base, stem + ext)
        if os.path.exists(p):
            return p
    return None


def _raw_dir(root):
    raw = os.path.join(root, "raw")
    return raw if os.path.isdir(raw) else root


def is_ogb_dir(root) -> bool:
    """True when ``root`` (or its ``raw/`` folder) holds the edge file ``edge.csv.gz`` or ``edge.csv``.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> is_ogb_dir(root)
        False
        >>> os.mkdir(os.path.join(root, "raw")); open(os.path.join(root, "raw", "edge.csv.gz"), "w").close()
        >>> is_ogb_dir(root)
        True
    """
    return _find(_raw_dir(os.fspath(root)), "edge") is not None


def _first_line(path) -> bytes:
    """The first line that is not blank (the feature file's width)."""
    try:
        with open_table_file(path) as f:
            for line in f:
                if line.strip():
                    return line
            return b""
    except read_errors() as exc:
        raise fail(path, f"cannot read ({str(exc)[:60]})") from None


def _count_hint(raw, stem) -> Optional[int]:
    """OGB's num-edge-list: the edge count, to fill the edge table in place (a hint; never checked)."""
    path = _find(raw, stem)
    if path is None:
        return None
    try:
        nums = read_numbers(path, what=stem).reshape(-1)
    except ValueError:
        return None
    return int(nums[0]) if nums.numel() == 1 and int(nums[0]) >= 0 else None


def _read_labels(path) -> np.ndarray:
    """One label per line as float64 (``nan`` for an empty line or ``nan``: no label; blank lines at the
    end are not nodes).  The file (one short line per node) is read once; its numbers are parsed as a
    stream, and only when their count is not the line count (empty lines inside) are the lines parsed
    one by one, so that each label stays on its node."""
    try:
        with open_table_file(path) as f:
            text = f.read()
    except read_errors() as exc:
        raise fail(path, f"cannot read ({str(exc)[:60]})") from None
    lab = parse_numbers(text, torch.float64, source=path, what="node labels (one class id per line)").numpy()
    body = text.rstrip()  # the last line's newline, and blank lines after the last label
    if (body.count(b"\n") + 1 if body else 0) == lab.size:  # a count, no list of lines: the common case
        return lab
    lines = body.split(b"\n")
    out = np.full(len(lines), np.nan)
    for i, line in enumerate(lines):
        token = line.strip()
        if token:
            try:
                out[i] = float(token)
            except ValueError:
                raise fail(path, f"node labels: expected one class id per line, found {token[:40]!r} on line "
                                 f"{i + 1}") from None
    return out


def load_ogb(root, name: Optional[str] = None, seed: int = 0, scheme: Optional[str] = None) -> GraphData:
    """Reads an OGB node-property directory; see the module doc.

    Example:
        >>> d = load_ogb("dataset/ogbn_arxiv")  # doctest: +SKIP
        >>> d.extras["split"]  # doctest: +SKIP
        'ogb:time'
    """
    root = os.fspath(root)
    raw = _raw_dir(root)
    edge_path = _find(raw, "edge")
    if edge_path is None:
        raise fail(root, "no raw/edge.csv.gz (OGB node-property layout)")
    num_edges = _count_hint(raw, "num-edge-list")
    edges = read_numbers(edge_path, ncols=2, what="edge list",
                         expected=None if num_edges is None else 2 * num_edges).numpy()
    label_path = _find(raw, "node-label")
    if label_path is None:
        raise fail(raw, "no node-label.csv.gz")
    lab = _read_labels(label_path)
    n = lab.size
    nn_path = _find(raw, "num-node-list")
    if nn_path is not None:
        nums = read_numbers(nn_path, what="num-node-list").reshape(-1)
        if nums.numel() != 1:
            raise fail(nn_path, "node-property data has one graph: expected a single node count")
        if int(nums[0]) != n:
            raise fail(label_path, f"{n} labels but num-node-list says {int(nums[0])} nodes")
    y = np.where(np.isnan(lab), -1, lab).astype(np.int64)
    if y.size and int(y.min()) < -1:
        raise fail(label_path, "negative class id")
    check_edge_range(edge_path, edges[:, 0], edges[:, 1], n)
    feat_path = _find(raw, "node-feat")
    if feat_path is None:
        x = torch.ones(n, 1)
    else:
        ncol = _first_line(feat_path).count(b",") + 1
        flat = read_numbers(feat_path, torch.float32, ncols=ncol, what="node features (comma-separated floats)",
                            expected=n * ncol).reshape(-1)
        if flat.numel() != n * ncol:
            raise fail(feat_path, f"expected {n} rows of {ncol} floats, got {flat.numel()} values")
        x = flat.view(n, ncol)
    g = undirected_graph(edges[:, 0], edges[:, 1], n)
    yt = torch.from_numpy(y)
    num_classes = int(y.max()) + 1 if y.size else 0

    split_root = os.path.join(root, "split")
    extras = {"format": "ogb"}
    if os.path.isdir(split_root):
        schemes = sorted(d for d in os.listdir(split_root) if os.path.isdir(os.path.join(split_root, d)))
        if scheme is None:
            if len(schemes) != 1:
                raise fail(split_root, f"holds split schemes {schemes}; pick one with scheme=")
            scheme = schemes[0]
        if scheme not in schemes:
            raise fail(split_root, f"no split scheme {scheme!r} (found {schemes})")
        masks = []
        for part in ("train", "valid", "test"):
            sp = _find(os.path.join(split_root, scheme), part)
            if sp is None:
                raise fail(os.path.join(split_root, scheme), f"missing {part}.csv.gz")
            idx = read_numbers(sp, what=f"{part} ids").reshape(-1).numpy()
            if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise fail(sp, f"node id outside [0, {n})")
            masks.append(mask_from_index(idx, n) & (yt >= 0))
        if bool(((masks[0].long() + masks[1].long() + masks[2].long()) > 1).any()):
            raise fail(os.path.join(split_root, scheme), "train/valid/test overlap")
        extras["split"] = f"ogb:{scheme}"
    else:
        masks = list(random_split(yt, 20, 30, seed))
        extras["split"] = f"random(20/30 per class, seed={seed})"
    nm = name or os.path.basename(os.path.normpath(root)).replace("_", "-")
    return GraphData(g, x, yt, *masks, num_classes, nm, None, extras).validate()
