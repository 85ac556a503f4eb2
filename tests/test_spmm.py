"""gkdfast.spmm: every reduction against hand-computed answers, the reference backend and dense
algebra; gradients (gradcheck / gradgradcheck / opcheck), determinism, bad input, dtype fallback."""
from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gkdfast
from gkdfast import Graph, _backend
from gkdfast.ops import graph_tensors
from conftest import HAS_CUDA, dense_adj, dense_reduce, random_edge_index, tiny_graphs, TINY_IDS

REDUCES = ["sum", "mean", "max", "min"]
NATIVE = _backend.native_loaded()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not loaded")


def spmm_reference(monkeypatch, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setenv("GKDFAST_BACKEND", "reference")
        return gkdfast.spmm(*args, **kwargs)


# ------------------------------------------------------------------------------ hand-checked
def test_docstring_example():
    g = Graph(torch.tensor([[0, 1, 2], [1, 2, 1]]))
    out = gkdfast.spmm(g, torch.eye(3), "sum")
    assert torch.equal(out, torch.tensor([[0.0, 0, 0], [1, 0, 1], [0, 1, 0]]))


def test_hand_computed_small():
    # edges 0->2 (w 2), 1->2 (w -1), 2->0 (w 3); node 1 has no in-edge
    g = Graph(torch.tensor([[0, 1, 2], [2, 2, 0]]), 3)
    x = torch.tensor([[1.0, -2.0], [4.0, 5.0], [0.5, 0.0]])
    w = torch.tensor([2.0, -1.0, 3.0])
    assert torch.equal(gkdfast.spmm(g, x, "sum"), torch.tensor([[0.5, 0.0], [0, 0], [5.0, 3.0]]))
    assert torch.equal(gkdfast.spmm(g, x, "mean"), torch.tensor([[0.5, 0.0], [0, 0], [2.5, 1.5]]))
    assert torch.equal(gkdfast.spmm(g, x, "max"), torch.tensor([[0.5, 0.0], [0, 0], [4.0, 5.0]]))
    assert torch.equal(gkdfast.spmm(g, x, "min"), torch.tensor([[0.5, 0.0], [0, 0], [1.0, -2.0]]))
    assert torch.equal(gkdfast.spmm(g, x, "sum", w), torch.tensor([[1.5, 0.0], [0, 0], [-2.0, -9.0]]))
    assert torch.equal(gkdfast.spmm(g, x, "max", w), torch.tensor([[1.5, 0.0], [0, 0], [2.0, -4.0]]))
    assert torch.equal(gkdfast.spmm(g, x, "min", w), torch.tensor([[1.5, 0.0], [0, 0], [-4.0, -5.0]]))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("name,ei,n", tiny_graphs(), ids=TINY_IDS)
def test_tiny_graphs(name, ei, n, index_dtype, reduce, weighted, device, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    w = torch.rand(ei.size(1), generator=gen, dtype=torch.float64) + 0.5 if weighted else None
    expected = dense_reduce(ei, n, x, reduce, w)
    g = Graph(ei.to(index_dtype), n).to(device)
    xd, wd = x.to(device), (w.to(device) if w is not None else None)
    out = gkdfast.spmm(g, xd, reduce, wd)
    assert out.shape == (n, 5) and out.dtype == torch.float64
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-12, atol=1e-12)
    ref = spmm_reference(monkeypatch, g, xd, reduce, wd)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    # float32 too
    out32 = gkdfast.spmm(g, xd.float(), reduce, None if wd is None else wd.float())
    torch.testing.assert_close(out32.cpu().double(), expected, rtol=1e-5, atol=1e-5)


def test_graph_edge_weight_is_default():
    ei = torch.tensor([[2, 0, 1], [0, 1, 1]])
    w = torch.tensor([2.0, 3.0, -1.0])
    g = Graph(ei, 3, edge_weight=w)
    x = torch.randn(3, 4)
    torch.testing.assert_close(gkdfast.spmm(g, x), gkdfast.spmm(Graph(ei, 3), x, "sum", w))
    torch.testing.assert_close(gkdfast.spmm(g, x), (dense_adj(ei, 3, w) @ x.double()).float())


def test_high_degree_hub_matches_dense():
    n = 3000
    src = torch.arange(1, n)
    ei = torch.stack([torch.cat([src, torch.tensor([0])]), torch.cat([torch.zeros(n - 1, dtype=torch.long),
                                                                     torch.tensor([5])])])
    x = torch.randn(n, 33, dtype=torch.float64)
    g = Graph(ei, n)
    out = gkdfast.spmm(g, x, "sum")
    torch.testing.assert_close(out[0], x[1:].sum(0))
    torch.testing.assert_close(out[5], x[0])
    assert torch.equal(gkdfast.spmm(g, x, "max")[0], x[1:].max(0).values)
    assert torch.equal(gkdfast.spmm(g, x, "min")[0], x[1:].min(0).values)


def test_max_ties_go_to_first_edge():
    # duplicate edges carry equal messages: the gradient must go to exactly one (the first) edge
    g = Graph(torch.tensor([[1, 1, 0], [0, 0, 0]]), 2)
    x = torch.tensor([[1.0], [3.0]], dtype=torch.float64, requires_grad=True)
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    out = gkdfast.spmm(g, x, "max", w)
    out.sum().backward()
    assert out[0].item() == 3.0
    assert w.grad.tolist() == [3.0, 0.0, 0.0]
    assert x.grad.tolist() == [[0.0], [1.0]]


@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_norm_vs_dense(weighted, device):
    ei = torch.tensor([[0, 1, 2, 3, 3, 1], [1, 2, 0, 0, 1, 1]])
    n = 5
    x = torch.randn(n, 4, dtype=torch.float64)
    w = torch.rand(ei.size(1), dtype=torch.float64) + 0.1 if weighted else None
    a = dense_adj(ei, n, w) + torch.eye(n, dtype=torch.float64)  # A[i, j]: edge j -> i
    dinv = a.sum(1).rsqrt()  # deg_i = 1 + sum of in-weights
    expected = dinv[:, None] * a * dinv[None, :] @ x
    g = Graph(ei, n).to(device)
    out = gkdfast.spmm(g, x.to(device), "sum", None if w is None else w.to(device), norm="gcn")
    torch.testing.assert_close(out.cpu(), expected)
    # and via the explicit coefficients
    g2, coef = gkdfast.gcn_norm(g.cpu(), w, dtype=torch.float64)
    torch.testing.assert_close(gkdfast.spmm(g2, x, "sum", coef), expected)


def test_gcn_norm_gradients():
    g = Graph(torch.tensor([[0, 1, 2, 3], [1, 2, 0, 0]]), 4)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(4, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: gkdfast.spmm(g, x, "sum", w, norm="gcn"), (x, w))


# ------------------------------------------------------------------------------ random graphs
@given(n=st.integers(1, 40), e=st.integers(0, 200), d=st.integers(1, 19), seed=st.integers(0, 2**16),
       reduce=st.sampled_from(REDUCES), weighted=st.booleans(), int32=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_random_vs_reference(n, e, d, seed, reduce, weighted, int32, dtype):
    ei = random_edge_index(n, e, seed, torch.int32 if int32 else torch.int64)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    w = torch.randn(e, generator=gen, dtype=dtype) if weighted else None
    g = Graph(ei, n)
    out = gkdfast.spmm(g, x, reduce, w)
    ref = gkdfast.reference.spmm(g, x, reduce, g.to_csr_order(w) if w is not None else None)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    # max/min are selections: exactly equal
    if reduce in ("max", "min"):
        assert torch.equal(out, ref)


def test_non_contiguous_inputs():
    n, e = 30, 150
    ei_wide = random_edge_index(n, 2 * e, 3)
    ei = ei_wide[:, ::2]  # strided edge_index
    assert not ei.is_contiguous()
    x_big = torch.randn(2 * n, 16, dtype=torch.float64)
    x = x_big[::2, ::2]  # strided features [n, 8]
    w = torch.rand(2 * e, dtype=torch.float64)[::2]
    g = Graph(ei, n)
    for reduce in REDUCES:
        out = gkdfast.spmm(g, x, reduce, w)
        torch.testing.assert_close(out, gkdfast.spmm(g, x.contiguous(), reduce, w.contiguous()), rtol=0, atol=0)
        torch.testing.assert_close(out, dense_reduce(ei, n, x, reduce, w))
    xt = torch.randn(8, n, dtype=torch.float64).t()  # transposed (column-major) features
    torch.testing.assert_close(gkdfast.spmm(g, xt, "sum"), dense_adj(ei, n) @ xt)


def test_zero_width_features():
    g = Graph(torch.tensor([[0, 1], [1, 0]]))
    for reduce in REDUCES:
        assert gkdfast.spmm(g, torch.zeros(2, 0), reduce).shape == (2, 0)


# ------------------------------------------------------------------------------ gradients
def _grad_graph():
    # isolated node 5, self-loop on 1, duplicate edge 0->1, hub-ish node 2
    return Graph(torch.tensor([[0, 0, 1, 3, 4, 0, 1, 2, 3], [1, 1, 1, 2, 2, 2, 2, 0, 4]]), 6)


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck(reduce, weighted, device):
    g = _grad_graph().to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    inputs = [x]
    if weighted:
        inputs.append((torch.rand(g.num_edges, generator=gen, dtype=torch.float64) + 0.5).to(device)
                      .requires_grad_())
        fn = lambda x, w: gkdfast.spmm(g, x, reduce, w)  # noqa: E731
    else:
        fn = lambda x: gkdfast.spmm(g, x, reduce)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(inputs))


@pytest.mark.parametrize("reduce", REDUCES)
def test_gradgradcheck(reduce):
    # max/min: the backward op has its own autograd formula (their gradients are linear in grad_out)
    g = _grad_graph()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(g.num_edges, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, w: gkdfast.spmm(g, x, reduce, w), (x, w))
    assert torch.autograd.gradgradcheck(lambda x: gkdfast.spmm(g, x, reduce), (x,))


@pytest.mark.parametrize("reduce", REDUCES)
def test_gradients_match_reference(reduce, monkeypatch):
    ei = random_edge_index(50, 300, 7)
    g = Graph(ei, 50)
    x0 = torch.randn(50, 8, dtype=torch.float64)
    w0 = torch.randn(300, dtype=torch.float64)
    grads = []
    for backend in ("auto", "reference"):
        monkeypatch.setenv("GKDFAST_BACKEND", backend)
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = gkdfast.spmm(g, x, reduce, w)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float64)).view_as(out))
        grads.append((out.detach(), x.grad, w.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@needs_native
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_spmm(reduce, weighted, requires_grad):
    g = _grad_graph()
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=requires_grad)
    w = torch.rand(g.num_edges, dtype=torch.float64, requires_grad=requires_grad) if weighted else None
    args = (*graph_tensors(g, True), w, x, reduce)
    torch.library.opcheck(torch.ops.gkdfast.spmm.default, args)


@needs_native
def test_opcheck_spmm_no_transpose():
    g = _grad_graph()
    args = (*graph_tensors(g, False), None, torch.randn(6, 4), "sum")
    torch.library.opcheck(torch.ops.gkdfast.spmm.default, args)


@needs_native
@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_spmm_arg_backward(reduce, weighted, requires_grad):
    g = _grad_graph()
    x = torch.randn(6, 4, dtype=torch.float64)
    w = torch.rand(g.num_edges, dtype=torch.float64) if weighted else None
    tensors = graph_tensors(g, True)
    _, arg = torch.ops.gkdfast.spmm(*tensors, w, x, reduce)
    x.requires_grad_(requires_grad)
    if w is not None:
        w.requires_grad_(requires_grad)
    grad_out = torch.randn(6, 4, dtype=torch.float64, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.gkdfast.spmm_arg_backward.default, (*tensors, w, x, arg, grad_out))


@pytest.mark.parametrize("reduce", REDUCES)
def test_deterministic(reduce, device):
    # big enough that the CPU kernel actually runs in parallel when threads are available
    n, e = 2000, 40000
    g = Graph(random_edge_index(n, e, 11), n).to(device)
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(n, 32, generator=gen).to(device)
    w0 = torch.randn(e, generator=gen).to(device)
    gout = torch.randn(n, 32, generator=gen).to(device)
    runs = []
    old = torch.get_num_threads()
    try:
        for threads in (2, 2, 1):
            torch.set_num_threads(threads)
            x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
            out = gkdfast.spmm(g, x, reduce, w)
            out.backward(gout)
            runs.append((out.detach(), x.grad, w.grad))
    finally:
        torch.set_num_threads(old)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------ bad input
def test_bad_input():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    x = torch.randn(3, 4)
    with pytest.raises(TypeError, match="Graph"):
        gkdfast.spmm(torch.tensor([[0, 1], [1, 2]]), x)
    with pytest.raises(ValueError, match="3 nodes"):
        gkdfast.spmm(g, torch.randn(4, 4))
    with pytest.raises(ValueError, match="2-D"):
        gkdfast.spmm(g, torch.randn(3))
    with pytest.raises(TypeError, match="floating"):
        gkdfast.spmm(g, torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="tensor"):
        gkdfast.spmm(g, [[1.0]] * 3)
    with pytest.raises(ValueError, match="unknown reduce"):
        gkdfast.spmm(g, x, "prod")
    with pytest.raises(ValueError, match="num_edges=2"):
        gkdfast.spmm(g, x, "sum", torch.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        gkdfast.spmm(g, x, "sum", torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown norm"):
        gkdfast.spmm(g, x, "sum", norm="sym")
    with pytest.raises(ValueError, match="reduce='sum'"):
        gkdfast.spmm(g, x, "max", norm="gcn")
    # device mismatch (meta stands in for a second device on CPU-only machines)
    with pytest.raises(ValueError, match="device|is on"):
        gkdfast.spmm(g, torch.randn(3, 4, device="meta"))
    with pytest.raises(ValueError, match="is on"):
        gkdfast.spmm(g, x, "sum", torch.ones(2, device="meta"))


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.cuda
def test_cuda_device_mismatch():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    with pytest.raises(ValueError, match="is on"):
        gkdfast.spmm(g, torch.randn(3, 4, device="cuda"))


@needs_native
def test_native_op_rejects_bad_arguments():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    t = graph_tensors(g, True)
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="unknown reduce"):
        torch.ops.gkdfast.spmm(*t, None, x, "prod")
    with pytest.raises(ValueError, match="rows"):
        torch.ops.gkdfast.spmm(*t, None, torch.randn(5, 4), "sum")
    with pytest.raises(TypeError, match="dtype"):
        torch.ops.gkdfast.spmm(*t, torch.ones(2, dtype=torch.float64), x, "sum")
    with pytest.raises(ValueError, match="edge_weight"):
        torch.ops.gkdfast.spmm(*t, torch.ones(7), x, "sum")
    with pytest.raises(TypeError, match="index dtype"):
        torch.ops.gkdfast.spmm(t[0].int(), t[1].long(), *t[2:], None, x, "sum")
    with pytest.raises(ValueError, match="transposed"):
        torch.ops.gkdfast.spmm(t[0], t[1], t[2][:-1], t[3], t[4], None, x, "sum")


# ------------------------------------------------------------------------------ backends & dtypes
@pytest.mark.parametrize("reduce", REDUCES)
def test_reference_env_same_answers(reduce, monkeypatch):
    g = Graph(random_edge_index(40, 200, 2), 40)
    x = torch.randn(40, 6, dtype=torch.float64)
    w = torch.randn(200, dtype=torch.float64)
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    assert _backend.choose("spmm", torch.device("cpu"), torch.float64) == "reference"
    ref = gkdfast.spmm(g, x, reduce, w)
    monkeypatch.delenv("GKDFAST_BACKEND")
    if NATIVE:
        assert _backend.choose("spmm", torch.device("cpu"), torch.float64) == "cpu"
    torch.testing.assert_close(gkdfast.spmm(g, x, reduce, w), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_cpu_falls_back_to_reference(dtype):
    info = gkdfast.explain("spmm", "cpu", dtype)
    assert info["chosen"] == "reference"
    assert any(str(dtype).replace("torch.", "") in r for r in info["not_used"]["cpu"])
    g = Graph(torch.tensor([[0, 1, 2], [1, 2, 1]]))
    x = torch.randn(3, 4)
    for reduce in REDUCES:
        out = gkdfast.spmm(g, x.to(dtype), reduce)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), gkdfast.spmm(g, x.to(dtype).float(), reduce), rtol=2e-2, atol=2e-2)


def test_native_mode_raises_instead_of_falling_back(monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", "native")
    g = Graph(torch.tensor([[0, 1], [1, 0]]))
    with pytest.raises(NotImplementedError, match="float16"):
        gkdfast.spmm(g, torch.randn(2, 3, dtype=torch.float16))


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduce", REDUCES)
def test_cuda_low_precision_error_bound(dtype, reduce, monkeypatch):
    """Kernel error vs a float64 reference is at most 2x the reference's own error in that dtype."""
    n, e = 3000, 60000
    g = Graph(random_edge_index(n, e, 4), n).to("cuda")
    x = torch.randn(n, 64, device="cuda")
    w = torch.rand(e, device="cuda")
    truth = gkdfast.reference.spmm(g, x.double(), reduce, g.to_csr_order(w.double()))
    assert gkdfast.explain("spmm", "cuda", dtype)["chosen"] == "cuda"
    out = gkdfast.spmm(g, x.to(dtype), reduce, w.to(dtype))
    ref_low = spmm_reference(monkeypatch, g, x.to(dtype), reduce, w.to(dtype))
    err_kernel = (out.double() - truth).abs().max().item()
    err_ref = (ref_low.double() - truth).abs().max().item()
    assert err_kernel <= 2 * err_ref + 1e-6, (err_kernel, err_ref)


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("name,ei,n", tiny_graphs(), ids=TINY_IDS)
def test_tiny_graph_gradients_vs_reference(name, ei, n, reduce, device, monkeypatch):
    g = Graph(ei, n).to(device)
    results = []
    for backend in ("auto", "reference"):
        monkeypatch.setenv("GKDFAST_BACKEND", backend)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        w = torch.rand(ei.size(1), generator=gen, dtype=torch.float64).to(device).requires_grad_()
        out = gkdfast.spmm(g, x, reduce, w)
        out.backward(torch.arange(out.numel(), dtype=out.dtype, device=device).view_as(out))
        assert x.grad is not None and w.grad is not None  # zero, never missing, on empty graphs too
        results.append((out.detach(), x.grad, w.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_gcn_norm_gives_zero_to_a_node_whose_degree_is_not_positive(backend):
    # Negative weights cancelling the self-loop (deg 1 - 0.5 - 0.5 = 0) made the coefficient 1/sqrt(tiny):
    # rows of 8.5e37, inf for features above about 4.
    from gkdfast import _backend

    g = gkdfast.Graph(torch.tensor([[1, 2, 0], [0, 0, 1]]), 3)
    w = torch.tensor([-0.5, -0.5, 1.0], requires_grad=True)
    x = torch.ones(3, 1)
    with _backend.forced(backend) if backend == "reference" else contextlib.nullcontext():
        out = gkdfast.spmm(g, x, "sum", edge_weight=w, norm="gcn")
        out.sum().backward()
    torch.testing.assert_close(out, torch.tensor([[0.0], [0.5], [1.0]]))
    assert torch.isfinite(w.grad).all()
    _, coef = gkdfast.gcn_norm(g, torch.tensor([-2.0, 0.5, 1.0]))  # deg 0: 1 - 2 + 0.5 = -0.5
    assert torch.isfinite(coef).all() and coef[:2].abs().sum() == 0


def test_sum_keeps_no_input_for_backward_and_max_makes_no_int64_zeros():
    """helper 117: a sum/mean spmm kept its [N, d] input for a backward that never reads it (one N·d per
    layer), and a max/min backward made an [N, d] int64 zeros tensor as the arg output's gradient."""
    from torch.utils._python_dispatch import TorchDispatchMode

    g = gkdfast.Graph(torch.randint(0, 50, (2, 300)), 50)
    x = torch.randn(50, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = gkdfast.spmm(g, x, "sum")
    assert not any(t.data_ptr() == x.data_ptr() for t in saved)
    out.sum().backward()

    class Int64Made(TorchDispatchMode):
        made = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            r = func(*args, **(kwargs or {}))
            if isinstance(r, torch.Tensor) and r.dtype == torch.int64 and r.numel() == 50 * 8:
                self.made.append(str(func))
            return r

    out = gkdfast.spmm(g, x, "max")
    with Int64Made():
        out.sum().backward()
    assert Int64Made.made == []
