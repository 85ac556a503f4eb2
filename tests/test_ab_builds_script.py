"""benchmarks/ab_builds.py: the A/B timing of two checkouts runs its cases in fresh processes on the
checkout it is pointed at, and reports a ratio per case (here the repository against itself)."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast import _backend

from conftest import REPO, load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_ab_builds_compares_a_checkout_with_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    ab = load_repo_script("benchmarks/ab_builds.py")
    assert ab.GRAPH[0] <= 2_000  # small sizes were picked up
    out = str(tmp_path / "ab")
    assert ab.main(["--a", REPO, "--b", REPO, "--out", out, "--cases", "spmm_sum_fwd", "gsp_linear_mse_fwdbwd",
                    "--rounds", "1", "--repeats", "1", "--threads", "1"]) == 0
    rec = json.load(open(os.path.join(out, "ab.json")))
    assert [r["case"] for r in rec["rows"]] == ["spmm_sum_fwd", "gsp_linear_mse_fwdbwd"]
    for r in rec["rows"]:
        assert r["a_ms"] > 0 and r["b_ms"] > 0 and r["ratio"] == pytest.approx(r["b_ms"] / r["a_ms"])
    assert "| spmm_sum_fwd |" in open(os.path.join(out, "ab.md")).read()


def test_ab_builds_refuses_a_checkout_without_its_native_module(tmp_path):
    ab = load_repo_script("benchmarks/ab_builds.py")
    (tmp_path / "gkdfast").mkdir()
    with pytest.raises(RuntimeError, match="failed|expected"):
        ab._run(str(tmp_path), "spmm_sum_fwd", 1, 1)
