"""Pure-Python streaming DeepWalk: the oracle of ``gkdfast::deepwalk`` and its fallback.

It follows ``csrc/ops/deepwalk.h`` (docs/ops.md, "deepwalk") step by step: the same Philox words
(domains "dw" and "di"), the same corpus counts and Vose alias table, and the same skip-gram updates
in the same order, in float32.  It equals the native kernel run with ``deterministic=True`` up to
float rounding of the dot products.  One update at a time in Python: for tests and graphs of a few
hundred nodes.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch
from torch import Tensor

from gkdfast.reference.contrastive import philox_words

__all__ = ["WALK_DOMAIN", "INIT_DOMAIN", "walk_nodes", "alias_table", "deepwalk"]

WALK_DOMAIN = 0x64770000  # "dw": walk i's words
INIT_DOMAIN = 0x64690000  # "di": node v's initial input vector


def _stream(id_: int, count: int, domain: int, seed: int) -> List[int]:
    """Words ``0 .. count-1`` of the Philox stream keyed by ``(id_, domain)``."""
    return philox_words(torch.tensor([[id_]]), torch.arange(count).unsqueeze(0), domain, seed)[0].tolist()


def walk_nodes(rowptr: List[int], col: List[int], start: int, length: int, words: List[int]) -> List[int]:
    """The walk from ``start``: step t takes in-edge ``(words[t-1] * deg) >> 32``; stops at a node
    without in-edges.

    Example:
        >>> walk_nodes([0, 1, 2], [1, 0], 0, 3, [0, 0, 0])
        [0, 1, 0, 1]
    """
    nodes = [start]
    for t in range(1, length + 1):
        v = nodes[-1]
        deg = rowptr[v + 1] - rowptr[v]
        if deg == 0:
            break
        nodes.append(col[rowptr[v] + ((words[t - 1] * deg) >> 32)])
    return nodes


def alias_table(weights: List[float]) -> Tuple[List[float], List[int]]:
    """Vose's alias table, built as the kernel builds it (index order, double arithmetic).

    Example:
        >>> alias_table([1.0, 3.0])
        ([0.5, 1.0], [1, 1])
    """
    n = len(weights)
    total = 0.0
    for w in weights:
        total += w
    prob, alias = [1.0] * n, list(range(n))
    scaled = [w * float(n) / total if total > 0.0 else 1.0 for w in weights]
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, l = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], l
        scaled[l] = (scaled[l] + scaled[s]) - 1.0
        (small if scaled[l] < 1.0 else large).append(l)
    return prob, alias


def _sigmoid(x: np.float32) -> np.float32:
    with np.errstate(over="ignore"):
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-x, dtype=np.float32))


def deepwalk(rowptr: Tensor, col: Tensor, starts: Tensor, dim: int, walk_length: int, window: int, negative: int,
             lr: float, seed: int, deterministic: bool = True) -> Tensor:
    """Reference of the op (always in walk order; ``deterministic`` is accepted for the same call).

    Returns:
        ``[N, dim]`` float32 input vectors.

    Example:
        >>> rp, c = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
        >>> deepwalk(rp, c, torch.tensor([0, 1]), 4, 3, 1, 1, 0.025, 0).shape
        torch.Size([2, 4])
    """
    rp, cl = rowptr.tolist(), col.tolist()
    n, walks, L = len(rp) - 1, starts.numel(), int(walk_length)
    bad = [int(s) for s in starts.tolist() if not 0 <= int(s) < n]
    if bad:
        raise ValueError(f"gkdfast.deepwalk: start node {bad[0]} is out of range [0, {n})")
    emb_in = np.empty((n, dim), dtype=np.float32)
    for v in range(n):
        w = np.array(_stream(v, dim, INIT_DOMAIN, seed), dtype=np.float64)
        emb_in[v] = ((w * 2.0 ** -32 - 0.5) / dim).astype(np.float32)
    if walks == 0 or n == 0:
        return torch.from_numpy(emb_in)
    start_list = [int(s) for s in starts.tolist()]
    # The most words a walk can use: L steps, L + 1 windows, 2 per negative of every pair.
    budget = 2 * L + 1 + 2 * negative * (L + 1) * 2 * window
    walk_words = [_stream(i, budget, WALK_DOMAIN, seed) for i in range(walks)]
    paths = [walk_nodes(rp, cl, start_list[i], L, walk_words[i]) for i in range(walks)]
    counts = [0] * n
    for path in paths:
        for v in path:
            counts[v] += 1
    prob, alias = alias_table([float(c) ** 0.75 for c in counts])
    emb_out = np.zeros((n, dim), dtype=np.float32)

    def update(v: np.ndarray, u: np.ndarray, e: np.ndarray, label: float, a: np.float32) -> None:
        g = np.float32(a * (np.float32(label) - _sigmoid(np.dot(v, u))))
        e += g * u
        u += g * v

    for i, nodes in enumerate(paths):
        words = walk_words[i]
        a = np.float32(lr * max(1e-4, 1.0 - i / walks))
        k = 2 * L + 1
        m = len(nodes)
        for p in range(m):
            centre = nodes[p]
            omega = 1 + words[L + p] % window
            for q in range(max(0, p - omega), min(m - 1, p + omega) + 1):
                if q == p:
                    continue
                v = emb_in[nodes[q]]
                e = np.zeros(dim, dtype=np.float32)
                update(v, emb_out[centre], e, 1.0, a)
                for _ in range(negative):
                    t = (words[k] * n) >> 32
                    if not words[k + 1] * 2.0 ** -32 < prob[t]:
                        t = alias[t]
                    k += 2
                    if t != centre:
                        update(v, emb_out[t], e, 0.0, a)
                v += e
    return torch.from_numpy(emb_in)
