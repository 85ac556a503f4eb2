"""benchmarks/bench_student_step.py runs end to end at its small size: a row for the pipeline's
student step and one for the bare MLP step on the same batch sizes, per-step times and the pipeline's
overhead (its time over the bare step's)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import load_repo_script


def test_bench_student_step_runner_reports_both_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_student_step.py")
    assert bench.NUM_NODES == 5_000
    out = str(tmp_path / "step")
    assert bench.main(["--out", out, "--repeats", "1"]) == 0
    rows = json.load(open(os.path.join(out, "student_step.json")))["rows"]
    assert [r["impl"] for r in rows] == ["gkdfast", "bare MLP step"]
    assert all(r["case"] == "step (2 steps)" for r in rows)  # 5,000 rows in batches of 4,096
    for r in rows:  # the ratio is the pipeline's overhead: each time over the bare step's
        assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / rows[1]["ms"])
    # both sides run the pipeline's batches: a full one of 4,096 rows and the last 904
    assert bench.batch_sizes(5_000, 2) == [4_096, 904, 4_096, 904] and bench.batch_sizes(8_192, 1) == [4_096] * 2
    assert os.path.exists(os.path.join(out, "student_step.png"))
    # the JSON says what ran the numbers: the code's revision and versions beside the machine
    machine = json.load(open(os.path.join(out, "student_step.json")))["machine"]
    assert {"python", "torch", "gkdfast", "gkdfast_revision", "native_loaded", "omp_num_threads"} <= set(machine)


def test_bench_student_step_refuses_zero_epochs(monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_student_step.py")
    with pytest.raises(SystemExit):
        bench.main(["--epochs", "0"])
