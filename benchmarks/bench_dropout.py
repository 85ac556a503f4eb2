"""Dropout on a hidden layer: gkdfast.nn.Dropout (Philox mask from (seed, position), re-drawn in
backward) vs torch.nn.functional.dropout (Bernoulli draw, mask kept for backward).

Runner:  ``python benchmarks/bench_dropout.py [--out DIR] [--device cuda]``
pytest:  ``pytest benchmarks/bench_dropout.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Tensors: [4,096, 128] float32 (the hidden layer of an MLP(128) student on one 4,096-row batch of the
out-of-core pipeline), [N, 512] float32 activations with N = 22,470 (Facebook's node count: T2-GNN's feature
teacher drops a 22,470 x 512 hidden layer) and [N, 1024] with N = 80,000 (GSDN's 5 rows per edge
through TGS's 1,024-wide layer, on a Cora-ML-sized edge batch), p = 0.5: forward alone and forward +
backward.  The extra column is the memory autograd keeps between them: torch's mask is a tensor of
the input's size and dtype on CPU, ours is nothing.  Prints a table; writes dropout.json and
dropout.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.nn.philox_dropout import dropout  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
SHAPES = [(2_000, 64)] if SMALL else [(4_096, 128), (22_470, 512), (80_000, 1024)]
P = 0.5
IMPLS = {"gkdfast": lambda x: dropout(x, P), "torch F.dropout": lambda x: F.dropout(x, P, training=True)}


def saved_bytes(fn, x) -> int:
    """Bytes autograd keeps for backward of ``fn(x)`` (tensors packed by saved-tensor hooks, other than x)."""
    total = []

    def pack(t):
        if t.data_ptr() != x.data_ptr():
            total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(total)


def rows_for(device, repeats, max_seconds):
    rows = []
    for n, d in SHAPES:
        x = torch.randn(n, d, device=device, requires_grad=True)
        grad = torch.randn(n, d, device=device)
        for impl, fn in IMPLS.items():
            def fwd(fn=fn):
                with torch.no_grad():
                    fn(x)

            def fwd_bwd(fn=fn):
                x.grad = None
                fn(x).backward(grad)

            saved = saved_bytes(fn, x) / 2 ** 20
            for case, run in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
                ms = _report.time_fn(run, repeats=repeats, warmup=1, max_seconds=max_seconds)
                rows.append(dict(size=f"[{n}, {d}] p={P}", case=case, impl=impl, ms=ms, saved_mib=round(saved, 1)))
                print(f"  [{n}, {d}] {case:<8} {impl:<16} {ms:8.2f} ms  saved for backward {saved:7.1f} MiB")
    return _report.add_ratios(rows)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("impl", list(IMPLS))
def test_bench_dropout(benchmark, impl):
    n, d = SHAPES[0]
    x = torch.randn(n, d, requires_grad=True)
    grad = torch.randn(n, d)
    fn = IMPLS[impl]

    def run():
        x.grad = None
        fn(x).backward(grad)

    benchmark(run)


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=11, max_seconds=30.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    print(f"dropout p = {P}, {device} ({torch.get_num_threads()} threads on CPU)")
    rows = rows_for(device, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "dropout", "dropout (median ms)", extra_cols=("saved_mib",), device=str(device),
                   small=SMALL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
