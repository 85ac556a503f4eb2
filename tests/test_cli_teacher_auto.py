"""`gkdfast distill --teacher auto` on the built-in graph: the log names the pick and the results'
teacher row is that model."""
import json


def _distill_auto(out, method, epochs, seeds):
    """``gkdfast distill --teacher auto`` on the built-in 500-node graph; its exit status."""
    from gkdfast.cli import main

    return main(["distill", "--nodes", "500", "--teacher", "auto", "--student", "mlp:8", "--methods", method,
                 "--epochs", str(epochs), "--seeds", str(seeds), "--no-progress", "--device", "cpu", "--out", str(out)])


def test_teacher_auto_picks_and_uses_the_best_candidate(tmp_path, capsys):
    out = tmp_path / "run"
    assert _distill_auto(out, "glnn", 8, 1) in (0, None)
    err = capsys.readouterr().err
    picked = [line for line in err.splitlines() if "--teacher auto: picked" in line]
    assert len(picked) == 1
    assert err.count("teacher candidate") == 6  # GCN, SAGE, GAT at hidden 64 and 256
    res = json.loads((out / "results.json").read_text())
    teacher = [r["model"] for r in res["rows"] if r["method"] == "teacher"]
    assert teacher and teacher[0] in picked[0]
    selection = res["teacher_selection"]  # the candidates' validation accuracies are kept with the results
    assert len(selection) == 6 and max(selection, key=lambda r: r["val_acc"])["model"] == teacher[0]
    # The same command again (a resumed run): the selection comes from OUT/cache, nothing retrains
    assert _distill_auto(out, "glnn", 8, 1) in (0, None)
    err = capsys.readouterr().err
    assert err.count("teacher candidate") == err.count("(cached)") == 6
    assert [line for line in err.splitlines() if "--teacher auto: picked" in line] == picked
    assert json.loads((out / "results.json").read_text())["teacher_selection"] == selection


def test_teacher_auto_picks_per_seed_where_the_split_is_redrawn(tmp_path, capsys):
    # seed 0's validation nodes are test nodes of seed 1 on a random 20/30-per-class split: picking seed 1's
    # teacher there let seed 1's test labels choose it; each seed now picks on its own split
    out = tmp_path / "run"
    assert _distill_auto(out, "kd", 4, 2) in (0, None)
    err = capsys.readouterr().err
    assert "each pick their teacher on their own split" in err
    assert err.count("teacher candidate") == 12  # six candidates for each of the two seeds
    res = json.loads((out / "results.json").read_text())
    per_seed = res["teacher_selection_per_seed"]
    assert sorted(per_seed) == ["0", "1"] and per_seed["0"] == res["teacher_selection"]
    picks = {s: max(t, key=lambda r: r["val_acc"])["model"] for s, t in per_seed.items()}
    teacher_rows = {r["model"]: r for r in res["rows"] if r["method"] == "teacher"}
    assert set(teacher_rows) == set(picks.values())  # one teacher row per picked architecture
    assert sum(len(r["test_acc"]) for r in teacher_rows.values()) == 2


def test_seeds_needing_own_selection_fixed_and_redrawn_splits():
    import dataclasses

    import torch

    from gkdfast.data import csbm
    from gkdfast.distill.teacher_select import seeds_needing_own_selection

    d = csbm(num_nodes=300, num_classes=3, seed=0)  # a random split rule: re-drawn per seed
    assert seeds_needing_own_selection(d, [0, 1, 2]) == [0, 1, 2]
    fixed = dataclasses.replace(d, extras={**d.extras, "split": "given"})  # the masks as they are
    assert seeds_needing_own_selection(fixed, [0, 1, 2]) == [0]
    assert torch.equal(fixed.test_mask, d.test_mask)
    # inductive: seed 0's candidates see nodes that seeds 1 and 2 hold out, so each seed picks its own
    assert seeds_needing_own_selection(fixed, [0, 1, 2], inductive_fraction=0.2) == [0, 1, 2]
