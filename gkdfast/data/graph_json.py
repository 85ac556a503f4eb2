"""Graph-classification sets stored as one JSON edge-list object plus a label CSV (karateclub layout,
e.g. Reddit threads): ``graphs.json`` = ``{"<graph id>": [[u, v], ...]}`` with node ids ``0..n_g-1``
local to each graph (undirected), ``target.csv`` = header ``id,target``.

The graphs have no node features; like the usual treatment of featureless TU sets (PyG's
``OneHotDegree``), each node gets a one-hot of its degree, degrees at or above ``max_degree`` sharing
the last column.  A graph's node count is its largest node id + 1 (karateclub's graphs are
connected, so no node is missing from the edge list).  Self-loops are dropped and each undirected edge
is stored once per direction, as by every gkdfast reader (Reddit threads lists 247,549 pairs, 1,365 of
them self-loops: 246,184 edges remain).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from gkdfast.data._util import fail, parse_int_table, parse_json, undirected_graph

__all__ = ["is_graph_json_dir", "load_graph_json"]

GRAPHS_FILE, TARGET_FILE = "graphs.json", "target.csv"


def is_graph_json_dir(directory) -> bool:
    """True when ``directory`` holds ``graphs.json`` and ``target.csv``.

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> is_graph_json_dir(d)
        False
        >>> for f in ("graphs.json", "target.csv"): open(os.path.join(d, f), "w").close()
        >>> is_graph_json_dir(d)
        True
    """
    return all(os.path.isfile(os.path.join(directory, f)) for f in (GRAPHS_FILE, TARGET_FILE))


def _targets(path) -> dict:
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
        body = f.read()
    if header != ["id", "target"]:
        raise fail(path, f"expected the header 'id,target', got {','.join(header)!r}")
    table = parse_int_table(path, body, 2, "id,target rows", first_line=2)
    ids = table[:, 0]
    if np.unique(ids).size != ids.size:
        raise fail(path, "a graph id appears twice")
    return dict(zip(ids.tolist(), table[:, 1].tolist()))


def load_graph_json(directory, seed: int = 0, max_degree: int = 16):
    """Reads a karateclub-layout folder (``graphs.json`` + ``target.csv``) as a
    :class:`~gkdfast.data.GraphDataset` (graphs ordered by id; one-hot degree features
    ``[N, max_degree + 1]``; stratified random 80/10/10 split of the graphs from ``seed``).

    Example:
        >>> ds = load_graph_json("../shared/data/reddit_threads_10k")
        >>> len(ds), ds.num_nodes, ds.graph.num_edges // 2, ds.num_classes, ds.num_features
        (10000, 237390, 246184, 2, 17)
    """
    from gkdfast.data.tu import GraphDataset, _stratified_split

    directory = os.fspath(directory)
    if not isinstance(max_degree, int) or max_degree < 1:
        raise ValueError(f"load_graph_json: max_degree must be a positive int, got {max_degree!r}")
    gpath, tpath = os.path.join(directory, GRAPHS_FILE), os.path.join(directory, TARGET_FILE)
    if not is_graph_json_dir(directory):
        raise fail(directory, f"needs {GRAPHS_FILE} and {TARGET_FILE}")
    with open(gpath, encoding="utf-8") as f:
        raw = parse_json(gpath, f.read())
    if not isinstance(raw, dict) or not raw:
        raise fail(gpath, "expected a non-empty JSON object {graph id: [[u, v], ...]}")
    targets = _targets(tpath)
    if any(not (isinstance(k, str) and k.isdigit() and str(int(k)) == k) for k in raw):  # ("01" read as 1)
        raise fail(gpath, "graph ids (the object's keys) must be integers written without leading zeros")
    ids = sorted(int(k) for k in raw)
    missing = sorted(set(ids) - set(targets))
    if missing:
        raise fail(tpath, f"no label for graph id {missing[0]} ({len(missing)} graphs unlabelled)")
    src, dst, sizes = [], [], np.zeros(len(ids), np.int64)
    offset = 0
    for g, gid in enumerate(ids):
        try:
            e = np.asarray(raw[str(gid)], dtype=np.int64).reshape(-1, 2)
        except (ValueError, TypeError):
            raise fail(gpath, f"graph {gid}: expected a list of [u, v] integer pairs") from None
        if e.size and int(e.min()) < 0:
            raise fail(gpath, f"graph {gid}: negative node id {int(e.min())}")
        n = int(e.max()) + 1 if e.size else 1  # an edgeless graph is one isolated node
        sizes[g] = n
        src.append(e[:, 0] + offset)
        dst.append(e[:, 1] + offset)
        offset += n
    n_total = offset
    graph = undirected_graph(np.concatenate(src), np.concatenate(dst), n_total)
    deg = (graph.rowptr[1:] - graph.rowptr[:-1]).clamp(max=max_degree)
    x = torch.nn.functional.one_hot(deg.long(), max_degree + 1).float()
    ptr = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(sizes, out=ptr[1:])
    batch = np.repeat(np.arange(len(ids)), sizes)
    labels = np.array([targets[i] for i in ids])
    label_values, y = np.unique(labels, return_inverse=True)
    tr, va, te = _stratified_split(y, seed)
    name = os.path.basename(os.path.normpath(directory)).lower()
    return GraphDataset(graph, x, torch.from_numpy(batch.astype(np.int64)), torch.from_numpy(ptr),
                        torch.from_numpy(y.astype(np.int64)), int(label_values.size), name,
                        [int(v) for v in label_values], tr, va, te,
                        {"format": "graph-json", "features": f"one-hot degree (>= {max_degree} share a column)",
                         "split": f"stratified random 80/10/10 of graphs, seed={seed}"})
