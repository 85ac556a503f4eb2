"""The hot ops' autograd kernels in C++ (csrc/autograd/): spmm, spmm_gcn, sddmm, edge_softmax, dropout.

What a Python formula gave for free and a C++ node must do as well: gradients of only the inputs asked
for (with and without the optional weight, which shifts the C++ node's input slots), nothing recorded
without grad, saved-tensor hooks, one node back-propagated from several threads, and a clear error (not
a silent zero tangent) under forward-mode AD.  Values, gradcheck and gradgradcheck are in the ops' own
test files; this file is about the node."""
import threading

import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast import reference as ref
from gkdfast.ops import graph_tensors

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")

def _graph(n=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, 31), generator=gen)
    return gkdfast.Graph(ei, num_nodes=n)


def _leaf(*shape, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()


def test_nodes_are_cpp_nodes():
    g = _graph()
    x, w = _leaf(9, 4), _leaf(g.num_edges, seed=2)
    t = graph_tensors(g, True)
    nodes = {
        "spmm": torch.ops.gkdfast.spmm(*t, None, x, "sum")[0],
        "spmm_gcn": gkdfast.spmm(g, x, norm="gcn"),
        "sddmm": torch.ops.gkdfast.sddmm(*t, x, x),
        "edge_softmax": torch.ops.gkdfast.edge_softmax(g.rowptr, w),
        "dropout": torch.ops.gkdfast.dropout(x, 0.5, 7),
    }
    for name, out in nodes.items():
        assert "CppNode" in type(out.grad_fn).__name__ or "CppNode" in out.grad_fn.name(), (name, out.grad_fn)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("wrt", ["x", "w", "both"])
def test_spmm_gradient_of_only_what_is_asked(reduce, wrt):
    g = _graph()
    x, w = _leaf(9, 4), _leaf(g.num_edges, seed=2)
    inputs = {"x": [x], "w": [w], "both": [x, w]}[wrt]
    out = gkdfast.spmm(g, x, reduce, w)
    got = torch.autograd.grad(out.square().sum(), inputs)
    with _backend.forced("reference"):
        want = torch.autograd.grad(ref.spmm(g, x, reduce, g.to_csr_order(w)).square().sum(), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_without_weight_gives_x_its_gradient(reduce):
    # Without the optional weight, x is the node's sixth input slot, not the seventh.
    g = _graph()
    x = _leaf(9, 4)
    (got,) = torch.autograd.grad(gkdfast.spmm(g, x, reduce).square().sum(), [x])
    (want,) = torch.autograd.grad(ref.spmm(g, x, reduce, None).square().sum(), [x])
    torch.testing.assert_close(got, want)


def test_spmm_gcn_with_constant_weights_differentiates_x():
    g = _graph()
    x, w = _leaf(9, 4), torch.rand(g.num_edges, dtype=torch.float64)
    (got,) = torch.autograd.grad(gkdfast.spmm(g, x, edge_weight=w, norm="gcn").square().sum(), [x])
    with _backend.forced("reference"):
        (want,) = torch.autograd.grad(gkdfast.spmm(g, x, edge_weight=w, norm="gcn").square().sum(), [x])
    torch.testing.assert_close(got, want)


def test_spmm_gcn_refuses_a_gradient_of_dinv():
    g = _graph()
    x = _leaf(9, 4)
    dinv = g.gcn_norm_coefficients(None, x.dtype).clone().requires_grad_()
    out = torch.ops.gkdfast.spmm_gcn(*graph_tensors(g, True), None, dinv, x)
    with pytest.raises(RuntimeError, match="differentiable in x only"):
        torch.autograd.grad(out.sum(), [dinv])
    # ... but x alone is fine: the node only refuses what is asked for.
    out = torch.ops.gkdfast.spmm_gcn(*graph_tensors(g, True), None, dinv, x)
    assert torch.autograd.grad(out.sum(), [x])[0].shape == x.shape


@pytest.mark.parametrize("wrt", ["a", "b"])
def test_sddmm_gradient_of_one_side(wrt):
    g = _graph()
    a, b = _leaf(9, 3), _leaf(9, 3, seed=3)
    target = a if wrt == "a" else b
    (got,) = torch.autograd.grad(gkdfast.sddmm(g, a, b).square().sum(), [target])
    (want,) = torch.autograd.grad(ref.sddmm(g, a, b).square().sum(), [target])
    torch.testing.assert_close(got, want)


def test_nothing_recorded_without_grad():
    g = _graph()
    x, w = _leaf(9, 4), _leaf(g.num_edges, seed=2)
    t = graph_tensors(g, False)
    with torch.no_grad():
        outs = [torch.ops.gkdfast.spmm(*t, w.detach(), x, "sum")[0], torch.ops.gkdfast.sddmm(*t, x, x),
                torch.ops.gkdfast.edge_softmax(g.rowptr, w), torch.ops.gkdfast.dropout(x, 0.5, 1)]
    assert all(o.grad_fn is None and not o.requires_grad for o in outs)
    plain = torch.ops.gkdfast.spmm(*t, None, x.detach(), "sum")[0]
    assert plain.grad_fn is None and not plain.requires_grad


def test_saved_tensor_hooks_see_the_saved_tensors():
    g = _graph()
    x = _leaf(9, 4)
    packed = []

    def pack(t):
        packed.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = gkdfast.spmm(g, x, "max")
    assert (9, 4) in packed  # x (kept for max) went through the hook
    (got,) = torch.autograd.grad(out.sum(), [x])
    (want,) = torch.autograd.grad(ref.spmm(g, x, "max", None).sum(), [x])
    torch.testing.assert_close(got, want)


def test_one_node_back_propagated_from_threads():
    # Helper 84's case for the Python formulas: several threads through one node (retain_graph).
    g = _graph(60, seed=4)
    x, w = _leaf(60, 8), _leaf(g.num_edges, seed=5)
    out = gkdfast.spmm(g, x, "mean", w * gkdfast.sddmm(g, x, x))  # two C++ nodes, x reaching both
    loss = out.square().sum()
    want = torch.autograd.grad(loss, [x, w], retain_graph=True)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(torch.autograd.grad(loss, [x, w], retain_graph=True))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]
    assert len(results) == 80
    for gx, gw in results:
        assert torch.equal(gx, want[0]) and torch.equal(gw, want[1])


def test_forward_mode_ad_on_the_raw_op_is_an_error_not_a_zero_tangent():
    g = _graph()
    t = graph_tensors(g, False)
    x = torch.randn(9, 4, dtype=torch.float64)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
        with pytest.raises(RuntimeError, match="jvp is not implemented"):
            torch.ops.gkdfast.spmm(*t, None, dual, "sum")
        # The public function takes the reference under forward-mode AD and gets the tangent.
        out = gkdfast.spmm(g, dual, "sum")
        tangent = torch.autograd.forward_ad.unpack_dual(out).tangent
    torch.testing.assert_close(tangent, ref.spmm(g, torch.ones_like(x), "sum", None))


def test_backward_without_the_transpose_names_the_op():
    g = _graph()
    x = _leaf(9, 4)
    t = graph_tensors(g, False)
    for name, out in (("spmm", torch.ops.gkdfast.spmm(*t, None, x, "sum")[0]),
                      ("sddmm", torch.ops.gkdfast.sddmm(*t, x, x))):
        with pytest.raises(RuntimeError, match=f"gkdfast.{name}: backward needs the transposed CSR"):
            out.sum().backward()


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_compiled_autograd_runs_the_cpp_nodes(reduce):
    # torch's compiled autograd asserts that a C++ node marked no output non-differentiable (helper 125:
    # spmm's int64 arg output was marked, and every spmm backward under compiled autograd crashed).
    g = _graph(30, seed=2)
    x, w = _leaf(30, 4), _leaf(g.num_edges, seed=3)
    s = gkdfast.sddmm(g, x, x)
    h = gkdfast.spmm(g, torch.ops.gkdfast.dropout(x, 0.3, 5), reduce, w * s)
    loss = gkdfast.spmm(g, h, norm="gcn").square().sum() + torch.ops.gkdfast.edge_softmax(g.rowptr, s).sum()
    want = torch.autograd.grad(loss, [x, w], retain_graph=True)
    torch._dynamo.reset()
    compiled_autograd = torch._dynamo.compiled_autograd
    enable = getattr(compiled_autograd, "_enable", None) or compiled_autograd.enable  # (torch < 2.6: enable)
    with enable(torch.compile(backend="aot_eager")):
        loss.backward()
    torch._dynamo.reset()
    torch.testing.assert_close(x.grad, want[0])
    torch.testing.assert_close(w.grad, want[1])
