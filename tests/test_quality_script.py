"""scripts/quality.py: workers that log runs, and the report rebuilt from those logs.

The report may combine seeds from several machines; these tests pin down which runs it takes (one
source per seed), which times it shows (the main source's only) and that rows keep their own seed
counts.  Uses the real Cora files (``$GKDFAST_DATA`` or ``../shared/data``; a failure under CI=true).
"""
from __future__ import annotations

import argparse
import json
import os

import pytest

from gkdfast.distill.experiment import summarize_runs
from gkdfast.distill.results import format_markdown, validate
from gkdfast.distill.runs_log import timing_markdown

from conftest import REPO as _REPO
from conftest import load_repo_script, need_data


@pytest.fixture(scope="module")
def quality():
    return load_repo_script("scripts/quality.py")


@pytest.fixture(scope="module")
def cora_root():
    need_data("planetoid/ind.cora")
    return need_data()


def _run(method, seed, acc, secs, device, model="MLP(128)", backend="native"):
    return {"seed": seed, "method": method, "model": model, "test_acc": acc, "seconds": secs, "epochs": 10,
            "best_epoch": 5, "inference_ms_per_1k_nodes": secs / 10, "dataset": "cora", "backend": backend,
            "host": "h", "device": device, "torch": "t", "threads": 1}


def test_summarize_runs_groups_in_first_seen_order():
    runs = [_run("teacher", 0, 0.8, 2.0, "cpu", "SAGE"), _run("none", 0, 0.5, 1.0, "cpu"),
            _run("teacher", 1, 0.6, 4.0, "cpu", "SAGE"), _run("none", 1, 0.7, 3.0, "cpu")]
    res = summarize_runs(runs, dataset="g", num_nodes=3, num_edges=4)
    validate(res)
    assert [r["method"] for r in res["rows"]] == ["teacher", "none"]
    t = res["rows"][0]
    assert t["test_acc"] == [0.8, 0.6]
    assert t["test_acc_mean"] == pytest.approx(0.7) and t["test_acc_std"] == pytest.approx(0.1)
    assert t["train_seconds"] == pytest.approx(3.0)
    assert t["inference_ms_per_1k_nodes"] == pytest.approx(0.3)  # median of 0.2 and 0.4


def test_format_markdown_seed_column():
    res = summarize_runs([_run("none", 0, 0.5, 1.0, "cpu"), _run("kd", 0, 0.6, 1.0, "cpu"),
                          _run("kd", 1, 0.8, 1.0, "cpu")], dataset="g", num_nodes=1, num_edges=0)
    plain, counted = format_markdown(res), format_markdown(res, seeds_column=True)
    assert "seeds" not in plain and "| seeds |" in counted
    assert "| kd | MLP(128) | 70.00 ± 10.00 | 2 |" in counted


def test_from_runs_one_source_per_seed_and_main_source_times(quality, cora_root, tmp_path):
    gpu, cpu = "cuda (GPU)", "cpu"
    records = [
        # seed 0: complete on the GPU (2 runs) and partly on the CPU (1 run): the GPU's are taken
        _run("teacher", 0, 0.80, 1.0, gpu, "SAGE(128)"), _run("glnn", 0, 0.78, 2.0, gpu),
        _run("teacher", 0, 0.10, 50.0, cpu, "SAGE(128)"),
        # seed 1: the GPU worker stopped after the teacher; the CPU finished the seed: the CPU's are taken
        _run("teacher", 1, 0.30, 1.0, gpu, "SAGE(128)"),
        _run("teacher", 1, 0.82, 30.0, cpu, "SAGE(128)"), _run("glnn", 1, 0.80, 40.0, cpu),
        # seed 2: GPU only, teacher only
        _run("teacher", 2, 0.84, 3.0, gpu, "SAGE(128)"),
        # a duplicate record of a run (a resumed worker): the first one counts
        _run("teacher", 2, 0.01, 3.0, gpu, "SAGE(128)"),
        # a timing-only pair on seed 10 (outside the report's seeds): the timing table only
        _run("glnn", 10, 0.5, 9.0, cpu), _run("glnn", 10, 0.5, 18.0, cpu, backend="reference"),
    ]
    log = tmp_path / "runs.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"seed": 9, "meth')  # + a cut line
    args = argparse.Namespace(data=cora_root, seed_list=list(range(10)))
    runs = quality.read_runs(str(log))
    assert len(runs) == len(records)  # the partial last line is skipped, not fatal
    data, split, res, ref, secs, timing = quality.dataset_from_runs("cora", runs, args)
    rows = {r["method"]: r for r in res["rows"]}
    assert rows["teacher"]["test_acc"] == pytest.approx([0.80, 0.82, 0.84])
    assert rows["glnn"]["test_acc"] == pytest.approx([0.78, 0.80])
    # 3 GPU runs chosen vs 2 CPU runs: times are the GPU's (teacher 1 s and 3 s; glnn 2 s), not the CPU's
    assert rows["teacher"]["train_seconds"] == pytest.approx(2.0)
    assert rows["glnn"]["train_seconds"] == pytest.approx(2.0)
    assert "cuda" in timing and "only" in timing
    assert data.num_nodes == 2708
    assert [r["seconds"] for r in ref["runs"]] == [18.0] and [r["seconds"] for r in ref["ours_runs"]] == [9.0]
    # A dataset with only timing-only runs (seeds outside the report's) is left out, not a crash.
    only_timing = [dict(r, dataset="cora") for r in records if r["seed"] == 10]
    assert quality.dataset_from_runs("cora", only_timing, args) is None
    assert "| glnn | 9.00 (10) | 18.00 (10) | 900.0 | 1800.0 | 2.00× |" in timing_markdown(ref)


def test_workers_then_report_end_to_end(quality, cora_root, tmp_path):
    """Two workers (one seed each, 2 epochs) log their runs; the report is assembled from both logs."""
    common = ["--datasets", "cora", "--data", cora_root, "--epochs", "2", "--methods", "glnn",
              "--no-reference-timing", "--no-report", "--work", str(tmp_path / "work")]
    quality.main(common + ["--seed-list", "0", "--runs-log", str(tmp_path / "a.jsonl")])
    quality.main(common + ["--seed-list", "1", "--runs-log", str(tmp_path / "b.jsonl")])
    assert not (tmp_path / "results.md").exists()  # --no-report writes nothing but the logs
    out = tmp_path / "report" / "results.md"
    quality.main(["--datasets", "cora", "--data", cora_root, "--from-runs", str(tmp_path / "*.jsonl"),
                  "--out", str(out)])
    res = json.loads((tmp_path / "report" / "results" / "cora.json").read_text())
    validate(res)
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "glnn"]
    assert all(len(r["test_acc"]) == 2 for r in res["rows"])
    text = out.read_text()
    assert "## cora" in text and "Not the full report" in text and "| glnn | MLP(128) |" in text
    notes = open(os.path.join(_REPO, "docs", "results-notes.md")).read().split("\n", 1)[1]  # after the comment
    assert text.rstrip().endswith(notes.rstrip()) and "Why our numbers can differ" in text


def test_bad_arguments(quality, tmp_path):
    with pytest.raises(SystemExit):
        quality.main(["--seed-list", "a,b"])
    with pytest.raises(SystemExit):
        quality.main(["--datasets", "nope"])
    with pytest.raises(SystemExit):
        quality.main(["--from-runs", str(tmp_path / "missing-*.jsonl")])
