"""Row-sharded collectives with autograd, for exact all-pairs losses across processes.

A distributed loss call gives every rank a **row shard**: contiguous rows of the global ``[N, d]``
embedding matrix, rank order = row order, shards may differ in size (:func:`shard_range` cuts
``N`` rows into near-equal shards).  Each rank gathers all rows (O(N·d) traffic, never N x N),
computes the loss terms of its own rows against all N columns with the native kernels, and sums
the per-rank totals with :func:`all_reduce_sum`; every rank gets the same value as a single process
on the concatenated rows.

Autograd convention: **every rank calls backward on the same loss value.**  Then

* :func:`all_gather_rows`' backward sums the gradients of the gathered matrix over the ranks
  (a reduce-scatter: each rank keeps its own rows), so the column-side gradients computed on other
  ranks reach the rows' owner;
* :func:`all_reduce_sum`'s backward is the identity: the loss is the same function of the sum on
  every rank, so each rank already holds d(loss)/d(sum), and summing again would count it P times.

Collectives must match across ranks, so every rank makes the same calls with the same
``requires_grad`` on its inputs (a rank whose shard is empty still calls).

``group=None`` means a single process: both functions return their input unchanged, so code
written for a process group runs as is without one.  Pass ``torch.distributed.group.WORLD`` (or a
group from ``torch.distributed.new_group``) to communicate.  Backends: anything with all_gather and
all_reduce (gloo on CPU, NCCL on CUDA).
"""
from __future__ import annotations

import inspect
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor


def unpin_default_group() -> None:
    """Keeps ``torch.distributed.nn.functional`` from holding the default process group past
    ``destroy_process_group``.

    Its functions default to ``group=group.WORLD``, a value Python takes when the module is first
    imported; DistributedDataParallel's constructor imports it (through ``torch._dynamo``).  Imported
    after ``init_process_group``, those defaults are the group object itself, so destroying the group
    cannot free it: its gloo threads run on into interpreter shutdown, and one that releases a finished
    collective's tensor there must take the GIL, is ended by Python (``pthread_exit``) inside a
    noexcept destructor, and the process aborts with "terminate called without an active exception"
    (about 1 exit in 6 in a 2-rank DDP script; seen once in CI).  Imported before the group exists the
    defaults are ``None``, which those functions read as the default group at call time; defaults that
    are the live group are set to ``None`` here, which means the same to them.  Runs when gkdfast is
    imported, and again before the Distiller builds its DDP (a group made before ``import gkdfast``)."""
    if not dist.is_available():
        return
    import torch.distributed.nn.functional as functional

    world = dist.group.WORLD
    if world is None:  # no group yet: the import above took None as the defaults
        return
    for f in vars(functional).values():
        if not (inspect.isfunction(f) and f.__module__ == functional.__name__):
            continue
        if f.__defaults__ and any(d is world for d in f.__defaults__):
            f.__defaults__ = tuple(None if d is world else d for d in f.__defaults__)
        if f.__kwdefaults__ and any(d is world for d in f.__kwdefaults__.values()):
            f.__kwdefaults__ = {k: None if d is world else d for k, d in f.__kwdefaults__.items()}


unpin_default_group()  # usually runs before any process group exists: importing gkdfast first is the fix

__all__ = ["shard_range", "row_counts", "all_gather_rows", "all_reduce_sum", "group_rank", "broadcast_int",
           "global_count", "global_min"]


def shard_range(n: int, world_size: int, rank: int) -> Tuple[int, int]:
    """``(begin, end)`` of rank ``rank``'s contiguous shard of ``n`` rows among ``world_size`` ranks.

    The first ``n % world_size`` ranks get one row more than the others; rank order = row order.

    Example:
        >>> [gkdfast.distributed.shard_range(10, 3, r) for r in range(3)]
        [(0, 4), (4, 7), (7, 10)]
    """
    for name, v in (("n", n), ("world_size", world_size), ("rank", rank)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"gkdfast.distributed.shard_range: {name} must be an int, got {v!r}")
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"gkdfast.distributed.shard_range: need n >= 0, world_size >= 1 and 0 <= rank < "
                         f"world_size, got n={n}, world_size={world_size}, rank={rank}")
    base, extra = divmod(n, world_size)
    begin = rank * base + min(rank, extra)
    return begin, begin + base + (1 if rank < extra else 0)


def group_rank(group) -> Tuple[int, int]:
    """``(rank, world_size)`` of this process in ``group`` (``(0, 1)`` for ``group=None``).

    Example:
        >>> gkdfast.distributed.group_rank(None)
        (0, 1)
    """
    if group is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def row_counts(num_rows: int, group=None) -> List[int]:
    """Every rank's row count, in rank order (one small all-gather).

    Example:
        >>> gkdfast.distributed.row_counts(5)          # single process
        [5]
    """
    return [row[0] for row in gather_ints([num_rows], group)]


def gather_ints(values: List[int], group=None) -> List[List[int]]:
    """Every rank's ``values`` (the same length on every rank), in rank order: one small all-gather.

    Example:
        >>> gkdfast.distributed.gather_ints([5, 16])   # single process
        [[5, 16]]
    """
    if group is None:
        return [[int(v) for v in values]]
    _, world = group_rank(group)
    device = _comm_device(group)
    mine = torch.tensor([int(v) for v in values], dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(out, mine, group=group)
    return [[int(v) for v in t.tolist()] for t in out]


def broadcast_int(value: int, group=None) -> int:
    """``value`` of the group's rank 0, on every rank (e.g. a seed drawn locally).

    Example:
        >>> gkdfast.distributed.broadcast_int(7)       # single process
        7
    """
    if group is None:
        return int(value)
    return _int_collective(value, group, lambda t: dist.broadcast(t, src=dist.get_global_rank(group, 0), group=group))


def global_count(count: int, group=None) -> int:
    """``count`` summed over the ranks of ``group`` (one small all-reduce); ``group=None`` returns it.

    Example:
        >>> gkdfast.distributed.global_count(3)       # single process
        3
    """
    if group is None:
        return int(count)
    return _int_collective(count, group, lambda t: dist.all_reduce(t, group=group))


def global_min(value: int, group=None) -> int:
    """The smallest ``value`` over the ranks of ``group`` (one small all-reduce); ``group=None`` returns
    it.  For a decision every rank must take alike, e.g. whether each holds enough rows for a step.

    Example:
        >>> gkdfast.distributed.global_min(3)       # single process
        3
    """
    if group is None:
        return int(value)
    return _int_collective(value, group, lambda t: dist.all_reduce(t, op=dist.ReduceOp.MIN, group=group))


def _int_collective(value: int, group, collective) -> int:
    """Runs ``collective`` in place on a one-int64 tensor holding ``value`` (on the group's device)."""
    t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device(group))
    collective(t)
    return int(t.item())


def _comm_device(group) -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU tensors.
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather(x: Tensor, counts: Sequence[int], group) -> Tensor:
    # all_gather needs equal shapes: pad every shard to the largest, then drop the padding.
    width = max(counts)
    buf = x.new_zeros((width,) + tuple(x.shape[1:]))
    buf[: x.size(0)] = x
    parts = [torch.empty_like(buf) for _ in counts]
    dist.all_gather(parts, buf.contiguous(), group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)], 0)


def _reduce_scatter(grad: Tensor, counts: Tuple[int, ...], group, rank: int) -> Tensor:
    """This rank's rows of the sum over the ranks of ``grad [N, ...]``."""
    grad = grad.contiguous()
    if dist.get_backend(group) == "nccl" and len(set(counts)) == 1:
        out = grad.new_empty((counts[rank],) + tuple(grad.shape[1:]))
        dist.reduce_scatter_tensor(out, grad, group=group)
        return out
    # gloo has no reduce-scatter, and uneven shards: sum everything, keep this rank's rows
    total = grad.clone()
    dist.all_reduce(total, group=group)
    begin = sum(counts[:rank])
    return total[begin:begin + counts[rank]]


class _AllGatherRows(torch.autograd.Function):
    """All-gather of row shards; backward :class:`_ReduceScatterRows`, whose backward is this gather:
    the two are adjoints, so second derivatives (``create_graph=True``: Hessian-vector products,
    gradient penalties) are right too, as long as every rank takes them."""

    @staticmethod
    def forward(ctx, x: Tensor, group, counts: Tuple[int, ...], rank: int):
        ctx.group, ctx.counts, ctx.rank = group, counts, rank
        return _gather(x.detach(), counts, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _ReduceScatterRows.apply(grad, ctx.group, ctx.counts, ctx.rank), None, None, None


class _ReduceScatterRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad: Tensor, group, counts: Tuple[int, ...], rank: int):
        ctx.group, ctx.counts, ctx.rank = group, counts, rank
        return _reduce_scatter(grad.detach(), counts, group, rank)

    @staticmethod
    def backward(ctx, g: Tensor):
        return _AllGatherRows.apply(g, ctx.group, ctx.counts, ctx.rank), None, None, None


def all_gather_rows(x: Tensor, group=None, counts: Optional[Sequence[int]] = None) -> Tensor:
    """``[N, ...]``: the rank shards ``x [n_r, ...]`` concatenated in rank order, differentiable.

    Backward: the gradient of the gathered matrix is summed over the ranks and each rank keeps its
    own rows (a reduce-scatter), so every rank must call backward (see the module docstring).
    ``counts`` (every rank's row count, e.g. from :func:`row_counts`) saves one small all-gather.
    ``group=None`` (single process) returns ``x`` itself.

    Example:
        >>> x = torch.randn(3, 4, requires_grad=True)
        >>> gkdfast.distributed.all_gather_rows(x) is x   # single process; with a group: [N, 4]
        True
    """
    if group is None:
        return x
    rank, world = group_rank(group)
    counts = tuple(int(c) for c in (row_counts(x.size(0), group) if counts is None else counts))
    if len(counts) != world or counts[rank] != x.size(0):
        raise ValueError(f"gkdfast.distributed.all_gather_rows: counts {list(counts)} do not match the group "
                         f"(world size {world}) and this rank's {x.size(0)} rows")
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _gather(x.detach(), counts, group)
    return _AllGatherRows.apply(x, group, counts, rank)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, group):
        out = x.detach().clone().contiguous()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None  # identity: every rank differentiates the same function of the sum


def all_reduce_sum(x: Tensor, group=None) -> Tensor:
    """Sum of ``x`` over the ranks, on every rank, differentiable (backward: identity, as every rank
    calls backward on the same loss; see the module docstring).  ``group=None`` returns ``x``.

    Example:
        >>> gkdfast.distributed.all_reduce_sum(torch.tensor(2.0))   # single process
        tensor(2.)
    """
    if group is None:
        return x
    return _AllReduceSum.apply(x, group)
