"""DeepWalk position features (skip-gram with negative sampling on random walks), the reference
NOSMOG's position encoder: community structure recovered, determinism, errors, and the NOSMOG
recipe's ``pos_method`` switch."""
from __future__ import annotations

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import recipes
from gkdfast.distill.positional import deepwalk_features, position_features


def _two_cliques(k=20):
    """Two k-cliques joined by one edge, plus one isolated node (id 2k)."""
    edges = [(i, j) for c in (0, k) for i in range(c, c + k) for j in range(c, c + k) if i != j]
    edges += [(k - 1, k), (k, k - 1)]
    return gkdfast.Graph(torch.tensor(edges).t(), 2 * k + 1)


def test_deepwalk_puts_each_clique_together_and_apart_from_the_other():
    k = 20
    emb = deepwalk_features(_two_cliques(k), dim=16, walk_length=20, walks_per_node=10, window=4, epochs=2,
                            seed=0)
    assert emb.shape == (2 * k + 1, 16) and emb.dtype == torch.float32 and torch.isfinite(emb).all()
    z = torch.nn.functional.normalize(emb[:2 * k], dim=1)
    sim = z @ z.t()
    same = torch.block_diag(torch.ones(k, k), torch.ones(k, k)).bool() & ~torch.eye(2 * k, dtype=torch.bool)
    across = ~torch.block_diag(torch.ones(k, k), torch.ones(k, k)).bool()
    assert sim[same].mean() - sim[across].mean() > 0.5, (sim[same].mean(), sim[across].mean())
    nearest = (sim - 2 * torch.eye(2 * k)).argmax(1)  # every node's nearest other node is in its clique
    assert torch.equal(nearest // k, torch.arange(2 * k) // k)
    # the isolated node never trains: it keeps word2vec's initial vector, uniform in +-0.5 / dim
    assert emb[2 * k].abs().max() <= 0.5 / 16


def test_deepwalk_is_deterministic_per_seed_and_position_features_dispatches_to_it():
    g = csbm(num_nodes=120, num_classes=3, feature_dim=4, seed=0).graph
    a = deepwalk_features(g, dim=8, walk_length=8, walks_per_node=2, seed=3)
    b = position_features(g, dim=8, walk_length=8, walks_per_node=2, seed=3, method="deepwalk")
    assert torch.equal(a, b)
    assert not torch.equal(a, deepwalk_features(g, dim=8, walk_length=8, walks_per_node=2, seed=4))
    assert deepwalk_features(gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), 0), dim=8).shape == (0, 8)


def test_deepwalk_and_position_features_reject_bad_arguments():
    g = _two_cliques(4)
    with pytest.raises(ValueError, match="method"):
        position_features(g, dim=4, method="node2vec")
    for kw in ({"dim": 0}, {"negative": 0}, {"epochs": 0}, {"batch_size": 0}, {"window": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError, match="deepwalk_features"):
            deepwalk_features(g, **kw)


def test_nosmog_pos_method_deepwalk_appends_raw_skipgram_features():
    data = csbm(num_nodes=150, num_classes=3, feature_dim=6, seed=1)
    r = recipes.get("nosmog", pos_method="deepwalk", pos_dim=8, walk_length=6, walks_per_node=1)
    x = r.inputs(data, seed=2)
    assert x.shape == (150, 6 + 8) and torch.equal(x[:, :6], data.x)
    assert torch.equal(x[:, 6:], deepwalk_features(data.graph, 8, 6, 1, r.window, seed=2))


def test_a_node_without_in_edges_that_walks_reach_is_trained():
    # walks follow in-edges and stand still at a node without any; that node's pairs were all dropped
    # (the filter meant for isolated nodes), so its vector stayed as initialised whatever the lr
    from gkdfast.distill.positional import deepwalk_features

    g = gkdfast.Graph(torch.tensor([[0, 0, 1, 2, 2, 3, 3, 1], [1, 2, 2, 1, 3, 2, 1, 3]]), num_nodes=4)
    kw = dict(dim=4, walk_length=6, walks_per_node=20, window=3, batch_size=8)
    assert not torch.equal(deepwalk_features(g, **kw, lr=0.025)[0], deepwalk_features(g, **kw, lr=0.5)[0])


def test_svd_positions_refuse_a_bad_window_or_negative():
    from gkdfast.distill.positional import position_features

    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), num_nodes=2)
    for kw, match in (({"window": 0}, "window"), ({"negative": 0}, "negative")):
        with pytest.raises(ValueError, match=match):
            position_features(g, dim=2, **kw)
