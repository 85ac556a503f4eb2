"""Sampled blocks (local relabelling), block-wise forward of the gkdfast.nn models (equal to the
full-graph forward when the fan-outs cover every degree), NeighborLoader and fit_sampled."""
import numpy as np
import pytest
import torch

import gkdfast
from gkdfast.data import csbm, power_law_graph
from gkdfast.nn.block_forward import gcn_block_weights
from gkdfast.sampling import NeighborLoader, NodeMap, fit_sampled, predict_sampled, sample_blocks


def _graph(weighted=False, index_dtype=torch.int64):
    g = power_law_graph(120, 900, seed=2, exponent=2.2)
    ei = g.edge_index
    w = torch.rand(ei.size(1), generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5 \
        if weighted else None
    return gkdfast.Graph(ei.to(index_dtype), g.num_nodes, edge_weight=w)


def test_blocks_relabelling_and_structure():
    g = _graph()
    seeds = torch.tensor([7, 3, 50, 11])
    node_map = NodeMap(g.num_nodes)
    n_id, blocks = sample_blocks(g, seeds, [3, 2], seed=5, node_map=node_map)
    assert torch.equal(n_id[:4], seeds)
    assert n_id.unique().numel() == n_id.numel()
    assert blocks[-1].num_dst == 4 and blocks[0].num_src == n_id.numel()
    assert blocks[0].num_dst == blocks[1].num_src
    for b in blocks:  # every local edge maps back to a real global edge into the right node
        local_dst = torch.repeat_interleave(torch.arange(b.num_dst), b.rowptr[1:] - b.rowptr[:-1])
        eid = b.edge_id.long()
        assert torch.equal(n_id[b.col.long()], g.col[eid])
        assert torch.equal(n_id[local_dst], g.dst[eid])
        assert int(b.col.max()) < b.num_src
        assert b.graph.num_nodes == b.num_src and b.graph.num_edges == b.num_edges
    assert bool((node_map.table == -1).all())  # reset after use: the next batch starts clean
    # The same seeds again (reused map) give the same batch.
    n_id2, blocks2 = sample_blocks(g, seeds, [3, 2], seed=5, node_map=node_map)
    assert torch.equal(n_id, n_id2) and torch.equal(blocks[0].col, blocks2[0].col)


def test_blocks_int32_and_bad_seeds():
    g = _graph(index_dtype=torch.int32)
    n_id, blocks = sample_blocks(g, torch.tensor([1, 2]), [4, 4])
    assert n_id.dtype == torch.int32 and blocks[0].col.dtype == torch.int32
    node_map = NodeMap(g.num_nodes)
    with pytest.raises(ValueError, match="distinct"):
        sample_blocks(g, torch.tensor([1, 1]), [4], node_map=node_map)
    assert bool((node_map.table == -1).all())
    with pytest.raises(IndexError, match="seed nodes"):
        sample_blocks(g, torch.tensor([g.num_nodes]), [4])
    with pytest.raises(ValueError, match="fanouts"):
        sample_blocks(g, torch.tensor([1]), [])


def _full_fanout_pair(model_cls, weighted=False, **kw):
    torch.manual_seed(0)
    g = _graph(weighted)
    x = torch.randn(g.num_nodes, 6, dtype=torch.float64)
    model = model_cls(6, 8, 3, num_layers=2, dropout=0.0, **kw).double().eval()
    seeds = torch.tensor([0, 9, 33, 4, 100, 71])
    max_deg = int((g.rowptr[1:] - g.rowptr[:-1]).max())
    n_id, blocks = sample_blocks(g, seeds, [max_deg, max_deg], seed=1)
    full, full_h = model(x, g, return_hidden=True)
    got, got_h = model.forward_blocks(x[n_id], blocks, return_hidden=True)
    return full[seeds], got, full_h[seeds], got_h


@pytest.mark.parametrize("name", ["sage", "sage-gcn", "gcn", "gin", "gat"])
def test_forward_blocks_equals_full_forward_at_full_fanout(name):
    name, _, aggr = name.partition("-")
    cls = {"sage": gkdfast.nn.SAGE, "gcn": gkdfast.nn.GCN, "gin": gkdfast.nn.GIN, "gat": gkdfast.nn.GAT}[name]
    kw = {"heads": 2} if name == "gat" else {"aggr": aggr} if aggr else {}
    want, got, want_h, got_h = _full_fanout_pair(cls, **kw)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_h, want_h)


@pytest.mark.parametrize("name", ["gcn", "gin"])
def test_forward_blocks_weighted_graph(name):
    cls = {"gcn": gkdfast.nn.GCN, "gin": gkdfast.nn.GIN}[name]
    want, got, _, _ = _full_fanout_pair(cls, weighted=True)
    torch.testing.assert_close(got, want)


def test_sage_sum_and_mlp_blocks():
    want, got, _, _ = _full_fanout_pair(gkdfast.nn.SAGE, aggr="sum")
    torch.testing.assert_close(got, want)
    want, got, _, _ = _full_fanout_pair(gkdfast.nn.MLP)
    torch.testing.assert_close(got, want)


def test_gcn_block_weights_unbiased():
    # Full-graph degrees, sampled messages scaled by count / sampled.  Each in-edge is kept with
    # probability k / deg (uniform without replacement, checked in test_sample_neighbors), so
    # E[sum of sampled w_e x_j] = sum over all in-edges of dinv_i dinv_j x_j: the full GCN term.
    g = _graph()
    deg = g.rowptr[1:] - g.rowptr[:-1]
    hub = int(deg.argmax())
    k = 3
    dinv = (deg.double() + 1).rsqrt()
    n_id, (b,) = sample_blocks(g, torch.tensor([hub]), [k], seed=0)
    src = n_id[b.col.long()].long()
    want = dinv[hub] * dinv[src] * float(deg[hub]) / k
    torch.testing.assert_close(gcn_block_weights(b, torch.float64), want)


def test_forward_blocks_bad_block_count():
    g = _graph()
    n_id, blocks = sample_blocks(g, torch.tensor([0]), [2])
    with pytest.raises(ValueError, match="blocks"):
        gkdfast.nn.SAGE(6, 8, 3, num_layers=2).forward_blocks(torch.randn(n_id.numel(), 6), blocks)


def test_loader_epochs_batches_and_determinism():
    g = _graph()
    nodes = torch.arange(0, 100, 3)
    loader = NeighborLoader(g, nodes, [4, 4], batch_size=8, shuffle=True, seed=1)
    e0 = list(loader)
    e1 = list(loader)
    assert len(e0) == len(loader) == 5
    seen = torch.cat([b.seeds for b in e0])
    assert torch.equal(seen.sort().values, nodes)
    assert not torch.equal(seen, torch.cat([b.seeds for b in e1]))  # new shuffle per epoch
    loader.set_epoch(0)
    again = list(loader)
    assert all(torch.equal(a.n_id, b.n_id) for a, b in zip(e0, again))
    # A node's first-hop sample does not depend on which batch it lands in.
    other = NeighborLoader(g, nodes, [4, 4], batch_size=3, shuffle=False, seed=1)
    single = other.sample(torch.tensor([int(e0[0].seeds[0])]), epoch=0)
    first = e0[0].blocks[-1]
    b = single.blocks[-1]
    assert torch.equal(e0[0].n_id[first.col[first.rowptr[0]:first.rowptr[1]].long()],
                       single.n_id[b.col[b.rowptr[0]:b.rowptr[1]].long()])


def test_loader_bad_arguments():
    g = _graph()
    with pytest.raises(ValueError, match="fanouts"):
        NeighborLoader(g, torch.arange(3), [0])
    with pytest.raises(ValueError, match="batch_size"):
        NeighborLoader(g, torch.arange(3), [2], batch_size=0)
    with pytest.raises(ValueError, match="mask"):
        NeighborLoader(g, torch.ones(3, dtype=torch.bool), [2])
    with pytest.raises(ValueError, match="nodes must be in"):
        NeighborLoader(g, torch.tensor([g.num_nodes]), [2])
    with pytest.raises(ValueError, match="distinct"):  # before: failed mid-epoch, or trained a node twice
        NeighborLoader(g, torch.tensor([3, 4, 3, 5]), [2], batch_size=2)


def test_neighbouring_seeds_do_not_replay_each_others_epochs():
    """Seed s at epoch e and seed s + 1 at epoch e - 1 once drew the same stream (seed and salt were
    added before mixing)."""
    from gkdfast.sampling import mix_seed

    assert mix_seed(0, 1) != mix_seed(1, 0) and mix_seed(0, 5, 1) != mix_seed(3, 2, 1)
    assert len({mix_seed(s, e) for s in range(20) for e in range(20)}) == 400
    g = _graph()
    a = list(NeighborLoader(g, torch.arange(40), [4], batch_size=8, shuffle=True, seed=0))  # epoch 0
    b = NeighborLoader(g, torch.arange(40), [4], batch_size=8, shuffle=True, seed=1)
    b.set_epoch(1)
    assert not all(torch.equal(x.n_id, y.n_id) for x, y in zip(a, list(b)))


def test_sample_blocks_checks_the_range_before_the_cast_to_int32():
    g = gkdfast.Graph(torch.tensor([[1, 2, 3], [0, 1, 2]]), 6).to(index_dtype=torch.int32)
    with pytest.raises(IndexError, match="seed nodes"):
        sample_blocks(g, torch.tensor([2**32 + 1]), [2])  # wrapped to node 1 before


def test_fit_and_predict_sampled_in_float64():
    data = csbm(num_nodes=120, num_classes=3, feature_dim=8, seed=0)
    torch.manual_seed(0)
    model = gkdfast.nn.SAGE(8, 16, 3).double()
    stats = fit_sampled(model, data, fanouts=(3, 3), batch_size=32, epochs=2, progress=False)
    assert stats["epochs"] == 2
    out = predict_sampled(model, data, torch.arange(10), fanouts=(3, 3))
    assert out.dtype == torch.float64 and out.shape == (10, 3)
    again = predict_sampled(model, data, torch.tensor([3, 3, 1]), fanouts=(3, 3))  # repeats: one row each
    assert torch.equal(again[0], again[1]) and torch.equal(again[2], out[1])


def test_fit_sampled_close_to_full_batch_and_memmap(tmp_path):
    data = csbm(num_nodes=1500, num_classes=4, feature_dim=16, avg_degree=8, homophily=0.8, seed=0)
    # Features as a read-only memory-mapped array: only x[n_id] is ever read.
    path = tmp_path / "x.npy"
    np.save(path, data.x.numpy())
    np.save(tmp_path / "y.npy", data.y.numpy())
    y = data.y
    data.x = np.load(path, mmap_mode="r")
    data.y = np.load(tmp_path / "y.npy", mmap_mode="r")
    torch.manual_seed(0)
    model = gkdfast.nn.SAGE(16, 32, 4, num_layers=2, dropout=0.2)
    stats = fit_sampled(model, data, fanouts=(10, 5), batch_size=64, epochs=20, lr=0.01, seed=0,
                        progress=False, eval_every=2)
    assert set(stats) >= {"epochs", "seconds", "best_val_acc", "best_epoch", "nodes_per_s"}
    assert stats["epochs"] == 20 and stats["nodes_per_s"] > 0 and 1 <= stats["best_epoch"] <= 20
    # Full-batch reference: same model, Adam, full graph.
    x = torch.from_numpy(np.array(data.x))
    data.y = y
    torch.manual_seed(0)
    ref = gkdfast.nn.SAGE(16, 32, 4, num_layers=2, dropout=0.2)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    best = 0.0
    for _ in range(100):
        ref.train()
        loss = torch.nn.functional.cross_entropy(ref(x, data.graph)[data.train_mask], data.y[data.train_mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref.eval()
        with torch.no_grad():
            pred = ref(x, data.graph).argmax(1)
        best = max(best, float((pred[data.val_mask] == data.y[data.val_mask]).float().mean()))
    assert stats["best_val_acc"] >= best - 0.08, (stats["best_val_acc"], best)
    # The best weights were loaded back: sampled validation accuracy reproduces best_val_acc.
    val = data.val_mask.nonzero().flatten()
    from gkdfast.sampling.loader import mix_seed
    logits = predict_sampled(model, data, val, fanouts=(10, 5), batch_size=64, seed=mix_seed(0, 2))
    assert float((logits.argmax(1) == data.y[val]).float().mean()) == pytest.approx(stats["best_val_acc"])


def test_fit_sampled_gcn_int32_and_errors():
    data = csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=1)
    data.graph = data.graph.to(index_dtype=torch.int32)
    model = gkdfast.nn.GCN(8, 16, 3)
    stats = fit_sampled(model, data, fanouts=(5, 5), batch_size=16, epochs=10, progress=False)
    assert stats["best_val_acc"] > 0.6
    tiny = fit_sampled(gkdfast.nn.GIN(8, 16, 3), data, fanouts=(3, 3), epochs=1, progress=True)  # tqdm path
    assert tiny["epochs"] == 1
    with pytest.raises(ValueError, match="fanouts"):
        fit_sampled(model, data, fanouts=(5,), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit_sampled(model, data, fanouts=(5, 5), epochs=0, progress=False)
    with pytest.raises(TypeError, match="forward_blocks"):
        fit_sampled(torch.nn.Linear(8, 3), data, fanouts=(5, 5), progress=False)


def _bag_of_words(n=80, f=300, seed=0):
    torch.manual_seed(seed)
    g = gkdfast.Graph(torch.randint(0, n, (2, 5 * n)), n)
    x = (torch.rand(n, f) < 0.02).float() * torch.rand(n, f)  # 2 % non-zeros: sparse rows
    return g, x


@pytest.mark.parametrize("name", ["gcn", "sage", "sage:gcn", "sage:max", "gin", "gat", "mlp"])
@pytest.mark.parametrize("layers", [1, 2])
def test_sparse_batch_rows_give_the_dense_rows_result_and_gradients(name, layers):
    from gkdfast.sampling.train import batch_features

    g, x = _bag_of_words()
    name, _, aggr = name.partition(":")
    kw = ({"aggr": aggr} if aggr else {}) | ({"heads": 2} if name == "gat" else {})
    model = gkdfast.nn.build_model(name, 300, 16, 3, num_layers=layers, dropout=0.0, **kw).train()
    twin = gkdfast.nn.build_model(name, 300, 16, 3, num_layers=layers, dropout=0.0, **kw).train()
    twin.load_state_dict(model.state_dict())
    n_id, blocks = sample_blocks(g, torch.arange(0, 80, 4), [5] * layers, seed=3)
    rows = batch_features(model, x, n_id)
    assert rows.layout == torch.sparse_csr and torch.equal(rows.to_dense(), x[n_id])
    out, hid = model.forward_blocks(rows, blocks, return_hidden=True)
    want, want_hid = twin.forward_blocks(x[n_id], blocks, return_hidden=True)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hid, want_hid, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    want.square().sum().backward()
    for (pname, a), b in zip(model.named_parameters(), twin.parameters()):
        if b.grad is None:
            assert a.grad is None or not a.grad.any(), pname
        else:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=pname)
    dense = torch.randn(80, 300)  # dense features keep the dense gather
    assert batch_features(model, dense, n_id).layout == torch.strided


def test_input_dropout_on_sparse_batch_rows_and_fit_sampled_on_bag_of_words(monkeypatch):
    from gkdfast.sampling.train import batch_features

    g, x = _bag_of_words(n=200)
    model = gkdfast.nn.SAGE(300, 16, 3, num_layers=2, input_dropout=0.5, dropout=0.0).train()
    n_id, blocks = sample_blocks(g, torch.arange(0, 200, 2), [5, 5], seed=0)
    rows = batch_features(model, x, n_id)
    seen = []
    monkeypatch.setattr(gkdfast.nn.models, "layer_on_block",
                        lambda layer, h, block, _real=gkdfast.nn.models.layer_on_block: seen.append(h) or _real(layer, h, block))
    model.forward_blocks(rows, blocks)
    dropped = seen[0].to_dense()
    nz = x[n_id] != 0
    assert torch.equal(dropped[~nz], torch.zeros_like(dropped[~nz]))  # zeros stay zero
    kept = dropped[nz] != 0
    assert 0.35 < kept.float().mean().item() < 0.65
    torch.testing.assert_close(dropped[nz][kept], 2 * x[n_id][nz][kept])
    # fit_sampled end to end: the batches reach the model's first layer as sparse rows
    data = csbm(num_nodes=200, num_classes=3, feature_dim=300, seed=0)
    data.x = (data.x > 2.0).float()  # thresholded: mostly zero
    seen.clear()
    stats = fit_sampled(gkdfast.nn.SAGE(300, 16, 3, num_layers=2), data, fanouts=(5, 5), batch_size=50,
                        epochs=3, progress=False)
    assert stats["epochs"] == 3 and seen and seen[0].layout == torch.sparse_csr  # the first layer's input
    assert all(h.layout == torch.strided for h in seen[1::2])  # the second layer's: dense hidden rows
