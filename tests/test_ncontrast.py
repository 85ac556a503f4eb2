"""ncontrast: sparse Â^hops, exact and sampled denominators vs the dense Graph-MLP formulation,
isolated nodes (left out of P), max_nnz cap, bad arguments."""
import pytest
import torch

import gkdfast
from gkdfast.losses import adjacency_power, ncontrast, sample_negatives
from gkdfast.reference import contrastive as rc

from conftest import random_edge_index, tiny_graphs, TINY_IDS


def _z(n, d=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()


def _sym_graph(n, e, seed=0, isolated=0):
    ei = random_edge_index(n - isolated, e, seed)
    ei = torch.cat([ei, ei.flip(0)], 1)
    return ei, gkdfast.Graph(ei, num_nodes=n)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_adjacency_power_matches_dense(hops):
    ei, g = _sym_graph(30, 40, isolated=3)
    rowptr, col, val = adjacency_power(g, hops)
    dense = torch.zeros(30, 30, dtype=torch.float64)
    row = torch.repeat_interleave(torch.arange(30), rowptr[1:] - rowptr[:-1])
    dense[row, col] = val
    torch.testing.assert_close(dense, rc.gcn_adjacency_power_dense(ei, 30, hops))


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_matches_dense_reference(hops, tau):
    ei, g = _sym_graph(40, 50, seed=1, isolated=4)
    z = _z(40)
    a, b = ncontrast(g, z, tau=tau, hops=hops), rc.ncontrast(ei, 40, z, tau=tau, hops=hops)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(torch.autograd.grad(a, z)[0], torch.autograd.grad(b, z)[0])


@pytest.mark.parametrize("name, ei, n", tiny_graphs(), ids=TINY_IDS)
def test_tiny_graphs(name, ei, n):
    g = gkdfast.Graph(ei, num_nodes=n)
    z = _z(n)
    a = ncontrast(g, z, tau=0.7, hops=2, reduction="none")
    assert a.shape == (n,)
    if n:
        b = rc.ncontrast(ei, n, z, tau=0.7, hops=2, reduction="none")
        torch.testing.assert_close(a, b)
        assert torch.isfinite(torch.autograd.grad(a.sum(), z)[0]).all()


def test_directed_and_weighted_graph_matches_dense():
    ei = random_edge_index(25, 60, seed=3)
    w = torch.rand(60, dtype=torch.float64) + 0.1
    g = gkdfast.Graph(ei, num_nodes=25, edge_weight=w)
    z = _z(25)
    torch.testing.assert_close(ncontrast(g, z, hops=2), rc.ncontrast(ei, 25, z, hops=2, edge_weight=w))


def test_isolated_nodes_are_left_out():
    ei = torch.tensor([[0, 1, 3], [1, 0, 3]])  # 3 has only a self-loop, 2 and 4 nothing
    g = gkdfast.Graph(ei, num_nodes=5)
    z = _z(5)
    rows = ncontrast(g, z, reduction="none")
    assert rows[2] == 0 and rows[3] == 0 and rows[4] == 0 and rows[0] != 0
    loss = ncontrast(g, z)
    torch.testing.assert_close(loss, rows[:2].mean())
    grad = torch.autograd.grad(loss, z)[0]
    assert torch.isfinite(grad).all() and grad[0].abs().sum() > 0


def test_all_isolated_gives_zero():
    g = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), num_nodes=4)
    z = _z(4)
    loss = ncontrast(g, z)
    assert loss.item() == 0.0
    assert torch.autograd.grad(loss, z)[0].abs().sum() == 0


def test_gradcheck_exact_and_sampled():
    ei, g = _sym_graph(9, 10, seed=2, isolated=1)
    z = _z(9, 3)
    assert torch.autograd.gradcheck(lambda x: ncontrast(g, x, tau=0.5, hops=2), (z,))
    assert torch.autograd.gradcheck(lambda x: ncontrast(g, x, tau=0.5, num_negatives=3, seed=4), (z,))


def test_sampled_denominator_by_hand():
    ei, g = _sym_graph(20, 25, seed=5)
    z = _z(20)
    rows = ncontrast(g, z, tau=0.5, num_negatives=4, seed=8, reduction="none")
    zn = torch.nn.functional.normalize(z, dim=1)
    s = zn @ zn.t() / 0.5
    w = rc.gcn_adjacency_power_dense(ei, 20, 1)
    neg = sample_negatives(20, 4, 8)
    for i in range(20):
        pos = [j for j in range(20) if j != i and w[i, j] > 0]
        if not pos:
            assert rows[i] == 0
            continue
        num = torch.logsumexp(s[i, pos] + torch.log(w[i, pos]), 0)
        den = torch.logsumexp(torch.cat([s[i, pos], s[i, neg[i]]]), 0)
        torch.testing.assert_close(rows[i], den - num)


def test_sampled_reproducible_and_k_large_is_exact():
    ei, g = _sym_graph(30, 40, seed=6)
    z = _z(30)
    a = ncontrast(g, z, num_negatives=5, seed=1)
    assert torch.equal(a, ncontrast(g, z, num_negatives=5, seed=1))
    assert not torch.equal(a, ncontrast(g, z, num_negatives=5, seed=2))
    torch.testing.assert_close(ncontrast(g, z, num_negatives=29, seed=1), ncontrast(g, z))


def test_float32_multi_tile():
    ei, g = _sym_graph(4300, 8000, seed=7)
    z = _z(4300, 4, dtype=torch.float32)
    ref = rc.ncontrast(ei, 4300, z.double(), tau=0.5)
    torch.testing.assert_close(ncontrast(g, z, tau=0.5).double(), ref, rtol=1e-5, atol=1e-5)


def test_max_nnz_cap():
    ei, g = _sym_graph(50, 200, seed=8)
    with pytest.raises(ValueError, match="max_nnz"):
        ncontrast(g, _z(50), hops=3, max_nnz=600)
    assert torch.isfinite(ncontrast(g, _z(50), hops=1, max_nnz=10**6))


def test_cache_is_one_entry_per_hops_whatever_max_nnz():
    # (one copy of Â^hops per max_nnz value grew without bound in a sweep: 37 MiB per call at 2,000 nodes)
    from gkdfast.losses import contrastive

    ei, g = _sym_graph(50, 200, seed=8)
    z = _z(50)
    want = ncontrast(g, z, hops=2)
    for cap in (10**6, 10**6 + 1, 10**7, 2000):
        torch.testing.assert_close(ncontrast(g, z, hops=2, max_nnz=cap), want, rtol=0, atol=0)
        ncontrast(g, z, hops=2, max_nnz=cap, num_negatives=4, seed=1)
    entries = contrastive._graph_cache(g)
    assert sorted(k for k in entries if k[0] in ("W", "pos")) == [("pos", 2)]  # W itself is not kept
    row, _, pg, _, peak = entries[("pos", 2)]
    assert row.untyped_storage().data_ptr() == pg.dst.untyped_storage().data_ptr()  # destinations held once
    with pytest.raises(ValueError, match=f"has {peak} nonzeros, more than max_nnz={peak - 1}"):  # from the cache
        ncontrast(g, z, hops=2, max_nnz=peak - 1)
    assert torch.isfinite(ncontrast(g, z, hops=2, max_nnz=peak))


@pytest.mark.parametrize("kw, exc, match", [
    (dict(hops=0), ValueError, "hops"),
    (dict(hops=1.5), ValueError, "hops"),
    (dict(tau=0), ValueError, "tau"),
    (dict(num_negatives=-2), ValueError, "num_negatives"),
    (dict(reduction="batchmean"), ValueError, "reduction"),
    (dict(max_nnz=0), ValueError, "max_nnz"),
])
def test_bad_arguments(kw, exc, match):
    ei, g = _sym_graph(10, 10)
    with pytest.raises(exc, match=match):
        ncontrast(g, _z(10), **kw)


def test_bad_inputs():
    ei, g = _sym_graph(10, 10)
    with pytest.raises(TypeError, match="Graph"):
        ncontrast(ei, _z(10))
    with pytest.raises(ValueError, match="rows"):
        ncontrast(g, _z(11))
    with pytest.raises(TypeError, match="floating"):
        ncontrast(g, torch.ones(10, 3, dtype=torch.long))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kw", [{}, {"num_negatives": 6, "seed": 2}, {"hops": 2}])
def test_cuda_matches_cpu(kw):
    ei, g = _sym_graph(300, 600, seed=9, isolated=5)
    z = _z(300, 16, dtype=torch.float32)
    zc = z.detach().cuda().requires_grad_()
    a, b = ncontrast(g, z, **kw), ncontrast(g.to("cuda"), zc, **kw)
    torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(b, zc)[0].cpu(), torch.autograd.grad(a, z)[0], rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("num_negatives", [None, 3])
def test_batch_nodes_restrict_the_whole_graphs_positives(num_negatives):
    """nodes=: the loss of a mini-batch with W = (Â^hops of the whole graph)[nodes][:, nodes], as
    Graph-MLP's batches index its dense adj_label; repeated nodes are separate positions."""
    ei, g = _sym_graph(40, 60, seed=2, isolated=3)
    nodes = torch.tensor([5, 0, 17, 5, 39, 38, 2, 11, 17, 23, 30, 1])  # 5 and 17 twice, 38 / 39 isolated
    z = _z(nodes.numel(), seed=4)
    got = ncontrast(g, z, tau=0.6, hops=2, nodes=nodes, reduction="none")
    want = rc.ncontrast(ei, 40, z, tau=0.6, hops=2, nodes=nodes, reduction="none")
    if num_negatives is None:
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(ncontrast(g, z, tau=0.6, hops=2, nodes=nodes),
                                   rc.ncontrast(ei, 40, z, tau=0.6, hops=2, nodes=nodes))
        assert torch.autograd.gradcheck(lambda x: ncontrast(g, x, tau=0.6, hops=2, nodes=nodes), (z,))
    else:  # K >= B - 1 negatives: the sampled denominator falls back to the exact one
        torch.testing.assert_close(ncontrast(g, z, tau=0.6, hops=2, nodes=nodes, num_negatives=nodes.numel(),
                                             seed=1), ncontrast(g, z, tau=0.6, hops=2, nodes=nodes))
        sampled = ncontrast(g, z, tau=0.6, hops=2, nodes=nodes, num_negatives=num_negatives, seed=1)
        assert torch.isfinite(sampled) and sampled.item() != ncontrast(g, z, tau=0.6, hops=2, nodes=nodes).item()
    # positions of isolated nodes have no positive; the two positions of node 5 attract each other
    assert got[4] == 0 and got[5] == 0 and got[0] > 0
    # the batch of every node once, in order, is the full loss
    torch.testing.assert_close(ncontrast(g, _z(40), hops=2, nodes=torch.arange(40)), ncontrast(g, _z(40), hops=2))


def test_batch_nodes_errors():
    _, g = _sym_graph(10, 12)
    z = _z(3)
    with pytest.raises(ValueError, match="z has 3 rows but nodes lists 2 nodes"):
        ncontrast(g, z, nodes=torch.tensor([0, 1]))
    with pytest.raises(IndexError, match="node 10 in nodes is out of range"):
        ncontrast(g, z, nodes=torch.tensor([0, 1, 10]))
    with pytest.raises(TypeError, match="nodes must be a 1-D integer tensor"):
        ncontrast(g, z, nodes=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"bool nodes mask must have shape \[10\]"):
        ncontrast(g, z, nodes=torch.ones(3, dtype=torch.bool))


def test_batch_nodes_as_a_bool_mask_equal_their_ids():
    """PyG users hold masks (data.train_mask): the mask is its set positions in increasing order."""
    _, g = _sym_graph(30, 40, seed=3)
    mask = torch.zeros(30, dtype=torch.bool)
    mask[[2, 3, 7, 11, 12, 20, 29]] = True
    z = _z(int(mask.sum()), seed=1)
    torch.testing.assert_close(ncontrast(g, z, hops=2, nodes=mask),
                               ncontrast(g, z, hops=2, nodes=mask.nonzero().squeeze(1)))


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_batch_rows_expanded_in_small_chunks_equal_the_dense_power(hops, monkeypatch):
    """The batch's rows of Â^hops come from hop-by-hop expansion, never the whole W; forcing chunks
    of a few entries (a hub's row split across many) gives the dense reference's loss."""
    import gkdfast.losses.contrastive as lc

    ei, _ = _sym_graph(30, 35, seed=5)
    hub = torch.stack([torch.zeros(20, dtype=torch.long), torch.arange(1, 21)])  # node 0: 20 more neighbours
    ei = torch.cat([ei, hub, hub.flip(0)], 1)
    g = gkdfast.Graph(ei, num_nodes=30)
    nodes = torch.tensor([0, 3, 3, 7, 12, 0, 29, 18, 21, 4])
    z = _z(nodes.numel(), seed=6)
    want = rc.ncontrast(ei, 30, z, tau=0.4, hops=hops, nodes=nodes, reduction="none")
    torch.testing.assert_close(ncontrast(g, z, tau=0.4, hops=hops, nodes=nodes, reduction="none"), want)
    monkeypatch.setattr(lc, "_BATCH_EXPAND_CHUNK", 3)
    torch.testing.assert_close(ncontrast(g, z, tau=0.4, hops=hops, nodes=nodes, reduction="none"), want)
    empty = ncontrast(g, z[:0], tau=0.4, hops=hops, nodes=nodes[:0])
    assert empty.item() == 0


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_batch_nodes_on_a_directed_weighted_graph_with_loops_and_repeats(hops):
    """Â is not symmetric on a directed graph, and edge weights, an explicit self-loop and a repeated
    edge enter its values: the batch block (rows from the CSR, columns from its transpose) still
    equals the dense W[nodes][:, nodes]."""
    ei = random_edge_index(25, 70, 7)
    ei = torch.cat([ei, torch.tensor([[3, 4, 4], [3, 9, 9]])], 1)  # a self-loop on 3, edge 4 -> 9 twice
    w = torch.rand(ei.size(1), generator=torch.Generator().manual_seed(8), dtype=torch.float64) + 0.1
    g = gkdfast.Graph(ei, num_nodes=25, edge_weight=w)
    nodes = torch.tensor([3, 9, 4, 4, 17, 0, 22, 9, 13])
    z = _z(nodes.numel(), seed=9)
    torch.testing.assert_close(ncontrast(g, z, tau=0.8, hops=hops, nodes=nodes, reduction="none"),
                               rc.ncontrast(ei, 25, z, tau=0.8, hops=hops, edge_weight=w, nodes=nodes,
                                            reduction="none"))


_NC_CASES = [{}, {"num_negatives": 2}, {"nodes": torch.tensor([0, 2])}]


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("kw", _NC_CASES)
def test_an_inference_mode_call_does_not_poison_the_cache(backend, kw, monkeypatch):
    # A validation pass under inference_mode filled the graph's W cache with inference tensors, and
    # the next training step failed ("Inference tensors cannot be saved for backward").
    monkeypatch.setenv("GKDFAST_BACKEND", backend)
    g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    z = torch.randn(2 if "nodes" in kw else 3, 8, dtype=torch.float64, requires_grad=True)
    with torch.inference_mode():
        expected = ncontrast(g, z, **kw)
    loss = ncontrast(g, z, **kw)
    loss.backward()
    assert torch.equal(loss.detach(), expected) and z.grad is not None


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("kw", _NC_CASES)
def test_learnable_edge_weights_are_constants_of_the_cached_w(backend, kw, monkeypatch):
    # W kept the weights' autograd history: the first step back-propagated into them through the
    # cache, the second failed ("Trying to backward through the graph a second time").
    monkeypatch.setenv("GKDFAST_BACKEND", backend)
    w = torch.rand(4, dtype=torch.float64, requires_grad=True)
    g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3, edge_weight=w)
    z = torch.randn(2 if "nodes" in kw else 3, 8, dtype=torch.float64, requires_grad=True)
    for _ in range(2):
        ncontrast(g, z, **kw).backward()
    assert w.grad is None
