"""Cases a second review of the losses and the Distiller found broken: second derivatives of the Gram
path, half-precision references, unchecked arguments, hidden nodes joining neighbourhood batches,
patience switched off by select_best=False, and weight-0 terms changing the run."""
import pytest
import torch

import gkdfast
from gkdfast import _backend, losses
from gkdfast.data import csbm
from gkdfast.distill import recipes, terms
from gkdfast.distill.distiller import Distiller
from gkdfast.distill.neighbourhood import neighbourhood_batch
from gkdfast.distill.teacher_cache import TeacherOutputs
from gkdfast.nn import MLP
from gkdfast.reference import contrastive as ref_contrastive
from gkdfast.reference import structure as ref_structure


def test_gram_path_has_exact_second_derivatives():
    """The Gram path's backward used a plain float of the upstream gradient and untracked Grams: under
    create_graph=True its second derivatives were silently wrong (every row the same)."""
    torch.manual_seed(0)
    s = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    for loss in (lambda s, t: losses.rsd(s, t), lambda s, t: losses.gsp(s, t, kernel="cosine")):
        assert torch.autograd.gradgradcheck(loss, (s, t))
        with _backend.forced("reference"):
            assert torch.autograd.gradgradcheck(loss, (s, t))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_structure_references_accumulate_in_float32(dtype):
    torch.manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, 200, (2, 2000)), 200)
    s = torch.randn(200, 16)
    t = s + 0.3 * torch.randn(200, 16)  # close: a small KL that half-precision sums lose
    sh, th = s.to(dtype), t.to(dtype)
    exact_lsp = ref_structure.lsp(g, sh.double(), th.double(), "rbf", 0.05)
    exact_gsp = ref_structure.gsp(sh.double(), th.double(), "rbf", "kl", 1.0, 0.05)
    got_lsp, got_gsp = ref_structure.lsp(g, sh, th, "rbf", 0.05), ref_structure.gsp(sh, th, "rbf", "kl", 1.0, 0.05)
    assert got_lsp.dtype == dtype and got_gsp.dtype == dtype
    assert float(got_lsp) == pytest.approx(float(exact_lsp), rel=0.02)  # negative before
    assert float(got_gsp) == pytest.approx(float(exact_gsp), rel=0.02)


def test_loss_arguments_that_were_read_wrongly_are_refused():
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    with pytest.raises(TypeError, match="nodes must be"):
        losses.gsp(s, t, nodes=torch.tensor([1, 0, 1, 1, 0], dtype=torch.uint8))  # read as a mask before
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        losses.gsp(s, t, kernel="rbf", loss="kl", gamma=-5.0)
    with pytest.raises(ValueError, match="num_nodes < 2\\*\\*32"):
        losses.sample_negatives(2**33, 3, seed=0, rows=torch.tensor([0]))
    with pytest.raises(TypeError, match="seed must be an int"):
        losses.sample_negatives(10, 3, seed=1.5)


def test_nt_xent_reference_is_finite_at_a_small_temperature():
    torch.manual_seed(0)
    a, b = torch.randn(20, 5), torch.randn(20, 5)
    got = ref_contrastive.nt_xent(a, b, 0.01)
    assert torch.isfinite(got) and float(got) == pytest.approx(float(losses.nt_xent(a, b, tau=0.01)), rel=1e-5)


def test_neighbourhood_batches_leave_hidden_nodes_out():
    g = gkdfast.Graph(torch.tensor([[1, 2, 3, 0], [0, 0, 1, 3]]))  # 1->0, 2->0, 3->1, 0->3
    observed = torch.tensor([True, True, False, True])
    rows, bg, b = neighbourhood_batch(g, torch.tensor([0, 1]), observed)
    assert rows.tolist() == [0, 1, 3] and bg.edge_index.tolist() == [[1, 2], [0, 1]] and b == 2


def test_hidden_nodes_reach_no_loss_of_a_neighbourhood_batch():
    """Unobserved nodes' teacher rows are NaN: any of them in a loss makes it non-finite."""
    d = csbm(num_nodes=150, num_classes=3, feature_dim=8, seed=0)
    observed = torch.rand(150, generator=torch.Generator().manual_seed(1)) < 0.7
    observed |= d.train_mask | d.val_mask
    logits, hidden = torch.randn(150, 3), torch.randn(150, 8)
    logits[~observed] = float("nan")
    hidden[~observed] = float("nan")
    torch.manual_seed(0)
    dist = Distiller(MLP(8, 8, 3), [terms.CrossEntropy(0.5), terms.LogitKD(0.5), terms.LSP(1.0)],
                     TeacherOutputs(logits, hidden), epochs=2, batch_size=32, batch_edges="neighbours",
                     observed=observed)
    res = dist.fit(d, d.x)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)


def test_patience_still_counts_with_select_best_false():
    d = csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0)
    torch.manual_seed(0)
    res = Distiller(MLP(8, 16, 3), [terms.CrossEntropy()], None, epochs=200, patience=3, lr=0.05).fit(
        d, d.x, select_best=False)
    assert res.epochs < 200  # ran all 200 before: the counter was reset every epoch
    assert res.best_epoch == res.epochs  # the weights kept (and reported) are the last epoch's


def test_a_weight_0_term_does_not_change_the_run():
    d = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    t = TeacherOutputs(torch.randn(200, 3), torch.randn(200, 16))

    def history(extra, passes="joint"):
        torch.manual_seed(0)
        ts = [terms.CrossEntropy(0.5), terms.LogitKD(0.5)] + extra
        return Distiller(MLP(8, 16, 3), ts, t, epochs=4, batch_size=64, passes=passes,
                         patience=None).fit(d, d.x).history

    assert history([]) == history([terms.RSD(0.0)])  # RSD's map was initialised: later draws shifted
    # separate passes ran the weight-0 GSP, whose 20-row sample drew from the random stream
    assert history([], "separate") == history([terms.GSP(0.0, proj_dim=None, max_samples=20)], "separate")


def test_laplace_reference_fallback_warns_for_its_n_n_d_differences(monkeypatch):
    """The warning counted two N x N matrices; laplace's reference builds N x N x d differences."""
    monkeypatch.setattr(_backend, "DENSE_WARN_BYTES", 1 << 20)
    monkeypatch.setattr(_backend, "_DENSE_WARNED", set())
    s, t = torch.randn(64, 128, dtype=torch.bfloat16), torch.randn(64, 128, dtype=torch.bfloat16)
    # (mse: with loss="kl", half inputs now run the float64 kernels, no reference at all)
    with pytest.warns(RuntimeWarning, match="from N x N x d differences"):  # 2 x 64 x 64 x 128 x 4 B = 4 MiB
        losses.gsp(s, t, kernel="laplace", loss="mse")


@pytest.mark.parametrize("name,kw,match", [
    ("kd", {"temperature": 0}, r"kd \(temperature=0\): LogitKD: temperature"),
    ("kd", {"alpha": 1.5}, r"kd \(alpha=1.5\): CrossEntropy: weight must be >= 0"),
    ("glnn", {"lamb": 1.5}, r"glnn \(lamb=1.5\)"),
    ("lsp", {"kernel": "foo"}, "unknown kernel 'foo'"),
    ("gsp", {"max_samples": 0}, "max_samples must be None or an int >= 2"),
    ("gcrd", {"max_samples": 1}, "max_samples must be None or an int >= 2"),
    ("kd", {"epochs": 2.5}, "epochs=2.5 is out of range"),
    ("kd", {"patience": 0}, "patience=0 is out of range"),
    ("kd", {"ties": "middle"}, "ties='middle' is out of range"),
    ("sail", {"batch_size": 64}, "unknown hyperparameter 'batch_size'"),
    ("sail", {"patience": 5}, "patience=5"),
    ("kd", {"needs_teacher": False}, "unknown hyperparameter 'needs_teacher'"),
    ("oad", {"stage_epochs": ("lr",)}, "unknown hyperparameter 'stage_epochs'"),
    ("gsdn", {"factor_lr_scale": 0}, "a learning rate must be > 0"),  # (NaN in every epoch)
    ("freekd", {"structure_weight": -1}, "a loss weight must be >= 0"),
    ("oad", {"d_weight": -1}, "a loss weight must be >= 0"),
    ("reliant", {"proxy_lr": -1}, "a learning rate must be > 0"),  # (the proxy descended)
])
def test_recipe_values_are_refused_where_they_are_given(name, kw, match):
    # they were accepted by get() / --set and failed only mid-run, after the teacher and the earlier
    # methods had trained (or, for SAIL's batch_size and the class flags, were ignored)
    with pytest.raises(ValueError, match=match):
        recipes.get(name, **kw)
    recipes.get(name, patience=None)  # a valid override still passes
