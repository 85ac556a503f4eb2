"""GSP / RSD / relation: tiled kernels and the Gram path vs the dense reference, edge cases, errors."""
import pytest
import torch

import gkdfast
from gkdfast.reference import structure as ref

from conftest import DEVICES

KERNELS = ["linear", "cosine", "poly", "l2", "rbf", "laplace"]


def _pair(n, ds=6, dt=9, dtype=torch.float64, device="cpu", seed=1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(n, ds, generator=g, dtype=dtype)).to(device).requires_grad_()
    t = (scale * torch.randn(n, dt, generator=g, dtype=dtype)).to(device).requires_grad_()
    return s, t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_matches_reference(device, kernel, loss):
    # n > one CPU tile (64 x 512 blocks) in rows, so block edges are exercised
    n = 70
    s, t = _pair(n, device=device, scale=0.5)
    out = gkdfast.losses.gsp(s, t, kernel=kernel, loss=loss, tau=0.7, gamma=0.3)
    exp = ref.gsp(s, t, kernel, loss, 0.7, 0.3)
    torch.testing.assert_close(out, exp, rtol=1e-9, atol=1e-12)
    got = torch.autograd.grad(out, (s, t))
    want = torch.autograd.grad(exp, (s, t))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_gradcheck(kernel, loss):
    s, t = _pair(6, 3, 4, seed=5)
    assert torch.autograd.gradcheck(
        lambda a, b: gkdfast.losses.gsp(a, b, kernel=kernel, loss=loss, tau=0.9, gamma=0.4), (s, t))


def test_opcheck_native():
    if not gkdfast._backend.has_kernel("gsp_tiled", "CPU"):
        pytest.fail("no CPU kernel registered for gkdfast::gsp_tiled")
    s, t = _pair(20)
    for kernel, loss in (("rbf", "kl"), ("laplace", "mse"), ("poly", "mse")):
        args = (s, t, kernel, loss, 0.5, 1.0)
        torch.library.opcheck(torch.ops.gkdfast.gsp_tiled.default, args)
        per_row, stats = torch.ops.gkdfast.gsp_tiled(*args)
        bargs = (s.detach(), t.detach(), per_row.detach(), stats.detach(), torch.full_like(per_row, 0.1),
                 kernel, loss, 0.5, 1.0, True, True)
        torch.library.opcheck(torch.ops.gkdfast.gsp_tiled_backward.default, bargs)


def test_float32_tiled_close_to_float64():
    s, t = _pair(200, 16, 32, scale=0.3)
    exp = ref.gsp(s, t, "rbf", "kl", 1.0, 0.5)
    out = gkdfast.losses.gsp(s.float(), t.float(), kernel="rbf", loss="kl", gamma=0.5)
    assert out.dtype == torch.float32
    assert abs(float(out.detach()) - float(exp.detach())) < 1e-5 * max(1.0, abs(float(exp.detach())))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_teacher_equals_student_near_zero_never_negative(kernel, loss):
    s, _ = _pair(50, 8, 8, dtype=torch.float32)
    exact = gkdfast.losses.gsp(s, s.detach().clone(), kernel=kernel, loss=loss, gamma=0.2)
    assert float(exact) >= 0
    assert float(exact) < 1e-6
    for eps in (1e-7, 1e-5):
        near = gkdfast.losses.gsp(s, s.detach() + eps, kernel=kernel, loss=loss, gamma=0.2)
        assert float(near) >= 0


def test_gram_path_cancellation_float64_accuracy():
    # large embeddings: the three Gram terms are ~1e10 each; the float64 difference stays accurate
    s, _ = _pair(300, 32, 32, dtype=torch.float32, scale=10.0)
    t = (s.detach() + 1e-3 * torch.randn_like(s)).requires_grad_()
    out = gkdfast.losses.rsd(s, t)
    exp = ref.gsp(s.double(), t.double(), "linear", "mse")
    assert float(out) >= 0
    assert abs(float(out) - float(exp)) <= 1e-3 * float(exp)


def test_nodes_subset_and_mask():
    s, t = _pair(40)
    idx = torch.tensor([3, 7, 11, 20, 39])
    for kernel, loss in (("linear", "mse"), ("rbf", "kl"), ("l2", "mse")):
        out = gkdfast.losses.gsp(s, t, kernel=kernel, loss=loss, nodes=idx)
        torch.testing.assert_close(out, ref.gsp(s[idx], t[idx], kernel, loss))
    mask = torch.zeros(40, dtype=torch.bool)
    mask[idx] = True
    torch.testing.assert_close(gkdfast.losses.rsd(s, t, nodes=mask), gkdfast.losses.rsd(s, t, nodes=idx))
    gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", nodes=idx).backward()
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[idx] = False
    assert bool((s.grad[untouched] == 0).all()) and bool((s.grad[idx] != 0).any())


def test_rsd_is_linear_mse():
    s, t = _pair(30)
    torch.testing.assert_close(gkdfast.losses.rsd(s, t), ref.gsp(s, t, "linear", "mse"))


@pytest.mark.parametrize("kernel", KERNELS)
def test_single_node_and_empty(kernel):
    s, t = _pair(1)
    for loss in ("mse", "kl"):
        out = gkdfast.losses.gsp(s, t, kernel=kernel, loss=loss)
        torch.testing.assert_close(out, ref.gsp(s, t, kernel, loss))
    s0, t0 = _pair(0)
    assert float(gkdfast.losses.gsp(s0, t0, kernel=kernel)) == 0.0


def test_zero_rows_cosine():
    s, t = _pair(10)
    with torch.no_grad():
        s[2] = 0
    for loss in ("mse", "kl"):
        out = gkdfast.losses.gsp(s, t, kernel="cosine", loss=loss)
        torch.testing.assert_close(out, ref.gsp(s, t, "cosine", loss))
        g = torch.autograd.grad(out, s)[0]
        assert bool(torch.isfinite(g).all())


def test_bad_arguments():
    s, t = _pair(10)
    with pytest.raises(ValueError, match="unknown kernel"):
        gkdfast.losses.gsp(s, t, kernel="gauss")
    with pytest.raises(ValueError, match="unknown loss"):
        gkdfast.losses.gsp(s, t, loss="l1")
    with pytest.raises(ValueError, match="rows"):
        gkdfast.losses.gsp(s, t[:-1])
    with pytest.raises(ValueError, match="is on"):
        gkdfast.losses.gsp(s, t.to("meta"))
    with pytest.raises(ValueError, match="tau"):
        gkdfast.losses.gsp(s, t, loss="kl", tau=-1.0)
    with pytest.raises(ValueError, match="outside"):
        gkdfast.losses.gsp(s, t, nodes=torch.tensor([0, 10]))
    with pytest.raises(TypeError):
        gkdfast.losses.gsp(s, t, nodes=torch.tensor([0.5]))
    with pytest.raises(TypeError, match="floating"):
        gkdfast.losses.rsd(s.long(), t)
    with pytest.raises(ValueError, match="unknown kernel"):
        torch.ops.gkdfast.gsp_tiled(s, t, "nope", "kl", 1.0, 1.0)
    with pytest.raises(ValueError, match="rows"):
        torch.ops.gkdfast.gsp_tiled(s, t[:-1], "rbf", "kl", 1.0, 1.0)


# ------------------------------------------------------------------------------ relation
def test_relation_centroid_matches_loops():
    g = torch.Generator().manual_seed(0)
    sb = [torch.randn(k + 3, 5, generator=g, dtype=torch.float64, requires_grad=True) for k in range(4)]
    tb = [torch.randn(k + 3, 7, generator=g, dtype=torch.float64) for k in range(4)]
    out = gkdfast.losses.relation(sb, tb)
    torch.testing.assert_close(out, ref.relation(sb, tb, "centroid"))
    assert torch.autograd.gradcheck(lambda *x: gkdfast.losses.relation(list(x), tb), tuple(sb))
    assert float(gkdfast.losses.relation(sb, [b.detach() for b in sb])) < 1e-20


def test_relation_gram_matches_loops():
    g = torch.Generator().manual_seed(1)
    sb = [torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    tb = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    out = gkdfast.losses.relation(sb, tb, mode="gram")
    torch.testing.assert_close(out, ref.relation(sb, tb, "gram"))
    assert torch.autograd.gradcheck(lambda *x: gkdfast.losses.relation(list(x), tb, mode="gram"), tuple(sb))


def test_relation_bad_arguments():
    a = [torch.randn(3, 4), torch.randn(2, 4)]
    with pytest.raises(ValueError, match="number"):
        gkdfast.losses.relation(a, a[:1])
    with pytest.raises(ValueError, match="width"):
        gkdfast.losses.relation([torch.randn(3, 4), torch.randn(3, 5)], a)
    with pytest.raises(ValueError, match="mode"):
        gkdfast.losses.relation(a, a, mode="x")
    with pytest.raises(ValueError, match="same rows"):
        gkdfast.losses.relation(a, a, mode="gram")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kernel", ["l2", "poly", "rbf", "laplace"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_inputs_do_not_overflow_the_row_sums(kernel, dtype):
    # the CUDA paths returned each row's sum of N squared differences in half: here up to 5e5 (l2: 8e4),
    # past half's 65504, so the mse loss was inf; the sums and log-sum-exps now stay float32
    s, t = _pair(300, ds=16, dt=16, dtype=torch.float32, device="cuda")
    for loss in ("mse", "kl"):
        exact = ref.gsp(s.detach().to(dtype).float(), t.detach().to(dtype).float(), kernel, loss, 1.0, 0.3)
        sh, th = s.detach().to(dtype).requires_grad_(), t.detach().to(dtype).requires_grad_()
        out = gkdfast.losses.gsp(sh, th, kernel=kernel, loss=loss, gamma=0.3)
        assert out.dtype == dtype and torch.isfinite(out)
        torch.testing.assert_close(out.float(), exact, rtol=2e-2, atol=1e-3)
        out.backward()
        assert torch.isfinite(sh.grad).all() and torch.isfinite(th.grad).all()


def _kl_rows_reference(s, t, kernel, tau):
    # plain log-softmax over the dense N x N kernel values: the float32 yardstick
    def k(x):
        g = x @ x.T
        return g if kernel == "linear" else (g + 1) ** 2
    ls, lt = torch.log_softmax(k(s) / tau, 1), torch.log_softmax(k(t) / tau, 1)
    return (lt.exp() * (lt - ls)).sum(1)


def _kl_rows_native(s, t, kernel, tau):
    return torch.ops.gkdfast.gsp_tiled(s, t, kernel, "kl", 1.0, tau, 0, s.shape[0])[0]


CUDA_IMPL = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                             reason="no CUDA device")])


@pytest.mark.parametrize("impl", ["simd", "portable", CUDA_IMPL])
@pytest.mark.parametrize("kernel", ["linear", "poly"])
def test_kl_float32_small_tau_as_precise_as_the_dense_reference(monkeypatch, impl, kernel):
    # Near one-hot rows (tau = 0.05, kernel values up to 1e5 / tau): the backward must recompute the
    # forward's logits bit for bit (an fma that skipped their rounding put 3e-5 into every p, times
    # 1 / tau: student gradient error 7.9e-3 for linear, 51 for poly), and the KL must not subtract
    # numbers of the size of the logits (a one-hot row with KL 0 came out at 4e-3).
    device = "cuda" if impl == "cuda" else "cpu"
    if not gkdfast._backend.has_kernel("gsp_tiled", device.upper()):
        pytest.fail(f"no {device} kernel registered for gkdfast::gsp_tiled")
    if device == "cpu":
        monkeypatch.setenv("GKDFAST_CPU_GSP_IMPL", impl)
    g = torch.Generator().manual_seed(0)
    s64 = torch.randn(700, 32, generator=g, dtype=torch.float64)
    t64 = torch.randn(700, 48, generator=g, dtype=torch.float64)
    w64 = torch.rand(700, generator=g, dtype=torch.float64)
    tau = 0.05

    def run(fn, dtype):
        on = "cpu" if dtype == torch.float64 else device  # the float64 yardstick on the CPU
        s, t = s64.to(on, dtype).requires_grad_(), t64.to(on, dtype).requires_grad_()
        loss = (fn(s, t, kernel, tau) * w64.to(on, dtype)).sum()
        return (loss.detach().double().cpu(), *(gr.double().cpu() for gr in torch.autograd.grad(loss, (s, t))))

    exact = run(_kl_rows_reference, torch.float64)
    native, dense = run(_kl_rows_native, torch.float32), run(_kl_rows_reference, torch.float32)
    grad_scale = max(exact[1].abs().max().item(), exact[2].abs().max().item())
    for i, name in enumerate(("loss", "student grad", "teacher grad")):
        err, ref_err = (native[i] - exact[i]).abs().max().item(), (dense[i] - exact[i]).abs().max().item()
        scale = exact[0].abs().item() if i == 0 else grad_scale
        # at most a few times the dense float32 error, or a few float32 roundings of the largest value
        assert err <= 4 * ref_err + 4e-7 * scale, (name, err, ref_err, scale)


@pytest.mark.parametrize("kernel", ["rbf", "poly", "laplace"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_raw_op_runs_in_float32_on_the_default_path(kernel, dtype):
    # the default (SIMD) CPU path raised "not implemented for 'Half'" while the fake kernel promised
    # float32 outputs; half now runs in float32 there as on the portable driver and on CUDA
    if not gkdfast._backend.has_kernel("gsp_tiled", "CPU"):
        pytest.fail("no CPU kernel registered for gkdfast::gsp_tiled")
    s, t = _pair(30, 4, 6, dtype=torch.float32)
    sh, th = s.detach().to(dtype), t.detach().to(dtype)
    for loss in ("mse", "kl"):
        args = (sh, th, kernel, loss, 0.5, 1.0)
        torch.library.opcheck(torch.ops.gkdfast.gsp_tiled.default, args)
        per_row, stats = torch.ops.gkdfast.gsp_tiled(*args)
        exact = torch.ops.gkdfast.gsp_tiled(sh.float(), th.float(), kernel, loss, 0.5, 1.0)[0]
        assert per_row.dtype == torch.float32
        torch.testing.assert_close(per_row, exact, rtol=1e-4, atol=1e-4)
        bargs = (sh, th, per_row, stats, torch.full_like(per_row, 0.1), kernel, loss, 0.5, 1.0, True, True)
        torch.library.opcheck(torch.ops.gkdfast.gsp_tiled_backward.default, bargs)
        gs, gt = torch.ops.gkdfast.gsp_tiled_backward(*bargs)
        assert gs.dtype == dtype and gt.dtype == dtype


@pytest.mark.parametrize("impl", ["simd", "portable", CUDA_IMPL])
@pytest.mark.parametrize("kernel", ["l2", "rbf"])
@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_distance_kernels_see_no_distance_from_a_row_to_itself(monkeypatch, impl, kernel, loss):
    # Large float32 rows: the GEMM's dot and the row's norm round apart, and the default CPU path left
    # na + nb - 2 g nonzero on the diagonal (k(x_i, x_i) < 1 for rbf): gsp(s, t) with t = s scaled
    # came out 1e-3 (rbf mse) against 7e-21 in float64.
    device = "cuda" if impl == "cuda" else "cpu"
    if device == "cpu":
        monkeypatch.setenv("GKDFAST_CPU_GSP_IMPL", impl)
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(64, 8, generator=g) * 1e3).to(device)
    t = (torch.randn(64, 12, generator=g) * 1e3).to(device)
    out = gkdfast.losses.gsp(s, t, kernel=kernel, loss=loss, gamma=0.5)
    want = ref.gsp(s.double(), t.double(), kernel, loss, 1.0, 0.5)
    assert abs(float(out) - float(want)) < 1e-6 * max(1.0, abs(float(want)))


@pytest.mark.parametrize("impl", ["simd", "portable"])
def test_kl_student_minus_inf_where_the_teacher_has_weight_is_inf(monkeypatch, impl):
    # l2 at tau = 1e-300: the student's off-diagonal logits are -inf, the teacher's all 0.  Every row's
    # KL is +inf on both CPU paths, as in the reference (the portable driver gave NaN on rows whose
    # first column was a -inf student logit)
    monkeypatch.setenv("GKDFAST_CPU_GSP_IMPL", impl)
    s = torch.tensor([[0.0], [1e5], [2e5]], dtype=torch.float64)
    t = torch.zeros(3, 1, dtype=torch.float64)
    out = torch.ops.gkdfast.gsp_tiled(s, t, "l2", "kl", 1.0, 1e-300)[0]
    torch.testing.assert_close(out, ref.gsp_rows(s, t, "l2", "kl", 1e-300, 1.0, 0, 3))
    assert torch.isinf(out).all()
