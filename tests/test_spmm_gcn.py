"""gkdfast::spmm_gcn, the fused GCN propagation behind ``spmm(..., norm="gcn")``: bitwise the composite
``dinv * (spmm(x * dinv) + x * dinv)`` it replaces (forward and gradient, every SIMD level, dtype,
index dtype and thread count), differentiable in x only, and taken only where it applies."""
import pytest
import torch
from torch.library import opcheck
from torch.utils._python_dispatch import TorchDispatchMode

import gkdfast
from gkdfast import _backend, ops

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _graph(n=60, e=400, seed=0, index_dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei[1, :20] = 0  # a hub row
    graph = gkdfast.Graph(ei, num_nodes=n + 5)  # + 5 isolated nodes: rows that are the self term alone
    return graph.to(index_dtype=index_dtype) if index_dtype != torch.int64 else graph


def _composite(graph, x, w=None):
    """spmm(norm="gcn") as it was before the fused op: five passes, kept here as the bitwise oracle."""
    dinv = graph.gcn_norm_coefficients(w, x.dtype).unsqueeze(-1)
    h = x * dinv
    return dinv * (ops._spmm(graph, h, "sum", w) + h)


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("simd", ["", "avx2", "0"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [1, 7, 16, 33, 130])
@pytest.mark.parametrize("weighted", [False, True])
def test_bitwise_the_composite(monkeypatch, simd, dtype, d, weighted):
    monkeypatch.setenv("GKDFAST_SPMM_SIMD", simd)
    graph = _graph()
    gen = torch.Generator().manual_seed(d)
    x = torch.randn(graph.num_nodes, d, dtype=dtype, generator=gen)
    x[62] = -0.0  # an isolated node (ids 60-64): its signed zero comes out as the composite's
    w = torch.rand(graph.num_edges, dtype=dtype, generator=gen) if weighted else None
    xr = x.clone().requires_grad_()
    out = gkdfast.spmm(graph, xr, edge_weight=w, norm="gcn")
    expected = _composite(graph, x, w)
    assert torch.equal(out, expected)
    assert torch.equal(out.signbit(), expected.signbit())
    g = torch.randn_like(x)
    (grad,) = torch.autograd.grad(out, xr, g)
    xc = x.clone().requires_grad_()
    (grad_expected,) = torch.autograd.grad(_composite(graph, xc, w), xc, g)
    assert torch.equal(grad, grad_expected)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_index_dtypes_and_thread_counts_agree(index_dtype):
    graph = _graph(n=3000, e=30000, index_dtype=index_dtype)  # big enough for parallel_rows to split
    x = torch.randn(graph.num_nodes, 16)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gkdfast.spmm(graph, x, norm="gcn")
        torch.set_num_threads(2)
        two = gkdfast.spmm(graph, x, norm="gcn")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    assert torch.equal(one, _composite(graph, x))


def test_agrees_with_the_reference_backend():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 8, dtype=torch.float64)
    w = torch.rand(graph.num_edges, dtype=torch.float64)
    native = gkdfast.spmm(graph, x, edge_weight=w, norm="gcn")
    with _backend.forced("reference"):
        reference = gkdfast.spmm(graph, x, edge_weight=w, norm="gcn")
    torch.testing.assert_close(native, reference, rtol=1e-12, atol=1e-12)


def test_the_fused_op_runs_forward_and_backward():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 8, requires_grad=True)
    log = _OpLog()
    with log:
        gkdfast.spmm(graph, x, norm="gcn").sum().backward()
    fused = [n for n in log.names if n.startswith("gkdfast.spmm_gcn")]
    assert len(fused) == 2, log.names  # forward, then the backward over the transposed CSR
    assert not any(n.startswith("gkdfast.spmm.") for n in log.names), log.names


def test_weights_that_need_a_gradient_take_the_composite():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 4, dtype=torch.float64)
    w = (torch.rand(graph.num_edges, dtype=torch.float64) + 0.5).requires_grad_()
    log = _OpLog()
    with log:
        out = gkdfast.spmm(graph, x, edge_weight=w, norm="gcn")
    assert not any(n.startswith("gkdfast.spmm_gcn") for n in log.names), log.names
    assert torch.autograd.gradcheck(lambda ww: gkdfast.spmm(graph, x, edge_weight=ww, norm="gcn"), (w,))
    assert torch.equal(out, _composite(graph, x, w))


def _raw(graph, w=None, dtype=torch.float64):
    t = graph.transpose_csr()
    dinv = graph.gcn_norm_coefficients(None if w is None else w, dtype)
    wc = None if w is None else graph.to_csr_order(w)
    return lambda x: torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, *t, wc, dinv, x)


@pytest.mark.parametrize("weighted", [False, True])
def test_gradcheck_and_gradgradcheck(weighted):
    graph = _graph(n=12, e=40)
    w = torch.rand(graph.num_edges, dtype=torch.float64) + 0.1 if weighted else None
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    f = _raw(graph, w)
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_edgeless_graph_with_and_without_the_transpose():
    graph = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), num_nodes=4)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    dinv = graph.gcn_norm_coefficients(None, torch.float64)
    none = graph.col.new_empty(0)
    f = lambda xx: torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, none, none, none, None, dinv, xx)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.equal(f(x), x)  # deg = 1 everywhere: (A + I) is I
    assert torch.autograd.gradcheck(lambda xx: gkdfast.spmm(graph, xx, norm="gcn"), (x,))


def test_a_weight_gradient_through_the_raw_op_is_refused():
    graph = _graph(n=12, e=40)
    w = (torch.rand(graph.num_edges, dtype=torch.float64) + 0.1).requires_grad_()
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    t = graph.transpose_csr()
    out = torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, *t, graph.to_csr_order(w),
                                     graph.gcn_norm_coefficients(None, torch.float64), x)
    with pytest.raises(RuntimeError, match="differentiable in x only"):
        out.sum().backward()


def test_backward_without_the_transpose_says_so():
    graph = _graph(n=12, e=40)
    none = graph.col.new_empty(0)
    x = torch.randn(graph.num_nodes, 3, requires_grad=True)
    out = torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, none, none, none, None,
                                     graph.gcn_norm_coefficients(None, torch.float32), x)
    with pytest.raises(RuntimeError, match="transposed CSR"):
        out.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_opcheck(dtype, weighted):
    graph = _graph(n=12, e=40)
    t = graph.transpose_csr()
    w = torch.rand(graph.num_edges, dtype=dtype) if weighted else None
    x = torch.randn(graph.num_nodes, 5, dtype=dtype, requires_grad=True)
    opcheck(torch.ops.gkdfast.spmm_gcn.default,
            (graph.rowptr, graph.col, *t, w, graph.gcn_norm_coefficients(None, dtype), x))


def test_bad_dinv_is_a_clear_error():
    graph = _graph(n=12, e=40)
    t = graph.transpose_csr()
    x = torch.randn(graph.num_nodes, 3)
    with pytest.raises(ValueError, match=r"spmm_gcn: dinv must have shape \[17\]"):
        torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, *t, None, torch.ones(5), x)
    with pytest.raises(TypeError, match="spmm_gcn: dinv has dtype"):
        torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, *t, None, torch.ones(17, dtype=torch.float64), x)
    with pytest.raises(ValueError, match="spmm_gcn: x has 3 rows"):
        torch.ops.gkdfast.spmm_gcn(graph.rowptr, graph.col, *t, None, torch.ones(17), x[:3])


def test_unweighted_coefficients_are_kept_per_dtype():
    graph = _graph(n=12, e=40)
    a = graph.gcn_norm_coefficients(None, torch.float32)
    assert graph.gcn_norm_coefficients(None, torch.float32) is a
    assert graph.gcn_norm_coefficients(None, torch.float64).dtype == torch.float64
    assert torch.equal(a, graph._gcn_dinv(None, torch.float32))
    # edge weights set on the graph later are used, not the kept unweighted coefficients
    graph.edge_weight = torch.full((graph.num_edges,), 3.0)
    assert not torch.equal(graph.gcn_norm_coefficients(None, torch.float32), a)


def test_coefficients_first_built_under_inference_mode_serve_training():
    graph = _graph(n=12, e=40)
    layer = gkdfast.nn.GCNConv(3, 2)
    x = torch.randn(graph.num_nodes, 3)
    with torch.inference_mode():
        layer(x, graph)
    layer(x, graph).sum().backward()  # an inference tensor in the cache would fail here
    assert not graph.gcn_norm_coefficients(None, torch.float32).is_inference()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("weighted", [False, True])
def test_cuda_matches_the_cpu_op(dtype, weighted):
    """On CUDA spmm_gcn is the composite in C++ around the CUDA sum: values and x-gradient against the
    CPU op in float64 (half types at their precision)."""
    graph = _graph()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(graph.num_nodes, 24, dtype=torch.float64, generator=gen)
    w = torch.rand(graph.num_edges, dtype=torch.float64, generator=gen) if weighted else None
    g = torch.randn(graph.num_nodes, 24, dtype=torch.float64, generator=gen)
    xc = x.clone().requires_grad_()
    expected = gkdfast.spmm(graph, xc, edge_weight=w, norm="gcn")
    (grad_expected,) = torch.autograd.grad(expected, xc, g)
    cuda_graph = graph.to("cuda")
    xd = x.to("cuda", dtype).requires_grad_()
    out = gkdfast.spmm(cuda_graph, xd, edge_weight=None if w is None else w.to("cuda", dtype), norm="gcn")
    (grad,) = torch.autograd.grad(out, xd, g.to("cuda", dtype))
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.double().cpu(), expected.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double().cpu(), grad_expected, rtol=tol, atol=tol)
