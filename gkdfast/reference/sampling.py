"""Pure-PyTorch neighbour sampler: the oracle of ``gkdfast::sample_neighbors`` and its fallback.

It draws the very same Philox words as ``csrc/common/philox.h`` (``neighbor_words``), vectorised
over the seed nodes in int64 arithmetic, and runs Floyd's algorithm one draw step at a time for all
seeds whose degree exceeds the fan-out, so the result is bit-identical to the native kernel.  It
runs on whatever device its inputs are on (the oracle of the CPU and CUDA kernels: same stream).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from gkdfast.reference.contrastive import _M32, philox4x32_10, philox_words

__all__ = ["neighbor_words", "neighbor_word_py", "sample_neighbors"]

NEIGHBOR_DOMAIN = 0x6E620000  # "nb" | hop


def neighbor_word_py(seed: int, node: int, hop: int, s: int) -> int:
    """Raw 32-bit word of draw ``s`` for ``node`` at ``hop`` (scalar Python ints; tests cross-check).

    Example:
        >>> 0 <= neighbor_word_py(0, 5, 0, 3) < 2 ** 32
        True
    """
    seed &= (1 << 64) - 1
    words = philox4x32_10((node & _M32, (node >> 32) & _M32, (s >> 2) & _M32, NEIGHBOR_DOMAIN | (hop & 0xFFFF)),
                          (seed & _M32, seed >> 32))
    return words[s & 3]


def neighbor_words(nodes: Tensor, num_draws: int, seed: int, hop: int) -> Tensor:
    """``[S, num_draws]`` int64 raw words (in ``[0, 2**32)``) of draws ``0 .. num_draws-1`` per node.

    Example:
        >>> w = neighbor_words(torch.tensor([5]), 4, seed=0, hop=0)
        >>> int(w[0, 3]) == neighbor_word_py(0, 5, 0, 3)
        True
    """
    seed &= (1 << 64) - 1
    nodes = nodes.to(torch.int64)
    s = torch.arange(num_draws, device=nodes.device, dtype=torch.int64)
    return philox_words(nodes.unsqueeze(1), s.unsqueeze(0), NEIGHBOR_DOMAIN | (hop & 0xFFFF), seed)


def sample_neighbors(rowptr: Tensor, col: Tensor, seeds: Tensor, fanout: int, seed: int,
                     hop: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Reference of the op: ``(rowptr [S+1] int64, sampled sources [nnz], CSR edge ids [nnz])``.

    Example:
        >>> rp, c, e = sample_neighbors(torch.tensor([0, 2, 3]), torch.tensor([1, 0, 0]), torch.tensor([0, 1]), 1, 0, 0)
        >>> rp.tolist(), c.shape
        ([0, 1, 2], torch.Size([2]))
    """
    seeds64 = seeds.to(torch.int64)
    rowptr64 = rowptr.to(torch.int64)
    n = rowptr.numel() - 1
    if seeds64.numel() and (int(seeds64.min()) < 0 or int(seeds64.max()) >= n):
        bad = seeds64[(seeds64 < 0) | (seeds64 >= n)][0]
        raise IndexError(f"gkdfast.sample_neighbors: seed node {int(bad)} is out of range [0, {n})")
    start = rowptr64[seeds64]
    deg = rowptr64[seeds64 + 1] - start
    count = deg if fanout < 0 else torch.clamp(deg, max=fanout)
    out_rowptr = torch.zeros(seeds64.numel() + 1, dtype=torch.int64, device=seeds.device)
    torch.cumsum(count, 0, out=out_rowptr[1:])
    nnz = int(out_rowptr[-1])
    # Position inside the node's in-edge list: 0, 1, ... (right for every node taking all edges).
    pos = torch.arange(nnz, dtype=torch.int64, device=seeds.device) - \
        torch.repeat_interleave(out_rowptr[:-1], count, output_size=nnz)
    sampled = (count < deg).nonzero().flatten()
    if sampled.numel():
        k = int(fanout)
        d = deg[sampled].unsqueeze(1)
        words = neighbor_words(seeds64[sampled], k, seed, hop)
        chosen = torch.empty((sampled.numel(), k), dtype=torch.int64, device=seeds.device)
        for s in range(k):  # Floyd: j = deg - k + s; r uniform in [0, j]; r if new else j
            j = d[:, 0] - k + s
            r = (words[:, s] * (j + 1)) >> 32  # word < 2^32, j + 1 < 2^31: no int64 overflow
            taken = (chosen[:, :s] == r.unsqueeze(1)).any(1) if s else torch.zeros_like(r, dtype=torch.bool)
            chosen[:, s] = torch.where(taken, j, r)
        chosen = chosen.sort(1).values
        slots = out_rowptr[sampled].unsqueeze(1) + torch.arange(k, device=seeds.device)
        pos[slots.flatten()] = chosen.flatten()
    eid = torch.repeat_interleave(start, count, output_size=nnz) + pos
    return out_rowptr, col[eid], eid.to(col.dtype)
