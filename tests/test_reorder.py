"""Graph.reorder / GraphData.reorder: spmm on the reordered graph is bitwise the permuted original,
round trips of node and edge tensors, edge weights and masks carried over, the orders' locality, errors."""
from __future__ import annotations

import pytest
import torch

import gkdfast
from gkdfast.reorder import Reordering, node_order, reorder_graph


def _random_graph(n=300, e=2400, seed=0, index_dtype=torch.int64, weighted=False):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=gen).to(index_dtype)
    w = torch.rand(e, generator=gen) + 0.5 if weighted else None
    return gkdfast.Graph(ei, n, w)


@pytest.mark.parametrize("method", ["rcm", "degree", "custom"])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_spmm_on_reordered_graph_is_the_permuted_original(method, index_dtype, reduce):
    g = _random_graph(index_dtype=index_dtype)
    how = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(1)) if method == "custom" else method
    g2, r = g.reorder(how)
    assert g2.index_dtype == index_dtype and g2.num_edges == g.num_edges
    x = torch.randn(g.num_nodes, 37, generator=torch.Generator().manual_seed(2))
    want = gkdfast.spmm(g, x, reduce)
    got = r.unpermute(gkdfast.spmm(g2, r.permute(x), reduce))
    assert torch.equal(got, want)  # same per-row edge order: bitwise


def test_weighted_spmm_and_edge_weights_follow_the_edges():
    g = _random_graph(weighted=True)
    g2, r = g.reorder("rcm")
    x = torch.randn(g.num_nodes, 20)
    # the graph's own weights were carried over ...
    assert torch.equal(r.unpermute(gkdfast.spmm(g2, r.permute(x))), gkdfast.spmm(g, x))
    # ... and an explicit per-edge tensor converts with permute_edges / unpermute_edges
    w = torch.rand(g.num_edges)
    got = r.unpermute(gkdfast.spmm(g2, r.permute(x), edge_weight=r.permute_edges(w)))
    assert torch.equal(got, gkdfast.spmm(g, x, edge_weight=w))
    assert torch.equal(r.unpermute_edges(r.permute_edges(w)), w)
    # the new graph's edges are the old ones relabelled, edge by edge
    old_src, old_dst = g.edge_index[:, r.edge_perm]
    assert torch.equal(g2.edge_index, torch.stack([r.rank[old_src], r.rank[old_dst]]))


def test_gradients_through_the_reordered_graph_match():
    g = _random_graph(n=120, e=900)
    g2, r = g.reorder("degree")
    x = torch.randn(g.num_nodes, 8, requires_grad=True)
    gkdfast.spmm(g, x, "mean").pow(2).sum().backward()
    want = x.grad.clone()
    x.grad = None
    r.unpermute(gkdfast.spmm(g2, r.permute(x), "mean")).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, want)


def test_permutation_helpers_are_inverse():
    g = _random_graph(n=50, e=200)
    _, r = g.reorder("rcm")
    assert sorted(r.perm.tolist()) == list(range(50))
    assert torch.equal(r.rank[r.perm], torch.arange(50))
    t = torch.randn(50, 3)
    assert torch.equal(r.unpermute(r.permute(t)), t) and torch.equal(r.inverse(r.permute(t)), t)
    ids = torch.tensor([3, 0, 49])
    assert torch.equal(r.old_ids(r.new_ids(ids)), ids)
    assert torch.equal(r.permute(t)[r.new_ids(ids)], t[ids])


def test_degree_order_puts_hubs_first_and_rcm_shrinks_bandwidth():
    g = _random_graph(n=400, e=3000, seed=3)
    deg = g.in_degree() + g.out_degree()
    order = node_order(g, "degree")
    assert bool((deg[order][:-1] >= deg[order][1:]).all())
    # a ring with shuffled ids: RCM gives back a banded matrix (|i - j| small for every edge)
    n = 500
    shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    ring = gkdfast.Graph(shuffle[torch.cat([ring, ring.flip(0)], 1)], n)
    g2, _ = ring.reorder("rcm")
    src, dst = g2.edge_index
    assert int((src - dst).abs().max()) <= 2
    src, dst = ring.edge_index
    assert int((src - dst).abs().max()) > 100


def test_graphdata_round_trip():
    from gkdfast.data import csbm

    d = csbm(num_nodes=300, num_classes=3, feature_dim=6, seed=0)
    d = gkdfast.data.GraphData(d.graph, d.x, d.y, d.train_mask, d.val_mask, d.test_mask, d.num_classes,
                               d.name, sensitive=torch.arange(d.num_nodes) % 2, extras={"k": 1})
    d2, r = d.reorder("rcm")
    d2.validate()
    for name in ("x", "y", "train_mask", "val_mask", "test_mask", "sensitive"):
        assert torch.equal(r.unpermute(getattr(d2, name)), getattr(d, name)), name
    assert d2.extras == {"k": 1, "reordered": "rcm"} and d.extras == {"k": 1}
    # a model's outputs on the reordered data map back to the original nodes
    torch.manual_seed(0)
    model = gkdfast.nn.GCN(d.num_features, 8, d.num_classes).eval()
    with torch.no_grad():
        torch.testing.assert_close(r.unpermute(model(d2.x, d2.graph)), model(d.x, d.graph))


def test_empty_and_edgeless_graphs():
    g = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), 5)
    for method in ("rcm", "degree"):
        g2, r = g.reorder(method)
        assert g2.num_nodes == 5 and g2.num_edges == 0 and sorted(r.perm.tolist()) == list(range(5))
    g0, r0 = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), 0).reorder("rcm")
    assert g0.num_nodes == 0 and r0.perm.numel() == 0


def test_bad_input_is_named():
    g = _random_graph(n=10, e=30)
    with pytest.raises(ValueError, match="method must be one of"):
        g.reorder("metis")
    with pytest.raises(ValueError, match=r"shape \[10\]"):
        g.reorder(torch.arange(9))
    with pytest.raises(ValueError, match="repeats some ids"):
        g.reorder(torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="outside that range"):
        g.reorder(torch.arange(10) + 1)
    _, r = g.reorder("degree")
    with pytest.raises(ValueError, match="10 rows"):
        r.permute(torch.zeros(9))
    with pytest.raises(ValueError, match="30 rows"):
        r.permute_edges(torch.zeros(29))
    assert isinstance(r, Reordering) and reorder_graph(g, "degree")[1].method == "degree"


def test_community_order_groups_nodes_and_spmm_round_trips():
    torch.manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, 30, (2, 120)), 30)
    comm = torch.randint(0, 4, (30,))
    g2, r = g.reorder("community", communities=comm)
    assert r.method == "community"
    assert torch.equal(comm[r.perm], torch.sort(comm, stable=True)[0])  # grouped, stable inside a group
    x = torch.randn(30, 5)
    assert torch.equal(r.unpermute(gkdfast.spmm(g2, r.permute(x))), gkdfast.spmm(g, x))
    with pytest.raises(ValueError, match="needs communities="):
        g.reorder("community")
    with pytest.raises(ValueError, match="integer tensor of shape \\[30\\]"):
        g.reorder("community", communities=torch.rand(30))
