"""Top-k personalised PageRank by forward push (torch.ops.gkdfast.ppr_topk, topk_ppr(method="push"))
against the pure-Python push (same FIFO order: bitwise equal), the exact dense PPR (error bound,
captured mass), thread-count invariance, opcheck and argument errors."""
import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast.distill.ppr import dense_ppr, ppr_graph, topk_ppr
from gkdfast.reference import ppr as ref

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _random_directed(n=40, e=150, seed=0):
    """A directed graph with self-loops, duplicate edges and nodes without out-edges (dangling)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n - 4, (e,), generator=g)  # the last 4 nodes have no out-edges
    dst = torch.randint(0, n, (e,), generator=g)
    return gkdfast.Graph(torch.stack([src, dst]), n)


def _undirected(n=60, e=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    return gkdfast.Graph(torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]), n)


@native
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("k", [3, 45])  # 45 > nodes reached: padded rows
def test_native_push_equals_the_python_push(index_dtype, k):
    g = _random_directed().to(index_dtype=index_dtype)
    rp, col, _ = g.transpose_csr()
    sources = torch.tensor([0, 5, 39, 12, 5], dtype=index_dtype)  # 39: dangling; 5 twice
    idx, val = torch.ops.gkdfast.ppr_topk(rp, col, sources, k, 0.2, 1e-6)
    want_idx, want_val = ref.ppr_topk(rp, col, sources, k, 0.2, 1e-6)
    assert idx.dtype == torch.int64 and val.dtype == torch.float32 and idx.shape == (5, k)
    assert torch.equal(idx, want_idx) and torch.equal(val, want_val)
    assert torch.equal(idx[1], idx[4])
    assert torch.equal(idx[2], torch.full((k,), 39)) and not val[2].any()  # a dangling source reaches nobody
    assert bool((val[:, :-1] >= val[:, 1:]).all())  # decreasing


def test_push_estimates_are_within_the_bound_of_the_exact_ppr():
    g = _undirected()
    exact = dense_ppr(g, alpha=0.15).double()
    deg = torch.bincount(g.col.long(), minlength=g.num_nodes).double()
    rp, col, _ = g.transpose_csr()
    for s in (0, 7, 33):
        est = ref.ppr_push(rp, col, s, 0.15, 1e-4)
        for v, p in est.items():
            gap = float(exact[s, v]) - p
            assert -1e-6 <= gap <= 1e-4 * float(deg[v]) + 1e-6


@native
def test_topk_ppr_push_captures_the_exact_top_k_mass():
    g = _undirected()
    exact = dense_ppr(g, alpha=0.15).double()
    exact.fill_diagonal_(-1.0)
    best, _ = exact.topk(10, dim=1)
    idx, val = topk_ppr(g, k=10, eps=1e-8, method="push")
    got = exact.gather(1, idx).clamp(min=0)
    assert float(got.sum() / best.clamp(min=0).sum()) > 1 - 1e-6
    torch.testing.assert_close(val.double(), got, atol=1e-6, rtol=0)
    # the power method on the same graph picks the same scores
    p_idx, p_val = topk_ppr(g, k=10, eps=1e-10, method="power")
    torch.testing.assert_close(val, p_val, atol=1e-6, rtol=0)


@native
def test_thread_count_does_not_change_the_result():
    g = _undirected(n=300, e=1500, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = topk_ppr(g, k=5, method="push")
        torch.set_num_threads(2)
        two = topk_ppr(g, k=5, method="push")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_reference_backend_gives_the_native_answer(monkeypatch):
    g = _random_directed(seed=4)
    native_out = topk_ppr(g, k=4, method="push")
    monkeypatch.setattr(_backend, "choose", lambda *a, **kw: "reference")
    ref_out = topk_ppr(g, k=4, method="push")
    assert torch.equal(native_out[0], ref_out[0]) and torch.equal(native_out[1], ref_out[1])


@native
def test_opcheck():
    g = _random_directed(seed=5)
    rp, col, _ = g.transpose_csr()
    torch.library.opcheck(torch.ops.gkdfast.ppr_topk.default, (rp, col, torch.tensor([1, 2, 3]), 4, 0.15, 1e-5))


@native
@pytest.mark.parametrize("args, exc, match", [
    ((torch.tensor([0, 1]), 0, 0.15, 1e-5), ValueError, "k must be >= 1"),
    ((torch.tensor([0, 1]), 2, 1.0, 1e-5), ValueError, "alpha must be in"),
    ((torch.tensor([0, 1]), 2, 0.15, 0.0), ValueError, "eps must be > 0"),
    ((torch.tensor([[0, 1]]), 2, 0.15, 1e-5), ValueError, "sources must be 1-D"),
    ((torch.tensor([0.0]), 2, 0.15, 1e-5), TypeError, "sources must be int32 or int64"),
    ((torch.tensor([0, 40]), 2, 0.15, 1e-5), ValueError, "source node 40 is out of range"),
])
def test_op_argument_errors(args, exc, match):
    rp, col, _ = _random_directed().transpose_csr()
    with pytest.raises(exc, match=match):
        torch.ops.gkdfast.ppr_topk(rp, col, *args)


def test_public_function_errors_and_ppr_graph():
    g = _undirected()
    with pytest.raises(ValueError, match="method must be 'auto', 'push' or 'power'"):
        topk_ppr(g, k=2, method="exact")
    with pytest.raises(ValueError, match="eps must be > 0"):
        topk_ppr(g, k=2, eps=-1.0)
    pg = ppr_graph(g, k=3, method="push")
    assert pg.num_edges > g.num_edges and bool((pg.edge_weight > 0).all())
    assert ppr_graph(g, k=3, method="power").num_edges == pg.num_edges


def test_auto_takes_power_on_small_graphs_and_push_on_large_ones(monkeypatch):
    from gkdfast.distill import ppr

    g = _undirected()
    calls = []
    monkeypatch.setattr(ppr, "_push", lambda *a: calls.append("push") or ppr._power(a[0], a[1], a[2], 1e-4, 256, 200))
    topk_ppr(g, k=3)
    assert calls == []  # 60 nodes: power iteration
    monkeypatch.setattr(ppr, "PUSH_MIN_NODES", 50)
    topk_ppr(g, k=3)
    assert calls == (["push"] if _backend.native_loaded() else [])


def test_both_methods_ignore_edge_weights():
    g = _undirected(seed=6)
    w = gkdfast.Graph(g.edge_index, g.num_nodes, edge_weight=torch.rand(g.num_edges) + 0.5)
    for method in (("push", "power") if _backend.native_loaded() else ("power",)):
        a, b = topk_ppr(g, k=4, method=method), topk_ppr(w, k=4, method=method)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@native
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_give_the_cpu_answer_on_the_device():
    g = _random_directed(seed=7)
    rp, col, _ = g.transpose_csr()
    sources = torch.arange(g.num_nodes)
    want = torch.ops.gkdfast.ppr_topk(rp, col, sources, 5, 0.15, 1e-6)
    got = torch.ops.gkdfast.ppr_topk(rp.cuda(), col.cuda(), sources.cuda(), 5, 0.15, 1e-6)
    assert got[0].is_cuda and got[1].is_cuda
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])


def test_ppr_rows_match_the_dense_ppr():
    from gkdfast.distill.ppr import ppr_rows

    g = _random_directed(seed=8)
    rows = ppr_rows(g, torch.tensor([3, 0, 17]))
    assert rows.dtype == torch.float64 and rows.shape == (3, g.num_nodes)
    torch.testing.assert_close(rows.float(), dense_ppr(g)[[3, 0, 17]], atol=1e-6, rtol=0)


def test_power_iteration_warns_when_max_iter_ends_it_and_refuses_a_bad_max_iter():
    from gkdfast.distill.ppr import ppr_rows

    g = _random_directed(seed=8)
    with pytest.warns(RuntimeWarning, match="not converged after max_iter=3"):
        topk_ppr(g, k=3, method="power", alpha=0.01, eps=1e-10, max_iter=3)
    with pytest.warns(RuntimeWarning, match="not converged"):
        ppr_rows(g, torch.tensor([0]), alpha=0.01, max_iter=2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_iter must be a positive int"):
            topk_ppr(g, k=3, method="power", max_iter=bad)
    assert ppr_rows(g, torch.tensor([], dtype=torch.long)).shape == (0, g.num_nodes)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_power_iteration_on_a_cuda_graph_gives_the_cpu_answer():
    from gkdfast.distill.ppr import ppr_rows

    g = _random_directed(seed=9)
    want = topk_ppr(g, k=4, method="power", eps=1e-10)
    got = topk_ppr(g.to("cuda"), k=4, method="power", eps=1e-10)
    assert torch.equal(got[0], want[0]) and not got[0].is_cuda
    torch.testing.assert_close(got[1], want[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(ppr_rows(g.to("cuda"), torch.tensor([1, 2])), ppr_rows(g, torch.tensor([1, 2])))


@pytest.mark.parametrize("n", [0, 1])
def test_topk_ppr_on_a_graph_too_small_for_neighbours_says_so(n):
    g = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), n)
    with pytest.raises(ValueError, match=f"the graph has {n} node.*need at least 2"):
        topk_ppr(g, 1)
