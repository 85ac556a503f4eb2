"""Pure-Python forward-push personalised PageRank: the oracle of ``gkdfast::ppr_topk`` and its
fallback (docs/ops.md, "ppr_topk").  The same FIFO order and double arithmetic as the native kernel,
so the estimates agree to the last bits; one source at a time (for tests and small graphs).
"""
from __future__ import annotations

from collections import deque
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["ppr_push", "ppr_topk"]


def ppr_push(rowptr, col, source: int, alpha: float, eps: float) -> dict:
    """``{node: estimate}`` of forward push from ``source`` over the CSR by source ``rowptr``/``col``
    (Python lists or 1-D tensors): the estimates ``p`` of csrc/ops/ppr.h.

    Example:
        >>> est = ppr_push([0, 1, 2], [1, 0], 0, 0.5, 1e-9)
        >>> round(est[0], 6), round(est[1], 6)
        (0.666667, 0.333333)
    """
    rp = [int(v) for v in (rowptr.tolist() if isinstance(rowptr, Tensor) else rowptr)]
    cp = [int(v) for v in (col.tolist() if isinstance(col, Tensor) else col)]
    p: dict = {}
    r = {source: 1.0}
    queue, queued = deque([source]), {source}
    while queue:
        u = queue.popleft()
        queued.discard(u)
        d = rp[u + 1] - rp[u]
        ru = r.get(u, 0.0)
        if not ru > eps * max(d, 1):
            continue
        p[u] = p.get(u, 0.0) + alpha * ru
        r[u] = 0.0
        if d == 0:
            continue
        share = (1.0 - alpha) * ru / d
        for e in range(rp[u], rp[u + 1]):
            v = cp[e]
            r[v] = r.get(v, 0.0) + share
            if v not in queued and r[v] > eps * max(rp[v + 1] - rp[v], 1):
                queued.add(v)
                queue.append(v)
    return p


def ppr_topk(rowptr: Tensor, col: Tensor, sources: Tensor, k: int, alpha: float, eps: float) -> Tuple[Tensor, Tensor]:
    """``(index [S, k] int64, value [S, k] float32)``: the ``k`` largest push estimates of each source
    other than itself, decreasing (ties: smaller node first), padded with ``(source, 0)``.

    Example:
        >>> idx, val = ppr_topk(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.tensor([0, 1]), 1, 0.5, 1e-9)
        >>> idx.flatten().tolist()
        [1, 0]
    """
    n = rowptr.numel() - 1
    index = torch.empty(sources.numel(), k, dtype=torch.int64)
    value = torch.zeros(sources.numel(), k, dtype=torch.float32)
    for row, s in enumerate(int(v) for v in sources.tolist()):
        if not 0 <= s < n:
            raise ValueError(f"gkdfast.ppr_topk: source node {s} is out of range [0, {n})")
        est = ppr_push(rowptr, col, s, alpha, eps)
        ranked = sorted(((-p, v) for v, p in est.items() if v != s and p > 0.0))[:k]
        index[row] = s
        for j, (neg_p, v) in enumerate(ranked):
            index[row, j], value[row, j] = v, -neg_p
    return index, value
