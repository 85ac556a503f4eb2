"""--teacher auto: the candidate with the best validation accuracy is kept, test labels unused."""
from dataclasses import replace

import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill.experiment import seed_split
from gkdfast.distill.teacher_select import select_teacher


def test_picks_the_best_validation_accuracy_and_reports_every_candidate():
    data = csbm(num_nodes=400, num_classes=3, seed=1)
    lines = []
    spec, table = select_teacher(data, ["mlp:8", "gcn:16"], epochs=40, log=lines.append)
    assert [r["model"] for r in table] == ["MLP(8)", "GCN(16)"]
    best = max(table, key=lambda r: r["val_acc"])
    assert spec.label == best["model"]
    assert any("picked" in line and spec.label in line for line in lines)


def test_ignores_test_labels():
    # A fixed split, then the test nodes' labels permuted: every candidate's validation accuracy is unchanged.
    d = seed_split(csbm(num_nodes=300, num_classes=3, seed=2), 0)
    d = replace(d, extras=dict(d.extras, split="given"))
    test = d.test_mask.nonzero().flatten()
    y = d.y.clone()
    y[test] = y[test[torch.randperm(test.numel(), generator=torch.Generator().manual_seed(0))]]
    y[test] = (y[test] + 1) % 3  # and shifted: certainly different
    _, table = select_teacher(d, ["gcn:8", "sage:8"], epochs=15, log=lambda s: None)
    _, table2 = select_teacher(replace(d, y=y), ["gcn:8", "sage:8"], epochs=15, log=lambda s: None)
    assert [r["val_acc"] for r in table2] == [r["val_acc"] for r in table]


def test_bad_candidates_fail_before_training():
    data = csbm(num_nodes=300, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="unknown model"):
        select_teacher(data, ["gcn:8", "transformer"], log=lambda s: None)
    with pytest.raises(ValueError, match="at least one"):
        select_teacher(data, [], log=lambda s: None)


def test_a_cached_selection_is_read_back_without_training(tmp_path, monkeypatch):
    from gkdfast.distill import teacher_select as ts

    data = csbm(num_nodes=300, num_classes=3, seed=3)
    spec, table = select_teacher(data, ["mlp:8", "gcn:8"], epochs=10, log=lambda s: None, cache_dir=str(tmp_path))
    files = list(tmp_path.glob("teacher-select-*.json"))
    assert len(files) == 1

    def no_training(*a, **kw):
        raise AssertionError("a cached selection must not train its candidates")

    monkeypatch.setattr(ts._recipes.NoKD, "fit", no_training)
    lines = []
    spec2, table2 = select_teacher(data, ["mlp:8", "gcn:8"], epochs=10, log=lines.append, cache_dir=str(tmp_path))
    assert spec2 == spec and table2 == table
    assert sum("(cached)" in line for line in lines) == 2
    # anything the outcome depends on changes the key: another seed's split, other epochs or candidates
    for kw in ({"seed": 1}, {"epochs": 11}, {"candidates": ["gcn:8", "mlp:8"]}):
        call = dict({"candidates": ["mlp:8", "gcn:8"], "epochs": 10}, **kw)
        with pytest.raises(AssertionError, match="must not train"):
            select_teacher(data, log=lambda s: None, cache_dir=str(tmp_path), **call)
    for damaged in ("{ not json", "[1, 2]", '{"candidates": [], "table": 3}'):  # ignored, and retrained
        files[0].write_text(damaged)
        with pytest.raises(AssertionError, match="must not train"):
            select_teacher(data, ["mlp:8", "gcn:8"], epochs=10, log=lambda s: None, cache_dir=str(tmp_path))
