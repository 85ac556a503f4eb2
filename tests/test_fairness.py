"""Fairness: sensitive attributes in the readers and the npz bundle, ΔSP/ΔEO in the results, RELIANT."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import need_data
from gkdfast.cli import main
from gkdfast.data import GraphData, csbm, load, save_npz
from gkdfast.data.fairness import load_fairness
from gkdfast.distill import recipes
from gkdfast.distill.experiment import summarize_runs
from gkdfast.distill.fairness import delta_eo, delta_sp
from gkdfast.distill.reliant import bias_surrogate
from gkdfast.distill.results import format_table, validate
from gkdfast.distill.teacher_cache import teacher_outputs
from gkdfast.nn import MLP, SAGE


def _biased(n=600, seed=0) -> GraphData:
    """Two classes; the sensitive attribute agrees with the class on 90% of the nodes, so a model
    that fits the labels is strongly biased."""
    d = csbm(num_nodes=n, num_classes=2, feature_dim=8, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    flip = torch.rand(n, generator=gen) < 0.1
    return GraphData(d.graph, d.x, d.y, d.train_mask, d.val_mask, d.test_mask, 2, "biased",
                     torch.where(flip, 1 - d.y, d.y), dict(d.extras))


def test_gaps_measure_group_rates():
    pred = torch.tensor([1, 1, 1, 0, 0, 0])
    s = torch.tensor([0, 0, 0, 1, 1, 1])
    y = torch.tensor([1, 1, 0, 1, 0, 0])
    assert delta_sp(pred, s) == 1.0
    assert delta_eo(pred, y, s) == 1.0
    assert delta_sp(torch.tensor([1, 0, 1, 0]), torch.tensor([0, 0, 1, 1])) == 0.0


def test_bias_surrogate_tracks_the_gap_and_has_gradients():
    p = torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.9, 0.1], [0.8, 0.2]], requires_grad=True)
    s = torch.tensor([0, 0, 1, 1])
    biased = bias_surrogate(p, s)
    biased.backward()
    assert float(biased.detach()) > 0.5 and p.grad.abs().sum() > 0
    fair = bias_surrogate(torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9], [0.9, 0.1]]), s)
    assert float(fair) < 1e-6


def test_reliant_bias_term_lowers_the_parity_gap_of_plain_kd():
    data = _biased()
    torch.manual_seed(0)
    teacher = SAGE(8, 32, 2)
    recipes.NoKD(epochs=60).fit(lambda f: teacher, data, None, 0)
    tout = teacher_outputs(teacher, data.x, data.graph)

    def gap(recipe):
        torch.manual_seed(0)
        tr = recipe.fit(lambda f: MLP(f, 32, 2), data, tout, 0)
        logits = tr.model.eval()(tr.inputs)
        return delta_sp(logits, data.sensitive, data.test_mask)

    kd = gap(recipes.get("kd", epochs=60))
    fair = gap(recipes.get("reliant", alpha=1000.0, epochs=60))
    assert kd > 0.3  # the setting is biased to begin with
    assert fair < 0.5 * kd


def test_reliant_needs_a_sensitive_attribute():
    d = csbm(num_nodes=300, num_classes=2)
    with pytest.raises(ValueError, match="sensitive attribute"):
        recipes.get("reliant").fit(lambda f: MLP(f, 8, 2), d, teacher_outputs(MLP(d.num_features, 8, 2), d.x, None))


def test_results_rows_carry_both_gaps_and_the_table_shows_them():
    runs = [{"method": m, "model": "MLP(8)", "test_acc": 0.8, "seconds": 1.0, "inference_ms_per_1k_nodes": 0.1,
             "delta_sp": sp, "delta_eo": 0.05} for m, sp in (("kd", 0.2), ("reliant", 0.1))]
    res = summarize_runs(runs, dataset="g", num_nodes=3, num_edges=4)
    validate(res)
    assert res["rows"][1]["delta_sp_mean"] == pytest.approx(0.1)
    assert "ΔSP" in format_table(res)
    broken = json.loads(json.dumps(res))
    broken["rows"][0]["delta_sp"] = [12.0]
    with pytest.raises(ValueError, match="delta_sp"):
        validate(broken)


def test_cli_reliant_writes_gaps_in_every_row(tmp_path):
    path = str(tmp_path / "biased.npz")
    save_npz(_biased(), path)
    out = str(tmp_path / "out")
    rc = main(["distill", "--data", path, "--methods", "kd,reliant", "--fairness", "eo", "--seeds", "1",
               "--epochs", "5", "--no-progress", "--quiet", "--device", "cpu", "--out", out])
    assert rc == 0
    rows = json.load(open(os.path.join(out, "results.json")))["rows"]
    assert [r["method"] for r in rows] == ["teacher", "none", "kd", "reliant"]
    assert all(0.0 <= r["delta_sp_mean"] <= 1.0 and 0.0 <= r["delta_eo_mean"] <= 1.0 for r in rows)


def test_npz_bundle_refuses_a_sensitive_attribute_with_three_values(tmp_path):
    import numpy as np

    d = _biased(300)
    path = str(tmp_path / "three.npz")
    save_npz(d, path)
    with np.load(path) as f:  # a file from elsewhere: values 0, 1, 2
        arrays = {k: f[k] for k in f.files}
    arrays["sensitive"] = arrays["sensitive"] + (np.arange(300) % 3 == 0)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"three\.npz: sensitive attribute .* 3 values .* binary"):
        load(path)
    d.sensitive = torch.from_numpy(arrays["sensitive"])
    with pytest.raises(ValueError, match="save_npz: the sensitive attribute must be 0/1"):
        save_npz(d, path)  # (nor is such a file written)


def test_fairness_csv_with_a_non_binary_sensitive_column_names_file_and_fix(tmp_path):
    cols = ["age", "race", "sex", "income"]
    rows = [[30 + i, i % 3, i % 2, i % 2] for i in range(12)]
    (tmp_path / "income.csv").write_text(",".join(cols) + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    (tmp_path / "income_edges.txt").write_text("0 1\n1 2\n")
    with pytest.raises(ValueError, match=r"income\.csv: sensitive attribute 'race' has 3 values .* map it to 0/1"):
        load_fairness(tmp_path)
    (tmp_path / "income_edges.txt").write_text("0 1\n1 99\n")
    rows = [[30 + i, i % 2, i % 2, i % 2] for i in range(12)]
    (tmp_path / "income.csv").write_text(",".join(cols) + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    with pytest.raises(ValueError, match=r"income_edges\.txt: edge list has node id 99 outside \[0, 12\)"):
        load_fairness(tmp_path)


def test_a_sensitive_attribute_with_other_values_is_refused_on_every_path(tmp_path):
    """ΔSP / ΔEO compare groups 0 and 1: a third value was silently left out of the metrics when the
    data came from code or from the memory-mapped layout."""
    from gkdfast.data import load_mmap, save_mmap

    d = _biased(60)
    d.sensitive = torch.arange(60) % 3
    with pytest.raises(ValueError, match=r"sensitive must hold 0/1 only, got values \[0, 1, 2\]"):
        d.validate()
    good = _biased(60)
    save_mmap(good, str(tmp_path / "mm"))
    np.save(tmp_path / "mm" / "sensitive.npy", (np.arange(60) % 3).astype(np.int64))
    with pytest.raises(ValueError, match=r"sensitive\.npy: sensitive attribute 'sensitive' has 3 values"):
        load_mmap(str(tmp_path / "mm"))


def test_fairness_csv_with_a_header_only_names_the_file(tmp_path):
    (tmp_path / "income.csv").write_text("age,race,sex,income\n")
    (tmp_path / "income_edges.txt").write_text("0 1\n")
    with pytest.raises(ValueError, match=r"income\.csv: empty table: a header and no rows"):
        load_fairness(tmp_path)


def test_fairness_flag_without_reliant_is_refused(tmp_path, capsys):
    path = str(tmp_path / "biased.npz")
    save_npz(_biased(), path)
    assert main(["distill", "--data", path, "--methods", "kd", "--fairness", "eo", "--quiet",
                 "--out", str(tmp_path / "out")]) == 2
    assert "--fairness eo: picks the bias RELIANT reduces; add reliant" in capsys.readouterr().err


def test_reliant_trains_with_the_recipe_distiller_options(monkeypatch):
    """ties / passes / batching reached RELIANT's Distiller as they reach every recipe's (they were dropped)."""
    from gkdfast.distill import distiller as distiller_mod

    seen = {}
    real = distiller_mod.Distiller.__init__

    def spy(self, *a, **kw):
        seen.update(kw)
        real(self, *a, **kw)

    monkeypatch.setattr(distiller_mod.Distiller, "__init__", spy)
    data = _biased(200)
    tout = teacher_outputs(MLP(8, 8, 2), data.x, None)
    recipes.get("reliant", epochs=1, ties="last", passes="separate", batch_size=64).fit(
        lambda f: MLP(f, 8, 2), data, tout, 0)
    assert (seen["ties"], seen["passes"], seen["batch_size"]) == ("last", "separate", 64)


@pytest.mark.parametrize("name,nodes,edges,features,sens1", [
    ("german", 1000, 21742, 27, 310), ("bail", 18876, 311870, 18, 9559), ("credit", 30000, 137377, 13, 2685),
    ("income", 14821, 42831, 13, 4685), ("nba", 403, 10621, 95, 107)])
def test_fairness_sets_match_the_data_readme(name, nodes, edges, features, sens1):
    d = load(need_data(f"fair_{name}"))
    assert (d.num_nodes, d.num_edges // 2, d.num_features) == (nodes, edges, features)
    assert int(d.sensitive.sum()) == sens1 and set(d.sensitive.unique().tolist()) == {0, 1}
    assert d.extras["split"].startswith("fair(")
    assert np.isclose(float(d.x.abs().max()), 1.0)
