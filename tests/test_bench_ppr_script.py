"""benchmarks/bench_ppr.py runs end to end at its small size: a row per method with its time, the
ratio against push and the captured top-k mass (near 1 for both at their default eps)."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast import _backend

from conftest import load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_bench_ppr_runner_reports_time_ratio_and_mass(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_ppr.py")
    assert bench.NUM_NODES == 2_000
    out = str(tmp_path / "ppr")
    assert bench.main(["--out", out]) == 0
    rows = json.load(open(os.path.join(out, "ppr.json")))["rows"]
    assert [r["impl"] for r in rows] == ["gkdfast", "power iteration (spmm blocks)"]
    push_ms = rows[0]["ms"]
    for r in rows:
        assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / push_ms)
        assert 0.999 < r["mass"] <= 1.0 + 1e-9
