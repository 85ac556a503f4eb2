"""GCN propagation D^-1/2 (A + I) D^-1/2 x, forward and forward + backward: gkdfast's fused op
against the five-pass composite it replaced and the PyTorch ways of doing it.

Runner:  ``python benchmarks/bench_gcn_propagation.py [--out DIR] [--threads N]``
pytest:  ``pytest benchmarks/bench_gcn_propagation.py --benchmark-only``  (``GKDFAST_BENCH_SMALL=1``: tiny)

Implementations (all compute the same [N, d] result; checked before timing):

* ``gkdfast``: ``gkdfast.spmm(graph, x, "sum", norm="gcn")``, one pass (native op ``spmm_gcn``);
* ``five-pass composite``: what that call ran before, ``dinv * (spmm(x * dinv) + x * dinv)`` with the
  coefficients computed per call;
* ``torch_csr (cached Â)``: ``torch.sparse.mm(Â, x)`` with the normalised matrix, self-loops included,
  built once before timing (PyG's ``GCNConv(cached=True)`` on a sparse matrix);
* ``pyg_gather_scatter``: per-edge messages ``w_e * x[src]`` summed with ``index_add`` (PyG's
  message passing with cached ``gcn_norm`` weights).

Sizes: a Cora-sized graph (2,708 nodes, average in-degree 4, 50 communities) at d = 16 and 64, and a
20k-node / 400k-edge power-law graph at d = 128.  Prints a table; writes gcn_propagation.json and
gcn_propagation.png under --out.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers  # noqa: E402
import _report  # noqa: E402

import gkdfast  # noqa: E402
from gkdfast import ops  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
SIZES = {"tiny/d16": ("csbm", 500, 4, 16)} if SMALL else {
    "cora-size/d16": ("csbm", 2_708, 4, 16),
    "cora-size/d64": ("csbm", 2_708, 4, 64),
    "20k/400k/d128": ("power_law", 20_000, 20, 128),
}
IMPLS = ("gkdfast", "five-pass composite", "torch_csr (cached Â)", "pyg_gather_scatter")
_GRAPHS = {}


def graph_for(size: str) -> gkdfast.Graph:
    kind, n, degree, _ = SIZES[size]
    key = (kind, n, degree)
    if key not in _GRAPHS:
        if kind == "csbm":
            from gkdfast.data import csbm

            _GRAPHS[key] = csbm(n, num_classes=50, avg_degree=degree, feature_dim=1, seed=0).graph
        else:
            _GRAPHS[key] = _peers.power_law(n, n * degree, seed=0)
    return _GRAPHS[key]


def five_pass(graph: gkdfast.Graph, x: torch.Tensor) -> torch.Tensor:
    """spmm(norm="gcn") before the fused op, coefficients included."""
    dinv = graph._gcn_dinv(None, x.dtype).unsqueeze(-1)
    h = x * dinv
    return dinv * (ops._spmm(graph, h, "sum", None) + h)


def impls(graph: gkdfast.Graph):
    """name -> fn(x); the cached matrices and weights are built here, outside the timing."""
    looped, w = gkdfast.gcn_norm(graph)
    a_hat = torch.sparse_csr_tensor(looped.rowptr, looped.col, looped.to_csr_order(w), (graph.num_nodes,) * 2)
    src, dst = looped.edge_index.long()
    graph.transpose_csr()  # (gkdfast's backward reads it: built once, as every Graph does on first use)

    def gather_scatter(x):
        return x.new_zeros(x.shape).index_add(0, dst, w.unsqueeze(1) * x[src])

    return {"gkdfast": lambda x: gkdfast.spmm(graph, x, "sum", norm="gcn"),
            "five-pass composite": lambda x: five_pass(graph, x),
            "torch_csr (cached Â)": lambda x: torch.sparse.mm(a_hat, x),
            "pyg_gather_scatter": gather_scatter}


def closures(fn, x, grad):
    def fwd():
        with torch.no_grad():
            fn(x)

    def fwd_bwd():
        x.grad = None
        fn(x).backward(grad)
    return {"fwd": fwd, "fwd+bwd": fwd_bwd}


def rows_for(size: str, repeats: int, max_seconds: float):
    graph = graph_for(size)
    d = SIZES[size][3]
    x = torch.randn(graph.num_nodes, d, generator=torch.Generator().manual_seed(0)).requires_grad_()
    grad = torch.randn(graph.num_nodes, d, generator=torch.Generator().manual_seed(1))
    fns = impls(graph)
    with torch.no_grad():
        expected = fns["gkdfast"](x)
        for name, fn in fns.items():
            diff = (fn(x) - expected).abs().max().item() / max(expected.abs().max().item(), 1e-30)
            if diff > 1e-4:
                raise AssertionError(f"{name} differs from gkdfast by {diff:.2e} (relative) at {size}")
    rows = []
    for case in ("fwd", "fwd+bwd"):
        timed = _report.time_interleaved({name: closures(fn, x, grad)[case] for name, fn in fns.items()},
                                         repeats=repeats, warmup=1, max_seconds=max_seconds)
        for name, t in timed.items():
            rows.append(dict(size=f"{size} (N={graph.num_nodes}, E={graph.num_edges})", case=case, impl=name,
                             ms=t["ms"]))
            print(f"  {size:<16} {case:<8} {name:<22} {t['ms']:8.3f} ms")
    return rows


# ------------------------------------------------------------------------------------ pytest-benchmark
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("case", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("impl", IMPLS)
def test_bench_gcn_propagation(benchmark, size, case, impl):
    graph = graph_for(size)
    d = SIZES[size][3]
    x = torch.randn(graph.num_nodes, d).requires_grad_()
    benchmark.group = f"gcn propagation {size} {case}"
    benchmark(closures(impls(graph)[impl], x, torch.randn(graph.num_nodes, d))[case])


def main(argv=None) -> int:
    p = _report.runner_parser(__doc__, repeats=15, max_seconds=20.0)
    p.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: torch's)")
    p.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"GCN propagation, cpu ({torch.get_num_threads()} threads)")
    rows = []
    for size in args.sizes:
        rows += rows_for(size, args.repeats, args.max_seconds)
    _report.report(_report.add_ratios(rows), args.out, "gcn_propagation", "GCN propagation (median ms)",
                   device="cpu", small=SMALL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
