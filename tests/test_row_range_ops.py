"""Row ranges of the native ops that distributed losses run on one rank: gsp_tiled(row_begin, row_end)
and infonce(row_begin) against the full-N op and the references, with fake kernels (opcheck),
gradients of both sides and bad ranges."""
import pytest
import torch

import gkdfast
from gkdfast.reference import contrastive as rc
from gkdfast.reference import structure as rs

# 150 rows: with a 64-row CPU block, the range [70, 100) leaves one block wholly outside on each side
# (the column-restricted backward) and one block straddling it.
N, R0, R1 = 150, 70, 100


def _pair(n=N, ds=5, dt=7, dtype=torch.float64, seed=2, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, ds, generator=g, dtype=dtype), scale * torch.randn(n, dt, generator=g, dtype=dtype)


@pytest.mark.parametrize("kernel,loss", [("rbf", "kl"), ("cosine", "kl"), ("l2", "mse"), ("poly", "mse"),
                                         ("laplace", "kl"), ("laplace", "mse")])
def test_gsp_tiled_row_range_matches_full_rows_and_gradients(kernel, loss):
    s, t = _pair()
    full_row, full_stats = torch.ops.gkdfast.gsp_tiled(s, t, kernel, loss, 0.3, 0.8)
    row, stats = torch.ops.gkdfast.gsp_tiled(s, t, kernel, loss, 0.3, 0.8, R0, R1)
    torch.testing.assert_close(row, full_row[R0:R1])
    torch.testing.assert_close(stats, full_stats[R0:R1])
    torch.testing.assert_close(row, rs.gsp_rows(s, t, kernel, loss, 0.8, 0.3, R0, R1))
    # gradients of sum_i w_i per_row_i over the range = full backward with w = 0 outside the range
    w = torch.linspace(0.5, 1.5, R1 - R0, dtype=s.dtype)
    w_full = torch.zeros(N, dtype=s.dtype)
    w_full[R0:R1] = w
    got = torch.ops.gkdfast.gsp_tiled_backward(s, t, row, stats, w, kernel, loss, 0.3, 0.8, True, True, R0, R1)
    want = torch.ops.gkdfast.gsp_tiled_backward(s, t, full_row, full_stats, w_full, kernel, loss, 0.3, 0.8, True,
                                                True)
    for a, b in zip(got, want):
        assert a.shape == (N, b.size(1))
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # ... and the reference's autograd through the dense rows
    sr, tr = s.clone().requires_grad_(), t.clone().requires_grad_()
    ref_grads = torch.autograd.grad((rs.gsp_rows(sr, tr, kernel, loss, 0.8, 0.3, R0, R1) * w).sum(), (sr, tr))
    for a, b in zip(got, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_gsp_tiled_row_range_autograd_and_empty_range():
    s, t = (x.requires_grad_() for x in _pair(40))
    row, _ = torch.ops.gkdfast.gsp_tiled(s, t, "rbf", "kl", 0.5, 1.0, 10, 25)
    gs, gt = torch.autograd.grad(row.sum(), (s, t))
    sr, tr = s.detach().requires_grad_(), t.detach().requires_grad_()
    want = torch.autograd.grad(rs.gsp_rows(sr, tr, "rbf", "kl", 1.0, 0.5, 10, 25).sum(), (sr, tr))
    torch.testing.assert_close(gs, want[0])
    torch.testing.assert_close(gt, want[1])
    empty, stats = torch.ops.gkdfast.gsp_tiled(s, t, "rbf", "kl", 0.5, 1.0, 7, 7)
    assert empty.shape == (0,) and stats.shape == (0, 2)


def test_gsp_tiled_row_range_opcheck_and_errors():
    s, t = _pair(20)
    args = (s, t, "rbf", "kl", 0.5, 1.0, 3, 11)
    torch.library.opcheck(torch.ops.gkdfast.gsp_tiled.default, args)
    row, stats = torch.ops.gkdfast.gsp_tiled(*args)
    bargs = (s, t, row, stats, torch.full_like(row, 0.1), "rbf", "kl", 0.5, 1.0, True, True, 3, 11)
    torch.library.opcheck(torch.ops.gkdfast.gsp_tiled_backward.default, bargs)
    for r0, r1 in ((5, 3), (-1, 4), (0, 21)):
        with pytest.raises(ValueError, match="row_begin"):
            torch.ops.gkdfast.gsp_tiled(s, t, "rbf", "kl", 0.5, 1.0, r0, r1)
    with pytest.raises(ValueError, match="rows in the range"):
        torch.ops.gkdfast.gsp_tiled_backward(s, t, row, stats, torch.ones(8, dtype=s.dtype), "rbf", "kl", 0.5, 1.0,
                                             True, True, 3, 12)


INFONCE_ARGS = [(0.5, 0, False, 0, 0), (2.0, 3, True, 0, 0), (1.5, -1, True, 0, 0), (0.7, 0, False, 4, 9),
                (0.7, -1, True, 3, 2)]


@pytest.mark.parametrize("args", INFONCE_ARGS)
def test_infonce_row_begin_matches_the_square_call(args):
    a, c = _pair(23, 4, 4)
    r0, r1 = 6, 17
    loss, lse = torch.ops.gkdfast.infonce(a, c, *args)
    part = torch.ops.gkdfast.infonce(a[r0:r1], c, *args, r0)
    torch.testing.assert_close(part[0], loss[r0:r1])
    torch.testing.assert_close(part[1], lse[r0:r1])
    for x, y in zip(part, rc.infonce(a[r0:r1], c, *args, r0)):
        torch.testing.assert_close(x, y)
    # backward: the range's rows with the full call's gradient restricted to them
    g = torch.randn(r1 - r0, dtype=a.dtype)
    gl = torch.randn(r1 - r0, dtype=a.dtype) * 0.1
    g_full, gl_full = torch.zeros(23, dtype=a.dtype), torch.zeros(23, dtype=a.dtype)
    g_full[r0:r1], gl_full[r0:r1] = g, gl
    da, dc = torch.ops.gkdfast.infonce_backward(a[r0:r1], c, part[1], g, gl, *args, r0)
    da_f, dc_f = torch.ops.gkdfast.infonce_backward(a, c, lse, g_full, gl_full, *args)
    torch.testing.assert_close(da, da_f[r0:r1])
    torch.testing.assert_close(dc, dc_f)


def test_infonce_row_begin_opcheck_and_errors():
    a, c = _pair(12, 4, 4)
    for args in ((0.5, 2, True, 0, 0, 5), (0.7, 0, False, 3, 1, 5)):
        torch.library.opcheck(torch.ops.gkdfast.infonce.default, (a[5:9].clone().requires_grad_(), c, *args))
        loss, lse = torch.ops.gkdfast.infonce(a[5:9], c, *args)
        torch.library.opcheck(torch.ops.gkdfast.infonce_backward.default,
                              (a[5:9], c, lse, torch.ones_like(loss), torch.zeros_like(lse), *args))
    with pytest.raises(RuntimeError, match="row_begin"):
        torch.ops.gkdfast.infonce(a[5:9], c, 1.0, 0, False, 0, 0, 9)
    with pytest.raises(RuntimeError, match="row_begin"):
        torch.ops.gkdfast.infonce(a, c[:5], 1.0, 0, False, 0, 0)


def test_gkdfast_still_calls_the_ops_without_ranges():
    s, t = _pair(30)
    s.requires_grad_()
    gkdfast.losses.gsp(s, t, "rbf", "kl").backward()
    gkdfast.losses.crd(s, torch.randn(30, 5, dtype=s.dtype), num_negatives=4, seed=1).backward()
    assert s.grad is not None
