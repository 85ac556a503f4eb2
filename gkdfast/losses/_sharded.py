"""What the losses share when called with ``process_group=``: this rank's row range in the global
rows and the collectives of :mod:`gkdfast.distributed` (see that module for the conventions)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gkdfast import distributed as gdist


class Shards:
    """This rank's shard of ``n_local`` rows: ``begin``/``end`` in the global rows, ``total`` = N and
    ``counts`` (every rank's rows, rank order), from one small all-gather.

    Example: on rank 1 of 2 with 3 and 5 rows, ``Shards(5, group)`` has begin 3, end 8, total 8.
    """

    def __init__(self, n_local: int, group):
        self.group = group
        self.rank, self.world = gdist.group_rank(group)
        self.counts = tuple(gdist.row_counts(n_local, group))
        self.begin = sum(self.counts[:self.rank])
        self.end = self.begin + n_local
        self.total = sum(self.counts)

    def gather(self, x: Tensor) -> Tensor:
        """All ranks' rows of ``x`` (differentiable, see :func:`gkdfast.distributed.all_gather_rows`)."""
        return gdist.all_gather_rows(x, self.group, self.counts)

    def sum(self, x: Tensor) -> Tensor:
        """``x`` summed over the ranks (differentiable)."""
        return gdist.all_reduce_sum(x, self.group)


def check_group(group, op: str):
    """Raises a clear error unless ``group`` is None or a usable process group."""
    if group is None:
        return
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError(f"gkdfast.losses.{op}: process_group was given but torch.distributed is not "
                           "initialised; call torch.distributed.init_process_group first (or pass None)")


def shared_seed(seed: int, user_seed: Optional[int], k: int, group) -> int:
    """The Philox seed every rank must use: the caller's ``user_seed`` as is, or, when it was None and
    each rank drew ``seed`` from its own generator, rank 0's draw (one broadcast)."""
    if group is None or k == 0 or user_seed is not None:
        return seed
    return gdist.broadcast_int(seed, group)


def reduce_rows(rows: Tensor, reduction: str, shards: "Shards", dtype: torch.dtype,
                count: Optional[Tensor] = None) -> Tensor:
    """Global ``mean`` (over ``count`` or all N rows) / ``sum`` of the per-row losses of every rank;
    ``none`` keeps this rank's rows."""
    if reduction == "none":
        return rows.to(dtype)
    total = shards.sum(rows.sum())
    if reduction == "sum":
        return total.to(dtype)
    if count is None:
        return (total / max(shards.total, 1)).to(dtype)
    return (total / count.clamp_min(1).to(total.dtype)).to(dtype)

