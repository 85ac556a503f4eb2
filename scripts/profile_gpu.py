#!/usr/bin/env python
"""One call of a gkdfast CUDA kernel at benchmark size, for Nsight Compute (``ncu``) to profile.

The benchmarks say how fast a kernel is; this says why.  It warms up (so ``ncu`` does not profile
first-call setup), then runs the chosen case once more between two ``torch.cuda.synchronize()``::

    ncu --target-processes all --kernel-name-base demangled --kernel-name regex:gkdfast --launch-skip 0 \\
        --launch-count 4 --section SpeedOfLight --section Occupancy --section MemoryWorkloadAnalysis \\
        --csv python scripts/profile_gpu.py spmm-sum > ncu_spmm.csv

Cases: spmm-sum, spmm-max (200k nodes / 4M edges / d=128, forward), lsp (same graph, forward +
backward), gsp (N=10k, d=128, forward + backward), crd (N=16k, d=256, forward + backward).
``scripts/device_check.sh`` runs it under ``ncu`` when ``PROFILE=1``.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gkdfast  # noqa: E402


def _graph(dev):
    import _peers

    return _peers.power_law(200_000, 4_000_000, seed=0).to(dev)


def case(name, dev):
    """A closure running the case once on ``dev``."""
    gen = torch.Generator().manual_seed(0)
    if name.startswith("spmm-"):
        g = _graph(dev)
        x = torch.randn(g.num_nodes, 128, generator=gen).to(dev)
        reduce = name.split("-", 1)[1]
        return lambda: gkdfast.spmm(g, x, reduce)
    if name == "lsp":
        g = _graph(dev)
        s = torch.randn(g.num_nodes, 128, generator=gen).to(dev).requires_grad_()
        t = torch.randn(g.num_nodes, 128, generator=gen).to(dev)
        return lambda: gkdfast.losses.lsp(g, s, t, kernel="rbf").backward()
    if name == "gsp":
        s = torch.randn(10_000, 128, generator=gen).to(dev).requires_grad_()
        t = torch.randn(10_000, 128, generator=gen).to(dev)
        return lambda: gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl").backward()
    if name == "crd":
        s = torch.randn(16_384, 256, generator=gen).to(dev).requires_grad_()
        t = torch.randn(16_384, 256, generator=gen).to(dev)
        return lambda: gkdfast.losses.crd(s, t).backward()
    raise SystemExit(f"unknown case {name!r}; known: spmm-sum, spmm-max, lsp, gsp, crd")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case")
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("profile_gpu: no CUDA device")
    run = case(args.case, torch.device("cuda"))
    for _ in range(args.warmup):
        run()
    torch.cuda.synchronize()
    run()
    torch.cuda.synchronize()
    print(f"profile_gpu: ran {args.case}")


if __name__ == "__main__":
    main()
