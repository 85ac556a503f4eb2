"""Higher-order and functional autograd (docs/ops.md, "Differentiability"): ``torch.func`` transforms and
forward-mode AD route every op to the reference, models compose with them, and GAT's attention
gathers are differentiable to any order.

The oracle is independent of the code under test where it can be: a central finite difference for
tangents, plain ``torch.autograd`` for ``torch.func.grad``, plain indexing for the GAT gathers.
"""
from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.func as tf

import gkdfast
from gkdfast import _backend
from gkdfast import losses as L

D = torch.float64


def _graph(n=9, e=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return gkdfast.Graph(torch.randint(0, n, (2, e), generator=gen), n)


def _rand(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


G = _graph()
T4 = _rand(9, 4, seed=2)
T3 = _rand(9, 3, seed=3)
W = _rand(24, seed=4).abs() + 0.5
PTR = torch.tensor([0, 4, 9])

# name -> f(x [9, 3]) -> tensor; each runs a native kernel outside a transform
FUNCTIONS = {
    "spmm sum": lambda x: gkdfast.spmm(G, x, "sum"),
    "spmm max": lambda x: gkdfast.spmm(G, x, "max"),
    "spmm gcn weighted": lambda x: gkdfast.spmm(G, x, "sum", W, norm="gcn"),
    "sddmm": lambda x: gkdfast.sddmm(G, x, x.flip(0)),
    "edge_softmax": lambda x: gkdfast.edge_softmax(G, gkdfast.sddmm(G, x, x)),
    "global_pool max": lambda x: gkdfast.pooling.global_pool(x, PTR, "max"),
    "lsp rbf": lambda x: L.lsp(G, x, T4, kernel="rbf"),
    "gsp rbf kl": lambda x: L.gsp(x, T4, kernel="rbf", loss="kl"),
    "rsd": lambda x: L.rsd(x, T4),
    "crd": lambda x: L.crd(x, T3, tau=0.5),
    "nt_xent": lambda x: L.nt_xent(x, T3),
    "ncontrast": lambda x: L.ncontrast(G, x, hops=1),
}


def _scalar(f):
    return lambda x: (f(x) ** 2).sum()


def _finite_difference(f, x, v, h=1e-6):
    with torch.no_grad():
        return (f(x + h * v) - f(x - h * v)) / (2 * h)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_jvp_tangent_is_the_directional_derivative(name):
    # Before: the native ops' autograd (torch.library.register_autograd) dropped forward-mode tangents
    # silently (jvp of spmm: a zero tangent, no error); forward AD inside a dual level did the same.
    f = _scalar(FUNCTIONS[name])
    x, v = _rand(9, 3, seed=5), _rand(9, 3, seed=6)
    want = _finite_difference(f, x, v)
    _, tangent = tf.jvp(f, (x,), (v,))
    torch.testing.assert_close(tangent, want, rtol=1e-6, atol=1e-8)
    with fwAD.dual_level():
        _, tangent = fwAD.unpack_dual(f(fwAD.make_dual(x, v)))
    torch.testing.assert_close(tangent, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_func_grad_and_vmap_match_autograd(name):
    # Before: torch.func.grad / vjp / hessian refused every native op ("must override the setup_context
    # staticmethod"), and vmap refused rsd.
    f = _scalar(FUNCTIONS[name])
    x = _rand(9, 3, seed=5)
    xx = x.clone().requires_grad_()
    want = torch.autograd.grad(f(xx), xx)[0]
    torch.testing.assert_close(tf.grad(f)(x), want)
    batch = torch.stack([x, -0.5 * x])
    torch.testing.assert_close(tf.vmap(f)(batch), torch.stack([f(x), f(-0.5 * x)]))


def test_transforms_are_detected_and_native_mode_refuses_them(monkeypatch):
    assert not _backend.transforms_active()
    with fwAD.dual_level():
        assert _backend.transforms_active()
    seen = []
    tf.grad(lambda x: (seen.append(_backend.transforms_active()), x.sum())[1])(torch.ones(2))
    assert seen == [True]
    assert _backend.explain("spmm")["chosen"] == "cpu" or not _backend.native_loaded()
    monkeypatch.setenv("GKDFAST_BACKEND", "native")
    if not _backend.native_loaded():
        pytest.skip("the native extension is not loaded")
    with pytest.raises(NotImplementedError, match="torch.func transform or forward-mode AD"):
        tf.grad(_scalar(FUNCTIONS["spmm sum"]))(_rand(9, 3))


def _models():
    from gkdfast.nn import GAT, GCN, GIN, MLP, SAGE
    torch.manual_seed(0)
    return {"mlp": MLP(12, 8, 3), "gcn": GCN(12, 8, 3), "sage": SAGE(12, 8, 3), "gin": GIN(12, 8, 3),
            "gat": GAT(12, 8, 3, heads=2)}


def _bag_of_words(n=9, d=12):
    # sparse 0/1 features: the models' forward takes the sparse-CSR product for these outside transforms
    x = torch.zeros(n, d, dtype=D)
    x[torch.arange(n), torch.arange(n) % d] = 1.0
    return x


@pytest.mark.parametrize("kind", ["mlp", "gcn", "sage", "gin", "gat"])
def test_models_under_torch_func(kind):
    # Before: the sparse-input path broke vmap (.item()), jvp (no data pointer) and grad over
    # functional_call parameters (sparse.mm of a wrapped weight); GAT's gathers refused every transform.
    model = _models()[kind].double().eval()
    x = _bag_of_words()
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, inputs):
        return (torch.func.functional_call(model, p, (inputs, G)) ** 2).sum()

    want = torch.autograd.grad(loss(dict(model.named_parameters()), x), list(model.parameters()))
    got = tf.grad(loss)(params, x)
    for (k, _), w in zip(model.named_parameters(), want):
        torch.testing.assert_close(got[k], w, msg=f"{kind} grad of {k}")
    v = _rand(*x.shape, seed=7)
    _, tangent = tf.jvp(lambda inp: loss(params, inp), (x,), (v,))
    torch.testing.assert_close(tangent, _finite_difference(lambda inp: loss(params, inp), x, v), rtol=1e-6,
                               atol=1e-8)
    out = tf.vmap(lambda inp: model(inp, G))(torch.stack([x, 2 * x]))
    torch.testing.assert_close(out[1], model(2 * x, G))


def test_gat_gathers_are_differentiable_to_any_order():
    # Before: the backward's segment sums had no derivative of their own, so a third derivative (and
    # torch.autograd.functional.hvp, which takes one) failed with "_segment_reduce_backward".
    from gkdfast.nn._utils import _EdgeGather, edge_sum

    g = _graph(n=7, e=20, seed=3)
    a, b, c = _rand(7, 2, seed=1), _rand(7, 2, seed=2), _rand(20, 2, seed=3)
    csr = g.col.long(), g.dst.long()

    def third(gather):
        u, w = a.clone().requires_grad_(), b.clone().requires_grad_()
        y = (torch.tanh(gather(u, w)) * c).sum()
        (gu,) = torch.autograd.grad(y, u, create_graph=True)
        (guw,) = torch.autograd.grad(gu.sum(), w, create_graph=True)
        return torch.autograd.grad((guw ** 2).sum(), u)[0]

    want = third(lambda u, w: u[csr[0]] + w[csr[1]])
    torch.testing.assert_close(third(lambda u, w: _EdgeGather.apply(g, u, w)), want)
    torch.testing.assert_close(third(lambda u, w: edge_sum(g, u, w)), want)
    assert torch.autograd.gradgradcheck(lambda u, w: _EdgeGather.apply(g, u, w),
                                        (a.clone().requires_grad_(), b.clone().requires_grad_()))
    gat = _models()["gat"].double().eval()
    x, v = _rand(9, 12, seed=8), _rand(9, 12, seed=9)
    _, hv = torch.autograd.functional.hvp(lambda inp: (gat(inp, G) ** 2).sum(), x, v)
    xx = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad((gat(xx, G) ** 2).sum(), xx, create_graph=True)
    torch.testing.assert_close(hv, torch.autograd.grad((gx * v).sum(), xx)[0])


def test_models_in_training_mode_under_vmap_with_different_randomness():
    # Before: dropout drew its Philox seed with .item(), which vmap cannot batch ("randomness='different'").
    from gkdfast.nn import GCN

    torch.manual_seed(0)
    gcn = GCN(3, 4, 2).train()
    params = dict(gcn.named_parameters())
    xs = torch.randn(4, 9, 3)
    out = tf.vmap(lambda a: torch.func.functional_call(gcn, params, (a, G)), randomness="different")(xs)
    assert out.shape == (4, 9, 2) and torch.isfinite(out).all()
