"""fit_sampled(checkpoint=...): a killed sampled training resumes and ends where an uninterrupted one
would; the out-of-core pipeline's sampled teacher resumes through it."""
from __future__ import annotations

import os

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import checkpoint_file, terms
from gkdfast.distill.ddp import Dist
from gkdfast.distill.large import distill_large
from gkdfast.sampling import fit_sampled


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def data():
    return csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0)


def _kill_after_saving_epoch(monkeypatch, k):
    real = checkpoint_file.write_checkpoint

    def write_then_die(path, state, ddp=None):
        real(path, state, ddp)
        if state["epoch"] == k:
            raise Killed

    monkeypatch.setattr(checkpoint_file, "write_checkpoint", write_then_die)


def _fit(data, checkpoint=None, init_seed=0, **kw):
    torch.manual_seed(init_seed)
    model = gkdfast.nn.SAGE(8, 16, 3, dropout=0.5)
    kw = dict(dict(fanouts=(3, 3), epochs=5, batch_size=64, progress=False), **kw)
    return model, fit_sampled(model, data, checkpoint=checkpoint, **kw)


@pytest.fixture
def steps(monkeypatch):
    """Counts optimiser steps: a resumed run must take only the epochs after its checkpoint (a rerun
    from scratch would give the same weights, so equal weights alone do not show a resume)."""
    taken = []
    original = torch.optim.Adam.step

    def counting(self, *a, **k):
        taken.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counting)
    return taken


@pytest.mark.parametrize("distil", [False, True])
def test_killed_training_resumes_exactly(data, tmp_path, monkeypatch, distil, steps):
    kw = {}
    if distil:  # a GNN student with a projection head (its weights and Adam moments are checkpointed too)
        teacher = gkdfast.distill.teacher_outputs(gkdfast.nn.SAGE(8, 16, 3), data.x, data.graph)
        kw = dict(terms=[terms.CrossEntropy(1.0), terms.LogitKD(1.0), terms.GSP(0.5)], teacher=teacher)
    want_model, want = _fit(data, **kw)
    whole = len(steps)
    ckpt = str(tmp_path / "run.pt")
    with monkeypatch.context() as m:
        _kill_after_saving_epoch(m, 2)
        with pytest.raises(Killed):
            _fit(data, ckpt, **kw)
    steps.clear()
    # another initial draw: the resumed run takes the checkpoint's weights, so it must still be accepted
    model, got = _fit(data, ckpt, init_seed=1, **kw)
    assert len(steps) == whole * 3 // 5 and got["resumed_after_epoch"] == 2  # epochs 3-5 only
    for (name, a), b in zip(want_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert got["history"] == want["history"] and got["best_epoch"] == want["best_epoch"]
    assert got["epochs"] == want["epochs"] == 5
    # a finished checkpoint: a rerun returns the result without training
    steps.clear()
    model_again, again = _fit(data, ckpt, **kw)
    assert steps == [] and again["history"] == want["history"]
    assert all(torch.equal(a, b) for a, b in zip(model_again.state_dict().values(), model.state_dict().values()))


def test_patience_stop_is_resumed_as_stopped(data, tmp_path, steps):
    _, first = _fit(data, str(tmp_path / "p.pt"), epochs=40, patience=1)
    assert first["epochs"] < 40
    steps.clear()
    _, again = _fit(data, str(tmp_path / "p.pt"), epochs=40, patience=1)
    assert steps == [] and again["epochs"] == first["epochs"] and again["history"] == first["history"]


def test_checkpoint_of_another_run_is_refused(data, tmp_path):
    ckpt = str(tmp_path / "c.pt")
    _fit(data, ckpt, epochs=2)
    with pytest.raises(ValueError, match="belongs to a different run"):
        _fit(data, ckpt, epochs=2, batch_size=32)
    teacher = gkdfast.distill.teacher_outputs(gkdfast.nn.SAGE(8, 16, 3), data.x, data.graph)
    kd = str(tmp_path / "kd.pt")
    _fit(data, kd, epochs=2, terms=[terms.LogitKD(1.0)], teacher=teacher)
    for changed in ([terms.LogitKD(5.0)], [terms.LogitKD(1.0, temperature=9.0)]):  # a term's settings
        with pytest.raises(ValueError, match="belongs to a different run"):
            _fit(data, kd, epochs=2, terms=changed, teacher=teacher)
    torch.manual_seed(5)  # (each _fit leaves the generator where its seed and model left it)
    other = gkdfast.distill.teacher_outputs(gkdfast.nn.SAGE(8, 16, 3), data.x, data.graph)
    assert not torch.equal(other.logits, teacher.logits)
    with pytest.raises(ValueError, match="belongs to a different run"):  # another teacher
        _fit(data, kd, epochs=2, terms=[terms.LogitKD(1.0)], teacher=other)
    changed_x = csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=1)
    with pytest.raises(ValueError, match="belongs to a different run"):  # other data of the same sizes
        _fit(changed_x, ckpt, epochs=2)
    with open(ckpt, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="cannot read checkpoint .*delete it"):
        _fit(data, ckpt, epochs=2)


def test_sampled_teacher_of_the_large_pipeline_resumes_after_a_kill(data, tmp_path, monkeypatch, steps):
    pytest.importorskip("gkdfast.sampling")
    kw = dict(teacher="sage", hidden=16, fanouts=(3, 3), teacher_epochs=4, teacher_batch_size=64, batch_size=128,
              chunk_rows=100, student_epochs=1, student_min_steps=0, progress=False)
    want = distill_large(data, out_dir=str(tmp_path / "whole"), **kw)
    whole = len(steps)
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        _kill_after_saving_epoch(m, 2)
        with pytest.raises(Killed):
            distill_large(data, out_dir=str(out), **kw)
    partials = [n for n in os.listdir(out) if n.endswith(".partial.pt")]
    assert len(partials) == 1
    killed = len(steps) - whole  # the teacher's first two epochs
    steps.clear()
    got = distill_large(data, out_dir=str(out), **kw)
    assert 0 < killed and len(steps) == whole - killed  # the teacher resumed at epoch 3
    assert got["rows"][0]["test_acc"] == want["rows"][0]["test_acc"]
    assert got["stages"][0]["best_epoch"] == want["stages"][0]["best_epoch"]
    assert not [n for n in os.listdir(out) if n.endswith(".partial.pt")]  # gone once the weights are saved
    a = torch.load(tmp_path / "whole" / "teacher-SAGE(16)-seed0.pt", weights_only=True)
    b = torch.load(out / "teacher-SAGE(16)-seed0.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampled_gnn_students_are_not_trained_again_by_a_rerun(data, tmp_path, steps):
    kw = dict(teacher=gkdfast.nn.SAGE(8, 16, 3).eval(), student="sage", method=["kd"], hidden=16, fanouts=(3, 3),
              batch_size=64, chunk_rows=100, student_epochs=2, student_min_steps=0, progress=False,
              out_dir=str(tmp_path))
    first = distill_large(data, **kw)
    assert steps
    steps.clear()
    again = distill_large(data, **kw)
    assert steps == []  # both GNN students (kd and the baseline) came back from their checkpoints
    assert [r["test_acc"] for r in again["rows"]] == [r["test_acc"] for r in first["rows"]]


class _FakeRanks:
    """Just enough of gkdfast.distill.ddp.Dist for write_checkpoint, as rank `rank` of 2; `sent` is what
    rank 0 broadcasts (the real rank 0's outcome, on the other ranks)."""

    def __init__(self, rank, sent=None):
        self.rank, self.world_size, self.is_main, self.sent, self.broadcasts = rank, 2, rank == 0, sent, []

    def all_gather_object(self, obj):
        return [obj, obj]

    def broadcast_object(self, obj):
        self.broadcasts.append(obj)
        return obj if self.is_main else self.sent

    on_main = Dist.on_main


def test_a_failed_checkpoint_write_raises_on_every_rank(tmp_path, monkeypatch):
    # Rank 0's failing write used to leave the other ranks waiting in a barrier for the file.
    def fail(path, write):
        raise OSError(28, "no space left")

    monkeypatch.setattr(checkpoint_file, "atomic_write", fail)
    rng = checkpoint_file.rng_states()
    state = {"epoch": 1, "rng_torch": rng["torch"], "rng_cuda": rng["cuda"]}
    main = _FakeRanks(0)
    with pytest.raises(OSError, match="no space left"):
        checkpoint_file.write_checkpoint(str(tmp_path / "c.pt"), dict(state), main)
    assert main.broadcasts == ["OSError: [Errno 28] no space left"]
    other = _FakeRanks(1, sent=main.broadcasts[0])
    with pytest.raises(RuntimeError, match="rank 0 could not write it .*no space left"):
        checkpoint_file.write_checkpoint(str(tmp_path / "c.pt"), dict(state), other)
    ok = _FakeRanks(1, sent=None)
    checkpoint_file.write_checkpoint(str(tmp_path / "c.pt"), dict(state), ok)  # rank 0 wrote it: no error
    assert ok.broadcasts == [None]


def test_rng_states_of_a_cpu_run_touch_no_cuda():
    states = checkpoint_file.rng_states("cpu")
    assert states["cuda"] is None
    if torch.cuda.is_available():  # (on a GPU machine: no context was created for a CPU run)
        assert checkpoint_file.rng_states()["cuda"] is None or torch.cuda.is_initialized()
    a = torch.rand(3)
    checkpoint_file.set_rng_states(states)
    checkpoint_file.set_rng_states({"torch": states["torch"], "cuda": None})
    assert torch.equal(torch.rand(3), a)
