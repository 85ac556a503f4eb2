"""The heterogeneous and fairness Python APIs met by a user (review 111): a replaced relation reaches
HGT, fairness gaps refuse inputs they would misread, and misuse gets a one-line error naming the fix."""
from __future__ import annotations

import pytest
import torch

from gkdfast import Graph
from gkdfast.distill.fairness import delta_eo, delta_sp
from gkdfast.hetero import HGT, HeteroGraph


def test_hgt_sees_a_relation_replaced_in_place():
    # Before: HGT kept the merged graphs of the old relation (looked up by relation names only).
    hg = HeteroGraph.toy()
    torch.manual_seed(0)
    model = HGT(hg, 8, 2, heads=2).eval()
    with torch.no_grad():
        before = model(hg)
        g = Graph(torch.tensor([[0], [0]]), num_nodes=6)
        hg.relations[("movie", "ma", "actor")] = g
        hg.relations[("actor", "rev_ma", "movie")] = g.t()
        after = model(hg)
        fresh = HeteroGraph(hg.num_nodes, hg.x, dict(hg.relations), hg.target, hg.y, hg.train_mask, hg.val_mask,
                            hg.test_mask, hg.num_classes)
        torch.testing.assert_close(after, model(fresh))
    assert not torch.allclose(before, after)


def test_fairness_gaps_refuse_what_they_would_misread():
    pred, s, y = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0]), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), torch.ones(8).long()
    assert delta_sp(pred, s) == 0.5 and delta_sp(pred, s.bool()) == 0.5
    with pytest.raises(ValueError, match=r"sensitive attribute must be 0/1, got the values \[0, 1, 2\]"):
        delta_sp(pred, torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]))  # (group 2 dropped: 0.0 before)
    with pytest.raises(ValueError, match="must be 0/1"):
        delta_sp(pred, s + 1)  # (1/2 coding: 1.0 before)
    with pytest.raises(ValueError, match="C >= 2"):
        delta_sp(torch.tensor([[3.0]] * 6 + [[-3.0]] * 2), s)  # (one logit column: 0.0 before)
    with pytest.raises(TypeError, match="integer classes"):
        delta_sp(torch.tensor([0.9] * 6 + [0.1] * 2), s)  # (probabilities: 0.0 before)
    with pytest.raises(TypeError, match="mask must be a bool"):
        delta_sp(pred, s, torch.tensor([7, 6, 5, 4, 3, 2, 1, 0]))  # (ids read as a 0/1 mask before)
    with pytest.raises(ValueError, match="y must be the"):
        delta_eo(pred, torch.ones(5).long(), s)
    assert delta_eo(pred, y, s, torch.ones(8, dtype=torch.bool)) == 0.5


def test_hetero_graph_misuse_is_named():
    hg = HeteroGraph.toy()
    with pytest.raises(ValueError, match=r"'film' is not one"):
        hg.metapath("film", "actor", "film")
    bad = HeteroGraph(hg.num_nodes, hg.x, hg.relations, hg.target, hg.y.clone(), hg.train_mask, hg.val_mask,
                      hg.test_mask, hg.num_classes)
    bad.y[0] = hg.num_classes  # (a crash in training, or a silent miss in testing)
    with pytest.raises(ValueError, match="is not below num_classes"):
        bad.validate()
    bad = HeteroGraph(hg.num_nodes, dict(hg.x, studio=torch.ones(2, 3)), hg.relations, hg.target, hg.y,
                      hg.train_mask, hg.val_mask, hg.test_mask, hg.num_classes)
    with pytest.raises(ValueError, match="features of the unknown node type 'studio'"):
        bad.validate()
    bad = HeteroGraph(hg.num_nodes, hg.x, hg.relations, hg.target, hg.y, hg.train_mask.long(), hg.val_mask,
                      hg.test_mask, hg.num_classes)
    with pytest.raises(ValueError, match=r"train_mask must be bool \[\d+\], got torch.int64"):
        bad.validate()
    n = hg.num_nodes[hg.target]
    bad = HeteroGraph(hg.num_nodes, hg.x, hg.relations, hg.target, hg.y, hg.train_mask, hg.val_mask, hg.test_mask,
                      hg.num_classes, {"mxm": Graph(torch.tensor([[0], [1]]), num_nodes=n - 1)})
    with pytest.raises(ValueError, match=f"meta-path 'mxm' has {n - 1} nodes"):
        bad.validate()


def test_relation_loss_names_a_type_a_model_does_not_embed():
    from gkdfast.hetero.hire import relation_loss

    s = {"movie": torch.randn(4, 3)}
    t = {"movie": torch.randn(4, 5), "actor": torch.randn(2, 5)}
    with pytest.raises(ValueError, match="type 'actor' is not embedded by both models"):
        relation_loss(s, t, "movie", types=["actor"])


def test_reliant_checks_its_arguments_and_the_sensitive_values(tmp_path):
    from gkdfast.data import csbm
    from gkdfast.distill import recipes
    from gkdfast.nn import MLP

    data = csbm(num_nodes=200, num_classes=2, feature_dim=8, seed=0)
    data.sensitive = torch.arange(200) % 3  # three groups
    recipe = recipes.get("reliant")
    with pytest.raises(TypeError, match="make_student must be a function"):
        recipe.fit(MLP(8, 8, 2), data, MLP(8, 8, 2))
    with pytest.raises(ValueError, match=r"sensitive attribute must be 0/1, got the values \[0, 1, 2\]"):
        recipe.fit(lambda f: MLP(f, 8, 2), data, MLP(8, 8, 2))
    from gkdfast.data import save_npz

    with pytest.raises(ValueError, match="save_npz: the sensitive attribute must be 0/1"):
        save_npz(data, str(tmp_path / "unused.npz"))
