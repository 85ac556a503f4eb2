"""Reading and writing a training loop's checkpoint file (the Distiller's and the sampled trainer's).

A checkpoint is data only (tensors, numbers, lists, RNG states), written atomically by one process
and read with ``weights_only=True``: a planted file cannot run code, and a kill mid-save leaves the
previous checkpoint in place.  Under DDP every rank's RNG states are gathered into it (each rank
draws its own dropout masks), rank 0 writes, and all ranks wait for the file; a resumed rank takes
its own states back.  Whether an epoch's checkpoint is written at all is
:class:`~gkdfast.distill.checkpoint_cadence.CheckpointCadence`'s decision, agreed by every rank
(:func:`checkpoint_due`).
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from gkdfast._io import atomic_write, save_checkpoint_file
from gkdfast.distill.checkpoint_cadence import CheckpointCadence

__all__ = ["rng_states", "set_rng_states", "checkpoint_due", "write_checkpoint", "read_checkpoint",
           "resume_rng_states"]


def rng_states() -> dict:
    """Torch's CPU and (when present) CUDA generator states.

    Example:
        >>> s = rng_states(); a = torch.rand(1); set_rng_states(s); bool(torch.rand(1) == a)
        True
    """
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    """Restores what :func:`rng_states` returned (the CUDA part only where CUDA is available)."""
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoint_due(cadence: CheckpointCadence, ddp, checkpointing: bool) -> bool:
    """Whether this epoch's checkpoint is written.  Under DDP every rank must agree (a save is a
    collective: the RNG states are gathered, then all ranks wait for the file), but each rank's cadence
    times a different thing (rank 0 the write, the others the barrier), so rank 0's decision is sent
    to all; without a checkpoint to write there is nothing to decide and no collective.

    Example:
        >>> checkpoint_due(CheckpointCadence(0.05), None, True)
        True
    """
    due = cadence.due()
    if ddp is None or not checkpointing:
        return due
    return bool(ddp.all_reduce_sum(torch.tensor([float(due) if ddp.is_main else 0.0]))[0] > 0)


def write_checkpoint(path: str, state: dict, ddp=None) -> None:
    """Writes ``state`` (which holds this rank's generator states as ``"rng_torch"`` and ``"rng_cuda"``,
    from :func:`rng_states`) to ``path`` atomically; under ``ddp`` (a :class:`gkdfast.distill.ddp.Dist`)
    every rank's states are gathered into ``"rng_ranks"`` with the ``"world_size"``, rank 0 alone
    writes, and all ranks wait.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
        >>> rng = rng_states()
        >>> write_checkpoint(p, {"epoch": 3, "rng_torch": rng["torch"], "rng_cuda": rng["cuda"]})
        >>> read_checkpoint(p, "example")["epoch"]
        3
    """
    if ddp is not None:
        state["rng_ranks"] = ddp.all_gather_object({"torch": state["rng_torch"], "cuda": state.get("rng_cuda")})
        state["world_size"] = ddp.world_size
    if ddp is None or ddp.is_main:
        atomic_write(path, lambda f: save_checkpoint_file(state, f))
    if ddp is not None:
        ddp.barrier()


def read_checkpoint(path: str, who: str, world_size: int = 1) -> Optional[dict]:
    """The checkpoint at ``path`` (loaded onto the CPU), or ``None`` when there is none.  A file that
    cannot be read, or one written by a run with another number of processes, is a ``ValueError``
    naming it (``who``: the caller, for the message).  A resumed rank takes its RNG states back with
    :func:`resume_rng_states`."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or the file is damaged
        raise ValueError(f"{who}: cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:120]}); "
                         "delete it to start over") from None
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise ValueError(f"{who}: {path} was written by a {saved_world}-process run; resume it with "
                         f"{saved_world} process(es) (this run has {world_size}) or use another checkpoint")
    return state


def resume_rng_states(state: dict, ddp=None) -> None:
    """Restores this rank's generator states from a checkpoint :func:`write_checkpoint` wrote."""
    set_rng_states(state["rng_ranks"][ddp.rank] if ddp is not None else
                   {"torch": state["rng_torch"], "cuda": state.get("rng_cuda")})
