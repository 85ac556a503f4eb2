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
import warnings
from typing import Optional

import torch

from gkdfast._io import atomic_write, save_checkpoint_file
from gkdfast.distill.checkpoint_cadence import CheckpointCadence

__all__ = ["rng_states", "set_rng_states", "hash_module_settings", "checkpoint_due", "write_checkpoint",
           "read_checkpoint", "warn_thread_change", "resume_rng_states"]


def rng_states(device=None) -> dict:
    """Torch's CPU generator state and CUDA ones: with a CUDA ``device`` (the one a training loop
    forks) that device's; with ``None`` every device's once CUDA is initialised (a CPU run creates no
    CUDA context); with a CPU ``device`` none.

    Example:
        >>> s = rng_states(); a = torch.rand(1); set_rng_states(s); bool(torch.rand(1) == a)
        True
    """
    cuda = None
    if device is not None and torch.device(device).type == "cuda":
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        cuda = {index: torch.cuda.get_rng_state(index)}
    elif device is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = {i: torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())}
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_states(states: dict, device=None) -> None:
    """Restores what :func:`rng_states` returned (also a list of every device's states, as checkpoints
    of earlier versions hold them).  With ``device`` (the training device of a resumed run) the saved
    CUDA state goes onto that device whatever its number was when saved (a rank may see its GPU under
    another ordinal after a restart), and a CPU device restores no CUDA state.

    Example:
        >>> s = rng_states("cpu"); a = torch.randn(2); set_rng_states(s, "cpu"); torch.equal(torch.randn(2), a)
        True
    """
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    if device is not None:
        device = torch.device(device)
        if device.type != "cuda":
            return
        index = torch.cuda.current_device() if device.index is None else device.index
        saved = list(cuda.values()) if isinstance(cuda, dict) else list(cuda)
        if isinstance(cuda, dict) and index in cuda:
            state = cuda[index]
        else:
            state = saved[index] if len(saved) > 1 and index < len(saved) else saved[0]
        torch.cuda.set_rng_state(state, index)
        return
    if isinstance(cuda, dict):
        for index, state in cuda.items():
            torch.cuda.set_rng_state(state, int(index))
    else:
        torch.cuda.set_rng_state_all(cuda)


def hash_module_settings(h, *roots) -> None:
    """Feeds into the hashlib object ``h`` what a checkpoint's numbers depend on in each module of
    ``roots``, without their weight values (a resumed run overwrites those): its ``repr``, every
    state entry's name and shape, and every submodule's class and plain settings (dropout, temperature,
    tau, ...: public attributes of type ``int``, ``float``, ``str``, ``bool``, ``tuple`` or ``None``).

    Example:
        >>> import hashlib
        >>> a, b = hashlib.sha256(), hashlib.sha256()
        >>> hash_module_settings(a, torch.nn.Dropout(0.1)); hash_module_settings(b, torch.nn.Dropout(0.5))
        >>> a.hexdigest() == b.hexdigest()
        False
    """
    for root in roots:
        h.update(repr(root).encode())
        for name, p in root.state_dict().items():
            h.update(f"{name}{tuple(p.shape)}".encode())
        for name, module in root.named_modules():  # plain settings: dropout, temperature, tau, ...
            settings = {k: v for k, v in sorted(vars(module).items()) if not k.startswith("_")
                        and k != "training" and (v is None or isinstance(v, (int, float, str, bool, tuple)))}
            h.update(f"{name}:{type(module).__qualname__}{settings}".encode())


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
    writes, and all ranks wait for it; if its write fails, every rank raises.  The writer's CPU thread
    count goes in as ``"threads"`` (a resume at another count is not bit for bit:
    :func:`warn_thread_change`).

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
        >>> rng = rng_states()
        >>> write_checkpoint(p, {"epoch": 3, "rng_torch": rng["torch"], "rng_cuda": rng["cuda"]})
        >>> read_checkpoint(p, "example")["epoch"]
        3
    """
    state["threads"] = torch.get_num_threads()
    if ddp is None:
        atomic_write(path, lambda f: save_checkpoint_file(state, f))
        return
    state["rng_ranks"] = ddp.all_gather_object({"torch": state["rng_torch"], "cuda": state.get("rng_cuda")})
    state["world_size"] = ddp.world_size
    ddp.on_main(lambda: atomic_write(path, lambda f: save_checkpoint_file(state, f)),
                f"checkpoint {path}: rank 0 could not write it")


def read_checkpoint(path: str, who: str, world_size: int = 1) -> Optional[dict]:
    """The checkpoint at ``path`` (loaded onto the CPU), or ``None`` when there is none.  A file that
    cannot be read, or one written by a run with another number of processes, is a ``ValueError``
    naming it (``who``: the caller, for the message).  A resumed rank takes its RNG states back with
    :func:`resume_rng_states`.

    Example:
        >>> read_checkpoint("no-such-checkpoint.pt", "example") is None
        True
    """
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or the file is damaged
        raise ValueError(f"{who}: cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:120]}); "
                         "delete it to start over") from None
    if not isinstance(state, dict):  # (a tensor or list saved there by something else: .get below failed)
        raise ValueError(f"{who}: {path} holds a {type(state).__name__}, not a gkdfast checkpoint; delete it "
                         "to start over")
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise ValueError(f"{who}: {path} was written by a {saved_world}-process run; resume it with "
                         f"{saved_world} process(es) (this run has {world_size}) or use another checkpoint")
    return state


def warn_thread_change(state: dict, path: str, who: str, device=None) -> None:
    """Warns (``RuntimeWarning``) when the checkpoint ``state`` read from ``path`` was written with
    another CPU thread count than this process has, on a CPU ``device`` (or ``None``).  The resumed run
    is valid, but not the uninterrupted run bit for bit: torch's matrix products round differently per
    thread count (README, "Determinism").  Checkpoints without the count (older ones) pass silently.

    Example:
        >>> warn_thread_change({"threads": torch.get_num_threads()}, "ckpt.pt", "example")  # same: silent
    """
    saved = state.get("threads")
    if saved is None or (device is not None and torch.device(device).type != "cpu"):
        return
    now = torch.get_num_threads()
    if int(saved) != now:
        warnings.warn(f"{who}: {path} was written with {int(saved)} CPU thread(s) and this run has {now}: it "
                      "resumes, but from here its numbers can differ in the last bits from an uninterrupted run "
                      f"(matrix products round differently per thread count); OMP_NUM_THREADS={int(saved)} "
                      "resumes it bit for bit", RuntimeWarning, stacklevel=3)


def resume_rng_states(state: dict, ddp=None, device=None) -> None:
    """Restores this rank's generator states from a checkpoint :func:`write_checkpoint` wrote, the CUDA
    one onto ``device`` (see :func:`set_rng_states`).

    Example:
        >>> rng = rng_states("cpu"); a = torch.rand(1)
        >>> resume_rng_states({"rng_torch": rng["torch"], "rng_cuda": rng["cuda"]}, None, "cpu")
        >>> bool(torch.rand(1) == a)
        True
    """
    set_rng_states(state["rng_ranks"][ddp.rank] if ddp is not None else
                   {"torch": state["rng_torch"], "cuda": state.get("rng_cuda")}, device)
