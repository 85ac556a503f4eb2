"""Cases a review of the mini-batch training found broken: a last step of one isolated seed under
BatchNorm, projection heads drawn from the global generator, weight-0 terms building heads, numpy
integers refused, and an epoch chosen at the first batch instead of at ``iter()``."""
import dataclasses

import numpy as np
import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import Distiller, TeacherOutputs, terms
from gkdfast.distill.ddp import join_lone_last
from gkdfast.nn import GCN, MLP, SAGE
from gkdfast.sampling import NeighborLoader, fit_sampled


def _data(n=41):
    return csbm(num_nodes=n, num_classes=3, feature_dim=12, seed=1)


def _edgeless(data):
    return dataclasses.replace(data, graph=gkdfast.Graph(torch.empty(2, 0, dtype=torch.long),
                                                         num_nodes=data.graph.num_nodes))


def test_join_lone_last():
    assert [b.tolist() for b in join_lone_last(list(torch.arange(7).split(3)))] == [[0, 1, 2], [3, 4, 5, 6]]
    assert [b.tolist() for b in join_lone_last(list(torch.arange(6).split(3)))] == [[0, 1, 2], [3, 4, 5]]
    assert [b.tolist() for b in join_lone_last([torch.tensor([4])])] == [[4]]


def test_a_last_step_of_one_isolated_seed_trains_with_batchnorm():
    # 41 nodes in steps of 20: the last step held one seed; without edges its hidden rows are one row
    data = _edgeless(_data())
    torch.manual_seed(0)
    model = GCN(12, 8, 3, num_layers=2, batch_norm=True)
    fit_sampled(model, data, fanouts=(2, 2), batch_size=20, epochs=1, seed=0, progress=False,
                terms=[terms.CrossEntropy(1.0)])
    torch.manual_seed(0)
    mlp = MLP(12, 8, 3, batch_norm=True)
    Distiller(mlp, [terms.CrossEntropy(1.0)], epochs=1, batch_size=20, patience=None).fit(data, select_best=False)


def _termed_weights(term_list, global_seed):
    data = _data(120)
    torch.manual_seed(0)
    model = SAGE(12, 16, 3, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    teacher = TeacherOutputs(torch.randn(120, 3, generator=g), torch.randn(120, 5, generator=g))
    torch.manual_seed(global_seed)
    fit_sampled(model, data, fanouts=(4, 3), batch_size=50, epochs=2, seed=5, progress=False, terms=term_list,
                teacher=teacher)
    return model.state_dict()


def test_projection_heads_depend_on_the_seed_argument_not_the_global_generator():
    a = _termed_weights([terms.CrossEntropy(1.0), terms.GSP(1.0, proj_dim=8)], global_seed=1)
    b = _termed_weights([terms.CrossEntropy(1.0), terms.GSP(1.0, proj_dim=8)], global_seed=2)
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=0, atol=0)


def test_a_weight_zero_term_builds_no_heads_and_changes_nothing():
    a = _termed_weights([terms.CrossEntropy(1.0), terms.GSP(1.0, proj_dim=8)], global_seed=1)
    b = _termed_weights([terms.GSP(0.0, proj_dim=8), terms.CrossEntropy(1.0), terms.GSP(1.0, proj_dim=8)],
                        global_seed=1)
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=0, atol=0)


def test_loader_takes_numpy_integers_and_picks_the_epoch_at_iter():
    data = _data()
    loader = NeighborLoader(data.graph, torch.arange(10), [2], batch_size=np.int64(4), shuffle=True,
                            seed=np.int64(3))
    assert len(loader) == 3
    first, second = iter(loader), iter(loader)  # epochs 0 and 1, whatever order their batches are drawn in
    assert loader.epoch == 2
    assert not torch.equal(loader.order(0), loader.order(1))
    assert next(second).seeds.tolist() == loader.order(1)[:4].tolist()
    assert next(first).seeds.tolist() == loader.order(0)[:4].tolist()
    with pytest.raises(ValueError, match="batch_size"):
        NeighborLoader(data.graph, torch.arange(10), [2], batch_size=True)
