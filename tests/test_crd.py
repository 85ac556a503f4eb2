"""crd and nt_xent (gkdfast::infonce): kernels vs the dense reference, gradients, opcheck, the Philox
sampler (CPU kernel == vectorised torch == scalar Python; reproducible), K >= N-1, bad arguments."""
import pytest
import torch
import torch.nn.functional as F

import gkdfast
from gkdfast.losses import crd, nt_xent, sample_negatives
from gkdfast.reference import contrastive as rc

from conftest import DEVICES


def _pair(n, d, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, d, generator=g, dtype=dtype).to(device).requires_grad_()
    t = torch.randn(n, d, generator=g, dtype=dtype).to(device).requires_grad_()
    return s, t


def _grads(loss, inputs):
    return torch.autograd.grad(loss, inputs)


# ------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("seed", [0, 1, 123456789, 2**62 + 12345])
def test_sampler_cpu_equals_python(seed):
    rows = torch.tensor([0, 1, 2, 7, 39, 40, 99])
    native = sample_negatives(100, 11, seed, rows=rows)
    vec = rc.sample_negatives(rows, 100, 11, seed)
    scalar = torch.tensor([[rc.negative_index_py(seed, int(r), k, 100) for k in range(11)] for r in rows])
    assert torch.equal(native, vec) and torch.equal(native, scalar)


def test_sampler_excludes_self_and_covers_others():
    idx = sample_negatives(6, 400, seed=3)
    assert idx.shape == (6, 400)
    for r in range(6):
        seen = set(idx[r].tolist())
        assert r not in seen and seen == set(range(6)) - {r}


def test_sampler_reproducible_and_seed_dependent():
    a = sample_negatives(1000, 16, seed=5)
    assert torch.equal(a, sample_negatives(1000, 16, seed=5))
    assert not torch.equal(a, sample_negatives(1000, 16, seed=6))
    # about uniform: 16000 draws over 999 values each, mean index near N/2
    assert abs(a.double().mean().item() - 499.5) < 15


def test_native_sampler_refuses_2_to_the_32_nodes_called_directly():
    # the draw maps a 32-bit word onto [0, N): the public function refused N >= 2^32, the op did not
    with pytest.raises(ValueError, match="num_nodes must be below 2\\^32"):
        torch.ops.gkdfast.sample_negatives(torch.arange(3), 1 << 32, 4, 0)
    assert int(torch.ops.gkdfast.sample_negatives(torch.arange(3), (1 << 32) - 1, 4, 0).max()) < (1 << 32) - 1


# ------------------------------------------------------------------------------ crd vs reference
@pytest.mark.parametrize("kw", [{}, {"symmetric": True}, {"num_negatives": 5, "seed": 11},
                                {"num_negatives": 3, "seed": 2, "symmetric": True}, {"reduction": "sum"},
                                {"reduction": "none", "num_negatives": 4, "seed": 0}])
def test_crd_matches_reference(kw):
    s, t = _pair(37, 6)
    a, b = crd(s, t, tau=0.2, **kw), rc.crd(s, t, tau=0.2, **kw)
    torch.testing.assert_close(a, b)
    ga, gb = _grads(a.sum(), (s, t)), _grads(b.sum(), (s, t))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


def test_crd_definition_by_hand():
    s, t = _pair(9, 4)
    zs, zt = F.normalize(s, dim=1), F.normalize(t, dim=1)
    logits = zs @ zt.t() / 0.075
    expected = (torch.logsumexp(logits, 1) - logits.diagonal()).mean()
    torch.testing.assert_close(crd(s, t), expected)
    # sampled: positive plus the Philox negatives, by hand for row 4
    rows = crd(s, t, num_negatives=3, seed=9, reduction="none", tau=0.5)
    neg = sample_negatives(9, 3, seed=9, rows=torch.tensor([4]))[0]
    l4 = torch.cat([(zs[4] * zt[4]).sum().view(1), zs[4] @ zt[neg].t()]) / 0.5
    torch.testing.assert_close(rows[4], torch.logsumexp(l4, 0) - l4[0])


def test_crd_multi_tile_float32():
    # N crosses the CPU tile boundaries (512 rows, 4096 columns) in both directions.
    s, t = _pair(4500, 8, dtype=torch.float32, seed=1)
    a = crd(s, t, tau=0.1)
    b = rc.crd(s.double(), t.double(), tau=0.1)
    torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)
    ga = _grads(a, (s, t))
    gb = _grads(b, (s, t))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x.double(), y.double(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
def test_crd_sampled_float32_well_aligned_rows_not_biased_low(device):
    # A student close to its teacher: each row's loss is log(1 + sum of 1024 terms below 2^-24).
    # A float running sum near 1 dropped them one by one (the loss came out 51% low on every row);
    # the log-sum-exp is now accumulated in double and the positive's logit cancels first.
    g = torch.Generator().manual_seed(0)
    t = torch.randn(1100, 128, generator=g, dtype=torch.float64)
    s = t + 0.05 * torch.randn(1100, 128, generator=g, dtype=torch.float64)
    s64 = s.to(device).clone().requires_grad_()
    s32 = s.float().to(device).requires_grad_()
    exact = crd(s64, t.to(device), tau=0.05, num_negatives=1024, seed=1)
    out = crd(s32, t.float().to(device), tau=0.05, num_negatives=1024, seed=1)
    assert exact.item() > 0 and abs(out.item() - exact.item()) <= 1e-3 * exact.item(), (out.item(), exact.item())
    # the gradient: p_pos - 1 (about -1e-5 here) is taken as minus the negatives' probabilities; from
    # p_pos itself, rounded at the log-sum-exp's scale, it was 1.6% off in norm
    exact.backward()
    out.backward()
    err = ((s32.grad.double() - s64.grad).norm() / s64.grad.norm()).item()
    assert err < 1e-4, err


@pytest.mark.parametrize("symmetric", [False, True])
def test_crd_exact_float32_gradient_of_well_aligned_rows(symmetric):
    # Every row's positive dominates (loss ~1e-5): its weight p_pos - 1 ~ -1e-5 was formed inside the tile
    # from p_pos (rounded at the log-sum-exp's scale) and its product with c_pos cancelled in the GEMM:
    # the float32 gradient was 7% off in norm (a dense float32 cross_entropy: 0.8%); now ~0.14%
    g = torch.Generator().manual_seed(0)
    t = torch.randn(1100, 128, generator=g, dtype=torch.float64)
    s = t + 0.05 * torch.randn(1100, 128, generator=g, dtype=torch.float64)
    s64, s32 = s.clone().requires_grad_(), s.float().requires_grad_()
    crd(s64, t, tau=0.05, symmetric=symmetric).backward()
    crd(s32, t.float(), tau=0.05, symmetric=symmetric).backward()
    err = ((s32.grad.double() - s64.grad).norm() / s64.grad.norm()).item()
    assert err < 1e-2, err


def test_crd_sampled_reproducible_and_seed_dependent():
    s, t = _pair(50, 5)
    a = crd(s, t, num_negatives=7, seed=1)
    assert torch.equal(a, crd(s, t, num_negatives=7, seed=1))
    assert not torch.equal(a, crd(s, t, num_negatives=7, seed=2))
    torch.manual_seed(0)
    b = crd(s, t, num_negatives=7)
    torch.manual_seed(0)
    assert torch.equal(b, crd(s, t, num_negatives=7))


def test_crd_sampled_backward_bitwise_deterministic_across_threads():
    s, t = _pair(300, 16, dtype=torch.float32, seed=4)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        g1 = _grads(crd(s, t, num_negatives=20, seed=3), (s, t))
        torch.set_num_threads(2)
        g2 = _grads(crd(s, t, num_negatives=20, seed=3), (s, t))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(x, y) for x, y in zip(g1, g2))


@pytest.mark.parametrize("k", [9, 10, 1000])
def test_crd_k_at_least_n_minus_1_is_exact(k):
    s, t = _pair(10, 3)
    torch.testing.assert_close(crd(s, t, num_negatives=k, seed=0), crd(s, t))


def test_crd_single_row_and_empty():
    s, t = _pair(1, 3)
    assert crd(s, t).item() == 0.0
    assert crd(s, t, num_negatives=5).item() == 0.0
    e = torch.zeros(0, 3, requires_grad=True)
    assert crd(e, torch.zeros(0, 3)).item() == 0.0


def test_crd_half_falls_back_to_reference():
    s, t = _pair(20, 4, dtype=torch.float16)
    assert gkdfast.explain("infonce", "cpu", torch.float16)["chosen"] == "reference"
    out = crd(s, t, tau=0.5)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.double(), rc.crd(s.double(), t.double(), tau=0.5), rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------------------ gradcheck / opcheck
@pytest.mark.parametrize("kw", [{}, {"num_negatives": 4, "seed": 5}, {"symmetric": True}])
def test_crd_gradcheck(kw):
    s, t = _pair(8, 3)
    assert torch.autograd.gradcheck(lambda a, b: crd(a, b, tau=0.3, **kw), (s, t))


def test_nt_xent_gradcheck():
    s, t = _pair(7, 3)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, tau=0.4), (s, t))


OPCHECK_ARGS = [(0.5, 0, False, 0, 0), (2.0, 3, True, 0, 0), (1.5, -1, True, 0, 0), (0.7, 0, False, 4, 9),
                (0.7, -1, True, 3, 2)]


@pytest.mark.parametrize("args", OPCHECK_ARGS)
def test_infonce_opcheck(args):
    a, c = _pair(10, 4)
    torch.library.opcheck(torch.ops.gkdfast.infonce.default, (a, c, *args))


@pytest.mark.parametrize("args", OPCHECK_ARGS)
def test_infonce_backward_opcheck(args):
    a, c = (t.detach() for t in _pair(10, 4))  # a backward op: no double backward to check
    loss, lse = torch.ops.gkdfast.infonce(a, c, *args)
    grads = (torch.randn_like(loss), torch.zeros_like(lse))
    torch.library.opcheck(torch.ops.gkdfast.infonce_backward.default, (a, c, lse, *grads, *args))


def test_double_backward_is_refused_not_silently_wrong():
    s, t = _pair(12, 4)
    (g,) = torch.autograd.grad(crd(s, t, tau=0.5), s, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


def test_infonce_kernel_vs_reference_rows():
    a, c = _pair(23, 5)
    for args in OPCHECK_ARGS:
        for x, y in zip(torch.ops.gkdfast.infonce(a, c, *args), rc.infonce(a, c, *args)):
            torch.testing.assert_close(x, y)


def test_sampler_opcheck():
    torch.library.opcheck(torch.ops.gkdfast.sample_negatives.default, (torch.arange(5), 5, 3, 7))


# ------------------------------------------------------------------------------ nt_xent
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nt_xent_matches_grace(reduction):
    s, t = _pair(31, 6)
    a, b = nt_xent(s, t, 0.5, reduction), rc.nt_xent(s, t, 0.5, reduction)
    torch.testing.assert_close(a, b)
    for x, y in zip(_grads(a.sum(), (s, t)), _grads(b.sum(), (s, t))):
        torch.testing.assert_close(x, y)


def test_nt_xent_multi_tile_float32():
    s, t = _pair(2100, 8, dtype=torch.float32, seed=2)  # 2N = 4200 candidates > one 4096-column tile
    torch.testing.assert_close(nt_xent(s, t).double(), rc.nt_xent(s.double(), t.double()), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad, exc, match", [
    (dict(student=torch.randn(4, 3), teacher=torch.randn(4, 5)), ValueError, "ProjectionHead"),
    (dict(student=torch.randn(4, 3), teacher=torch.randn(5, 3)), ValueError, "rows"),
    (dict(student=torch.randn(4), teacher=torch.randn(4)), ValueError, "2-D"),
    (dict(student=[[1.0]], teacher=torch.randn(1, 1)), TypeError, "tensor"),
    (dict(student=torch.ones(4, 3, dtype=torch.long), teacher=torch.randn(4, 3)), TypeError, "floating"),
    (dict(tau=0.0), ValueError, "tau"),
    (dict(tau=float("nan")), ValueError, "tau"),
    (dict(num_negatives=0), ValueError, "num_negatives"),
    (dict(num_negatives=2.5), ValueError, "num_negatives"),
    (dict(num_negatives=2, seed=-1), ValueError, "seed"),
    (dict(num_negatives=2, seed=2**63), ValueError, "seed"),
    (dict(reduction="batchmean"), ValueError, "reduction"),
])
def test_crd_bad_arguments(bad, exc, match):
    kw = dict(student=torch.randn(6, 3), teacher=torch.randn(6, 3))
    kw.update(bad)
    with pytest.raises(exc, match=match):
        crd(**kw)


def test_nt_xent_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        nt_xent(torch.randn(3, 2), torch.randn(3, 4))
    with pytest.raises(ValueError, match="tau"):
        nt_xent(torch.randn(3, 2), torch.randn(3, 2), tau=-1)


def test_raw_op_bad_arguments():
    with pytest.raises(RuntimeError, match="same width"):
        torch.ops.gkdfast.infonce(torch.randn(3, 2), torch.randn(3, 4), 1.0, 0, False, 0, 0)
    with pytest.raises(RuntimeError, match="at least 2 rows"):
        torch.ops.gkdfast.infonce(torch.randn(1, 2), torch.randn(1, 2), 1.0, 0, False, 3, 0)


# ------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_sampler_identical_to_cpu():
    rows = torch.arange(1000)
    assert torch.equal(sample_negatives(1000, 33, 77, rows=rows.cuda()).cpu(), sample_negatives(1000, 33, 77, rows=rows))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kw", [{}, {"num_negatives": 16, "seed": 3}, {"symmetric": True}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_crd_matches_cpu(kw, dtype):
    s, t = _pair(300, 32, dtype=dtype)
    sc, tc = s.detach().cuda().requires_grad_(), t.detach().cuda().requires_grad_()
    a, b = crd(s, t, **kw), crd(sc, tc, **kw)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(b.cpu(), a, **tol)
    for x, y in zip(_grads(a, (s, t)), _grads(b, (sc, tc))):
        torch.testing.assert_close(y.cpu(), x, **tol)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_half_and_opcheck():
    s, t = _pair(200, 16, dtype=torch.float32, device="cuda")
    ref = crd(s, t, num_negatives=8, seed=1)
    torch.testing.assert_close(crd(s.half(), t.half(), num_negatives=8, seed=1).float(), ref, rtol=2e-2, atol=2e-2)
    for args in OPCHECK_ARGS:
        torch.library.opcheck(torch.ops.gkdfast.infonce.default, (s.double(), t.double(), *args))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("args", [(0.7, 0, False, 4, 9), (0.7, -1, True, 3, 2)])
def test_infonce_no_anchor_rows(device, args):
    # A rank whose shard of a sharded crd is empty calls the kernel with zero anchor rows; the sampled
    # CUDA path launched a zero-block grid there ("invalid configuration argument").
    a = torch.zeros(0, 4, dtype=torch.float64, device=device)
    c = torch.randn(6, 4, dtype=torch.float64, device=device)
    loss, lse = torch.ops.gkdfast.infonce(a, c, *args, 2)
    assert loss.shape == lse.shape == (0,)
    da, dc = torch.ops.gkdfast.infonce_backward(a, c, lse, loss, lse, *args, 2)
    assert da.shape == (0, 4) and torch.equal(dc, torch.zeros_like(c))
