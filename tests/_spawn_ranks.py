"""Starts the gloo ranks of the distributed tests as spawned processes, and checks how they end.

Each rank runs with ``faulthandler`` on, so a rank that dies by a signal prints every thread's Python
stack into the test's captured stderr.  Each worker ends with :func:`assert_group_released`: after
``destroy_process_group`` no gloo thread may be left.  Threads left running into interpreter shutdown
made a rank abort now and then ("terminate called without an active exception", once in CI): a
module of torch held the group (``gkdfast.distributed.unpin_default_group``).  The check turns that
rare abort into a failure on every run.
"""
from __future__ import annotations

import faulthandler
import os
from typing import Callable, List

import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable, *args) -> None:
    faulthandler.enable(all_threads=True)
    fn(rank, *args)


def spawn_ranks(fn: Callable, nprocs: int, base_dir: str, make_args: Callable[[str, str], tuple]) -> str:
    """Runs ``fn(rank, *make_args(init_file, out_dir))`` on ``nprocs`` spawned ranks and returns
    ``out_dir`` (``base_dir/ranks``), which holds the run's files."""
    out = os.path.join(base_dir, "ranks")
    os.makedirs(out)
    mp.start_processes(_entry, args=(fn,) + tuple(make_args(os.path.join(out, "init"), out)), nprocs=nprocs,
                       join=True, start_method="spawn")
    return out


def gloo_threads() -> List[str]:
    """Names of this process's gloo threads (Linux: ``/proc/self/task/*/comm``; [] elsewhere)."""
    names = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return names
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if "gloo" in name:
            names.append(name)
    return sorted(names)


def assert_group_released(rank: int) -> None:
    """Call after ``destroy_process_group``: the group's gloo threads must have been joined (a thread
    that has just ended may linger in /proc for a moment: looked at again for up to a second)."""
    import time

    left = gloo_threads()
    for _ in range(20):
        if not left:
            return
        time.sleep(0.05)
        left = gloo_threads()
    if left:
        raise AssertionError(f"rank {rank}: gloo threads {left} outlived destroy_process_group (something still "
                             "references the process group)")
