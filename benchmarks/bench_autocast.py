"""Distiller epochs in float32 against ``Distiller(autocast=...)`` (bfloat16, float16 with a GradScaler).

Runner:  ``python benchmarks/bench_autocast.py [--out DIR] [--device cuda] [--epochs E]``
pytest:  ``pytest benchmarks/bench_autocast.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Graph: ``gkdfast.data.dcsbm`` with products' shape (average degree 50, 100 features, 47 classes),
100,000 nodes (3,000 with ``GKDFAST_BENCH_SMALL``); random teacher logits and hidden rows (their
values do not change the work).  Two students, as the recipes train them:

* ``MLP(512) kd+gsp``: a 3-layer MLP, batches of 8,192 rows, CE + logit KD + GSP (rbf, KL) on each batch;
* ``GCN(256) kd+lsp``: a 2-layer GCN over the whole graph, full batch, CE + logit KD + LSP.

Milliseconds per epoch (validation included) of an E-epoch fit (default 3), float32 / bfloat16 /
float16 interleaved; ``ratio`` = time / float32's.  Mixed precision pays where half-precision matrix
products are fast (GPU tensor cores); on a CPU without bfloat16 matrix units expect ratios above 1.
Prints a table; writes autocast.json and autocast.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

from gkdfast.distill import Distiller, TeacherOutputs, terms  # noqa: E402
from gkdfast.nn import GCN, MLP  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
NUM_NODES = 3_000 if SMALL else 100_000
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def problem(device):
    from gkdfast.data import dcsbm

    data = dcsbm(num_nodes=NUM_NODES, avg_degree=50.0, num_classes=47, feature_dim=100, seed=0).to(device)
    g = torch.Generator().manual_seed(0)
    teacher = TeacherOutputs(torch.randn(data.num_nodes, data.num_classes, generator=g).to(device) * 3,
                             torch.randn(data.num_nodes, 64, generator=g).to(device))
    return data, teacher


def students(data):
    f, c = data.x.size(1), data.num_classes
    return {
        "MLP(512) kd+gsp": (lambda: MLP(f, 512, c, num_layers=3),
                            lambda: [terms.CrossEntropy(0.5), terms.LogitKD(0.5), terms.GSP(1.0, proj_dim=64)],
                            8_192),
        "GCN(256) kd+lsp": (lambda: GCN(f, 256, c), lambda: [terms.CrossEntropy(0.5), terms.LogitKD(0.5),
                                                              terms.LSP(1.0)], None),
    }


def fit_fn(data, teacher, build, make_terms, batch_size, amp, epochs, device):
    def run():
        torch.manual_seed(0)
        Distiller(build().to(device), make_terms(), teacher, epochs=epochs, patience=None, batch_size=batch_size,
                  device=device, autocast=amp).fit(data)
        _report.sync(torch.device(device))
    return run


def rows_for(device, epochs: int, repeats: int, max_seconds: float):
    data, teacher = problem(device)
    rows = []
    size = f"N={data.num_nodes:,} E={data.graph.num_edges:,}"
    for case, (build, make_terms, batch_size) in students(data).items():
        fns = {name: fit_fn(data, teacher, build, make_terms, batch_size, amp, epochs, device)
               for name, amp in PRECISIONS.items()}
        timed = _report.time_interleaved(fns, repeats=repeats, warmup=1, max_seconds=max_seconds)
        for name, t in timed.items():
            rows.append(dict(size=size, case=case, impl=name, ms=t["ms"] / epochs))
            print(f"  {case:<18} {name:<9} {t['ms'] / epochs:9.2f} ms / epoch")
    return _report.add_ratios(rows, baseline="float32")


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_bench_autocast_mlp(benchmark, precision):
    data, teacher = problem("cpu")
    build, make_terms, batch_size = students(data)["MLP(512) kd+gsp"]
    benchmark(fit_fn(data, teacher, build, make_terms, batch_size, PRECISIONS[precision], 1, "cpu"))


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=3, max_seconds=120.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed fit (default 3)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    device = torch.device(args.device)
    print(f"Distiller epochs by precision, {device} ({torch.get_num_threads()} threads on CPU)")
    rows = rows_for(device, args.epochs, args.repeats, args.max_seconds)
    _report.report(rows, args.out, "autocast", "Distiller epoch (median ms), by precision", device=str(device),
                   small=SMALL, table_title="\nratio = time / float32 time (<1: mixed precision faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
