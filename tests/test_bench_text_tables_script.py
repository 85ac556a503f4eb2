"""benchmarks/bench_text_tables.py and benchmarks/ogb_layout_load.py run end to end at small sizes:
every reader gives the previous path's numbers (checked inside the runner), one row per reader and
text with its time, ratio and peak memory; the OGB writer's folder loads back to the graph it was
written from."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gkdfast import _backend

from conftest import load_repo_script

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_formatters_write_what_python_writes():
    bench = load_repo_script("benchmarks/bench_text_tables.py")
    ints = np.array([0, 7, 10, 99, 100, 123456789, 2_449_999], dtype=np.int64)
    assert bench.format_ints(ints, np.full(ints.size, ord(","), np.uint8)) == \
        "".join(f"{v}," for v in ints.tolist()).encode()
    vals = np.array([0.0, -0.0000004, -0.25, 1.5, -12.3456789, 3e-7, 9.9999996], dtype=np.float64)
    assert bench.format_fixed(vals, np.full(vals.size, ord("\n"), np.uint8)) == \
        "".join(f"{v:.6f}\n".replace("-0.000000", "0.000000") for v in vals.tolist()).encode()


def test_bench_text_tables_runner_reports_times_ratios_and_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("GKDFAST_BENCH_SMALL", "1")
    bench = load_repo_script("benchmarks/bench_text_tables.py")
    assert bench.EDGES == 100_000 and bench.ROWS == 10_000
    out = str(tmp_path / "tt")
    assert bench.main(["--out", out, "--repeats", "1", "--edges", "3000", "--rows", "200", "--memory"]) == 0
    data = json.load(open(os.path.join(out, "text_tables.json")))
    rows = data["rows"]
    assert data["edges"] == 3000 and data["feature_rows"] == 200
    assert {(r["case"], r["impl"]) for r in rows} == {(c, i) for c in ("edge list", "features") for i in bench.IMPLS}
    for case in ("edge list", "features"):
        native = next(r for r in rows if r["case"] == case and r["impl"] == "gkdfast")
        for r in (r for r in rows if r["case"] == case):
            assert r["ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / native["ms"])
            assert r["mb_per_s"] > 0 and r["peak_mib"] >= 0
    assert os.path.exists(os.path.join(out, "text_tables.png"))


def test_ogb_layout_writer_round_trips(tmp_path, capsys):
    script = load_repo_script("benchmarks/ogb_layout_load.py")
    from gkdfast.data import dcsbm, load

    out = str(tmp_path / "ogbn")
    assert script.main(["write", out, "--nodes", "3000"]) == 0
    assert script.main(["load", out]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want, got = dcsbm(num_nodes=3000), load(out)
    assert report["nodes"] == 3000 and report["directed_edges"] == int(want.graph.num_edges)
    assert got.extras["split"] == "ogb:sales_ranking"
    assert torch.equal(got.graph.rowptr.long(), want.graph.rowptr.long())
    assert torch.equal(got.graph.col.long(), want.graph.col.long())
    assert torch.equal(got.y, want.y) and torch.equal(got.train_mask, want.train_mask)
    assert (got.x - want.x).abs().max() <= 5e-7 + 1e-6 * want.x.abs().max()  # six decimals
