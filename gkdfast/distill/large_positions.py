"""NOSMOG's student input at scale: the node features followed by DeepWalk position features, as one
memory-mapped ``[N, F + dim]`` float32 file next to the teacher cache.

The positions come from :func:`gkdfast.distill.positional.streaming_deepwalk` (O(N·dim) memory:
the walks are never stored).  The joined matrix is written in row blocks, so the features are never
copied whole into RAM, and it is mapped back like the teacher's outputs: a student batch pages in
its rows only.  The file is keyed by the features, the graph and the walk settings, so a rerun (or
another method or rank) maps it instead of training DeepWalk again.

Under DDP the first rank computes and writes the file (with the threads of every rank of its
machine, which are idle meanwhile) while the other ranks poll for it, not in a collective: DeepWalk
over millions of nodes can outlast a collective's timeout.  A failure on the first rank leaves an
``error.txt`` beside the file, which stops the others with its message.  Every rank must see
``cache_dir`` (on several machines: a shared file system); the ranks first check they agree on the key.
Examples: :func:`position_inputs` and :func:`positions_ready`.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from gkdfast._io import atomic_write
from gkdfast.distill.teacher_cache import hash_tensor

__all__ = ["position_inputs", "position_settings", "positions_path", "positions_ready", "estimate_positions",
           "LARGE_POSITION_DEFAULTS"]

# Bump when the file's meaning changes (the walk definition, the layout): old files then miss.
POSITIONS_FORMAT = 1
_ROWS_PER_BLOCK = 65536
_POLL_SECONDS = 0.5
# The pipeline's own position settings, used unless --set gives the recipe's: NOSMOG's Cora setting
# (5 walks per node, word2vec's step 0.025) costs 5 DeepWalk passes over millions of nodes, while one
# walk per node at step 0.1 already recovers the planted communities (docs/scale.md, NOSMOG: 2.45 M
# nodes in 156 s; at step 0.025 one walk per node learns nothing from the near-zero initial vectors).
LARGE_POSITION_DEFAULTS = {"walks_per_node": 1, "pos_lr": 0.1}
# The recipe attributes that set the positions (NOSMOG's names) -> streaming_deepwalk's arguments.
_RECIPE_ATTRS = {"pos_dim": "dim", "walk_length": "walk_length", "walks_per_node": "walks_per_node",
                 "window": "window", "pos_negative": "negative", "pos_lr": "lr"}


def position_settings(methods, overrides: dict, seed: int) -> dict:
    """The DeepWalk settings of ``methods`` (recipes with position features) from their recipes, the
    pipeline defaults and ``overrides`` (``{method: {param: value}}``), plus ``seed``; the methods must
    agree (they share one file).

    Example:
        >>> position_settings(["nosmog"], {"nosmog": {"pos_dim": 16}}, seed=3)["dim"]
        16
    """
    from gkdfast.distill import recipes

    found = []
    for m in methods:
        r = recipes.get(m, **{**LARGE_POSITION_DEFAULTS, **overrides.get(m, {})})
        found.append({arg: getattr(r, attr) for attr, arg in _RECIPE_ATTRS.items()})
    if any(f != found[0] for f in found[1:]):
        raise ValueError(f"distill_large: {', '.join(methods)} set different position features")
    return {**found[0], "seed": int(seed)}


def positions_path(data, cache_dir: str, settings: dict) -> str:
    """``cache_dir/positions-<key>/inputs.f32``, the key a SHA-256 of (format, walk settings, N,
    features, graph structure).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=50, seed=0)
        >>> positions_path(d, "c", {"dim": 4}) != positions_path(d, "c", {"dim": 8})
        True
    """
    h = hashlib.sha256()
    h.update(f"positions{POSITIONS_FORMAT};{json.dumps(settings, sort_keys=True)};{data.graph.num_nodes}".encode())
    hash_tensor(h, data.x)
    hash_tensor(h, data.graph.rowptr)
    hash_tensor(h, data.graph.col)
    return os.path.join(cache_dir, f"positions-{h.hexdigest()[:32]}", "inputs.f32")


def positions_ready(path: str, n: int, width: int) -> bool:
    """Whether ``path`` holds a complete ``[n, width]`` float32 matrix (it appears only when whole).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "inputs.f32")
        >>> positions_ready(path, 3, 2)
        False
        >>> torch.zeros(3, 2).numpy().tofile(path)
        >>> positions_ready(path, 3, 2), positions_ready(path, 3, 4)
        (True, False)
    """
    return os.path.exists(path) and os.path.getsize(path) == n * width * 4


def estimate_positions(n: int, f: int, dim: int, walks_per_node: int) -> dict:
    """Bytes the positions stage allocates: the two ``[N, dim]`` DeepWalk matrices, the walk counts and
    alias table (48 bytes per node while the table is built: counts^0.75, entries, scaled weights and
    the two work lists), the start permutations, and one block of joined rows.

    Example:
        >>> sorted(estimate_positions(1000, 100, 64, 5))
        ['DeepWalk matrices', 'counts and alias table', 'joined row block', 'walk starts']
    """
    return {"DeepWalk matrices": 2.0 * n * dim * 4, "counts and alias table": 48.0 * n,
            "walk starts": 8.0 * n * walks_per_node, "joined row block": 2.0 * min(n, _ROWS_PER_BLOCK) * (f + dim) * 4}


def _write_joined(path: str, x: Tensor, p: Tensor) -> None:
    """Writes ``[x ; p]`` row block by row block (x may be memory-mapped: only a block is paged in)."""
    def write(f):
        for start in range(0, x.size(0), _ROWS_PER_BLOCK):
            stop = min(start + _ROWS_PER_BLOCK, x.size(0))
            block = torch.cat([x[start:stop].float(), p[start:stop].float()], dim=1)
            f.write(np.ascontiguousarray(block.numpy()).tobytes())

    atomic_write(path, write)


def _compute(data, path: str, settings: dict, threads: int) -> None:
    from gkdfast.distill.positional import streaming_deepwalk

    before = torch.get_num_threads()
    torch.set_num_threads(max(before, threads))
    try:
        p = streaming_deepwalk(data.graph, settings["dim"], settings["walk_length"], settings["walks_per_node"],
                               settings["window"], settings["negative"], settings["lr"], settings["seed"])
    finally:
        torch.set_num_threads(before)
    _write_joined(path, data.x, p)
    # provenance for a person looking at the cache (the key already covers the settings)
    atomic_write(os.path.join(os.path.dirname(path), "meta.json"),
                 lambda fh: fh.write(json.dumps({"shape": [data.num_nodes, data.num_features + settings["dim"]],
                                                 "features": data.num_features, **settings}, indent=1).encode()))


def position_inputs(data, path: str, settings: dict, *, group=None, log=lambda s: None) -> Tuple[Tensor, bool]:
    """The mapped ``[N, F + dim]`` float32 matrix ``[data.x ; positions]`` at ``path`` (module docstring),
    computed first when it is not there.

    Args:
        data: a :class:`gkdfast.data.GraphData` (``x`` may be memory-mapped).
        path: from :func:`positions_path` (every rank passes the same).
        settings: ``dim``, ``walk_length``, ``walks_per_node``, ``window``, ``negative``, ``lr``, ``seed``
            (:func:`~gkdfast.distill.positional.streaming_deepwalk`'s arguments).
        group: a :class:`gkdfast.distill.ddp.Dist` (or None): its first rank computes, the others poll.
        log: called with one line when the positions are computed.

    Returns:
        ``(matrix, computed)``: a private copy-on-write mapping (writing into it never changes the
        file), and whether this call computed it (the first rank's answer, on every rank).

    Example:
        >>> import tempfile
        >>> from gkdfast.data import csbm
        >>> data = csbm(num_nodes=60, num_classes=2, feature_dim=4, seed=0)
        >>> settings = dict(dim=2, walk_length=4, walks_per_node=1, window=2, negative=2, lr=0.1, seed=0)
        >>> path = positions_path(data, tempfile.mkdtemp(), settings)
        >>> x, computed = position_inputs(data, path, settings)
        >>> x.shape, x.dtype, torch.equal(x[:, :4], data.x), computed
        (torch.Size([60, 6]), torch.float32, True, True)
        >>> position_inputs(data, path, settings)[1]  # a second call maps the file
        False
    """
    n, width = data.num_nodes, data.num_features + settings["dim"]
    folder = os.path.dirname(path)
    error = os.path.join(folder, "error.txt")
    main = group is None or group.is_main
    computed = not positions_ready(path, n, width)
    if group is not None:
        computed = group.broadcast_object(computed)
    if computed:
        if main:
            os.makedirs(folder, exist_ok=True)
            if os.path.exists(error):
                os.remove(error)  # a failure of an earlier run
        if group is not None:
            group.barrier()  # no rank polls before a stale error file is gone
        if main:
            try:
                local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if group is not None else 1
                _compute(data, path, settings, torch.get_num_threads() * local)
            except BaseException as exc:
                if group is not None:
                    atomic_write(error, lambda fh: fh.write(f"{type(exc).__name__}: {exc}".encode()))
                raise
            log(f"positions: DeepWalk {settings['dim']} x {settings['walks_per_node']} walks per node written to "
                f"{path}")
        else:
            while not positions_ready(path, n, width):
                if os.path.exists(error):
                    with open(error) as fh:
                        raise RuntimeError(f"positions: the first rank failed computing {path}: {fh.read()}")
                time.sleep(_POLL_SECONDS)
    if group is not None:
        group.barrier()
    if n == 0:
        return torch.zeros(0, width), computed
    if not positions_ready(path, n, width):
        raise FileNotFoundError(f"positions: {path} is missing or incomplete (expected [{n}, {width}] float32); "
                                f"every rank must see the cache folder; delete {folder} to recompute")
    return torch.from_file(path, shared=False, size=n * width, dtype=torch.float32).view(n, width), computed
