#!/usr/bin/env python
"""Narrows down a crash of a CUDA op's error path (session 18: ``sample_neighbors`` with an
out-of-range seed killed the process on the H200 instead of raising IndexError).

Each case runs in its own subprocess (a segfault ends only that case; the cases run in parallel) with
faulthandler on; a crashed case runs again under ``gdb -batch`` when gdb is installed (then the C++
backtrace is in the output).  Each prints one line:
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


def _run(cmd) -> tuple:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, p.stdout + p.stderr


def run_case(name: str, code: str, gdb: bool) -> str:
    """One case in a fresh process; a crashed case runs again under gdb (when installed) for its
    backtrace.  The verdict comes from the plain run: gdb's own exit status says nothing about the
    program (``bt`` after a normal exit fails with "No stack.")."""
    body = SETUP + f"""
try:
    {code}
    print('PROBE-RESULT returned')
except Exception as err:
    print('PROBE-RESULT raised', type(err).__name__, str(err).splitlines()[0][:120])
"""
    cmd = [sys.executable, "-c", body]
    rc, out = _run(cmd)
    if rc is None:
        return f"{name}: TIMED OUT"
    result = [line for line in out.splitlines() if line.startswith("PROBE-RESULT")]
    if result and rc == 0:
        return f"{name}: {result[-1][len('PROBE-RESULT '):]}"
    report = f"{name}: CRASHED (exit {rc})\n" + "\n".join("    " + line for line in out.splitlines()[-20:])
    if gdb:  # no network on the device: no debuginfod lookups
        _, trace = _run(["gdb", "-q", "-batch", "-iex", "set debuginfod enabled off", "-ex", "run", "-ex", "bt 25",
                         "--args"] + cmd)
        report += "\n    -- gdb --\n" + "\n".join("    " + line for line in trace.splitlines()[-40:])
    return report


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("cuda_crash_probe: no CUDA device")
        return 0
    from concurrent.futures import ThreadPoolExecutor

    gdb = shutil.which("gdb") is not None
    print(f"cuda_crash_probe: {len(CASES)} cases in parallel, gdb {'for crashed cases' if gdb else 'not installed'}")
    with ThreadPoolExecutor(max_workers=min(8, len(CASES))) as pool:  # one process per case; imports overlap
        for line in pool.map(lambda item: run_case(item[0], item[1], gdb), CASES.items()):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
