"""torch.distributed plumbing for the Distiller: which rank am I, my shard of the rows, collectives.

Everything here is a no-op (or the identity) without an initialised process group, so the
single-process code path stays the same code.  The conventions (see ``docs/distributed.md``):

* ``batch_size`` is the *global* batch: each of W ranks takes ``ceil(batch_size / W)`` rows per step,
  so a recipe's hyperparameters mean the same thing on 1 or W processes;
* each epoch, every rank draws the same permutation of the row pool from the seeded generator (the
  single-process order), pads it DistributedSampler-style to a multiple of W and takes positions
  ``rank, rank + W, ...``; the union of the ranks' k-th local batches is then the single-process
  k-th batch whenever the pool and the batch size are multiples of W.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor, nn

from gkdfast.distributed import unpin_default_group

__all__ = ["Dist", "resolve", "shard_order", "local_batches", "init_from_env", "is_main_process", "default_group",
           "wrap", "fail_once_for_test", "checkpoint_every_epoch_for_test"]


@dataclass
class Dist:
    """The distributed context of one rank.

    Attributes:
        rank / world_size: this process's rank in ``group`` and the group's size.
        group: the process group (``None``: the default group).  backend: ``"gloo"`` or ``"nccl"``.
    """

    rank: int
    world_size: int
    group: object = None
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.backend == "nccl" and torch.cuda.is_available():
            dist.barrier(group=self.group, device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier(group=self.group)

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def all_reduce_sum(self, values: Tensor) -> Tensor:
        """Element-wise sum over ranks of a float64 vector (returned on the CPU)."""
        import torch.distributed as dist

        t = values.detach().to(self._device(), torch.float64).clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        return t.cpu()

    def all_gather_object(self, obj) -> list:
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def broadcast_buffers(self, *modules: nn.Module) -> None:
        """Copies rank 0's buffers (BatchNorm running statistics) to every rank.  DDP broadcasts them
        before each forward, but each rank's last forward of an epoch updates them with its own
        rows; syncing after the epoch keeps evaluation and the saved weights identical on all ranks."""
        import torch.distributed as dist

        for module in modules:
            for buf in module.buffers():
                if buf.numel():
                    dist.broadcast(buf, src=self._global(0), group=self.group)

    def broadcast_object(self, obj, src: int = 0):
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=self._global(src), group=self.group)
        return box[0]

    def on_main(self, fn, failure: str, error: type = RuntimeError):
        """Runs ``fn()`` on rank 0 alone and returns its result there (``None`` on the other ranks), which
        wait for it; if it raises, rank 0 re-raises and every other rank raises ``error("<failure>
        (<rank 0's exception>)")``, instead of waiting forever for a file or a message.

        Example:
            >>> # (on rank 0 of an initialised process group; the others get None)
            >>> group.on_main(lambda: save(path), f"{path}: rank 0 could not write it")  # doctest: +SKIP
        """
        result, raised = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:
                raised = exc
        failed = self.broadcast_object(None if raised is None else f"{type(raised).__name__}: {raised}")
        if raised is not None:
            raise raised
        if failed is not None:
            raise error(f"{failure} ({failed})")
        return result

    def machines(self) -> List[int]:
        """The machine of every rank, numbered in order of first appearance (rank 0's machine is 0).

        A machine is torchrun's ``GROUP_RANK`` (one per agent, i.e. per ``--nnodes`` member) where it
        is set, else the host name (processes started by ``torch.multiprocessing`` share one)."""
        import socket

        ids = self.all_gather_object(os.environ.get("GROUP_RANK") or socket.gethostname())
        index: dict = {}
        return [index.setdefault(m, len(index)) for m in ids]

    def _global(self, rank: int) -> int:
        """The default group's rank of rank ``rank`` of this group."""
        import torch.distributed as dist

        return dist.get_global_rank(self.group, rank) if self.group is not None else rank

    def send(self, t: Tensor, dst: int) -> None:
        """Sends a CPU tensor to rank ``dst`` of the group (through the GPU under NCCL)."""
        import torch.distributed as dist

        dist.send(t.to(self._device()).contiguous(), dst=self._global(dst), group=self.group)

    def recv(self, t: Tensor, src: int) -> Tensor:
        """A CPU tensor of ``t``'s shape and dtype, received from rank ``src`` of the group."""
        import torch.distributed as dist

        box = torch.empty(t.shape, dtype=t.dtype, device=self._device())
        dist.recv(box, src=self._global(src), group=self.group)
        return box.cpu()


def resolve(distributed, process_group=None) -> Optional[Dist]:
    """The :class:`Dist` to train with, or ``None`` for plain single-process training.

    Args:
        distributed: ``"auto"`` (default of :class:`~gkdfast.distill.Distiller`): distributed when a
            process group is initialised and has more than one rank; ``True``: required (a 1-rank group
            also runs through DistributedDataParallel); ``False``: never.
        process_group: the group to use (default: the default group).

    Example:
        >>> resolve("auto") is None        # no process group in this process
        True
    """
    if distributed not in ("auto", True, False):
        raise ValueError(f"distributed must be 'auto', True or False, got {distributed!r}")
    if distributed is False:
        return None
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        if distributed is True:
            raise ValueError("distributed=True but torch.distributed has no initialised process group; call "
                             "torch.distributed.init_process_group first (or launch gkdfast distill --distributed "
                             "under torchrun)")
        return None
    world = dist.get_world_size(process_group)
    if distributed == "auto" and world < 2:
        return None
    return Dist(dist.get_rank(process_group), world, process_group, str(dist.get_backend(process_group)))


def is_main_process() -> bool:
    """``True`` unless torch.distributed is initialised and this is not rank 0.

    Example:
        >>> is_main_process()
        True
    """
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shard_order(order: Tensor, world_size: int, rank: int) -> Tensor:
    """This rank's rows of one epoch's ``order`` (the pool, permuted): padded by repeating its head up
    to a multiple of ``world_size`` (so every rank gets the same count and the ranks stay in step),
    then positions ``rank, rank + world_size, ...``.

    Example:
        >>> shard_order(torch.tensor([5, 3, 8, 1, 9]), 2, 0), shard_order(torch.tensor([5, 3, 8, 1, 9]), 2, 1)
        (tensor([5, 8, 9]), tensor([3, 1, 5]))
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_order: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    n = order.numel()
    if n == 0:
        return order
    total = -(-n // world_size) * world_size
    if total > n:
        reps = -(-total // n)  # a pool smaller than the world repeats more than once
        order = order.repeat(reps)[:total]
    return order[rank:total:world_size]


def local_batches(local: Tensor, batch_size: Optional[int], world_size: int) -> List[Tensor]:
    """Splits a rank's shard into steps of ``ceil(batch_size / world_size)`` rows (one step for
    ``batch_size=None``); every rank gets the same number of steps because shards have equal length.

    Example:
        >>> [b.tolist() for b in local_batches(torch.arange(5), 4, 2)]
        [[0, 1], [2, 3], [4]]
    """
    if batch_size is None:
        return [local]
    per_rank = max(1, -(-int(batch_size) // world_size))
    return list(local.split(per_rank)) if local.numel() else [local]


def join_lone_last(steps: List[Tensor]) -> List[Tensor]:
    """``steps`` with a last step of a single row joined to the one before: one row alone (e.g. an
    isolated node) gives the hidden layers one row, on which BatchNorm cannot train ("Expected more than
    1 value per channel").  Under DDP every rank's steps have the same lengths, so all ranks join alike.

    Example:
        >>> [b.tolist() for b in join_lone_last(list(torch.arange(5).split(2)))]
        [[0, 1], [2, 3, 4]]
    """
    if len(steps) >= 2 and steps[-1].numel() == 1:
        return steps[:-2] + [torch.cat(steps[-2:])]
    return steps


def init_from_env(device: str = "cpu") -> Dist:
    """Initialises the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL on ``cuda`` (device ``cuda:LOCAL_RANK``),
    gloo on ``cpu``.  Raises a one-line ValueError outside torchrun.

    Example (under torchrun, so not run here):
        >>> init_from_env("cpu")                    # doctest: +SKIP
        Dist(rank=0, world_size=2, group=None, backend='gloo')
    """
    import torch.distributed as dist

    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"--distributed: {', '.join(missing)} not set; launch with "
                         "torchrun --nproc_per_node=P -m gkdfast.cli distill --distributed ...")
    if not dist.is_available():
        raise ValueError("--distributed: this torch build has no torch.distributed")
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, store=_attempt_store(), rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))
    return Dist(dist.get_rank(), dist.get_world_size(), None, backend)


def _attempt_store():
    """The rendezvous store of ``env://``, under a prefix naming torchrun's restart attempt.

    After a restart (``torchrun --max-restarts``) the agent's store still holds the previous
    attempt's keys (gloo's peer addresses among them), so the restarted ranks would read the dead
    ranks' addresses and fail to connect; a prefix per attempt gives each attempt its own keys."""
    from datetime import timedelta

    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # else rank 0 hosts it
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=not agent_hosts and rank == 0, timeout=timedelta(minutes=30))
    return dist.PrefixStore(f"gkdfast/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def default_group():
    """The default process group object (what a loss's ``process_group=`` needs when the caller
    trains over the default group).

    Example (with a process group, so not run here):
        >>> default_group() is not None                  # doctest: +SKIP
        True
    """
    import torch.distributed as dist

    return dist.group.WORLD


class _Step(nn.Module):
    """Holds the student and the loss terms' heads as one module for DistributedDataParallel:
    ``forward(fn, *args)`` runs ``fn(*args)`` (the Distiller's student forward + loss terms) inside
    DDP's forward, so the gradients of every parameter, student or head, are averaged over ranks."""

    def __init__(self, student: nn.Module, terms: nn.Module):
        super().__init__()
        self.student, self.terms = student, terms

    def forward(self, fn, *args):
        return fn(*args)


def wrap(student: nn.Module, terms: nn.Module, device) -> Optional[nn.Module]:
    """``DistributedDataParallel`` over ``student`` + ``terms`` (rank 0's weights are broadcast to
    every rank here), or ``None`` when nothing is trainable.  Terms with parameters may skip them on
    a degenerate batch (GSP on a one-row batch), so their presence turns ``find_unused_parameters`` on.

    Example (with a process group, so not run here):
        >>> step = wrap(student, terms, "cpu")            # doctest: +SKIP
        >>> loss, values = step(batch_loss, nodes)        # doctest: +SKIP
    """
    from torch.nn.parallel import DistributedDataParallel

    module = _Step(student, terms)
    if not any(p.requires_grad for p in module.parameters()):
        return None
    device = torch.device(device)
    unpin_default_group()  # a group made before gkdfast was imported: DDP's own imports would pin it
    return DistributedDataParallel(
        module, device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda" else None,
        find_unused_parameters=any(p.requires_grad for p in terms.parameters()))


FAIL_ONCE_ENV = "GKDFAST_TEST_FAIL_ONCE_AT_EPOCH"
FAIL_ONCE_MARKER_ENV = "GKDFAST_TEST_FAIL_ONCE_MARKER"


def checkpoint_every_epoch_for_test() -> bool:
    """Whether the restart-test hook of :func:`fail_once_for_test` is armed: the training loops then
    write every epoch's checkpoint, whatever their cadence.  (The hook fires right after epoch k's
    checkpoint; on a loaded machine the cadence can skip epoch k, when the save before it took over
    ``ALWAYS_WRITE_SECONDS`` waiting for the other rank, and the hook then fired in a later stage's
    training instead: the sampled teacher of a torchrun test was not interrupted at all.)

    Example:
        >>> checkpoint_every_epoch_for_test()    # the variable is not set
        False
    """
    return bool(os.environ.get(FAIL_ONCE_ENV))


def fail_once_for_test(ddp: Dist, epoch: int, checkpoint_dir: str) -> None:
    """Test hook for restart tests, off unless ``GKDFAST_TEST_FAIL_ONCE_AT_EPOCH=k`` is set: the last
    rank exits (status 17) right after epoch k's checkpoint, once — a marker file
    (``$GKDFAST_TEST_FAIL_ONCE_MARKER``, default ``checkpoint_dir/test-fail-once.marker``) records
    that it did, so the restarted group trains on.

    Example:
        >>> fail_once_for_test(Dist(0, 1), 3, "ckpt")    # the variable is not set: nothing happens
    """
    at = os.environ.get(FAIL_ONCE_ENV)
    if not at or int(at) != epoch or ddp.rank != ddp.world_size - 1:
        return
    marker = os.environ.get(FAIL_ONCE_MARKER_ENV) or os.path.join(checkpoint_dir, "test-fail-once.marker")
    if os.path.exists(marker):
        return
    with open(marker, "w") as f:
        f.write(f"rank {ddp.rank} exited after epoch {epoch}\n")
    import sys

    print(f"{FAIL_ONCE_ENV}={at}: rank {ddp.rank} exits after epoch {epoch} (test hook)", file=sys.stderr,
          flush=True)
    os._exit(17)
