"""benchmarks/bench_pooling.py (the issue-16 pooling benchmark) runs end to end at its small size: one
forward-only and one forward+backward row per reduction and implementation (and the memory floor), ratios
against gkdfast."""
from __future__ import annotations

import json
import os

import pytest

from gkdfast import _backend

from conftest import load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_bench_pooling_runner_writes_both_cases_with_ratios(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_pooling.py")
    assert bench.NUM_GRAPHS == 2_000  # the small size was picked up
    out = str(tmp_path / "pool")
    assert bench.main(["--out", out, "--repeats", "1", "--max-seconds", "5"]) == 0
    rows = json.load(open(os.path.join(out, "pooling.json")))["rows"]
    cases = {(r["case"], r["impl"]) for r in rows}
    assert cases == {(f"{red} {c}", impl) for red in ("sum", "mean", "max") for c in ("fwd", "fwd+bwd")
                     for impl in ("gkdfast", "index_add / scatter_reduce", "memory floor")}
    ours = {r["case"]: r["ms"] for r in rows if r["impl"] == "gkdfast"}
    for r in rows:
        assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / ours[r["case"]])


def test_index_add_peer_computes_the_same_pooling(monkeypatch):
    import torch

    import gkdfast

    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_pooling.py")
    x, ptr, batch_vec, sizes = bench.batch(seed=3)
    for reduce in ("sum", "mean", "max"):
        torch.testing.assert_close(bench.index_add_pool(x, batch_vec, sizes, reduce),
                                   gkdfast.global_pool(x, ptr, reduce), rtol=1e-5, atol=1e-5)
