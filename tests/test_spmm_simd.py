"""The register-blocked float32 sum/mean CPU kernel against the generic one (GKDFAST_SPMM_SIMD=0):
bitwise equal for every feature width (full blocks, tails, several blocks), index dtype, thread
count, weights, empty rows and hubs; and against the PyTorch reference."""
from __future__ import annotations

import pytest
import torch

import gkdfast

WIDTHS = [1, 7, 16, 17, 64, 100, 128, 129, 256, 300]


def _graph(n=257, e=3000, seed=0, index_dtype=torch.int64):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (e,), generator=gen)
    dst = torch.randint(0, n - 20, (e,), generator=gen)  # the last 20 nodes have no in-edge
    hub = torch.full((400,), 3)  # one hub row with 400 in-edges
    ei = torch.stack([torch.cat([src, torch.randint(0, n, (400,), generator=gen)]), torch.cat([dst, hub])])
    return gkdfast.Graph(ei.to(index_dtype), n)


def _spmm(monkeypatch, kernel, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setenv("GKDFAST_SPMM_SIMD", kernel)
        with torch.no_grad():
            return gkdfast.spmm(*args, **kwargs)


@pytest.mark.parametrize("d", WIDTHS)
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_simd_is_bitwise_the_generic_kernel(monkeypatch, d, reduce, weighted):
    g = _graph()
    x = torch.randn(g.num_nodes, d, generator=torch.Generator().manual_seed(d))
    w = torch.rand(g.num_edges, generator=torch.Generator().manual_seed(1)) if weighted else None
    want = _spmm(monkeypatch, "0", g, x, reduce, edge_weight=w)
    for kernel in ("", "avx2"):  # best ISA of this CPU, then AVX2 at most
        got = _spmm(monkeypatch, kernel, g, x, reduce, edge_weight=w)
        assert torch.equal(got, want), (kernel, d)
    assert bool((want[-20:] == 0).all())


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("threads", [1, 2])
def test_simd_threads_and_index_dtypes(monkeypatch, index_dtype, threads):
    g = _graph(n=3000, e=60000, seed=1, index_dtype=index_dtype)  # big enough to run in parallel
    x = torch.randn(g.num_nodes, 96, generator=torch.Generator().manual_seed(0))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        want = _spmm(monkeypatch, "0", g, x, "sum")
        got = _spmm(monkeypatch, "", g, x, "sum")
    finally:
        torch.set_num_threads(old)
    assert torch.equal(got, want)
    dense = torch.zeros(g.num_nodes, g.num_nodes, dtype=torch.float64)
    src, dst = g.edge_index.long()
    dense.index_put_((dst, src), torch.ones(g.num_edges, dtype=torch.float64), accumulate=True)
    torch.testing.assert_close(got.double(), dense @ x.double(), rtol=1e-5, atol=1e-4)


def test_non_float32_and_max_keep_the_generic_path(monkeypatch):
    g = _graph()
    x = torch.randn(g.num_nodes, 33, dtype=torch.float64)
    assert torch.equal(_spmm(monkeypatch, "", g, x, "sum"), _spmm(monkeypatch, "0", g, x, "sum"))
    xf = x.float()
    assert torch.equal(_spmm(monkeypatch, "", g, xf, "max"), _spmm(monkeypatch, "0", g, xf, "max"))
