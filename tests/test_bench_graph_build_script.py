"""benchmarks/bench_graph_build.py runs end to end at its small size: every implementation builds the
native op's graph (checked inside the runner), a row per implementation and id dtype with its time
and the ratio against the native op."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast import _backend

from conftest import load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_bench_graph_build_runner_reports_times_and_ratios(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_graph_build.py")
    assert bench.NUM_NODES == 20_000
    out = str(tmp_path / "gb")
    assert bench.main(["--out", out, "--repeats", "1"]) == 0
    rows = json.load(open(os.path.join(out, "graph_build.json")))["rows"]
    impls = {r["impl"] for r in rows}
    assert {"gkdfast", "reference (per-range sorts)", "global sort (torch.unique)"} <= impls
    assert {r["size"].split()[-2] for r in rows} == {"int64", "int32"}
    for size in {r["size"] for r in rows}:
        group = [r for r in rows if r["size"] == size]
        native = next(r for r in group if r["impl"] == "gkdfast")
        assert len({r["nnz"] for r in group}) == 1 and native["nnz"] > 0
        for r in group:
            assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / native["ms"])
    assert os.path.exists(os.path.join(out, "graph_build.png"))
