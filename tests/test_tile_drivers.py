"""The device-agnostic tile drivers the CUDA kernels run, exercised on the CPU.

* GSP's GEMM-tile driver (csrc/ops/gsp_tiles.cpp) with the host epilogue
  (``GKDFAST_CPU_GSP_IMPL=portable``): the same orchestration and per-element formulas
  (common/gsp_tile_math.h) as the CUDA epilogue, checked against the dense reference with a tiny
  workspace budget so every call spans several uneven row and column tiles.
* The log-sum-exp driver of infonce / crd all-N and gram_lse (ops/lse_tiles.h) under small budgets.
* The switches themselves: bad values of the environment variables are one clear ValueError.
"""
import contextlib
import os

import pytest
import torch

from gkdfast import settings

from gkdfast.reference import structure as ref

GEMM_KERNELS = ["linear", "cosine", "poly", "l2", "rbf"]


@contextlib.contextmanager
def tiles(impl="portable", budget=None):
    """The CPU GSP implementation and the tile workspace budget (MiB) for the block."""
    with settings.cpu_gsp_impl(impl), settings.tile_workspace(budget):
        yield


def _pair(n, ds, dt, dtype=torch.float64, seed=0, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(n, ds, generator=g, dtype=dtype)).requires_grad_()
    t = (scale * torch.randn(n, dt, generator=g, dtype=dtype)).requires_grad_()
    return s, t


def _gsp_op(s, t, kernel, loss, tau, gamma, row_begin=0, row_end=-1):
    per_row, stats = torch.ops.gkdfast.gsp_tiled(s, t, kernel, loss, float(gamma), float(tau), row_begin, row_end)
    return per_row, stats


# 0.002 MiB = 2097 bytes: two float64 tiles of 131 elements -> e.g. 1 x 131 or 2 x 65 tiles, so a
# 157-row problem runs as many row and column tiles with a short last one.
TINY = 0.002


@pytest.mark.parametrize("kernel", GEMM_KERNELS)
@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_portable_gsp_driver_matches_reference(kernel, loss):
    s, t = _pair(157, 6, 9)
    with tiles(budget=TINY):
        per_row, _ = _gsp_op(s, t, kernel, loss, 0.7, 0.3)
        n = s.size(0)
        out = per_row.sum() / (n * n if loss == "mse" else n)
        got = torch.autograd.grad(out, (s, t))
    exp = ref.gsp(s, t, kernel, loss, 0.7, 0.3)
    torch.testing.assert_close(out, exp, rtol=1e-9, atol=1e-12)
    want = torch.autograd.grad(exp, (s, t))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("kernel,loss", [("rbf", "kl"), ("cosine", "mse"), ("l2", "kl")])
def test_portable_gsp_driver_row_range_equals_simd_path(kernel, loss):
    # A row range [r0, r1) (a distributed shard) gives the SIMD path's per-row values and gradients.
    s, t = _pair(133, 5, 8, seed=3)
    w = torch.rand(40, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    results = []
    for impl in ("simd", "portable"):
        with tiles(impl, budget=TINY):
            per_row, stats = _gsp_op(s, t, kernel, loss, 0.5, 0.4, row_begin=50, row_end=90)
            grads = torch.autograd.grad((per_row * w).sum(), (s, t))
        results.append((per_row.detach(), stats.detach(), grads))
    (p0, s0, g0), (p1, s1, g1) = results
    torch.testing.assert_close(p1, p0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s1, s0, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_portable_gsp_driver_float32_and_a_zero_row():
    # float32 (state in float32, as on the GPU) and a zero row (cosine's clamped norm, no NaN).
    s, t = _pair(90, 7, 4, dtype=torch.float32, seed=5)
    with torch.no_grad():
        s[3] = 0
    with tiles(budget=0.001):
        per_row, _ = _gsp_op(s, t, "cosine", "kl", 0.5, 0.0)
        out = per_row.mean()
        gs, gt = torch.autograd.grad(out, (s, t))
    s64, t64 = s.detach().double().requires_grad_(), t.detach().double().requires_grad_()
    exp = ref.gsp(s64, t64, "cosine", "kl", 0.5, 0.0)
    torch.testing.assert_close(out.double(), exp, rtol=1e-5, atol=1e-6)
    want = torch.autograd.grad(exp, (s64, t64))
    torch.testing.assert_close(gs.double(), want[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gt.double(), want[1], rtol=1e-4, atol=1e-6)
    assert torch.isfinite(gs).all()


def test_portable_gsp_driver_diagonal_distance_is_exactly_zero():
    # l2 on rows of large norm: ||a||^2 + ||a||^2 - 2 a.a is not 0 in floating point; the driver
    # forces the diagonal's distance to exactly 0, so a single row has K = 0 exactly.
    x = torch.full((1, 16), 1234.567, dtype=torch.float32)
    with tiles():
        per_row, _ = _gsp_op(x, 2 * x, "l2", "mse", 1.0, 0.0)
    assert per_row.item() == 0.0


def test_portable_gsp_driver_is_deterministic():
    s, t = _pair(120, 9, 9, dtype=torch.float32, seed=11)
    outs = []
    for _ in range(2):
        with tiles(budget=0.004):
            per_row, stats = _gsp_op(s, t, "rbf", "kl", 0.5, 0.5)
            grads = torch.autograd.grad(per_row.sum(), (s, t))
        outs.append((per_row, stats) + grads)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------ lse driver
def _infonce_ref(a, c, inv_tau, pos_offset, exclude_self):
    logits = a @ c.t() * inv_tau
    if exclude_self:
        logits = logits.masked_fill(torch.eye(a.size(0), dtype=torch.bool), float("-inf"))
    lse = torch.logsumexp(logits, 1)
    idx = (torch.arange(a.size(0)) + pos_offset) % c.size(0)
    return lse - logits.gather(1, idx.view(-1, 1)).squeeze(1) if pos_offset >= 0 else lse


@pytest.mark.parametrize("budget", [0.001, 0.05])
@pytest.mark.parametrize("exclude_self,pos_offset", [(False, 0), (True, 3), (True, -1)])
def test_infonce_lse_driver_under_small_budgets(budget, exclude_self, pos_offset):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(75, 6, dtype=torch.float64, generator=g).requires_grad_()
    c = torch.randn(75, 6, dtype=torch.float64, generator=g).requires_grad_()
    with settings.tile_workspace(budget):
        loss, _ = torch.ops.gkdfast.infonce(a, c, 1.7, pos_offset, exclude_self, 0, 0)
        got = torch.autograd.grad(loss.sum(), (a, c))
    exp = _infonce_ref(a, c, 1.7, pos_offset, exclude_self)
    torch.testing.assert_close(loss, exp, rtol=1e-10, atol=1e-12)
    want = torch.autograd.grad(exp.sum(), (a, c))
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_gram_lse_driver_under_a_small_budget(exclude_self):
    z = torch.randn(83, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    w = torch.rand(83, dtype=torch.float64)
    with settings.tile_workspace(0.0005):  # 65 elements: 8 x 8 square tiles, 11 per side
        lse = torch.ops.gkdfast.gram_lse(z, 0.8, exclude_self)
        (got,) = torch.autograd.grad((lse * w).sum(), (z,))
    logits = z @ z.t() * 0.8
    if exclude_self:
        logits = logits.masked_fill(torch.eye(83, dtype=torch.bool), float("-inf"))
    exp = torch.logsumexp(logits, 1)
    torch.testing.assert_close(lse, exp, rtol=1e-10, atol=1e-12)
    (want,) = torch.autograd.grad((exp * w).sum(), (z,))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_topk_under_a_budget_smaller_than_k():
    g = torch.Generator().manual_seed(6)
    q, keys = torch.randn(30, 4, generator=g), torch.randn(200, 4, generator=g)
    with settings.tile_workspace(0.0001):
        values, idx = torch.ops.gkdfast.topk_similar(q, keys, 25)
    exp_v, _ = torch.topk(q @ keys.t(), 25, dim=1)
    torch.testing.assert_close(values, exp_v)
    torch.testing.assert_close(torch.gather(q @ keys.t(), 1, idx), exp_v)


# ------------------------------------------------------------------------------ switches
@pytest.mark.parametrize("value", ["-3", "lots", "0"])
def test_bad_workspace_budget_is_one_clear_error(value, monkeypatch):
    monkeypatch.setenv("GKDFAST_TILE_WORKSPACE_MB", value)
    with pytest.raises(ValueError, match="GKDFAST_TILE_WORKSPACE_MB"):
        torch.ops.gkdfast.gram_lse(torch.randn(10, 3), 1.0, False)


def test_bad_cpu_gsp_impl_is_one_clear_error(monkeypatch):
    s, t = _pair(10, 3, 3)
    monkeypatch.setenv("GKDFAST_CPU_GSP_IMPL", "fastest")
    with pytest.raises(ValueError, match="GKDFAST_CPU_GSP_IMPL"):
        torch.ops.gkdfast.gsp_tiled(s, t, "rbf", "kl", 0.5, 1.0)


def test_settings_context_managers_set_and_restore_the_environment():
    import gkdfast

    os.environ.pop("GKDFAST_TILE_WORKSPACE_MB", None)
    with gkdfast.settings.tile_workspace(0.001):
        assert float(os.environ["GKDFAST_TILE_WORKSPACE_MB"]) == 0.001
        z = torch.randn(70, 4, dtype=torch.float64)
        lse = torch.ops.gkdfast.gram_lse(z, 1.0, False)  # many tiles under this budget
    assert "GKDFAST_TILE_WORKSPACE_MB" not in os.environ
    torch.testing.assert_close(lse, torch.logsumexp(z @ z.t(), 1), rtol=1e-10, atol=1e-12)
    with gkdfast.settings.cuda_impl("legacy"):
        assert os.environ["GKDFAST_CUDA_IMPL"] == "legacy"
    assert "GKDFAST_CUDA_IMPL" not in os.environ
    with pytest.raises(ValueError, match="megabytes"):
        gkdfast.settings.tile_workspace(0)
    with pytest.raises(ValueError, match="fast"):
        gkdfast.settings.cuda_impl("turbo")


def test_settings_called_as_a_statement_take_effect_like_set_grad_enabled(monkeypatch):
    """Called on its own line a setting used to build an unused context manager and change nothing."""
    monkeypatch.delenv("GKDFAST_DROPOUT", raising=False)
    settings.dropout_impl("torch")
    assert os.environ["GKDFAST_DROPOUT"] == "torch"
    with settings.dropout_impl("philox"):
        assert os.environ["GKDFAST_DROPOUT"] == "philox"
    assert os.environ["GKDFAST_DROPOUT"] == "torch"  # the block restores what was there before it
    monkeypatch.delenv("GKDFAST_DROPOUT")
