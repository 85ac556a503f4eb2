"""Distiller(autocast=...): mixed-precision training steps and validation, float32 weights, float16's
GradScaler checkpointed and resumed exactly, clear errors."""
import os

import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill import Distiller, StopTraining, teacher_outputs, terms
from gkdfast.nn import GCN, MLP


@pytest.fixture(scope="module")
def problem():
    data = csbm(num_nodes=400, num_classes=3, feature_dim=16, avg_degree=8, seed=3)
    torch.manual_seed(0)
    teacher = GCN(16, 32, 3)
    Distiller(teacher, [terms.CrossEntropy()], epochs=60, patience=None).fit(data)
    return data, teacher_outputs(teacher, data.x, data.graph)


def _terms():
    return [terms.CrossEntropy(0.5), terms.LogitKD(0.5), terms.GSP(1.0, proj_dim=8)]


def _fit(student, data, teacher, **kw):
    return Distiller(student, _terms(), teacher, epochs=kw.pop("epochs", 30), patience=None, batch_size=128,
                     **kw).fit(data)


@pytest.mark.parametrize("amp", [torch.bfloat16, "fp16"])
def test_steps_run_in_the_region_and_train_like_float32(problem, amp):
    data, teacher = problem
    seen = []
    torch.manual_seed(0)
    student = MLP(16, 32, 3)
    first = next(m for m in student.modules() if isinstance(m, torch.nn.Linear))
    handle = first.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
    mixed = _fit(student, data, teacher, autocast=amp)
    handle.remove()
    low = torch.bfloat16 if amp is torch.bfloat16 else torch.float16
    assert {dtype for training, dtype in seen if training} == {low}  # every training step
    assert {dtype for training, dtype in seen if not training} >= {low}  # validation forwards, too
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in mixed.history)
    torch.manual_seed(0)
    plain = _fit(MLP(16, 32, 3), data, teacher)
    assert abs(mixed.best_val_acc - plain.best_val_acc) <= 0.05
    d = Distiller(student, _terms(), teacher, autocast=amp)
    assert d.predict(data.x).dtype == torch.float32


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_a_gnn_student_with_structure_terms(problem, device, amp):
    """GCN + LSP + GSP on the device (CUDA: message passing and the student's products in the half
    type, the losses' kernels in float32)."""
    data, teacher = problem
    data, teacher = data.to(device), teacher.to(device)

    def fit(**kw):
        torch.manual_seed(0)
        student = GCN(16, 32, 3).to(device)
        seen = []
        first = next(m for m in student.modules() if isinstance(m, torch.nn.Linear))  # a convolution's product
        first.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
        res = Distiller(student, [terms.CrossEntropy(0.5), terms.LogitKD(0.5), terms.LSP(1.0),
                                  terms.GSP(1.0, proj_dim=8)], teacher, epochs=30, patience=None, **kw).fit(data)
        assert all(p.dtype == torch.float32 for p in student.parameters())
        return res, {dtype for training, dtype in seen if training}

    mixed, dtypes = fit(autocast=amp)
    plain, _ = fit()
    assert dtypes == {torch.bfloat16 if amp == "bf16" else torch.float16}
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in mixed.history)
    assert abs(mixed.best_val_acc - plain.best_val_acc) <= 0.05


def test_float16_resume_restores_the_grad_scaler(problem, tmp_path):
    """A label term of weight 1000 overflows float16 gradients at the initial scale of 65,536: the
    scaler skips those steps and halves its scale.  A resumed run must continue from the saved scale
    (restarting at 65,536 would skip steps again and end elsewhere)."""
    data, teacher = problem

    def fit(folder, **kw):
        torch.manual_seed(0)
        student = MLP(16, 32, 3)
        Distiller(student, [terms.CrossEntropy(1000.0), terms.LogitKD(1.0)], teacher, epochs=6, patience=None,
                  batch_size=100, autocast="fp16", checkpoint_dir=str(folder)).fit(data, **kw)
        return student

    whole = fit(tmp_path / "whole")
    scale = torch.load(os.path.join(tmp_path / "whole", "checkpoint.pt"), weights_only=True)["scaler"]["scale"]
    assert scale < 65536.0  # the overflow did happen

    def stop(epoch, info):
        if epoch == 3:
            raise StopTraining

    fit(tmp_path / "parts", callbacks=[stop])
    resumed = fit(tmp_path / "parts")
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_errors(problem, tmp_path):
    data, teacher = problem
    with pytest.raises(ValueError, match="autocast must be None, torch.bfloat16"):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], autocast="fp8")
    with pytest.raises(ValueError, match=r"float64 weights \(convert it with .float\(\)\)"):
        Distiller(MLP(16, 8, 3).double(), [terms.CrossEntropy()], epochs=1, autocast=torch.bfloat16).fit(data)
    # a float32 run's checkpoint is not resumed in mixed precision
    Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=1, checkpoint_dir=str(tmp_path)).fit(data)
    with pytest.raises(ValueError, match="belongs to a different run"):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=1, checkpoint_dir=str(tmp_path),
                  autocast="bf16").fit(data)


def test_cli_autocast_records_the_setting_and_refuses_other_pipelines(tmp_path):
    from conftest import run_cli

    out = str(tmp_path / "res")
    r = run_cli("distill", "--nodes", "500", "--epochs", "5", "--student", "mlp:16", "--teacher", "gcn:16",
                "--methods", "kd,gsp", "--autocast", "bf16", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    import json

    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    assert res["autocast"] == "bfloat16" and [row["method"] for row in res["rows"]] == ["teacher", "none", "kd", "gsp"]
    r = run_cli("distill", "--nodes", "500", "--sampled", "--autocast", "fp16", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "--autocast: the large-graph pipeline" in r.stderr and "trains in float32" in r.stderr
    r = run_cli("distill", "--nodes", "500", "--protocol", "published", "--autocast", "bf16",
                "--out", str(tmp_path / "p"))
    assert r.returncode == 2 and "--autocast" in r.stderr
    r = run_cli("distill", "--task", "graph", "--autocast", "bf16", "--out", str(tmp_path / "g"))
    assert r.returncode == 2 and "--autocast" in r.stderr and "graph classification" in r.stderr
