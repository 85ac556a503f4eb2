"""RELIANT's α picked on validation nodes only (gkdfast.distill.fairness.pick_fair_setting_on_validation)
and scripts/fair_sweep.py, which records validation figures and writes the pick beside the results."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast.distill.fairness import pick_fair_setting_on_validation

from conftest import load_repo_script, need_data


def _runs(table, seeds=(0, 1)):
    """One record per seed and row; ``table``: name -> (validation acc, validation ΔSP, validation ΔEO)."""
    return [{"seed": s, "method": m, "val_acc": a, "val_delta_sp": sp, "val_delta_eo": eo}
            for s in seeds for m, (a, sp, eo) in table.items()]


A10, A100, A1000 = "reliant(α=10)", "reliant(α=100)", "reliant(α=1000)"


def test_the_lowest_gap_within_two_points_of_kd_is_picked():
    runs = _runs({"kd": (0.90, 0.10, 0.08), A10: (0.895, 0.05, 0.02), A100: (0.881, 0.02, 0.07),
                  A1000: (0.60, 0.00, 0.00)})
    pick = pick_fair_setting_on_validation(runs, [A10, A100, A1000])
    assert pick["picked"] == A100  # 1.9 points lost: allowed; α=1000's zero gap costs 30 points
    assert pick["val_acc"][A1000] == pytest.approx(0.60) and pick["val_gap"][A100] == pytest.approx(0.02)
    # ΔEO reads the other column: α=10 has the lowest there
    assert pick_fair_setting_on_validation(runs, [A10, A100, A1000], fairness="eo")["picked"] == A10
    # a stricter bound leaves only α=10
    assert pick_fair_setting_on_validation(runs, [A10, A100, A1000], max_accuracy_drop=0.01)["picked"] == A10


def test_means_over_seeds_decide_and_ties_keep_the_earlier_candidate():
    runs = [{"seed": s, "method": m, "val_acc": a, "val_delta_sp": g, "val_delta_eo": 0.0}
            for s, m, a, g in [(0, "kd", 0.9, 0.1), (1, "kd", 0.9, 0.1),
                               (0, A10, 0.95, 0.04), (1, A10, 0.80, 0.04),   # mean 0.875: 2.5 points below
                               (0, A100, 0.89, 0.06), (1, A100, 0.89, 0.02),  # mean gap 0.04
                               (0, A1000, 0.89, 0.04), (1, A1000, 0.89, 0.04)]]
    pick = pick_fair_setting_on_validation(runs, [A10, A100, A1000])
    assert pick["picked"] == A100  # α=10 fails on its mean accuracy; α=100 and α=1000 tie on the gap
    assert pick["val_acc"][A10] == pytest.approx(0.875)


def test_no_candidate_qualifies():
    runs = _runs({"kd": (0.9, 0.1, 0.1), A100: (0.5, 0.0, 0.0)})
    assert pick_fair_setting_on_validation(runs, [A100])["picked"] is None


def test_bad_inputs_are_named():
    runs = _runs({"kd": (0.9, 0.1, 0.1), A10: (0.9, 0.0, 0.0)})
    with pytest.raises(ValueError, match="fairness must be 'sp' or 'eo'"):
        pick_fair_setting_on_validation(runs, [A10], fairness="dp")
    with pytest.raises(ValueError, match="no run of 'reliant\\(α=100\\)'"):
        pick_fair_setting_on_validation(runs, [A100])
    with pytest.raises(ValueError, match="has no 'val_acc'"):
        pick_fair_setting_on_validation([dict(r, val_acc=None) for r in runs], [A10])
    with pytest.raises(ValueError, match="different numbers of runs"):
        pick_fair_setting_on_validation(runs[:-1], [A10])
    with pytest.raises(ValueError, match="max_accuracy_drop"):
        pick_fair_setting_on_validation(runs, [A10], max_accuracy_drop=2)


def test_fair_sweep_writes_the_validation_pick(tmp_path, monkeypatch):
    root = os.path.dirname(need_data("fair_german"))
    sweep = load_repo_script("scripts/fair_sweep.py")
    out = str(tmp_path / "sweep")
    monkeypatch.setattr("sys.argv", ["fair_sweep.py", "--data", root, "--name", "german", "--seeds", "2",
                                     "--alphas", "10,100", "--epochs", "3", "--device", "cpu", "--out", out])
    sweep.main()
    res = json.load(open(os.path.join(out, "german-sp.json")))
    pick = json.load(open(os.path.join(out, "german-sp-validation.json")))
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "kd", A10, A100]
    assert len(pick["runs"]) == 2 * 5 and {"val_acc", "val_delta_sp", "val_delta_eo"} <= set(pick["runs"][0])
    # the pick is the rule applied to the recorded runs, and the runs' test figures are the rows'
    assert pick["picked"] == pick_fair_setting_on_validation(pick["runs"], [A10, A100])["picked"]
    kd = next(r for r in res["rows"] if r["method"] == "kd")
    assert kd["test_acc"] == [r["test_acc"] for r in pick["runs"] if r["method"] == "kd"]
    assert os.path.exists(os.path.join(out, "german-sp.png"))
