"""fit_sampled(checkpoint=...): a killed sampled training resumes and ends where an uninterrupted one
would; the out-of-core pipeline's sampled teacher resumes through it."""
from __future__ import annotations

import os

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import checkpoint_file, terms
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


def _fit(data, checkpoint=None, **kw):
    torch.manual_seed(0)
    model = gkdfast.nn.SAGE(8, 16, 3, dropout=0.5)
    kw = dict(dict(fanouts=(3, 3), epochs=5, batch_size=64, progress=False), **kw)
    return model, fit_sampled(model, data, checkpoint=checkpoint, **kw)


@pytest.mark.parametrize("distil", [False, True])
def test_killed_training_resumes_exactly(data, tmp_path, monkeypatch, distil):
    kw = {}
    if distil:  # a GNN student with a projection head (its weights and Adam moments are checkpointed too)
        teacher = gkdfast.distill.teacher_outputs(gkdfast.nn.SAGE(8, 16, 3), data.x, data.graph)
        kw = dict(terms=[terms.CrossEntropy(1.0), terms.LogitKD(1.0), terms.GSP(0.5)], teacher=teacher)
    want_model, want = _fit(data, **kw)
    ckpt = str(tmp_path / "run.pt")
    with monkeypatch.context() as m:
        _kill_after_saving_epoch(m, 2)
        with pytest.raises(Killed):
            _fit(data, ckpt, **kw)
    model, got = _fit(data, ckpt, **kw)
    for (name, a), b in zip(want_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert got["history"] == want["history"] and got["best_epoch"] == want["best_epoch"]
    assert got["epochs"] == want["epochs"] == 5
    # a finished checkpoint: a rerun returns the result without training
    model_again, again = _fit(data, ckpt, **kw)
    assert again["history"] == want["history"]
    assert all(torch.equal(a, b) for a, b in zip(model_again.state_dict().values(), model.state_dict().values()))


def test_patience_stop_is_resumed_as_stopped(data, tmp_path):
    _, first = _fit(data, str(tmp_path / "p.pt"), epochs=40, patience=1)
    assert first["epochs"] < 40
    _, again = _fit(data, str(tmp_path / "p.pt"), epochs=40, patience=1)
    assert again["epochs"] == first["epochs"] and again["history"] == first["history"]


def test_checkpoint_of_another_run_is_refused(data, tmp_path):
    ckpt = str(tmp_path / "c.pt")
    _fit(data, ckpt, epochs=2)
    with pytest.raises(ValueError, match="belongs to a different run"):
        _fit(data, ckpt, epochs=2, batch_size=32)
    with open(ckpt, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="cannot read checkpoint .*delete it"):
        _fit(data, ckpt, epochs=2)


def test_sampled_teacher_of_the_large_pipeline_resumes_after_a_kill(data, tmp_path, monkeypatch):
    pytest.importorskip("gkdfast.sampling")
    kw = dict(teacher="sage", hidden=16, fanouts=(3, 3), teacher_epochs=4, teacher_batch_size=64, batch_size=128,
              chunk_rows=100, student_epochs=1, student_min_steps=0, progress=False)
    want = distill_large(data, out_dir=str(tmp_path / "whole"), **kw)
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        _kill_after_saving_epoch(m, 2)
        with pytest.raises(Killed):
            distill_large(data, out_dir=str(out), **kw)
    partials = [n for n in os.listdir(out) if n.endswith(".partial.pt")]
    assert len(partials) == 1
    got = distill_large(data, out_dir=str(out), **kw)
    assert got["rows"][0]["test_acc"] == want["rows"][0]["test_acc"]
    assert got["stages"][0]["best_epoch"] == want["stages"][0]["best_epoch"]
    assert not [n for n in os.listdir(out) if n.endswith(".partial.pt")]  # gone once the weights are saved
    a = torch.load(tmp_path / "whole" / "teacher-SAGE(16)-seed0.pt", weights_only=True)
    b = torch.load(out / "teacher-SAGE(16)-seed0.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampled_gnn_students_are_not_trained_again_by_a_rerun(data, tmp_path, monkeypatch):
    kw = dict(teacher=gkdfast.nn.SAGE(8, 16, 3).eval(), student="sage", method=["kd"], hidden=16, fanouts=(3, 3),
              batch_size=64, chunk_rows=100, student_epochs=2, student_min_steps=0, progress=False,
              out_dir=str(tmp_path))
    first = distill_large(data, **kw)
    steps = []
    original_step = torch.optim.Adam.step

    def counting_step(self, *a, **k):
        steps.append(1)
        return original_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    again = distill_large(data, **kw)
    assert steps == []  # both GNN students (kd and the baseline) came back from their checkpoints
    assert [r["test_acc"] for r in again["rows"]] == [r["test_acc"] for r in first["rows"]]
