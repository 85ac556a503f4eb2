"""benchmarks/bench_positions.py runs end to end at its small size: a row per way of computing the
position features with its time, the ratio against streaming DeepWalk, the probe accuracy (the
planted communities are recovered by the skip-gram ways) and the peak memory."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast import _backend

from conftest import load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_bench_positions_runner_reports_time_ratio_probe_and_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_positions.py")
    assert bench.NUM_NODES == 2_000
    out = str(tmp_path / "positions")
    assert bench.main(["--out", out]) == 0
    rows = json.load(open(os.path.join(out, "positions.json")))["rows"]
    assert [r["impl"] for r in rows] == list(bench.METHODS)
    stream_ms = rows[0]["ms"]
    for r in rows:
        assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / stream_ms) and r["peak_mb"] >= 0
    probes = {r["impl"]: r["probe"] for r in rows}
    assert probes["gkdfast"] > 0.9 and probes["gkdfast, deterministic (1 thread)"] > 0.9, probes
    assert os.path.exists(os.path.join(out, "positions.png"))
