"""A new user's first mistakes with the Python API (helper 109's list): each gets an error that names the
function, the argument and the fix, or is accepted and correct; none gives a silently wrong result."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import Distiller, TeacherOutputs, recipes, terms
from gkdfast.distill.distiller import accuracy
from gkdfast.nn import GCN, MLP, GCNConv


def _data():
    return csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)


def test_int_masks_are_refused_not_read_as_row_ids():
    # Before: an int 0/1 mask selected rows 0 and 1 (validation accuracy 1.0, training on two nodes).
    data = _data()
    bad = dataclasses.replace(data, val_mask=data.val_mask.long())
    with pytest.raises(TypeError, match=r"Distiller.fit: data.val_mask must be a bool \[N\] tensor, got torch.int64"):
        Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0)], epochs=1).fit(bad)
    logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
    with pytest.raises(TypeError, match="use mask.bool"):
        accuracy(logits, y, torch.tensor([1, 0, 1]))
    assert accuracy(logits, y, torch.tensor([True, False, True])) == 0.5
    with pytest.raises(TypeError, match="y must be an int64"):
        Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0)], epochs=1).fit(dataclasses.replace(data, y=data.y.float()))


def test_distiller_counts_must_be_ints():
    for kw in ({"epochs": 1.5}, {"epochs": "10"}, {"batch_size": 32.5}, {"epochs": True}):
        with pytest.raises(ValueError, match="must be .*an int"):
            Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0)], **kw)


def test_teacher_outputs_computed_with_autograd_on_are_constants():
    # Before: epoch 1 backpropagated into the teacher, epoch 2 failed ("backward through the graph a second time").
    data = _data()
    teacher = GCN(8, 8, 3)
    outputs = TeacherOutputs(teacher(data.x, data.graph))
    assert outputs.logits.requires_grad
    Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0), terms.LogitKD(1.0)], teacher=outputs, epochs=3).fit(data)
    assert all(p.grad is None for p in teacher.parameters())


def test_recipe_fit_checks_its_arguments():
    data = _data()
    recipe = recipes.get("none")
    with pytest.raises(TypeError, match=r"make_student must be a function in_features -> nn.Module"):
        recipe.fit(MLP(8, 8, 3), data)
    with pytest.raises(TypeError, match="data must be a gkdfast.data.GraphData, got MLP"):
        recipe.fit(lambda f: MLP(f, 8, 3), MLP(8, 8, 3), data)


def test_swapped_graph_and_features_say_so():
    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match=r"the graph comes first: spmm\(graph, ...\)"):
        gkdfast.spmm(x, g)
    with pytest.raises(TypeError, match=r"layer\(x, graph\)"):
        GCNConv(3, 2)(g, x)


def test_a_pyg_batch_vector_as_pooling_offsets_gets_a_hint():
    with pytest.raises(ValueError, match="PyG batch vector"):
        gkdfast.pooling.global_pool(torch.randn(5, 2), torch.tensor([0, 0, 1, 1, 1]))


def test_kd_refuses_integer_logits_and_takes_numpy_or_tensor_temperatures():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(TypeError, match="teacher_logits must be floating-point logits, got torch.int64"):
        gkdfast.losses.kd(s, torch.eye(4, 3, dtype=torch.long))
    want = gkdfast.losses.kd(s, t, temperature=2.0)
    for temperature in (np.float32(2.0), torch.tensor(2.0), 2):
        torch.testing.assert_close(gkdfast.losses.kd(s, t, temperature=temperature), want)
    torch.testing.assert_close(gkdfast.losses.crd(s, t, tau=np.float32(0.5)), gkdfast.losses.crd(s, t, tau=0.5))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        gkdfast.losses.kd(s, t, temperature=float("inf"))


def test_models_run_on_meta_tensors():
    # Before: the sparse-input check asked autocast about the meta device (RuntimeError) and counted
    # the non-zeros of a tensor without values.
    out = MLP(8, 4, 3).to("meta")(torch.randn(5, 8, device="meta"))
    assert out.shape == (5, 3) and out.is_meta


def test_more_first_mistakes_get_named_errors():
    from gkdfast.sampling import sample_blocks

    g = gkdfast.Graph(torch.tensor([[1, 2, 3], [0, 1, 2]]))
    with pytest.raises(TypeError, match=r"seeds must be a 1-D int tensor of node ids, got torch.bool.*nonzero"):
        sample_blocks(g, torch.tensor([True, False, True, False]), [1])
    with pytest.raises(TypeError, match="seeds must be a 1-D int tensor"):
        sample_blocks(g, torch.tensor([0.0, 2.0]), [1])  # (truncated to ids before)
    with pytest.raises(ValueError, match="one int per hop"):
        sample_blocks(g, torch.tensor([0]), 2)
    with pytest.raises(TypeError, match="must be a dict of hyperparameters"):
        recipes.by_name({"glnn": 0.3})
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's weights are torch.float32"):
        GCN(4, 8, 2)(torch.randn(4, 4, dtype=torch.float64), g)
    with pytest.raises(ValueError, match=r"nodes has indices outside \[-5, 5\)"):
        gkdfast.losses.gsp(torch.randn(5, 2), torch.randn(5, 2), nodes=torch.tensor([0, 7]))


def test_a_learnable_temperature_keeps_its_gradient_and_whole_float_counts_pass():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    temperature = torch.nn.Parameter(torch.tensor(2.0))
    gkdfast.losses.kd(s, t, temperature=temperature).backward()
    assert temperature.grad is not None and float(temperature.grad) != 0.0
    Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0)], epochs=2e0, batch_size=64.0)  # (--set glnn.epochs=2e2)
    data = _data()
    with pytest.raises(TypeError, match="y must be an int64"):  # (cross-entropy takes int64 or uint8 only)
        Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0)], epochs=1).fit(dataclasses.replace(data, y=data.y.int()))
