"""gkdfast::gram_lse (symmetric all-N log-sum-exp, upper tiles only): values and gradients vs the dense
reference and vs infonce(z, z) across tile boundaries, opcheck, empty sets, and its use by nt_xent /
ncontrast (exact)."""
import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast.reference import contrastive as rc

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")

TILE_CPU = 1024  # csrc/ops/gram_lse.cpp: sizes below straddle one, two and three tile rows


def _z(n, d, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype).to(device)


@pytest.mark.parametrize("inv_tau, exclude_self", [(0.5, False), (2.0, True)])
def test_gram_lse_opcheck(inv_tau, exclude_self):
    z = _z(9, 4).requires_grad_()
    torch.library.opcheck(torch.ops.gkdfast.gram_lse.default, (z, inv_tau, exclude_self))


@pytest.mark.parametrize("exclude_self", [False, True])
def test_gram_lse_backward_opcheck(exclude_self):
    z = _z(9, 4)
    lse = torch.ops.gkdfast.gram_lse(z, 1.5, exclude_self)
    torch.library.opcheck(torch.ops.gkdfast.gram_lse_backward.default,
                          (z, lse, torch.randn_like(lse), 1.5, exclude_self))


@pytest.mark.parametrize("n", [2, 37, TILE_CPU, TILE_CPU + 1, 2 * TILE_CPU + 77])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_values_and_gradient_match_reference(n, exclude_self):
    z = _z(n, 6, seed=n).requires_grad_()
    lse = torch.ops.gkdfast.gram_lse(z, 1.7, exclude_self)
    want = rc.gram_lse(z, 1.7, exclude_self)
    torch.testing.assert_close(lse, want)
    g = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (got,) = torch.autograd.grad((lse * g).sum(), z)
    (exp,) = torch.autograd.grad((want * g).sum(), z)
    torch.testing.assert_close(got, exp)


def test_float32_equals_infonce_lse_and_gradient():
    z = torch.nn.functional.normalize(_z(2 * TILE_CPU + 5, 16, dtype=torch.float32, seed=3), dim=1)
    z.requires_grad_()
    lse = torch.ops.gkdfast.gram_lse(z, 2.0, True)
    ref_lse = torch.ops.gkdfast.infonce(z, z, 2.0, -1, True, 0, 0)[1]
    torch.testing.assert_close(lse, ref_lse, rtol=1e-5, atol=1e-5)
    assert lse.dtype == torch.float32
    (a,) = torch.autograd.grad(lse.sum(), z)
    (b,) = torch.autograd.grad(ref_lse.sum(), z)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradcheck_small():
    z = _z(6, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: torch.ops.gkdfast.gram_lse(x, 0.8, True), (z,))


def test_single_row_excluding_self_is_an_empty_set():
    z = _z(1, 3).requires_grad_()
    lse = torch.ops.gkdfast.gram_lse(z, 1.0, True)
    assert lse.shape == (1,) and torch.isneginf(lse).all()
    (g,) = torch.autograd.grad(lse.sum(), z)  # no probabilities: zero gradient, not NaN
    assert torch.equal(g, torch.zeros_like(z))
    assert torch.ops.gkdfast.gram_lse(torch.empty(0, 3), 1.0, True).shape == (0,)


def test_bad_arguments():
    with pytest.raises(RuntimeError, match="2-D"):
        torch.ops.gkdfast.gram_lse(torch.randn(4), 1.0, True)
    with pytest.raises(RuntimeError, match="shape"):
        torch.ops.gkdfast.gram_lse_backward(torch.randn(4, 2), torch.randn(3), torch.randn(4), 1.0, True)


def test_double_backward_is_refused():
    z = _z(8, 3).requires_grad_()
    (g,) = torch.autograd.grad(torch.ops.gkdfast.gram_lse(z, 1.0, True).sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


def test_nt_xent_and_ncontrast_use_it_across_tiles():
    """Both losses' exact paths run on gram_lse; multi-tile float64 against the dense definitions."""
    z1, z2 = _z(TILE_CPU + 30, 5, seed=4).requires_grad_(), _z(TILE_CPU + 30, 5, seed=5)
    torch.testing.assert_close(gkdfast.losses.nt_xent(z1, z2), rc.nt_xent(z1, z2))
    n = TILE_CPU + 40
    ei = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    ei = torch.cat([ei, ei.flip(0)], 1)
    z = _z(n, 5, seed=6).requires_grad_()
    got = gkdfast.losses.ncontrast(gkdfast.Graph(ei, num_nodes=n), z, tau=0.5, hops=2)
    want = rc.ncontrast(ei, n, z, tau=0.5, hops=2)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_cuda_matches_cpu(dtype):
    z = _z(9000, 32, dtype=torch.float32, seed=7)  # > one 8192-row CUDA tile
    zc = z.to(dtype).cuda().requires_grad_()
    zr = z.to(dtype).float().double().requires_grad_()
    got = torch.ops.gkdfast.gram_lse(zc, 2.0, True)
    want = torch.ops.gkdfast.gram_lse(zr, 2.0, True)
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.double().cpu(), want, **tol)
    (a,) = torch.autograd.grad(got.sum(), zc)
    (b,) = torch.autograd.grad(want.sum(), zr)
    torch.testing.assert_close(a.double().cpu(), b, rtol=1e-2 if dtype == torch.float16 else 1e-4, atol=1e-3)
    torch.library.opcheck(torch.ops.gkdfast.gram_lse.default, (zc[:50].detach().requires_grad_(), 2.0, True))
