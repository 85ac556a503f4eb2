"""Is ``spmm`` right on an int32 graph whose dense operand has N·d ≥ 2^31 elements?

On CUDA, ``spmm`` sum / mean hand an int32 CSR to cuSPARSE through ``at::mm`` (csrc/cuda/csr_matmul.h),
which checks only ``nnz < 2^31``; whether cuSPARSE's 32-bit-index SpMM addresses dense rows past 2^31
elements correctly is not documented (docs/gpu-kernels.md, "Not done yet").  This script answers it
exactly: every node gets one in-edge from a random source, so each output row is one input row times
the edge weight (1 or 2: no rounding), and the whole output is compared with a gather of the input.

Runner (on a GPU machine; scripts/device_check.sh calls it)::

    python scripts/int32_spmm_check.py                                   # N = 2^24 + 17, d = 128
    python scripts/int32_spmm_check.py --device cpu --nodes 1000 --dim 8  # the script's own smoke run

The default size needs about 26 GB of device memory (x, the output and the gathered reference, 8.6 GB
each).  Prints one line per case (``int32 spmm <case>: ok`` or ``MISMATCH`` with the first wrong row and
whether it lies past the 2^31-element boundary) and exits 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import gkdfast


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--nodes", type=int, default=(1 << 24) + 17)
    p.add_argument("--dim", type=int, default=128)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    n, d = args.nodes, args.dim
    boundary_row = (1 << 31) // d  # the first row whose elements lie past 2^31
    gen = torch.Generator().manual_seed(0)
    src = torch.randperm(n, generator=gen).to(torch.int32)
    edge_index = torch.stack([src, torch.arange(n, dtype=torch.int32)]).to(device)
    graph = gkdfast.Graph(edge_index, num_nodes=n)
    assert graph.index_dtype == torch.int32, graph.index_dtype
    x = torch.randn(n, d, device=device)
    print(f"int32 spmm: N = {n}, d = {d}, N*d = {n * d} ({'past' if n * d > (1 << 31) else 'below'} 2^31), "
          f"device {device}, index dtype {graph.index_dtype}", flush=True)
    failures = 0
    for case, reduce, weight in (("sum", "sum", None), ("mean", "mean", None),
                                 ("weighted sum", "sum", torch.full((n,), 2.0, device=device))):
        t0 = time.perf_counter()
        out = gkdfast.spmm(graph, x, reduce, edge_weight=weight)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        want = x.index_select(0, src.to(device).long())
        if weight is not None:
            want.mul_(2.0)
        bad = (out != want).any(dim=1).nonzero()
        del want, out
        if bad.numel() == 0:
            print(f"int32 spmm {case}: ok ({seconds:.3f} s)", flush=True)
        else:
            failures += 1
            first = int(bad[0])
            print(f"int32 spmm {case}: MISMATCH in {bad.numel()} rows, first row {first} "
                  f"({'past' if first >= boundary_row else 'before'} the 2^31-element boundary, row {boundary_row})",
                  flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
