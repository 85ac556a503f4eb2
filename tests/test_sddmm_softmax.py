"""gkdfast.sddmm and gkdfast.edge_softmax ([E] and [E, H] scores): hand-checked answers, reference,
gradients (gradcheck / gradgradcheck / opcheck), determinism, bad input and dtype fallback."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gkdfast
from gkdfast import Graph, _backend
from gkdfast.ops import graph_tensors
from conftest import HAS_CUDA, random_edge_index, tiny_graphs, TINY_IDS

NATIVE = _backend.native_loaded()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not loaded")


def loop_sddmm(ei, a, b):
    return torch.stack([a[int(i)] @ b[int(j)] for j, i in ei.t()]) if ei.size(1) else a.new_zeros(0)


def loop_softmax(ei, n, s):
    s2 = s if s.dim() == 2 else s.unsqueeze(-1)
    out = torch.zeros_like(s2)
    for i in range(n):
        es = (ei[1] == i).nonzero().flatten()
        if es.numel():
            out[es] = torch.softmax(s2[es], 0)
    return out if s.dim() == 2 else out.squeeze(-1)


def _grad_graph():
    return Graph(torch.tensor([[0, 0, 1, 3, 4, 0, 1, 2, 3], [1, 1, 1, 2, 2, 2, 2, 0, 4]]), 6)


# ============================================================================== sddmm
def test_sddmm_docstring_example():
    g = Graph(torch.tensor([[0, 1], [1, 0]]))
    out = gkdfast.sddmm(g, torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]))
    assert torch.equal(out, torch.tensor([6.0, 4.0]))


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("name,ei,n", tiny_graphs(), ids=TINY_IDS)
def test_sddmm_tiny(name, ei, n, index_dtype, device, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, 7, generator=gen, dtype=torch.float64)
    b = torch.randn(n, 7, generator=gen, dtype=torch.float64)
    g = Graph(ei.to(index_dtype), n).to(device)
    out = gkdfast.sddmm(g, a.to(device), b.to(device))
    assert out.shape == (ei.size(1),)
    torch.testing.assert_close(out.cpu(), loop_sddmm(ei, a, b), rtol=1e-12, atol=1e-12)
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    torch.testing.assert_close(gkdfast.sddmm(g, a.to(device), b.to(device)), out, rtol=1e-12, atol=1e-12)


@given(n=st.integers(1, 40), e=st.integers(0, 200), d=st.integers(1, 37), seed=st.integers(0, 2**16),
       int32=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_sddmm_random_vs_reference(n, e, d, seed, int32, dtype):
    ei = random_edge_index(n, e, seed, torch.int32 if int32 else torch.int64)
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype)
    g = Graph(ei, n)
    out = gkdfast.sddmm(g, a, b)
    expected = g.from_csr_order(gkdfast.reference.sddmm(g, a, b))
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)


def test_sddmm_non_contiguous():
    n = 20
    ei = random_edge_index(n, 160, 1)[:, ::2]
    a = torch.randn(n, 12, dtype=torch.float64)[:, ::2]
    b = torch.randn(6, n, dtype=torch.float64).t()
    g = Graph(ei, n)
    torch.testing.assert_close(gkdfast.sddmm(g, a, b), loop_sddmm(ei, a, b))


@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_sddmm_gradcheck(which, device):
    g = _grad_graph().to(device)
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_(which in ("a", "both"))
    b = torch.randn(6, 4, generator=gen, dtype=torch.float64).to(device).requires_grad_(which in ("b", "both"))
    assert torch.autograd.gradcheck(lambda a, b: gkdfast.sddmm(g, a, b), (a, b))


def test_sddmm_gradgradcheck():
    g = _grad_graph()
    a = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda a, b: gkdfast.sddmm(g, a, b), (a, b))


def test_sddmm_same_tensor_both_sides():
    # a is b (attention-style self similarity): gradient is the sum of both paths
    g = _grad_graph()
    h = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: gkdfast.sddmm(g, h, h), (h,))


@needs_native
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_sddmm(requires_grad):
    g = _grad_graph()
    a = torch.randn(6, 5, dtype=torch.float64, requires_grad=requires_grad)
    b = torch.randn(6, 5, dtype=torch.float64, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.gkdfast.sddmm.default, (*graph_tensors(g, True), a, b))


def test_sddmm_deterministic(device):
    n, e = 2000, 40000
    g = Graph(random_edge_index(n, e, 8), n).to(device)
    a0, b0 = torch.randn(n, 32).to(device), torch.randn(n, 32).to(device)
    gout = torch.randn(e).to(device)
    runs = []
    old = torch.get_num_threads()
    try:
        for threads in (2, 2, 1):
            torch.set_num_threads(threads)
            a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
            out = gkdfast.sddmm(g, a, b)
            out.backward(gout)
            runs.append((out.detach(), a.grad, b.grad))
    finally:
        torch.set_num_threads(old)
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)


def test_sddmm_bad_input():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    a = torch.randn(3, 4)
    with pytest.raises(TypeError, match="Graph"):
        gkdfast.sddmm(None, a, a)
    with pytest.raises(ValueError, match="same width"):
        gkdfast.sddmm(g, a, torch.randn(3, 5))
    with pytest.raises(TypeError, match="dtypes"):
        gkdfast.sddmm(g, a, a.double())
    with pytest.raises(ValueError, match="3 nodes"):
        gkdfast.sddmm(g, a, torch.randn(2, 4))
    with pytest.raises(ValueError, match="2-D"):
        gkdfast.sddmm(g, torch.randn(3), torch.randn(3))
    with pytest.raises(TypeError, match="floating"):
        gkdfast.sddmm(g, torch.ones(3, 4, dtype=torch.int64), torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="is on"):
        gkdfast.sddmm(g, a, torch.randn(3, 4, device="meta"))


@needs_native
def test_sddmm_native_op_rejects_bad_arguments():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    t = graph_tensors(g, False)
    with pytest.raises(ValueError, match="same width"):
        torch.ops.gkdfast.sddmm(*t, torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(TypeError, match="dtypes"):
        torch.ops.gkdfast.sddmm(*t, torch.randn(3, 4), torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="rows"):
        torch.ops.gkdfast.sddmm(*t, torch.randn(4, 4), torch.randn(4, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sddmm_low_precision_cpu_falls_back(dtype):
    assert gkdfast.explain("sddmm", "cpu", dtype)["chosen"] == "reference"
    g = _grad_graph()
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    out = gkdfast.sddmm(g, a.to(dtype), b.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), gkdfast.sddmm(g, a, b), rtol=5e-2, atol=5e-2)


def test_sddmm_reference_env(monkeypatch):
    g = Graph(random_edge_index(30, 100, 5), 30)
    a, b = torch.randn(30, 9, dtype=torch.float64), torch.randn(30, 9, dtype=torch.float64)
    native = gkdfast.sddmm(g, a, b)
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    torch.testing.assert_close(gkdfast.sddmm(g, a, b), native, rtol=1e-12, atol=1e-12)


# ============================================================================== edge_softmax
def test_softmax_docstring_example():
    g = Graph(torch.tensor([[0, 1], [2, 2]]))
    assert torch.equal(gkdfast.edge_softmax(g, torch.tensor([0.0, 0.0])), torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("heads", [None, 1, 3])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("name,ei,n", tiny_graphs(), ids=TINY_IDS)
def test_softmax_tiny(name, ei, n, index_dtype, heads, device, monkeypatch):
    shape = (ei.size(1),) if heads is None else (ei.size(1), heads)
    s = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    g = Graph(ei.to(index_dtype), n).to(device)
    out = gkdfast.edge_softmax(g, s.to(device))
    assert out.shape == s.shape
    torch.testing.assert_close(out.cpu(), loop_softmax(ei, n, s), rtol=1e-12, atol=1e-12)
    # rows with in-edges sum to one per head
    dst = ei[1]
    sums = torch.zeros((n,) + shape[1:], dtype=torch.float64).index_add(0, dst, out.cpu())
    has = torch.bincount(dst, minlength=n) > 0
    torch.testing.assert_close(sums[has], torch.ones_like(sums[has]))
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    torch.testing.assert_close(gkdfast.edge_softmax(g, s.to(device)), out, rtol=1e-12, atol=1e-12)


def test_softmax_large_scores_are_stable():
    g = Graph(torch.tensor([[0, 1, 2], [3, 3, 3]]))
    out = gkdfast.edge_softmax(g, torch.tensor([1000.0, 1000.0, -1000.0]))
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5, 0.0]))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_softmax_fully_masked_row_gives_zero(backend, monkeypatch):
    monkeypatch.setenv("GKDFAST_BACKEND", backend)
    g = Graph(torch.tensor([[0, 1, 2, 0], [1, 1, 2, 2]]), 3)
    s = torch.tensor([float("-inf"), float("-inf"), 1.0, float("-inf")], requires_grad=True)
    out = gkdfast.edge_softmax(g, s)
    assert out.tolist() == [0.0, 0.0, 1.0, 0.0]
    out.backward(torch.ones(4))
    assert not torch.isnan(s.grad).any()


@given(n=st.integers(1, 40), e=st.integers(0, 200), heads=st.sampled_from([None, 1, 2, 4]),
       seed=st.integers(0, 2**16), int32=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_softmax_random_vs_reference(n, e, heads, seed, int32, dtype):
    ei = random_edge_index(n, e, seed, torch.int32 if int32 else torch.int64)
    shape = (e,) if heads is None else (e, heads)
    s = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 4
    g = Graph(ei, n)
    out = gkdfast.edge_softmax(g, s)
    expected = g.from_csr_order(gkdfast.reference.edge_softmax(g, g.to_csr_order(s)))
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)


def test_softmax_non_contiguous():
    n = 12
    ei = random_edge_index(n, 80, 2)
    g = Graph(ei, n)
    s = torch.randn(3, 80, dtype=torch.float64).t()  # [E, H] column-major
    torch.testing.assert_close(gkdfast.edge_softmax(g, s), loop_softmax(ei, n, s))
    s1 = torch.randn(160, dtype=torch.float64)[::2]
    torch.testing.assert_close(gkdfast.edge_softmax(g, s1), loop_softmax(ei, n, s1))


@pytest.mark.parametrize("heads", [None, 3])
def test_softmax_gradcheck(heads, device):
    g = _grad_graph().to(device)
    shape = (g.num_edges,) if heads is None else (g.num_edges, heads)
    s = torch.randn(shape, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: gkdfast.edge_softmax(g, s), (s,))


@pytest.mark.parametrize("heads", [None, 2])
def test_softmax_gradgradcheck(heads):
    # edge_softmax_backward has its own autograd formula, so second derivatives are exact
    g = _grad_graph()
    shape = (g.num_edges,) if heads is None else (g.num_edges, heads)
    s = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda s: gkdfast.edge_softmax(g, s), (s,))


@needs_native
@pytest.mark.parametrize("heads", [None, 2])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_edge_softmax(heads, requires_grad):
    g = _grad_graph()
    shape = (g.num_edges,) if heads is None else (g.num_edges, heads)
    s = torch.randn(shape, dtype=torch.float64, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.gkdfast.edge_softmax.default, (g.rowptr, s))


@needs_native
@pytest.mark.parametrize("heads", [None, 2])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_edge_softmax_backward(heads, requires_grad):
    g = _grad_graph()
    shape = (g.num_edges,) if heads is None else (g.num_edges, heads)
    y = torch.ops.gkdfast.edge_softmax(g.rowptr, torch.randn(shape, dtype=torch.float64))
    torch.library.opcheck(torch.ops.gkdfast.edge_softmax_backward.default,
                          (g.rowptr, y.requires_grad_(requires_grad),
                           torch.randn(shape, dtype=torch.float64, requires_grad=requires_grad)))


@pytest.mark.parametrize("heads", [None, 4])
def test_softmax_deterministic(heads, device):
    n, e = 2000, 60000
    g = Graph(random_edge_index(n, e, 9), n).to(device)
    shape = (e,) if heads is None else (e, heads)
    s0, gout = torch.randn(shape).to(device), torch.randn(shape).to(device)
    runs = []
    old = torch.get_num_threads()
    try:
        for threads in (2, 2, 1):
            torch.set_num_threads(threads)
            s = s0.clone().requires_grad_()
            out = gkdfast.edge_softmax(g, s)
            out.backward(gout)
            runs.append((out.detach(), s.grad))
    finally:
        torch.set_num_threads(old)
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)


def test_softmax_bad_input():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    with pytest.raises(TypeError, match="Graph"):
        gkdfast.edge_softmax("g", torch.randn(2))
    with pytest.raises(ValueError, match="num_edges=2"):
        gkdfast.edge_softmax(g, torch.randn(3))
    with pytest.raises(ValueError, match="num_edges"):
        gkdfast.edge_softmax(g, torch.randn(2, 2, 2))
    with pytest.raises(TypeError, match="floating"):
        gkdfast.edge_softmax(g, torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="is on"):
        gkdfast.edge_softmax(g, torch.randn(2, device="meta"))
    with pytest.raises(TypeError, match="tensor"):
        gkdfast.edge_softmax(g, [0.0, 1.0])


@needs_native
def test_softmax_native_op_rejects_bad_arguments():
    g = Graph(torch.tensor([[0, 1], [1, 2]]), 3)
    with pytest.raises(ValueError, match="edges"):
        torch.ops.gkdfast.edge_softmax(g.rowptr, torch.randn(5))
    with pytest.raises(ValueError):
        torch.ops.gkdfast.edge_softmax(g.rowptr, torch.randn(2, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        torch.ops.gkdfast.edge_softmax_backward(g.rowptr, torch.rand(2), torch.rand(3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmax_low_precision_cpu_falls_back(dtype):
    info = gkdfast.explain("edge_softmax", "cpu", dtype)
    assert info["chosen"] == "reference" and info["not_used"]["cpu"]
    g = _grad_graph()
    s = torch.randn(g.num_edges, 2)
    out = gkdfast.edge_softmax(g, s.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), gkdfast.edge_softmax(g, s), rtol=2e-2, atol=2e-2)


# ============================================================================== CUDA low precision
@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_low_precision_error_bound(dtype, monkeypatch):
    """Kernel error vs a float64 reference is at most 2x the reference's own error in that dtype."""
    n, e = 3000, 60000
    g = Graph(random_edge_index(n, e, 6), n).to("cuda")
    a, b = torch.randn(n, 64, device="cuda"), torch.randn(n, 64, device="cuda")
    s = torch.randn(e, 4, device="cuda") * 3
    cases = [
        (lambda: gkdfast.sddmm(g, a.to(dtype), b.to(dtype)), lambda: gkdfast.sddmm(g, a.double(), b.double())),
        (lambda: gkdfast.edge_softmax(g, s.to(dtype)), lambda: gkdfast.edge_softmax(g, s.double())),
    ]
    for low, truth_fn in cases:
        monkeypatch.delenv("GKDFAST_BACKEND", raising=False)
        out = low()
        truth = truth_fn()
        monkeypatch.setenv("GKDFAST_BACKEND", "reference")
        ref_low = low()
        err_kernel = (out.double() - truth).abs().max().item()
        err_ref = (ref_low.double() - truth).abs().max().item()
        assert err_kernel <= 2 * err_ref + 1e-6, (err_kernel, err_ref)
