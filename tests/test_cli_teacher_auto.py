"""`gkdfast distill --teacher auto` on the built-in graph: the log names the pick and the results'
teacher row is that model."""
import json


def test_teacher_auto_picks_and_uses_the_best_candidate(tmp_path, capsys):
    from gkdfast.cli import main

    out = tmp_path / "run"
    rc = main(["distill", "--nodes", "500", "--teacher", "auto", "--student", "mlp:8", "--methods", "glnn",
               "--epochs", "8", "--seeds", "1", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert rc in (0, None)
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
    rc = main(["distill", "--nodes", "500", "--teacher", "auto", "--student", "mlp:8", "--methods", "glnn",
               "--epochs", "8", "--seeds", "1", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert rc in (0, None)
    err = capsys.readouterr().err
    assert err.count("teacher candidate") == err.count("(cached)") == 6
    assert [line for line in err.splitlines() if "--teacher auto: picked" in line] == picked
    assert json.loads((out / "results.json").read_text())["teacher_selection"] == selection
