"""Starts the gloo ranks of the distributed tests as spawned processes.

Each rank runs with ``faulthandler`` on, so a rank that dies by a signal prints every thread's
Python stack into the test's captured stderr.  A rank killed by a signal (not one that raised or
exited with a status) is re-run once in a fresh directory, and the test run shows a warning naming
the signal.  Why: one CI run (2 cores) saw a gloo rank abort with "terminate called without an active
exception" a second after its first DDP step; 36 local runs of the same ranks, 30 of them beside a
CPU hog, did not repeat it.  A second death fails the test, and the retried run's results are checked
as strictly as the first's.
"""
from __future__ import annotations

import faulthandler
import os
import warnings
from typing import Callable

import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable, *args) -> None:
    faulthandler.enable(all_threads=True)
    fn(rank, *args)


def spawn_ranks(fn: Callable, nprocs: int, base_dir: str, make_args: Callable[[str, str], tuple]) -> str:
    """Runs ``fn(rank, *make_args(init_file, out_dir))`` on ``nprocs`` spawned ranks and returns the
    ``out_dir`` (under ``base_dir``) that holds the finished run's files."""
    for attempt in (1, 2):
        out = os.path.join(base_dir, f"attempt{attempt}")
        os.makedirs(out)
        try:
            mp.start_processes(_entry, args=(fn,) + tuple(make_args(os.path.join(out, "init"), out)),
                               nprocs=nprocs, join=True, start_method="spawn")
            return out
        except mp.ProcessExitedException as exc:
            if attempt == 2 or not exc.signal_name:
                raise
            warnings.warn(f"{fn.__name__}: a rank died by {exc.signal_name} ({exc}); running the ranks once more",
                          RuntimeWarning, stacklevel=2)
    raise AssertionError("unreachable")
