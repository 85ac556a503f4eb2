"""The distributed tests' rank launcher: a rank killed by a signal is re-run once, visibly; a rank
that raises is not re-run."""
import os
import signal

import pytest
import torch.multiprocessing as mp

from _spawn_ranks import spawn_ranks


def _abort_on_first_attempt(rank: int, out_dir: str):
    if os.path.basename(out_dir) == "attempt1":
        os.kill(os.getpid(), signal.SIGABRT)
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
        f.write("done")


def _always_abort(rank: int, out_dir: str):
    os.kill(os.getpid(), signal.SIGABRT)


def _raise(rank: int, out_dir: str):
    with open(os.path.join(out_dir, "ran"), "a") as f:
        f.write("x")
    raise ValueError("a failing check")


def test_a_rank_killed_by_a_signal_runs_once_more_with_a_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="died by SIGABRT"):
        out = spawn_ranks(_abort_on_first_attempt, 1, str(tmp_path), lambda init, out: (out,))
    assert os.path.basename(out) == "attempt2"
    assert open(os.path.join(out, "rank0.txt")).read() == "done"


def test_a_second_death_fails(tmp_path):
    with pytest.warns(RuntimeWarning), pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
        spawn_ranks(_always_abort, 1, str(tmp_path), lambda init, out: (out,))


def test_a_rank_that_raises_is_not_run_again(tmp_path):
    with pytest.raises(mp.ProcessRaisedException, match="a failing check"):
        spawn_ranks(_raise, 1, str(tmp_path), lambda init, out: (out,))
    assert sorted(os.listdir(tmp_path)) == ["attempt1"]
