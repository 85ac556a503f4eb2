"""GCNII (gkdfast.nn.GCNII): the formula against a dense reference, its sparse first layer, its two
weight decays in the Distiller, and its errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gkdfast
from gkdfast import nn as gnn
from gkdfast.distill import Distiller
from gkdfast.distill.terms import CrossEntropy


def _graph(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, 3 * n), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    return gkdfast.Graph(torch.cat([ei, ei.flip(0)], 1), n)


def _dense_gcnii(model, x, graph):
    """The paper's equations with an explicit Â = D^-1/2 (A + I) D^-1/2 (eval mode: no dropout)."""
    n = graph.num_nodes
    a = torch.zeros(n, n, dtype=x.dtype)
    a.index_put_((graph.edge_index[1], graph.edge_index[0]), torch.ones(graph.num_edges, dtype=x.dtype),
                 accumulate=True)
    a = a + torch.eye(n, dtype=x.dtype)
    dinv = a.sum(1).rsqrt()
    a_hat = dinv[:, None] * a * dinv[None, :]
    h0 = F.relu(model.lin_in(x))
    h = h0
    for i, w in enumerate(model.weights):
        beta = math.log(model.theta / (i + 1) + 1)
        s = (1 - model.alpha) * a_hat @ h + model.alpha * h0
        h = F.relu((1 - beta) * s + beta * s @ w)
    return model.lin_out(h), h


def test_matches_the_dense_equations_and_returns_the_last_hidden_layer():
    torch.manual_seed(0)
    graph = _graph()
    x = torch.randn(12, 5, dtype=torch.float64)
    model = gnn.GCNII(5, 8, 3, num_layers=6, alpha=0.2, theta=0.7).double().eval()
    logits, hidden = model(x, graph, return_hidden=True)
    ref_logits, ref_hidden = _dense_gcnii(model, x, graph)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(hidden, ref_hidden)
    torch.testing.assert_close(model(x, graph), logits)


def test_gradients_match_the_dense_equations():
    torch.manual_seed(1)
    graph = _graph(10, 1)
    x = torch.randn(10, 4, dtype=torch.float64)
    model = gnn.GCNII(4, 6, 2, num_layers=3).double().eval()
    model(x, graph).square().sum().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _dense_gcnii(model, x, graph)[0].square().sum().backward()
    for a, b in zip(ours, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b)


def test_betas_follow_log_theta_over_layer():
    m = gnn.GCNII(4, 8, 2, num_layers=3, theta=0.5)
    assert m.betas() == pytest.approx([math.log(0.5 / k + 1) for k in (1, 2, 3)])


def test_bag_of_words_input_takes_the_sparse_product_with_the_same_result():
    torch.manual_seed(2)
    graph = _graph(16, 2)
    x = (torch.rand(16, 200) < 0.02).float()  # 2 % non-zero: the first layer multiplies a CSR copy
    model = gnn.GCNII(200, 8, 3, num_layers=4).eval()
    dense_first = F.relu(model.lin_in(x))
    torch.testing.assert_close(F.relu(model._input_layer(x)), dense_first)
    model.train()  # dropout on the stored non-zeros only: zeros stay zero, the layer still runs
    out = model(x, graph)
    assert out.shape == (16, 3) and torch.isfinite(out).all()


def test_trains_and_is_built_by_name():
    torch.manual_seed(3)
    y = torch.arange(30) % 3
    ei = _graph(30, 3).edge_index
    graph = gkdfast.Graph(ei[:, y[ei[0]] == y[ei[1]]], 30)  # homophilous: smoothing helps
    x = F.one_hot(y, 3).float() + 0.5 * torch.randn(30, 3)
    model = gnn.build_model("gcnii", 3, 16, 3, num_layers=4, dropout=0.1)
    assert type(model) is gnn.GCNII and "gcnii" in gnn.model_names()
    opt = torch.optim.Adam(model.optimizer_groups(5e-4), lr=0.02)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = F.cross_entropy(model(x, graph), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.7 * first


def test_the_distiller_gives_the_convolutions_their_own_weight_decay():
    model = gnn.GCNII(4, 8, 2, num_layers=3, conv_weight_decay=0.01)
    d = Distiller(model, [CrossEntropy()], weight_decay=5e-4)
    groups = d._param_groups()
    assert [g.get("weight_decay") for g in groups] == [0.01, 5e-4]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    plain = Distiller(gnn.GCN(4, 8, 2), [CrossEntropy()], weight_decay=5e-4)._param_groups()
    assert len(plain) == 1 and "weight_decay" not in plain[0]  # the optimiser's own


def test_a_student_whose_groups_leave_a_parameter_out_is_refused():
    class Partial(gnn.GCN):
        def optimizer_groups(self, weight_decay):
            return [{"params": [self.layers[0].lin.weight]}]

    with pytest.raises(ValueError, match="leaves out"):
        Distiller(Partial(4, 8, 2), [CrossEntropy()])._param_groups()


def test_errors():
    g = _graph()
    with pytest.raises(ValueError, match="alpha"):
        gnn.GCNII(4, 8, 2, alpha=1.5)
    with pytest.raises(ValueError, match="theta"):
        gnn.GCNII(4, 8, 2, theta=0.0)
    with pytest.raises(ValueError, match="conv_weight_decay"):
        gnn.GCNII(4, 8, 2, conv_weight_decay=-1.0)
    with pytest.raises(ValueError, match="num_layers"):
        gnn.GCNII(4, 8, 2, num_layers=0)
    with pytest.raises(ValueError, match="graph is required"):
        gnn.GCNII(4, 8, 2, num_layers=2)(torch.randn(12, 4))
    with pytest.raises(ValueError, match="features"):
        gnn.GCNII(4, 8, 2, num_layers=2)(torch.randn(12, 5), g)
