"""Cases a review of the result and cache layer found broken: keys blind to which edge a weight is on,
`--teacher auto` picking on data the experiment hides, runs of different settings merged into one
row, and files written with the wrong mode."""
import os
import stat

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import terms
from gkdfast.distill.distiller import Distiller
from gkdfast.distill.runs_log import merge_runs
from gkdfast.distill.teacher_cache import teacher_outputs
from gkdfast.nn import GCN


def _same_csr_other_weighting():
    """Equal rowptr / col and equal weight vectors, but the weight 5 sits on different edges."""
    w = torch.tensor([1.0, 5.0, 1.0])
    a = gkdfast.Graph(torch.tensor([[1, 0, 2], [0, 1, 0]]), 3, w)
    b = gkdfast.Graph(torch.tensor([[1, 2, 0], [0, 0, 1]]), 3, w)
    assert torch.equal(a.rowptr, b.rowptr) and torch.equal(a.col, b.col)
    return a, b


def test_teacher_cache_tells_weightings_of_the_same_csr_apart(tmp_path):
    a, b = _same_csr_other_weighting()
    torch.manual_seed(0)
    model, x = GCN(4, 8, 2), torch.randn(3, 4)
    first = teacher_outputs(model, x, a, cache_dir=str(tmp_path))
    second = teacher_outputs(model, x, b, cache_dir=str(tmp_path))
    assert not second.cached and first.key != second.key  # (the second call returned a's logits before)
    with torch.no_grad():
        torch.testing.assert_close(second.logits, model.eval()(x, b))


def test_checkpoint_fingerprint_covers_edge_weights():
    a, b = _same_csr_other_weighting()
    plain = gkdfast.Graph(a.edge_index, 3)
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 0])
    masks = [torch.tensor([True, False, False])] * 3
    dist = Distiller(GCN(4, 8, 2), [terms.CrossEntropy()], None)
    keys = {dist._fingerprint(x, y, masks, g, None, True) for g in (a, b, plain)}
    assert len(keys) == 3


def test_teacher_auto_selects_on_what_the_experiment_hides(tmp_path):
    from gkdfast.distill.teacher_select import select_teacher

    d = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    for kw in ({}, {"inductive_fraction": 0.2}, {"missing_rate": 0.3}):
        select_teacher(d, ["mlp:8"], epochs=2, log=lambda s: None, cache_dir=str(tmp_path), **kw)
    assert len([f for f in os.listdir(tmp_path) if f.startswith("teacher-select-")]) == 3  # three selections


def test_merge_runs_refuses_runs_of_different_settings():
    run = {"dataset": "g", "seed": 0, "method": "kd", "model": "MLP(8)", "test_acc": 0.5, "seconds": 2.0,
           "epochs": 4, "inference_ms_per_1k_nodes": 0.1, "device": "cpu", "config": "aaa"}
    assert merge_runs([run, dict(run, seed=1)], "g", seeds=[0, 1]) is not None
    with pytest.raises(ValueError, match="2 different settings"):
        merge_runs([run, dict(run, seed=1, config="bbb")], "g", seeds=[0, 1])


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path):
    from gkdfast._io import atomic_write

    old = os.umask(0o022)
    try:
        path = str(tmp_path / "r.json")
        atomic_write(path, lambda f: f.write(b"{}"))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # mkstemp's 0600 before
    finally:
        os.umask(old)


def test_results_png_is_written_atomically_and_is_a_png(tmp_path):
    from gkdfast.distill.results import save_png

    res = {"dataset": "g", "num_nodes": 3, "num_edges": 4,
           "rows": [{"method": "kd", "model": "MLP(8)", "test_acc_mean": 0.5, "test_acc_std": 0.0,
                     "test_acc": [0.5], "train_seconds": 1.0, "inference_ms_per_1k_nodes": 0.1}]}
    path = str(tmp_path / "results.png")
    save_png(res, path)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_atomic_write_removes_the_stale_temporaries_of_killed_writers(tmp_path):
    import time

    from gkdfast._io import STALE_TEMP_SECONDS, atomic_write

    old = tmp_path / ".checkpoint.pt.abc123.tmp"  # left by a writer killed before its rename
    fresh = tmp_path / ".checkpoint.pt.def456.tmp"  # a live writer's
    other = tmp_path / ".results.json.x.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"x")
    past = time.time() - STALE_TEMP_SECONDS - 10
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    atomic_write(str(tmp_path / "checkpoint.pt"), lambda f: f.write(b"state"))
    assert not old.exists() and fresh.exists() and other.exists()  # (only this file's temporaries)


def test_distiller_callbacks_do_not_shift_the_training_random_stream():
    # a callback's draws moved the uninterrupted run's later epochs, which a resumed run (its streams
    # restored from the checkpoint) does not see
    from gkdfast.data import csbm
    from gkdfast.distill import Distiller, terms
    from gkdfast.nn import MLP

    data = csbm(num_nodes=200, seed=0)

    def fit(callbacks):
        torch.manual_seed(0)
        m = MLP(data.num_features, 16, data.num_classes, dropout=0.5)
        Distiller(m, [terms.CrossEntropy(1.0)], epochs=4, patience=None, batch_size=64).fit(data, callbacks=callbacks)
        return m.state_dict()

    plain = fit([])
    drawing = fit([lambda epoch, values: torch.rand(3)])
    for k, v in plain.items():
        assert torch.equal(drawing[k], v)


def test_a_record_after_a_cut_line_starts_a_line_of_its_own(tmp_path):
    from gkdfast.distill.runs_log import RunsLog, read_runs

    path = tmp_path / "runs.jsonl"
    path.write_text('{"seed": 0, "method": "kd"}\n{"seed": 1, "meth')  # a worker killed mid-line
    RunsLog(str(path)).append({"seed": 2, "method": "glnn"})
    assert [r["seed"] for r in read_runs(str(path))] == [0, 2]


def test_the_dropout_implementation_is_part_of_the_checkpoint_key(monkeypatch):
    from gkdfast.data import csbm
    from gkdfast.distill import Distiller, terms
    from gkdfast.nn import MLP

    data = csbm(num_nodes=100, seed=0)
    d = Distiller(MLP(data.num_features, 8, data.num_classes), [terms.CrossEntropy(1.0)], epochs=1)
    key = lambda: d._fingerprint(data.x, data.y, (data.train_mask, data.val_mask), data.graph, None, True)  # noqa
    philox = key()
    monkeypatch.setenv("GKDFAST_DROPOUT", "torch")
    assert key() != philox
