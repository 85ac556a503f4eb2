"""NOSMOG's student input at scale: the node features followed by DeepWalk position features, as one
memory-mapped ``[N, F + dim]`` float32 file next to the teacher cache.

The positions come from :func:`gkdfast.distill.positional.streaming_deepwalk` (O(N·dim) memory:
the walks are never stored).  The joined matrix is written in row blocks, so the features are never
copied whole into RAM, and it is mapped back like the teacher's outputs: a student batch pages in
its rows only.  The file is keyed by the features, the graph and the walk settings, so a rerun (or
another method, seed of the student, or rank) maps it instead of training DeepWalk again.  Under
DDP the first rank computes and writes it while the others wait at a barrier; every rank must see
``cache_dir`` (on several machines: a shared file system).

Example:
    >>> import tempfile
    >>> from gkdfast.data import csbm
    >>> data = csbm(num_nodes=200, num_classes=2, feature_dim=8, seed=0)
    >>> x = position_inputs(data, tempfile.mkdtemp(), dim=4, walk_length=5, walks_per_node=1)
    >>> x.shape, bool((x[:, :8] == data.x).all())
    (torch.Size([200, 12]), True)
"""
from __future__ import annotations

import hashlib
import json
import os
import numpy as np
import torch
from torch import Tensor

from gkdfast.distill.teacher_cache import hash_tensor
from gkdfast._io import atomic_write

__all__ = ["position_inputs", "positions_key", "estimate_positions"]

# Bump when the file's meaning changes (the walk definition, the layout): old files then miss.
POSITIONS_FORMAT = 1
_ROWS_PER_BLOCK = 65536


def positions_key(data, settings: dict) -> str:
    """Hex SHA-256 of (format, features, graph structure, walk settings).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=50, seed=0)
        >>> positions_key(d, {"dim": 4}) != positions_key(d, {"dim": 8})
        True
    """
    h = hashlib.sha256()
    h.update(f"positions{POSITIONS_FORMAT};{json.dumps(settings, sort_keys=True)};{data.graph.num_nodes}".encode())
    hash_tensor(h, data.x)
    hash_tensor(h, data.graph.rowptr)
    hash_tensor(h, data.graph.col)
    return h.hexdigest()


def estimate_positions(n: int, f: int, dim: int, walks_per_node: int) -> dict:
    """Bytes the positions stage allocates: the two ``[N, dim]`` DeepWalk matrices, the walk counts
    and alias table (24 bytes per node), the start permutations, and one block of joined rows.

    Example:
        >>> sorted(estimate_positions(1000, 100, 64, 5))
        ['DeepWalk matrices', 'counts and alias table', 'joined row block', 'walk starts']
    """
    return {"DeepWalk matrices": 2.0 * n * dim * 4, "counts and alias table": 24.0 * n,
            "walk starts": 8.0 * n * walks_per_node, "joined row block": 2.0 * min(n, _ROWS_PER_BLOCK) * (f + dim) * 4}


def _write_joined(path: str, x: Tensor, p: Tensor) -> None:
    """Writes ``[x ; p]`` row block by row block (x may be memory-mapped: only a block is paged in)."""
    def write(f):
        for start in range(0, x.size(0), _ROWS_PER_BLOCK):
            stop = min(start + _ROWS_PER_BLOCK, x.size(0))
            block = torch.cat([x[start:stop].float(), p[start:stop].float()], dim=1)
            f.write(np.ascontiguousarray(block.numpy()).tobytes())

    atomic_write(path, write)


def position_inputs(data, cache_dir: str, *, dim: int = 64, walk_length: int = 30, walks_per_node: int = 5,
                    window: int = 5, negative: int = 5, lr: float = 0.025, seed: int = 0, group=None,
                    log=lambda s: None) -> Tensor:
    """``[N, F + dim]`` float32, memory-mapped: ``data.x`` followed by
    :func:`~gkdfast.distill.positional.streaming_deepwalk` positions (module docstring).

    Args:
        data: a :class:`gkdfast.data.GraphData` (``x`` may be memory-mapped).
        cache_dir: where the file lives (``positions-<key>/inputs.f32``), shared by every rank.
        dim, walk_length, walks_per_node, window, negative, lr, seed: the DeepWalk settings.
        group: a :class:`gkdfast.distributed.Dist` (or None): its first rank computes, the others wait.
        log: called with one line when the positions are computed (not when mapped).

    Returns:
        the mapped matrix (a private copy-on-write mapping: writing into it never changes the file).
    """
    from gkdfast.distill.positional import streaming_deepwalk

    settings = {"dim": dim, "walk_length": walk_length, "walks_per_node": walks_per_node, "window": window,
                "negative": negative, "lr": float(lr), "seed": int(seed)}
    n, f = data.num_nodes, data.num_features
    folder = os.path.join(cache_dir, f"positions-{positions_key(data, settings)[:32]}")
    path = os.path.join(folder, "inputs.f32")
    want = n * (f + dim) * 4
    if group is None or group.is_main:
        if not (os.path.exists(path) and os.path.getsize(path) == want):
            os.makedirs(folder, exist_ok=True)
            p = streaming_deepwalk(data.graph, dim, walk_length, walks_per_node, window, negative, lr, seed)
            _write_joined(path, data.x, p)
            del p
            atomic_write(os.path.join(folder, "meta.json"),
                         lambda fh: fh.write(json.dumps({"shape": [n, f + dim], "features": f, **settings},
                                                        indent=1).encode()))
            log(f"positions: DeepWalk {dim} x {walks_per_node} walks per node written to {path}")
    if group is not None:
        group.barrier()
    if n == 0 or f + dim == 0:
        return torch.zeros(n, f + dim)
    size = os.path.getsize(path)
    if size != want:
        raise ValueError(f"positions: {path} holds {size} bytes, expected {want} ([{n}, {f + dim}] float32); "
                         f"delete {folder} to recompute")
    return torch.from_file(path, shared=False, size=n * (f + dim), dtype=torch.float32).view(n, f + dim)

