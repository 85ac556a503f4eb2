"""What the losses share when called with ``process_group=``: this rank's row range in the global
rows and the collectives of :mod:`gkdfast.distributed` (see that module for the conventions)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from gkdfast import distributed as gdist
from gkdfast._rows import ordered_sum


_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def signature(*tensors: Tensor) -> list:
    """Widths and dtypes of ``tensors`` as ints, for :class:`Shards` to compare across the ranks."""
    return [v for t in tensors for v in (t.size(-1) if t.dim() else 0,
                                        _DTYPES.index(t.dtype) if t.dtype in _DTYPES else -1)]


class Shards:
    """This rank's shard of ``n_local`` rows: ``begin``/``end`` in the global rows, ``total`` = N and
    ``counts`` (every rank's rows, rank order), from one small all-gather.  ``like``: the tensors whose
    widths and dtypes every rank must share, checked in the same all-gather; a mismatch is one
    ValueError on every rank (the collectives that follow would abort the process, or, with widths
    swapped between student and teacher, silently compute garbage).

    Example: on rank 1 of 2 with 3 and 5 rows, ``Shards(5, group)`` has begin 3, end 8, total 8.
    """

    def __init__(self, n_local: int, group, like=(), op: str = "loss"):
        self.group = group
        self.rank, self.world = gdist.group_rank(group)
        table = gdist.gather_ints([n_local] + signature(*like), group)
        if any(row[1:] != table[0][1:] for row in table):
            shown = "; ".join(f"rank {r}: " + ", ".join(f"width {row[i]} {_name(row[i + 1])}"
                                                         for i in range(1, len(row), 2))
                              for r, row in enumerate(table))
            raise ValueError(f"gkdfast.losses.{op}: the ranks pass inputs of different widths or dtypes ({shown}); "
                             "every rank must pass the same columns")
        self.counts = tuple(row[0] for row in table)
        self.begin = sum(self.counts[:self.rank])
        self.end = self.begin + n_local
        self.total = sum(self.counts)

    def gather(self, x: Tensor) -> Tensor:
        """All ranks' rows of ``x`` (differentiable, see :func:`gkdfast.distributed.all_gather_rows`)."""
        return gdist.all_gather_rows(x, self.group, self.counts)

    def sum(self, x: Tensor) -> Tensor:
        """``x`` summed over the ranks (differentiable)."""
        return gdist.all_reduce_sum(x, self.group)


def _name(code: int) -> str:
    return str(_DTYPES[code]).replace("torch.", "") if 0 <= code < len(_DTYPES) else "other dtype"


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
    total = shards.sum(ordered_sum(rows))
    if reduction == "sum":
        return total.to(dtype)
    if count is None:
        return (total / max(shards.total, 1)).to(dtype)
    return (total / count.clamp_min(1).to(total.dtype)).to(dtype)

