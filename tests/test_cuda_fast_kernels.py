"""The new CUDA paths (issue 13) against the float64 reference and the legacy kernels.

* spmm sum/mean float32/float64 through cuSPARSE (ATen CSR matmul), max/min on gkdfast's kernel;
* LSP staged (edge stage, segment log-sum-exp, cuSPARSE SpMMs) for the dot-product kernels;
* GSP on tensor-core tiles with the fused epilogue, CRD / infonce all-N and gram_lse with the fused
  log-sum-exp tile kernels.

Each: values and gradients within the current tolerances (TF32 off), within 2^-11 |a| |b| / tau
with TF32 on, two runs bitwise equal, hub rows, empty graphs, int32 / int64 indices, N not a
multiple of the tile (a small GKDFAST_TILE_WORKSPACE_MB), ``GKDFAST_CUDA_IMPL=legacy`` giving the
same answers, and opcheck on CUDA inputs.  All skip without a GPU (CI has none); the device script
(scripts/device_check.sh) runs them.
"""
import pytest
import torch

import gkdfast
from gkdfast import settings
from gkdfast.reference import ops as ref_ops
from gkdfast.reference import structure as ref

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

DEV = "cuda"
GEMM_KERNELS = ["linear", "cosine", "poly", "l2", "rbf"]


def _tf32_fixture(enabled):
    @pytest.fixture
    def fixture():
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = enabled
        yield
        torch.backends.cuda.matmul.allow_tf32 = old
    return fixture


tf32_off = _tf32_fixture(False)
tf32_on = _tf32_fixture(True)
def _graph(n=300, e=3000, hub=True, index_dtype=torch.int64, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    if hub:  # one destination with > 512 in-edges and one source with > 512 out-edges
        dst[: 700] = 7
        src[700:1400] = 11
    return gkdfast.Graph(torch.stack([src, dst]).to(index_dtype), n).to(DEV)


def _grads(out, leaves):
    return torch.autograd.grad(out, leaves)


def _assert_all_close(pairs, dtype):
    """(got, want) pairs within the float32 or float64 tolerance of these tests."""
    tol = dict(rtol=2e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)
    for a, b in pairs:
        torch.testing.assert_close(a, b, **tol)


# ------------------------------------------------------------------------------------------ spmm
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("weighted", [False, True])
def test_spmm_matches_reference_and_legacy(reduce, dtype, index_dtype, weighted):
    graph = _graph(index_dtype=index_dtype)
    x = torch.randn(graph.num_nodes, 33, dtype=dtype, device=DEV, requires_grad=True)
    w = torch.rand(graph.num_edges, dtype=dtype, device=DEV, requires_grad=True) if weighted else None
    gy = torch.randn(graph.num_nodes, 33, dtype=dtype, device=DEV)
    leaves = (x, w) if weighted else (x,)
    out = gkdfast.spmm(graph, x, reduce, edge_weight=w)
    got = _grads((out * gy).sum(), leaves)
    exp = ref_ops.spmm(graph, x, reduce, weight=w)
    want = _grads((exp * gy).sum(), leaves)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, exp, **tol)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)
    with settings.cuda_impl("legacy"):
        old = gkdfast.spmm(graph, x, reduce, edge_weight=w)
    torch.testing.assert_close(out, old, **tol)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_spmm_two_runs_bitwise_equal(reduce):
    graph = _graph(n=2000, e=40000)
    x = torch.randn(graph.num_nodes, 64, device=DEV, requires_grad=True)
    runs = []
    for _ in range(2):
        out = gkdfast.spmm(graph, x, reduce)
        (gx,) = _grads(out.square().sum(), (x,))
        runs.append((out, gx))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_spmm_cusparse_on_rows_with_descending_and_repeated_columns(reduce, weighted):
    """cuSPARSE documents sorted, unique columns per CSR row; a Graph keeps each row's columns in input
    order and keeps repeated edges.  The result must equal gkdfast's own kernel and the reference."""
    n = 64
    dst = torch.arange(n).repeat_interleave(6)
    src = torch.stack([(n - 1 - torch.arange(n)), (n - 1 - torch.arange(n)), torch.arange(n) // 2,
                       torch.arange(n) // 3, torch.arange(n) // 3, torch.zeros(n, dtype=torch.long)], 1).flatten()
    graph = gkdfast.Graph(torch.stack([src, dst]), n).to(DEV)
    assert graph.col[6:12].tolist() == [n - 2, n - 2, 0, 0, 0, 0]  # row 1 in input order: descending, repeated
    x = torch.randn(n, 17, device=DEV, dtype=torch.float64, requires_grad=True)
    w = torch.rand(graph.num_edges, device=DEV, dtype=torch.float64, requires_grad=True) if weighted else None
    leaves = (x, w) if weighted else (x,)
    out = gkdfast.spmm(graph, x, reduce, edge_weight=w)
    got = _grads(out.square().sum(), leaves)
    with settings.cuda_impl("legacy"):
        old = gkdfast.spmm(graph, x, reduce, edge_weight=w)
        want = _grads(old.square().sum(), leaves)
    exp = ref_ops.spmm(graph, x, reduce, weight=w)
    torch.testing.assert_close(out, old, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, exp, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_spmm_empty_graph_and_isolated_rows():
    graph = gkdfast.Graph(torch.empty(2, 0, dtype=torch.long), 5).to(DEV)
    x = torch.randn(5, 4, device=DEV, requires_grad=True)
    for reduce in ("sum", "mean"):
        out = gkdfast.spmm(graph, x, reduce)
        assert torch.equal(out, torch.zeros_like(out))
        (gx,) = _grads(out.sum(), (x,))
        assert torch.equal(gx, torch.zeros_like(gx))


def test_spmm_opcheck_cuda():
    graph = _graph(n=50, e=300, hub=False)
    graph.transpose_csr()
    x = torch.randn(50, 8, device=DEV, requires_grad=True)
    args = (graph.rowptr, graph.col, *graph.transpose_csr(), None, x, "mean")
    torch.library.opcheck(torch.ops.gkdfast.spmm.default, args)


# ------------------------------------------------------------------------------------------ lsp
@pytest.mark.parametrize("kernel", GEMM_KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_lsp_staged_matches_reference_and_legacy(kernel, dtype, index_dtype):
    graph = _graph(index_dtype=index_dtype, seed=1)
    gen = torch.Generator().manual_seed(2)
    s = (0.3 * torch.randn(graph.num_nodes, 24, generator=gen, dtype=dtype)).to(DEV).requires_grad_()
    t = (0.3 * torch.randn(graph.num_nodes, 40, generator=gen, dtype=dtype)).to(DEV).requires_grad_()
    out = gkdfast.losses.lsp(graph, s, t, kernel=kernel, gamma=0.5, tau=0.8)
    got = _grads(out, (s, t))
    exp = ref.lsp(graph, s, t, kernel, 0.5, 0.8, "mean")
    want = _grads(exp, (s, t))
    with settings.cuda_impl("legacy"):
        old = gkdfast.losses.lsp(graph, s, t, kernel=kernel, gamma=0.5, tau=0.8)
        old_g = _grads(old, (s, t))
    _assert_all_close([(out, exp), *zip(got, want), (out, old), *zip(got, old_g)], dtype)


def test_lsp_staged_two_runs_bitwise_equal():
    graph = _graph(n=3000, e=60000, seed=3)
    s = torch.randn(3000, 64, device=DEV, requires_grad=True)
    t = torch.randn(3000, 64, device=DEV, requires_grad=True)
    runs = []
    for _ in range(2):
        out = gkdfast.losses.lsp(graph, s, t, kernel="rbf", gamma=0.05)
        runs.append((out,) + _grads(out, (s, t)))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_lsp_staged_empty_graph():
    graph = gkdfast.Graph(torch.empty(2, 0, dtype=torch.long), 4).to(DEV)
    s = torch.randn(4, 3, device=DEV, requires_grad=True)
    t = torch.randn(4, 3, device=DEV)
    per_node, lse = torch.ops.gkdfast.lsp(graph.rowptr, graph.col, *graph.transpose_csr(), s, t, "rbf", 1.0, 1.0)
    assert torch.equal(per_node, torch.zeros_like(per_node)) and torch.equal(lse, torch.zeros_like(lse))


# ------------------------------------------------------------------------------------------ gsp
def _gsp_mean(s, t, kernel, loss, tau, gamma):
    per_row, _ = torch.ops.gkdfast.gsp_tiled(s, t, kernel, loss, float(gamma), float(tau))
    n = s.size(0)
    return per_row.sum() / (n * n if loss == "mse" else n)


@pytest.mark.parametrize("kernel", GEMM_KERNELS)
@pytest.mark.parametrize("loss", ["mse", "kl"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gsp_tiles_match_reference_and_legacy(kernel, loss, dtype, tf32_off):
    gen = torch.Generator().manual_seed(4)
    s = (0.4 * torch.randn(301, 7, generator=gen, dtype=dtype)).to(DEV).requires_grad_()
    t = (0.4 * torch.randn(301, 12, generator=gen, dtype=dtype)).to(DEV).requires_grad_()
    with settings.tile_workspace(0.1):  # several uneven tiles at N = 301
        out = _gsp_mean(s, t, kernel, loss, 0.7, 0.3)
        got = _grads(out, (s, t))
    exp = ref.gsp(s, t, kernel, loss, 0.7, 0.3)
    want = _grads(exp, (s, t))
    with settings.cuda_impl("legacy"):
        old = _gsp_mean(s, t, kernel, loss, 0.7, 0.3)
    _assert_all_close([(out, exp), *zip(got, want), (out, old)], dtype)


def test_gsp_row_range_matches_reference_rows(tf32_off):
    gen = torch.Generator().manual_seed(5)
    s = torch.randn(200, 9, generator=gen, dtype=torch.float64).to(DEV).requires_grad_()
    t = torch.randn(200, 9, generator=gen, dtype=torch.float64).to(DEV).requires_grad_()
    per_row, _ = torch.ops.gkdfast.gsp_tiled(s, t, "rbf", "kl", 0.5, 0.6, 40, 130)
    got = _grads(per_row.sum(), (s, t))
    exp = ref.gsp_rows(s, t, "rbf", "kl", 0.6, 0.5, 40, 130)
    want = _grads(exp.sum(), (s, t))
    torch.testing.assert_close(per_row, exp, rtol=1e-9, atol=1e-11)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_gsp_tiles_two_runs_bitwise_equal():
    s = torch.randn(5000, 64, device=DEV, requires_grad=True)
    t = torch.randn(5000, 64, device=DEV, requires_grad=True)
    runs = []
    for _ in range(2):
        out = _gsp_mean(s, t, "rbf", "kl", 1.0, 0.02)
        runs.append((out,) + _grads(out, (s, t)))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_gsp_tf32_within_its_bound(tf32_on):
    # Dot products carry a relative error <= 2^-11 |a| |b| with TF32; for rbf / kl at tau the
    # logits move by <= 2 gamma * 2 * 2^-11 |a| |b| / tau, and KL by twice that at most.
    gen = torch.Generator().manual_seed(6)
    s = (0.2 * torch.randn(2000, 64, generator=gen)).to(DEV)
    t = (0.2 * torch.randn(2000, 64, generator=gen)).to(DEV)
    out = _gsp_mean(s, t, "rbf", "kl", 0.5, 0.5)
    exp = ref.gsp(s.double(), t.double(), "rbf", "kl", 0.5, 0.5)
    na = max(s.norm(dim=1).max().item(), t.norm(dim=1).max().item())
    bound = 2 * (2 * 0.5 * 2 * 2.0**-11 * na * na / 0.5) + 1e-5
    assert abs(out.double().item() - exp.item()) <= bound


@pytest.mark.parametrize("kernel,loss", [("rbf", "kl"), ("l2", "mse")])
def test_gsp_distance_kernels_far_from_the_origin_under_tf32(tf32_on, kernel, loss):
    """Rows around 30 with a spread of 0.5: without centring, |a|^2 + |b|^2 - 2 a.b in TF32 (a 2^-11
    relative error on a.b ~ 1.4e4) would swamp distances of order 1."""
    gen = torch.Generator().manual_seed(7)
    s = (0.5 * torch.randn(1500, 32, generator=gen, dtype=torch.float64) + 30.0)
    t = (0.5 * torch.randn(1500, 32, generator=gen, dtype=torch.float64) + 30.0)
    s32 = s.float().to(DEV).requires_grad_()
    out = _gsp_mean(s32, t.float().to(DEV), kernel, loss, 1.0, 0.5)
    (g,) = _grads(out, (s32,))
    s64 = s.clone().requires_grad_()
    exp = ref.gsp(s64, t, kernel, loss, 1.0, 0.5)
    (g_exp,) = _grads(exp, (s64,))
    assert abs(out.double().item() - exp.item()) <= 1e-2 * abs(exp.item())
    assert float((g.double().cpu() - g_exp).abs().max()) <= 2e-2 * float(g_exp.abs().max())


def test_gsp_opcheck_cuda():
    s = torch.randn(40, 5, device=DEV, dtype=torch.float64, requires_grad=True)
    t = torch.randn(40, 6, device=DEV, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.gkdfast.gsp_tiled.default, (s, t, "rbf", "kl", 0.5, 0.7, 0, -1))


# ------------------------------------------------------------------------------ crd / gram_lse
@pytest.mark.parametrize("exclude_self,pos_offset", [(False, 0), (True, 5), (True, -1)])
def test_infonce_fused_tiles_match_dense(exclude_self, pos_offset, tf32_off):
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(777, 16, generator=gen, dtype=torch.float64).to(DEV).requires_grad_()
    c = torch.randn(777, 16, generator=gen, dtype=torch.float64).to(DEV).requires_grad_()
    with settings.tile_workspace(0.5):
        loss, lse = torch.ops.gkdfast.infonce(a, c, 2.0, pos_offset, exclude_self, 0, 0)
        got = _grads(loss.sum() + 0.5 * lse.sum(), (a, c))
    logits = a @ c.t() * 2.0
    if exclude_self:
        logits = logits.masked_fill(torch.eye(777, dtype=torch.bool, device=DEV), float("-inf"))
    exp_lse = torch.logsumexp(logits, 1)
    idx = (torch.arange(777, device=DEV) + pos_offset) % 777
    exp = exp_lse - logits.gather(1, idx.view(-1, 1)).squeeze(1) if pos_offset >= 0 else exp_lse
    want = _grads(exp.sum() + 0.5 * exp_lse.sum(), (a, c))
    torch.testing.assert_close(loss, exp, rtol=1e-9, atol=1e-10)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_gram_lse_fused_tiles_match_dense(exclude_self, tf32_off):
    z = torch.randn(901, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).to(DEV)
    z.requires_grad_()
    w = torch.rand(901, dtype=torch.float64, device=DEV)
    with settings.tile_workspace(0.5):  # 256 x 256 tiles: 4 per side, the last short
        lse = torch.ops.gkdfast.gram_lse(z, 0.9, exclude_self)
        (got,) = _grads((lse * w).sum(), (z,))
    logits = z @ z.t() * 0.9
    if exclude_self:
        logits = logits.masked_fill(torch.eye(901, dtype=torch.bool, device=DEV), float("-inf"))
    exp = torch.logsumexp(logits, 1)
    (want,) = _grads((exp * w).sum(), (z,))
    torch.testing.assert_close(lse, exp, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_crd_tf32_within_its_bound(tf32_on):
    gen = torch.Generator().manual_seed(9)
    s = torch.randn(4096, 64, generator=gen).to(DEV)
    t = torch.randn(4096, 64, generator=gen).to(DEV)
    tau = 0.075
    out = gkdfast.losses.crd(s, t, tau=tau)
    from gkdfast.reference import contrastive as ref_c
    exp = ref_c.crd(s.double(), t.double(), tau=tau)
    # normalised rows: |a||b| = 1, each logit off by <= 2^-11 / tau; a mean of lse - l_pos by twice that
    assert abs(out.double().item() - exp.item()) <= 2 * 2.0**-11 / tau + 1e-5


def test_fused_lse_two_runs_bitwise_equal():
    s = torch.randn(20000, 64, device=DEV, requires_grad=True)
    t = torch.randn(20000, 64, device=DEV, requires_grad=True)
    runs = []
    for _ in range(2):
        out = gkdfast.losses.crd(s, t)
        runs.append((out,) + _grads(out, (s, t)))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
