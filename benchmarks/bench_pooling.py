"""Global pooling of 10^5 small graphs: gkdfast.global_pool (segment reduction over the batch's
offsets) vs the torch_scatter / PyG style index_add / scatter_reduce over a batch vector.

Runner:  ``python benchmarks/bench_pooling.py [--out DIR] [--device cuda]``
pytest:  ``pytest benchmarks/bench_pooling.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Batch: 100,000 graphs of 5-45 nodes (2.5M nodes, TU-like sizes), d = 64, float32: forward alone
(no autograd) and forward + backward.  Target (issue 16): fwd+bwd >= 3x the index_add peer.  On CPU
the backward of sum/mean is one write of the [N, d] gradient on both sides, and that write is paid
mostly in page faults of the fresh allocation (``THP_MEM_ALLOC_ENABLE=1`` lets PyTorch back it with
huge pages); the forward rows show the reduction itself.  A third row per case, "memory floor", moves
the bytes any pooling must move with PyTorch's own streaming loops: the forward reads x once
(``x.sum()``, a contiguous full reduction), fwd+bwd also writes one [N, d] tensor (the gradient of x,
``empty_like(x).fill_``).  The write alone bounds what fwd+bwd can gain over the peer.  Prints a
table; writes pooling.json and pooling.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

import gkdfast  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
NUM_GRAPHS = 2_000 if SMALL else 100_000
DIM = 16 if SMALL else 64
REDUCES = ("sum", "mean", "max")


def batch(device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(5, 46, (NUM_GRAPHS,), generator=g)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
    x = torch.randn(int(ptr[-1]), DIM, generator=g)
    batch_vec = torch.repeat_interleave(torch.arange(NUM_GRAPHS), sizes)
    return x.to(device).requires_grad_(), ptr.to(device), batch_vec.to(device), sizes.to(device)


def index_add_pool(x, batch_vec, sizes, reduce):
    """What PyG's global_*_pool / torch_scatter do on a plain install: scatter over a batch vector."""
    b, d = sizes.numel(), x.size(1)
    if reduce == "max":
        return x.new_full((b, d), float("-inf")).scatter_reduce(0, batch_vec.view(-1, 1).expand(-1, d), x, "amax",
                                                                 include_self=True)
    out = x.new_zeros(b, d).index_add(0, batch_vec, x)
    return out / sizes.clamp_min(1).to(x.dtype).unsqueeze(1) if reduce == "mean" else out


def step(fn, x, grad):
    def run():
        x.grad = None
        fn().backward(grad)
    return run


def forward_only(fn):
    def run():
        with torch.no_grad():
            fn()
    return run


def memory_floor(x, backward: bool):
    """Reads x once (and, with ``backward``, writes one tensor of x's shape): the traffic of a pooling's
    forward (and of its backward's gradient), with no reduction by segment.  (``x.sum()``: a contiguous
    reduction streams; ``x.sum(0)`` reduces across rows and reads x about twice as slowly.)"""
    def run():
        with torch.no_grad():
            x.sum()
            if backward:
                torch.empty_like(x).fill_(1.0)
    return run


def rows_for(device, repeats, max_seconds):
    x, ptr, batch_vec, sizes = batch(device)
    grad = torch.randn(NUM_GRAPHS, DIM, device=device)
    rows = []
    for reduce in REDUCES:
        impls = {"gkdfast": lambda: gkdfast.global_pool(x, ptr, reduce),
                 "index_add / scatter_reduce": lambda: index_add_pool(x, batch_vec, sizes, reduce)}
        for case, wrap in (("fwd", forward_only), ("fwd+bwd", lambda fn: step(fn, x, grad))):
            # both implementations round-robin, so machine load hits them alike
            fns = {impl: wrap(fn) for impl, fn in impls.items()}
            fns["memory floor"] = memory_floor(x, backward=case == "fwd+bwd")
            timed = _report.time_interleaved(fns, repeats=repeats, warmup=1, max_seconds=max_seconds)
            for impl, t in timed.items():
                rows.append(dict(size=f"B={NUM_GRAPHS} N={x.size(0)} d={DIM}", case=f"{reduce} {case}", impl=impl,
                                 ms=t["ms"]))
                print(f"  {reduce:<5} {case:<8} {impl:<28} {t['ms']:8.2f} ms")
    return _report.add_ratios(rows)


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("impl", ["gkdfast", "index_add"])
def test_bench_global_pool(benchmark, reduce, impl):
    x, ptr, batch_vec, sizes = batch()
    grad = torch.randn(NUM_GRAPHS, DIM)
    fn = (lambda: gkdfast.global_pool(x, ptr, reduce)) if impl == "gkdfast" else \
        (lambda: index_add_pool(x, batch_vec, sizes, reduce))
    benchmark(step(fn, x, grad))


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=7, max_seconds=30.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    print(f"global pooling, {NUM_GRAPHS} graphs, d = {DIM}, {device} "
          f"({torch.get_num_threads()} threads on CPU)")
    rows = rows_for(device, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "pooling", "global pooling fwd+bwd (median ms)", device=str(device), small=SMALL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
