"""A checkpoint records the CPU thread count it was written with; resuming it at another count warns
(the run goes on, but torch's matrix products round differently per thread count, so it is no longer
the uninterrupted run bit for bit), at the same count or from an older checkpoint it stays silent."""
from __future__ import annotations

import warnings

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import Distiller, StopTraining, checkpoint_file, terms
from gkdfast.distill.checkpoint_file import read_checkpoint, warn_thread_change, write_checkpoint
from gkdfast.nn import MLP
from gkdfast.sampling import fit_sampled


@pytest.fixture(scope="module")
def tiny():
    return csbm(num_nodes=200, num_classes=3, feature_dim=8, avg_degree=6, seed=1)


@pytest.fixture
def threads():
    """Sets torch's thread count for the test and restores it after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _stop_at(k):
    def stop(epoch, info):
        if epoch == k:
            raise StopTraining
    return stop


def _distiller(path):
    torch.manual_seed(0)
    return Distiller(MLP(8, 8, 3), [terms.CrossEntropy()], epochs=4, patience=None, checkpoint_dir=path)


def test_checkpoint_records_the_writers_thread_count(tmp_path, threads):
    threads(1)
    path = str(tmp_path / "c.pt")
    write_checkpoint(path, {"epoch": 1})
    assert read_checkpoint(path, "test")["threads"] == 1


def test_distiller_resume_at_another_thread_count_warns(tiny, tmp_path, threads):
    threads(2)
    _distiller(str(tmp_path)).fit(tiny, callbacks=[_stop_at(2)])
    threads(1)
    with pytest.warns(RuntimeWarning, match=r"written with 2 CPU thread\(s\) and this run has 1.*OMP_NUM_THREADS=2"):
        result = _distiller(str(tmp_path)).fit(tiny)
    assert result.epochs == 4  # the warning does not stop the resume


def test_distiller_resume_at_the_same_thread_count_is_silent(tiny, tmp_path, threads):
    threads(1)
    _distiller(str(tmp_path)).fit(tiny, callbacks=[_stop_at(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert _distiller(str(tmp_path)).fit(tiny).epochs == 4


class _Killed(Exception):
    pass


def test_sampled_resume_at_another_thread_count_warns(tiny, tmp_path, threads, monkeypatch):
    path = str(tmp_path / "run.pt")

    def fit():
        torch.manual_seed(0)
        model = gkdfast.nn.SAGE(8, 8, 3)
        return fit_sampled(model, tiny, fanouts=(3, 3), batch_size=64, epochs=3, progress=False, checkpoint=path)

    def write_then_die(path, state, ddp=None):  # a kill right after epoch 1's checkpoint
        write_checkpoint(path, state, ddp)
        raise _Killed

    threads(2)
    with monkeypatch.context() as m:
        m.setattr(checkpoint_file, "write_checkpoint", write_then_die)
        with pytest.raises(_Killed):
            fit()
    threads(1)
    with pytest.warns(RuntimeWarning, match="fit_sampled: .*written with 2 CPU thread"):
        fit()


def test_old_checkpoints_and_gpu_runs_do_not_warn(threads):
    threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warn_thread_change({"epoch": 3}, "old.pt", "test")  # written before the count was recorded
        warn_thread_change({"threads": 7}, "gpu.pt", "test", device="cuda")  # CPU threads do not set its bits
    with pytest.warns(RuntimeWarning, match="old.pt was written with 7"):
        warn_thread_change({"threads": 7}, "old.pt", "test", device="cpu")
