"""gkdfast.condense (GCond / DosCond) and ``gkdfast condense``."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from gkdfast.cli import main
from gkdfast.condense import (Backbone, CondensedGraph, PGE, class_counts, condense, dense_gcn_norm, gradient_distance,
                              load_condensed, published_config, synthetic_size, train_and_test)
from gkdfast.condense.condenser import _build_real, _matching_loss, prepare_features
from gkdfast.data import csbm, load


@pytest.fixture(scope="module")
def clear_graph():
    # Homophilous, well separated: a GCN on the whole graph is near perfect.
    return csbm(num_nodes=600, num_classes=3, feature_dim=16, homophily=0.9, seed=1)


def test_pge_is_a_symmetric_adjacency_in_unit_interval_and_equals_the_pair_mlp():
    torch.manual_seed(0)
    pge = PGE(feature_dim=6, hidden=16, num_layers=3)
    x = torch.randn(9, 6)
    with torch.no_grad():
        adj = pge(x)
    assert adj.shape == (9, 9)
    assert torch.equal(adj, adj.t())
    assert float(adj.min()) >= 0.0 and float(adj.max()) <= 1.0
    assert torch.count_nonzero(adj.diagonal()) == 0
    assert float(adj.sum()) > 0
    # The factorised first layer is the MLP applied to every concatenated pair [x_i ; x_j].
    pairs = torch.cat([x.repeat_interleave(9, 0), x.repeat(9, 1)], 1)
    with torch.no_grad():
        h = F.relu(pge.norms[0](pge.first(pairs)))
        for layer, norm in zip(pge.hidden_layers, pge.norms[1:]):
            h = F.relu(norm(layer(h)))
        s = pge.last(h).reshape(9, 9)
    expect = torch.sigmoid((s + s.t()) / 2)
    expect = expect - torch.diag_embed(expect.diagonal())
    torch.testing.assert_close(adj, expect, rtol=1e-5, atol=1e-6)


def test_synthetic_sizes_follow_the_train_proportions_with_one_node_per_class():
    assert synthetic_size(0.026, 2708, 7, 140) == 70
    assert synthetic_size(0.013, 2708, 7, 140) == 35
    y = torch.tensor([0] * 50 + [1] * 45 + [2] * 5)
    counts = class_counts(y, 3, 10)
    assert counts == [5, 4, 1] and sum(counts) == 10
    assert class_counts(torch.tensor([0] * 98 + [1, 2]), 3, 3) == [1, 1, 1]
    with pytest.raises(ValueError, match="one per class"):
        synthetic_size(0.001, 2708, 7, 140)
    with pytest.raises(ValueError, match="labelled training nodes"):
        synthetic_size(0.2, 2708, 7, 140)
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            synthetic_size(bad, 2708, 7, 140)


@pytest.mark.parametrize("kind", ["sgc", "gcn"])
def test_backbone_dense_and_sparse_forwards_agree(clear_graph, kind):
    d = clear_graph
    net = Backbone(kind, d.num_features, d.num_classes, hidden=8, generator=torch.Generator().manual_seed(0))
    ei = d.graph.edge_index
    adj = torch.zeros(d.num_nodes, d.num_nodes)
    adj[ei[1], ei[0]] = 1.0
    torch.testing.assert_close(net.real(d.x, d.graph), net.dense(d.x, dense_gcn_norm(adj)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net.real(d.x.to_sparse(), d.graph), net.real(d.x, d.graph), rtol=1e-4, atol=1e-5)


def test_gradient_distance_is_per_output_neuron_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, -1.0], [3.0, 0.0]])
    expect = (1 - 1) + (1 - (-1)) + (1 - 2 ** -0.5)
    assert float(gradient_distance([a, torch.ones(3)], [b, torch.zeros(3)], "ours")) == pytest.approx(expect, abs=1e-5)
    assert float(gradient_distance([a, torch.ones(3)], [b, torch.zeros(3)], "mse")) == pytest.approx(1 + 9 + 9 + 3)
    with pytest.raises(ValueError, match="metric"):
        gradient_distance([a], [b], "l1")


@pytest.mark.parametrize("metric,kind", [("ours", "sgc"), ("mse", "gcn")])
def test_matching_loss_decreases_when_the_features_learn(clear_graph, metric, kind):
    d = clear_graph
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = published_config(backbone=kind, metric=metric, hidden=16)
    real = _build_real(d, prepare_features(d.x), cfg)
    net = Backbone(kind, d.num_features, d.num_classes, hidden=16, generator=gen)
    counts = [4, 4, 4]
    y_syn = torch.repeat_interleave(torch.arange(3), 4)
    feat = torch.randn(12, d.num_features, generator=gen).requires_grad_()
    pge = PGE(d.num_features, 16)
    opt = torch.optim.Adam([feat], lr=0.05)
    losses = []
    for _ in range(30):
        loss = _matching_loss(net, real, feat, pge(feat), y_syn, [0, 4, 8, 12], [1.0] * 3, metric)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert counts == [4, 4, 4]
    assert losses[-1] < 0.5 * losses[0], losses


def test_condensed_graph_trains_a_gcn_well_above_chance(clear_graph):
    d = clear_graph
    cfg = published_config(epochs=20, outer=4, inner=2, lr_feat=0.01, lr_adj=0.01)
    g = condense(d, 0.02, seed=0, config=cfg)
    assert g.num_nodes == 12 and g.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert len(g.history) == 20 and g.history[-1] < 0.5 * g.history[0]  # the matching loss fell
    gd = g.to_graphdata()
    r = train_and_test(gd.x, gd.graph, gd.y, torch.arange(12), d, prepare_features(d.x), epochs=100)
    assert r.test_acc > 0.7  # chance is 1/3


def test_condense_is_deterministic_and_one_step_runs(clear_graph):
    cfg = published_config(epochs=3, outer=2, inner=1)
    a, b = condense(clear_graph, 0.02, seed=3, config=cfg), condense(clear_graph, 0.02, seed=3, config=cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.adj, b.adj)
    c = condense(clear_graph, 0.02, seed=4, config=cfg)
    assert not torch.equal(a.x, c.x)
    one = published_config(one_step=True, epochs=3, hidden=16)
    assert (one.outer, one.inner, one.backbone, one.metric) == (1, 0, "gcn", "mse")
    g = condense(clear_graph, 0.02, seed=0, config=one)
    assert g.name.endswith("doscond") and len(g.history) == 3
    with pytest.raises(ValueError, match="one_step"):
        condense(clear_graph, 0.02, config=published_config(one_step=True, epochs=1, outer=2))


def test_a_split_without_validation_or_test_nodes_is_refused(clear_graph, tmp_path, capsys):
    """The evaluation keeps the best validation epoch and tests on the test nodes: without them it kept
    the first epoch (or reported 0) with no error."""
    import dataclasses

    from gkdfast.condense import run_condense
    from gkdfast.data import save_npz

    for name in ("val_mask", "test_mask", "train_mask"):
        d = dataclasses.replace(clear_graph, **{name: torch.zeros_like(clear_graph.val_mask)})
        short = name.split("_")[0]
        with pytest.raises(ValueError, match=f"no {short} nodes"):
            train_and_test(d.x, d.graph, d.y, torch.arange(5), d, d.x, epochs=2)
        with pytest.raises(ValueError, match=f"no {short} nodes"):
            run_condense(d, 0.02, [0], published_config(epochs=1, outer=1, inner=0), eval_epochs=2, eval_runs=1)
    d = dataclasses.replace(clear_graph, val_mask=torch.zeros_like(clear_graph.val_mask))
    save_npz(d, str(tmp_path / "noval.npz"))
    assert main(["condense", "--data", str(tmp_path / "noval.npz"), "--ratio", "0.02", "--out",
                 str(tmp_path / "out")]) == 2
    assert "no val nodes" in capsys.readouterr().err


def test_npz_round_trip(tmp_path):
    adj = torch.tensor([[0.0, 0.25, 0.5], [0.25, 0.0, 0.0], [0.5, 0.0, 0.0]])
    g = CondensedGraph(torch.randn(3, 4), adj, torch.tensor([0, 1, 1]), 2, name="toy-gcond")
    path = str(tmp_path / "c.npz")
    g.save(path)
    back = load_condensed(path)
    assert torch.equal(back.x, g.x) and torch.equal(back.adj, adj) and torch.equal(back.y, g.y)
    assert back.num_classes == 2 and back.name == "toy-gcond"
    d = load(path)  # an ordinary gkdfast bundle: weighted edges, all nodes train
    assert d.num_edges == 4 and bool(d.train_mask.all()) and not bool(d.test_mask.any())


def test_cli_writes_bundle_results_and_plot(tmp_path, capsys):
    out = str(tmp_path / "out")
    rc = main(["condense", "--nodes", "600", "--ratio", "0.025", "--seeds", "2", "--epochs", "2", "--outer", "2",
               "--inner", "1", "--eval-epochs", "5", "--eval-runs", "2", "--out", out, "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "whole graph" in printed and "gcond" in printed
    files = sorted(os.listdir(out))
    assert {"results.json", "results.png", "csbm-gcond-r0.025-seed0.npz", "csbm-gcond-r0.025-seed1.npz"} <= set(files)
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["dataset"] == "csbm" and res["ratio"] == 0.025 and res["config"]["epochs"] == 2
    assert res["eval_runs"] == 2
    whole, cond = res["rows"]
    assert (whole["method"], cond["method"]) == ("whole graph", "gcond")
    assert whole["num_nodes"] == 600 and cond["num_nodes"] == 15
    for row in (whole, cond):
        assert {"test_acc_mean", "test_acc_std", "test_acc", "num_nodes", "train_seconds"} <= set(row)
        assert len(row["test_acc"]) == 2 and 0.0 <= row["test_acc_mean"] <= 1.0
    assert len(cond["condense_seconds"]) == 2 and cond["peak_rss_mb"] > 0
    assert load_condensed(os.path.join(out, "csbm-gcond-r0.025-seed1.npz")).num_nodes == 15


@pytest.mark.parametrize("ratio,message", [("0", "must be a fraction"), ("1.5", "must be a fraction"),
                                            ("0.001", "fewer than the 5 classes"),
                                            ("0.5", "labelled training nodes")])
def test_cli_bad_ratio_is_a_clear_error(tmp_path, capsys, ratio, message):
    rc = main(["condense", "--nodes", "600", "--ratio", ratio, "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "gkdfast condense: error:" in err and message in err
    assert not os.path.exists(tmp_path / "o" / "results.json")
