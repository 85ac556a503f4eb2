"""Malformed graphs passed straight to torch.ops.gkdfast raise clear errors, never crash or write
out of bounds (issue 18).  The cases run in a subprocess (tests/native_safety/malformed_calls.py):
a crash there fails the test instead of killing pytest.  The second run forces the
device-agnostic validation (the one CUDA tensors use) onto the CPU, so CI exercises it too."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import gkdfast

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "native_safety", "malformed_calls.py")


@pytest.mark.parametrize("aten_path", [False, True], ids=["cpu-pass", "aten-pass"])
def test_malformed_graphs_raise_clear_errors_in_a_fresh_process(aten_path):
    env = dict(os.environ, OMP_NUM_THREADS="2", GKDFAST_VALIDATE_ATEN="1" if aten_path else "0")
    proc = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"the process died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows and rows[-1] == {"done": True}
    rows = rows[:-1]
    assert len(rows) >= 60
    wrong = [r for r in rows if (r["outcome"] == "ok") != r["valid"]]
    assert not wrong, wrong
    for r in rows:
        if not r["valid"]:  # one line, names the op
            assert r["message"].split(": ", 1)[1].startswith("gkdfast."), r
            assert r["message"].startswith(("ValueError", "TypeError")), r


def test_validation_keeps_results_and_gradients_of_valid_graphs():
    g = gkdfast.Graph(torch.tensor([[1, 2, 0, 3, 4, 0], [0, 0, 1, 1, 2, 3]]), 5)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    for reduce in ("sum", "mean", "max"):
        torch.autograd.gradcheck(lambda v: gkdfast.spmm(g, v, reduce), (x,))
