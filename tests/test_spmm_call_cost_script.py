"""benchmarks/spmm_call_cost.py runs end to end on Cora: a row per width with five positive per-call
times, the forward + backward above the forward alone, and a GCN, a SAGE, a GAT and an MLP training epoch."""
from __future__ import annotations

import pytest

from gkdfast import _backend

from conftest import load_repo_script, need_data

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def test_spmm_call_cost_prints_a_row_per_width(capsys):
    bench = load_repo_script("benchmarks/spmm_call_cost.py")
    bench.main(["--data", need_data("planetoid"), "--dims", "4", "8", "--calls", "5", "--loops", "1",
                "--train-epochs", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("cora: 2708 nodes, 10556 edges")
    epochs = [line for line in lines if "training epoch" in line]
    assert [line.split()[0] for line in epochs] == ["GCN(64)", "SAGE(64)", "GAT(8x8)", "MLP(128)"]
    assert all(float(line.split(": ")[1].split()[0]) > 0 for line in epochs)
    rows = [line.split() for line in lines[2:-4]]
    assert [r[0] for r in rows] == ["4", "8"]
    for r in rows:
        raw, raw_t, fwd, fwd_bwd, torch_csr = map(float, r[1:])
        assert min(raw, raw_t, fwd, fwd_bwd, torch_csr) > 0 and fwd_bwd > fwd
