#!/usr/bin/env python
"""Narrows down a crash of a CUDA op's error path (session 18: ``sample_neighbors`` with an
out-of-range seed killed the process on the H200 instead of raising IndexError).

Each case runs in its own subprocess (a segfault ends only that case) with faulthandler on, under
``gdb -batch`` when gdb is installed (then the C++ backtrace is in the output), and prints one line:
``case: raised <Error>`` / ``returned`` / ``CRASHED (signal N)``.  The cases separate the suspects:
the same call on the CPU; CUDA with both index widths; an error raised by another CUDA op from its
own .cu file (``sample_negatives``); and the valid call before the bad one.

Usage (on the GPU machine, after building gkdfast._C with CUDA): ``python scripts/cuda_crash_probe.py``
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = """
import faulthandler, sys, torch
faulthandler.enable()
sys.path.insert(0, %r)
import gkdfast
from gkdfast import Graph
n = 200
ei = torch.randint(0, n, (2, 1000), generator=torch.Generator().manual_seed(0))
def csr(dt, dev):
    g = Graph(ei, num_nodes=n)
    return g.rowptr.to(dt).to(dev), g.col.to(dt).to(dev)
op = torch.ops.gkdfast
""" % ROOT

CASES = {
    "cpu int64, seed out of range": "rp, col = csr(torch.int64, 'cpu'); op.sample_neighbors(rp, col, torch.tensor([0, n]), 3, 0, 0)",
    "cuda int64, valid seeds": "rp, col = csr(torch.int64, 'cuda'); op.sample_neighbors(rp, col, torch.tensor([0, 1]).cuda(), 3, 0, 0); torch.cuda.synchronize()",
    "cuda int64, seed out of range": "rp, col = csr(torch.int64, 'cuda'); op.sample_neighbors(rp, col, torch.tensor([0, n]).cuda(), 3, 0, 0)",
    "cuda int32 graph, int64 seed out of range": "rp, col = csr(torch.int32, 'cuda'); op.sample_neighbors(rp, col, torch.tensor([0, n]).cuda(), 3, 0, 0)",
    "cuda int32, int32 seed out of range": "rp, col = csr(torch.int32, 'cuda'); op.sample_neighbors(rp, col, torch.tensor([0, n], dtype=torch.int32).cuda(), 3, 0, 0)",
    "cuda, valid call then out of range": "rp, col = csr(torch.int64, 'cuda'); op.sample_neighbors(rp, col, torch.arange(50).cuda(), 3, 11, 3); op.sample_neighbors(rp, col, torch.tensor([0, n]).cuda(), 3, 0, 0)",
    "cuda sample_negatives, rows out of range (TORCH_CHECK in a .cu)": "op.sample_negatives(torch.tensor([0, 10 ** 6]).cuda(), 100, 2, 0)",
    "cuda, IndexError through the Python wrapper": "from gkdfast.sampling import sample_neighbors; g = Graph(ei, num_nodes=n).to('cuda'); sample_neighbors(g, torch.tensor([0, n]).cuda(), 3, seed=0)",
}


def run_case(name: str, code: str, gdb: bool) -> str:
    body = SETUP + f"""
try:
    {code}
    print('PROBE-RESULT returned')
except Exception as err:
    print('PROBE-RESULT raised', type(err).__name__, str(err).splitlines()[0][:120])
"""
    cmd = [sys.executable, "-c", body]
    if gdb:
        cmd = ["gdb", "-q", "-batch", "-ex", "run", "-ex", "bt 25", "--args"] + cmd
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"{name}: TIMED OUT"
    out = p.stdout + p.stderr
    result = [line for line in out.splitlines() if line.startswith("PROBE-RESULT")]
    if result and p.returncode == 0 and "SIGSEGV" not in out:
        return f"{name}: {result[-1][len('PROBE-RESULT '):]}"
    return f"{name}: CRASHED (exit {p.returncode})\n" + "\n".join("    " + line for line in out.splitlines()[-40:])


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("cuda_crash_probe: no CUDA device")
        return 0
    gdb = shutil.which("gdb") is not None
    print(f"cuda_crash_probe: {len(CASES)} cases, gdb {'on' if gdb else 'not installed'}")
    for name, code in CASES.items():
        print(run_case(name, code, gdb), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
