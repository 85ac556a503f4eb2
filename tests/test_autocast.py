"""gkdfast inside torch.autocast regions (CPU, bfloat16 / float16), as an AMP training loop uses it.

Losses run in float32 like PyTorch's own (their half inputs widened, autocast off inside): before, a
bfloat16 crd came out negative, a float16 gsp inf, and the CPU fell back to E x d / N x N products.
Message passing meets float32 edge weights and half activations in one dtype: GAT and weighted GIN
refused to run.  topk_similar's float32 products are not narrowed by the region."""
import warnings

import pytest
import torch

import gkdfast
from gkdfast import losses
from gkdfast.nn import GAT, GATConv, GINConv, MLP

HALF = [torch.bfloat16, torch.float16]


def _pair(n=300, d=16, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, d, generator=g)
    return t + noise * torch.randn(n, d, generator=g), t


def _graph(n=300, e=2000, seed=0, weighted=False):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    return gkdfast.Graph(ei, n, edge_weight=torch.rand(e, generator=g) + 0.5 if weighted else None)


G = _graph()
LOSSES = {
    "kd": lambda a, b: losses.kd(a, b, temperature=2.0),
    "crd": lambda a, b: losses.crd(a, b),
    "crd_sampled": lambda a, b: losses.crd(a, b, num_negatives=32, seed=1),
    "gsp_linear_kl": lambda a, b: losses.gsp(a, b, loss="kl", tau=0.5),
    "gsp_poly_mse": lambda a, b: losses.gsp(a, b, kernel="poly"),
    "lsp_rbf": lambda a, b: losses.lsp(G, a, b),
    "nt_xent": lambda a, b: losses.nt_xent(a, b),
    "ncontrast": lambda a, b: losses.ncontrast(G, a),
    "rsd": lambda a, b: losses.rsd(a, b),
    "relation_gram": lambda a, b: losses.relation([a, a.flip(0)], [b, b.flip(0)], mode="gram"),
}


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_run_in_float32_on_the_native_kernels(name, dtype):
    fn = LOSSES[name]
    s, t = _pair()
    exact = fn(s.to(dtype).double(), t.double())  # the same rounded student, float64 throughout
    sh = s.to(dtype).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the dense-fallback warning (E x d, N x N) would fail here
        with torch.autocast("cpu", dtype=dtype):
            out = fn(sh, t)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), exact, rtol=1e-4, atol=1e-7)
    out.backward()
    assert sh.grad.dtype == dtype and torch.isfinite(sh.grad).all()


@pytest.mark.parametrize("dtype", HALF)
def test_message_passing_with_float32_edge_weights_and_attention(dtype):
    x = torch.randn(300, 16)
    gw = _graph(weighted=True)
    torch.manual_seed(0)
    for name, layer, graph in (("gat", GATConv(16, 8), G), ("gin_weighted", GINConv(torch.nn.Linear(16, 8)), gw)):
        with torch.autocast("cpu", dtype=dtype):
            out = layer(x, graph)
        expected = layer(x, graph)  # float32, outside the region
        torch.testing.assert_close(out.float(), expected, rtol=3e-2, atol=3e-2, msg=name)
        out.float().sum().backward()
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in layer.parameters()), name
    lin = torch.nn.Linear(16, 8)
    with torch.autocast("cpu", dtype=dtype):
        out = gkdfast.spmm(gw, lin(x), "mean")
    torch.testing.assert_close(out.float(), gkdfast.spmm(gw, lin(x), "mean"), rtol=3e-2, atol=3e-2)


def test_gat_model_trains_under_autocast():
    torch.manual_seed(0)
    model = GAT(16, 8, 3)
    x, y = torch.randn(300, 16), torch.randint(0, 3, (300,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x, G), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_topk_similar_keeps_float32_products():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(200, 16, generator=g), torch.randn(2000, 16, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gkdfast.topk_similar(q, k, 10)
    outside = gkdfast.topk_similar(q, k, 10)
    assert torch.equal(inside[1], outside[1])
    torch.testing.assert_close(inside[0], outside[0])


def test_distiller_heads_take_the_students_parameter_dtype():
    # a student whose forward runs under autocast returns bfloat16; the terms' heads (GSP's projections,
    # NContrast's map) stay float32 like the student's weights (they became bfloat16 parameters trained
    # by Adam) and the Distiller hands every term the rows in that dtype
    from gkdfast.data import csbm
    from gkdfast.distill import Distiller, terms

    data = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    torch.manual_seed(0)
    student = MLP(8, 16, 3)
    student.forward = torch.autocast("cpu", dtype=torch.bfloat16)(student.forward)
    from gkdfast.distill.teacher_cache import TeacherOutputs

    teacher = TeacherOutputs(logits=torch.randn(200, 3), hidden=torch.randn(200, 12))
    dist = Distiller(student, [terms.CrossEntropy(1.0), terms.GSP(1.0, kernel="linear", proj_dim=8),
                               terms.NContrast(1.0, proj_dim=8)], teacher, epochs=2)
    dist.fit(data)
    heads = [p for t in dist.terms for p in t.parameters()]
    assert heads and all(p.dtype == torch.float32 for p in heads)
