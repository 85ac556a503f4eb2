"""Distiller edge cases found in review: a model's own optimiser groups (in any form torch accepts), no
validation nodes, weight-0 terms, per-term history means with two passes, patience and observed checks."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill import Distiller
from gkdfast.distill.terms import CrossEntropy, Lambda
from gkdfast.nn import MLP


def _data(n=300, seed=0):
    return csbm(num_nodes=n, num_classes=3, feature_dim=8, seed=seed)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(8, 16, 3, num_layers=2, dropout=0.0)


class _GroupedMLP(MLP):
    """A student whose ``optimizer_groups`` hands torch the forms it accepts: a generator and a tensor."""

    def optimizer_groups(self, weight_decay):
        first = self.layers[0]
        return [{"params": (p for p in self.layers[1].parameters()), "weight_decay": 0.0},
                {"params": first.weight}, {"params": first.bias}]


def test_optimizer_groups_given_as_a_generator_or_a_tensor_train_every_parameter():
    torch.manual_seed(0)
    student = _GroupedMLP(8, 16, 3, num_layers=2, dropout=0.0)
    d = Distiller(student, [CrossEntropy()], epochs=3, patience=None)
    groups = d._param_groups()
    assert [len(g["params"]) for g in groups] == [2, 1, 1]
    before = [p.detach().clone() for p in student.parameters()]
    d.fit(_data())
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, student.parameters()))


def test_a_student_without_groups_keeps_one_group_with_the_terms_heads():
    from gkdfast.distill.terms import GSP

    d = Distiller(_mlp(), [CrossEntropy(), GSP(proj_dim=4)])
    assert len(d._param_groups()) == 1  # the layout of checkpoints written before models had groups


def test_no_validation_node_is_refused_unless_the_last_epoch_is_kept():
    data = _data()
    empty = dataclasses.replace(data, val_mask=torch.zeros_like(data.val_mask))
    with pytest.raises(ValueError, match="validation mask selects no node"):
        Distiller(_mlp(), [CrossEntropy()], epochs=5, patience=None).fit(empty)
    with pytest.raises(ValueError, match="validation mask selects no node"):
        Distiller(_mlp(), [CrossEntropy()], epochs=5, patience=2).fit(empty, select_best=False)
    fit = Distiller(_mlp(), [CrossEntropy()], epochs=5, patience=None).fit(empty, select_best=False)
    assert fit.epochs == 5 and fit.best_epoch == 5


def test_a_weight_zero_term_changes_nothing_in_the_training():
    data = _data()
    zero = Lambda(lambda ctx: ctx.logits.sum() * 0.0, weight=0.0)  # would read every observed row
    runs = []
    for terms in ([CrossEntropy()], [CrossEntropy(), zero]):
        student = _mlp()
        Distiller(student, terms, epochs=4, patience=None, batch_size=5, seed=1).fit(data)
        runs.append([p.detach().clone() for p in student.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_history_keeps_each_terms_mean_over_its_own_pass():
    data = _data()
    one = Lambda(lambda ctx: ctx.logits.sum() * 0.0 + 1.0, weight=1.0, name="one")
    fit = Distiller(_mlp(), [CrossEntropy(), one], epochs=2, patience=None, passes="separate",
                    batch_size=8).fit(data)
    assert all(h["one"] == pytest.approx(1.0) for h in fit.history)


@pytest.mark.parametrize("patience", [0, -3, 1.5, True])
def test_patience_must_be_none_or_a_positive_integer(patience):
    with pytest.raises(ValueError, match="patience"):
        Distiller(_mlp(), [CrossEntropy()], patience=patience)


@pytest.mark.parametrize("observed", [torch.ones(10, dtype=torch.bool), torch.ones(300), torch.ones(300, 1).bool()])
def test_observed_must_be_a_bool_mask_of_every_node(observed):
    with pytest.raises(ValueError, match="observed must be a bool mask"):
        Distiller(_mlp(), [CrossEntropy()], epochs=1, observed=observed).fit(_data())
