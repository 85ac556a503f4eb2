"""Distiller.fit keeps a graph-free student's validation rows for the whole fit when they are small
(one gather, and one CSR conversion of bag-of-words rows, per fit instead of per epoch), and gathers
them each epoch above the limit: the same training either way."""
import dataclasses

import torch

from gkdfast.data import csbm
from gkdfast.distill import TeacherOutputs, distiller as distiller_module
from gkdfast.distill import recipes
from gkdfast.nn import MLP


def _bag_of_words_data():
    data = csbm(num_nodes=300, num_classes=3, feature_dim=400, seed=0)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(300, 400, generator=g) < 0.02).float()  # 2 % non-zeros: the sparse first layer
    return dataclasses.replace(data, x=x)


def _fit(data, epochs=6):
    torch.manual_seed(0)
    student = MLP(data.x.size(1), 16, data.num_classes, num_layers=2, dropout=0.5)
    teacher = TeacherOutputs(torch.randn(data.num_nodes, data.num_classes, generator=torch.Generator().manual_seed(2)),
                             None)
    fit = recipes.get("glnn", epochs=epochs, patience=None).distiller(student, teacher, progress=False, seed=0).fit(data)
    return fit, student


def test_validation_rows_converted_once_and_training_unchanged(monkeypatch):
    data = _bag_of_words_data()
    shapes = []
    to_csr = torch.Tensor.to_sparse_csr

    def counting(self, *args, **kwargs):
        shapes.append(tuple(self.shape))
        return to_csr(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to_sparse_csr", counting)
    kept, kept_student = _fit(data)
    num_val = int(data.val_mask.sum())
    assert shapes.count((num_val, 400)) == 1  # once per fit, not once per epoch

    shapes.clear()
    monkeypatch.setattr(distiller_module, "_VAL_ROWS_KEPT_BYTES", 0)  # above the limit: gathered each epoch
    again, again_student = _fit(data)
    assert shapes.count((num_val, 400)) == 6
    assert [h["val_acc"] for h in kept.history] == [h["val_acc"] for h in again.history]
    for a, b in zip(kept_student.state_dict().values(), again_student.state_dict().values()):
        assert torch.equal(a, b)
