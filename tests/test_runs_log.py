"""gkdfast.distill.runs_log: run records logged line by line and merged across workers / machines
(what scripts/quality.py --runs-log / --from-runs use), without any data set."""
import json

import pytest

from gkdfast.distill.results import validate
from gkdfast.distill.runs_log import RunsLog, merge_runs, read_runs, reference_pair, timing_markdown


def _run(method, seed, acc, secs, device, model="MLP(8)", backend="native", dataset="g"):
    return {"seed": seed, "method": method, "model": model, "test_acc": acc, "seconds": secs, "epochs": 10,
            "inference_ms_per_1k_nodes": secs / 10, "dataset": dataset, "backend": backend, "host": "h",
            "device": device, "torch": "t", "threads": 1}


def test_runs_log_appends_one_line_per_run_with_its_fields(tmp_path):
    path = tmp_path / "runs.jsonl"
    log = RunsLog(str(path), dataset="g", backend="native")
    log.append({"seed": 0})
    log.append({"seed": 1})
    lines = [json.loads(s) for s in path.read_text().splitlines()]
    assert lines == [{"seed": 0, "dataset": "g", "backend": "native"}, {"seed": 1, "dataset": "g", "backend": "native"}]
    assert list(log) == lines


def test_read_runs_globs_skips_a_cut_line_and_names_a_missing_pattern(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text(json.dumps({"seed": 0}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"seed": 1}) + '\n{"seed": 2, "me')
    assert [r["seed"] for r in read_runs(str(tmp_path / "*.jsonl"))] == [0, 1]
    assert "b.jsonl:2: skipped a partial line" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="missing"):
        read_runs(str(tmp_path / "a.jsonl") + "," + str(tmp_path / "missing*.jsonl"))


def test_merge_takes_each_seed_from_one_source_and_times_from_the_main_one():
    gpu, cpu = "cuda", "cpu"
    runs = [_run("teacher", 0, 0.8, 1.0, gpu, "SAGE"), _run("kd", 0, 0.7, 2.0, gpu),
            _run("teacher", 0, 0.1, 50.0, cpu, "SAGE"),            # seed 0: the GPU has more runs
            _run("teacher", 1, 0.3, 1.0, gpu, "SAGE"),
            _run("teacher", 1, 0.9, 30.0, cpu, "SAGE"), _run("kd", 1, 0.6, 40.0, cpu),  # seed 1: the CPU's
            _run("kd", 0, 0.0, 9.0, gpu, dataset="other"),           # another dataset: ignored
            _run("kd", 7, 0.5, 4.0, cpu), _run("kd", 7, 0.5, 8.0, cpu, backend="reference")]  # timing only
    merged = merge_runs(runs, "g", seeds=[0, 1], num_nodes=3, num_edges=4)
    validate(merged.results)
    rows = {r["method"]: r for r in merged.results["rows"]}
    assert rows["teacher"]["test_acc"] == pytest.approx([0.8, 0.9])
    assert rows["kd"]["test_acc"] == pytest.approx([0.7, 0.6])
    # two GPU runs vs two CPU runs chosen: a tie goes to the first source seen (the GPU's); its times only
    assert rows["teacher"]["train_seconds"] == pytest.approx(1.0) and rows["kd"]["train_seconds"] == 2.0
    assert merged.seconds == pytest.approx(1.0 + 2.0 + 30.0 + 40.0)
    assert merged.timing.startswith("Runs: 2 runs cuda") and merged.timing.endswith("only.")
    assert [r["seconds"] for r in merged.reference["runs"]] == [8.0]
    assert [r["seconds"] for r in merged.reference["ours_runs"]] == [4.0]
    assert merge_runs(runs, "g", seeds=[7, 8]) is not None  # seed 7 has a native run
    assert merge_runs(runs, "g", seeds=[3]) is None


def test_reference_pair_and_timing_table():
    ours, ref = _run("gcrd", 0, 0.5, 2.0, "cpu"), _run("gcrd", 0, 0.5, 6.0, "cpu", backend="reference")
    pair = reference_pair([ref, ref], [ours, _run("gcrd", 1, 0.5, 1.0, "cpu")])
    assert pair == {"runs": [ref], "ours_runs": [ours]}
    assert timing_markdown(pair).splitlines()[-1] == "| gcrd | 2.00 (10) | 6.00 (10) | 200.0 | 600.0 | 3.00× |"
    assert reference_pair([], [ours]) is None
    assert timing_markdown(None).startswith("(no reference-backend run")
    assert timing_markdown({"error": "MemoryError: x"}) == "reference backend run failed: MemoryError: x"


def _distill(*flags):
    from gkdfast.cli import main

    return main(["distill", "--epochs", "1", "--quiet", "--no-progress", "--device", "cpu", *flags])


def test_the_distill_command_logs_every_run_of_the_common_and_the_published_protocol(tmp_path, capsys):
    log = tmp_path / "runs.jsonl"
    assert _distill("--nodes", "500", "--student", "mlp", "--methods", "kd", "--seeds", "2", "--out",
                    str(tmp_path / "a"), "--runs-log", str(log)) == 0
    runs = read_runs(str(log))
    # the teacher, the student alone and the KD student, per seed, with where they ran
    assert sorted((r["seed"], r["method"]) for r in runs) == [(s, m) for s in (0, 1) for m in ("kd", "none", "teacher")]
    assert all(r["dataset"] == "csbm" and r["device"] == "cpu" and r["threads"] >= 1 for r in runs)
    assert all((r["protocol"], r["setting"], r["missing_rate"], r["inductive_fraction"])
               == ("common", "transductive", 0.0, None) for r in runs)
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    kd = next(r for r in results["rows"] if r["method"] == "kd")
    assert kd["test_acc"] == [r["test_acc"] for r in runs if r["method"] == "kd"]  # the same runs, per seed
    assert not any("params" in r for r in runs)
    # a second command appends; the published protocol tags each record with its setting, and each
    # record says which hyperparameters trained it (the published setting's, --set's)
    assert _distill("--nodes", "500", "--protocol", "published", "--methods", "glnn", "--seeds", "1", "--out",
                    str(tmp_path / "b"), "--runs-log", str(log), "--set", "glnn.lamb=0.5") == 0
    added = read_runs(str(log))[len(runs):]
    assert [(r["protocol"], r["method"], r["setting"]) for r in added] == [
        ("published", "teacher", "cpf"), ("published", "none", "cpf"), ("published", "glnn", "cpf")]
    assert added[2]["params"]["glnn.lamb"] == 0.5 and "none.lamb" not in added[1]["params"]


def test_the_runs_log_flag_fails_before_training_where_it_cannot_be_written_or_honoured(tmp_path, capsys):
    missing = tmp_path / "no" / "runs.jsonl"
    for protocol in ("common", "published"):
        assert _distill("--nodes", "500", "--protocol", protocol, "--teacher", "auto", "--out", str(tmp_path / "a"),
                        "--runs-log", str(missing)) == 2
        assert "does not exist; create it first" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing trained, no output folder made
    assert _distill("--nodes", "500", "--out", str(tmp_path / "a"), "--runs-log", str(tmp_path)) == 2
    assert "is a folder; name a file in it" in capsys.readouterr().err
    assert _distill("--task", "graph", "--data", str(tmp_path), "--runs-log", str(tmp_path / "r.jsonl")) == 2
    assert "--runs-log: not supported on graph classification" in capsys.readouterr().err
