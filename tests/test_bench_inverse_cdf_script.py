"""benchmarks/bench_inverse_cdf.py runs end to end at its small size: every implementation returns
torch.searchsorted's indices (checked inside the runner), a guide-build row and a search row per
implementation and array size, each with its time and the ratio against the native search."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast import _backend

from conftest import load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_bench_inverse_cdf_runner_reports_times_and_ratios(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_inverse_cdf.py")
    assert bench.SIZES == (10_000, 200_000) and bench.QUERIES == 200_000
    out = str(tmp_path / "icdf")
    assert bench.main(["--out", out, "--repeats", "1", "--sizes", "1e4,2e6", "--queries", "50000"]) == 0
    data = json.load(open(os.path.join(out, "inverse_cdf.json")))
    rows = data["rows"]
    assert data["sizes"] == [10_000, 2_000_000] and data["queries"] == 50_000
    searches = [r for r in rows if r["case"] == "search"]
    assert {r["impl"] for r in searches} == {"gkdfast", "torch.searchsorted", "grouped torch.searchsorted",
                                             "numpy.searchsorted"}
    assert len([r for r in rows if r["case"] == "guide build"]) == 2
    for size in {r["size"] for r in rows}:
        native = next(r for r in searches if r["size"] == size and r["impl"] == "gkdfast")
        for r in (r for r in searches if r["size"] == size):
            assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / native["ms"])
            assert r["ns_per_value"] == pytest.approx(1e6 * r["ms"] / 50_000)
    assert os.path.exists(os.path.join(out, "inverse_cdf.png"))
