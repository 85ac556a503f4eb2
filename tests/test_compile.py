"""Every public op and loss traces under ``torch.compile(fullgraph=True)`` (no graph break) and gives
the eager values and gradients (issue 18).  The backend choice is made at trace time
(``gkdfast._backend.choose`` is a constant to Dynamo) and the transposed CSR is built with
static-shaped ops, so nothing data-dependent is left in the traced code.  ``aot_eager`` runs the
captured forward and backward graphs without code generation, which keeps the test fast; the
capture is the part that can fail."""
from __future__ import annotations

import pytest
import torch

import gkdfast
from gkdfast import losses
from gkdfast.nn import GAT, GCN, GIN, MLP, SAGE


def _graph():
    torch.manual_seed(0)
    ei = torch.randint(0, 40, (2, 200))
    return gkdfast.Graph(ei, 40, edge_weight=torch.rand(200) + 0.5)


G = _graph()
G_UNWEIGHTED = gkdfast.Graph(G.edge_index, 40)  # GCN's unweighted path: kept coefficients, the fused op
T = torch.randn(40, 8)
T16 = torch.randn(40, 16)
ROWS = torch.tensor([0, 3, 5, 7, 11, 19, 23, 31, 36, 39])  # a nodes= subset (the bounds check reads values)

CASES = {
    "spmm_sum": lambda x: gkdfast.spmm(G, x, "sum").square().sum(),
    "spmm_mean": lambda x: gkdfast.spmm(G, x, "mean").square().sum(),
    "spmm_max": lambda x: gkdfast.spmm(G, x, "max").square().sum(),
    "spmm_min": lambda x: gkdfast.spmm(G, x, "min").square().sum(),
    "spmm_gcn": lambda x: gkdfast.spmm(G_UNWEIGHTED, x, "sum", norm="gcn").square().sum(),
    "spmm_weighted_gcn": lambda x: gkdfast.spmm(G, x, "sum", edge_weight=G.edge_weight, norm="gcn").square().sum(),
    "sddmm": lambda x: gkdfast.sddmm(G, x, T).square().sum(),
    "edge_softmax": lambda x: gkdfast.edge_softmax(G, gkdfast.sddmm(G, x, x)).square().sum(),
    "topk_similar": lambda x: gkdfast.topk_similar(x[:5], x, k=3)[0].sum(),
    "lsp_rbf": lambda x: losses.lsp(G, x, T, kernel="rbf"),
    "lsp_laplace": lambda x: losses.lsp(G, x, T, kernel="laplace", gamma=0.1),
    "gsp_rbf_kl": lambda x: losses.gsp(x, T, kernel="rbf", loss="kl"),
    "gsp_poly_mse": lambda x: losses.gsp(x, T, kernel="poly"),
    "gsp_cosine_mse": lambda x: losses.gsp(x, T, kernel="cosine"),
    "rsd": lambda x: losses.rsd(x, T),
    "crd": lambda x: losses.crd(x, T),
    "crd_sampled": lambda x: losses.crd(x, T, num_negatives=7, seed=3),
    "nt_xent": lambda x: losses.nt_xent(x, T),
    "ncontrast": lambda x: losses.ncontrast(G, x, hops=2),
    "ncontrast_sampled": lambda x: losses.ncontrast(G, x, num_negatives=5, seed=1),
    "gsp_rbf_kl_nodes": lambda x: losses.gsp(x, T, kernel="rbf", loss="kl", nodes=ROWS),
    "rsd_nodes": lambda x: losses.rsd(x, T, nodes=ROWS),
    "kd": lambda x: losses.kd(x, T, temperature=2.0),
}

torch.manual_seed(1)
MODELS = {"gcn": GCN(8, 16, 3), "sage": SAGE(8, 16, 3, aggr="max"), "gat": GAT(8, 16, 3), "gin": GIN(8, 16, 3),
          "mlp": MLP(8, 16, 3)}
for _name, _model in MODELS.items():
    _model.eval()
    CASES[_name] = (lambda m: (lambda x: (m(x) if isinstance(m, MLP) else m(x, G)).sum()))(_model)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fullgraph_compile_matches_eager(name):
    fn = CASES[name]
    if name.startswith("ncontrast"):  # its positives (a sparse power of Â) are built by a first, eager call
        losses.ncontrast(G, torch.randn(40, 8), hops=2 if name == "ncontrast" else 1)
    x = torch.randn(40, 8, dtype=torch.float64 if name.startswith("gsp_cos") else torch.float32)
    xe = x.clone().requires_grad_()
    eager = fn(xe)
    eager.backward()
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    xc = x.clone().requires_grad_()
    out = compiled(xc)
    out.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(xc.grad, xe.grad)


def test_the_backend_choice_carries_dynamos_own_constant_mark():
    """``gkdfast._backend`` marks ``choose`` as ``torch._dynamo.assume_constant_result`` would, without
    importing Dynamo: the decorator must still set exactly that one attribute (if a torch release
    changes it, this fails and the fullgraph tests above graph-break)."""
    from gkdfast import _backend

    def probe():
        return 0

    assert torch._dynamo.assume_constant_result(probe) is probe and vars(probe) == {"_dynamo_marked_constant": True}
    assert vars(_backend.choose).get("_dynamo_marked_constant") is True


def test_importing_gkdfast_does_not_load_dynamo():
    """``import gkdfast`` stays free of ``torch._dynamo`` (about 2 s for a process that does not train:
    ``gkdfast --help``, ``gkdfast generate``)."""
    import subprocess
    import sys

    code = "import sys, gkdfast, gkdfast.distill, gkdfast.nn, gkdfast.cli; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_fresh_graph_builds_its_caches_inside_a_compiled_function():
    """The caches' inference-mode guard must not break tracing (Dynamo cannot trace
    torch.is_inference_mode_enabled)."""
    g = gkdfast.Graph(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), 4)  # no cache built yet
    f = torch.compile(lambda x: x.sum() + g.dst.sum(), fullgraph=True, backend="eager")
    assert float(f(torch.ones(3))) == 3.0 + 6.0


def test_ncontrast_batch_nodes_compile_with_graph_breaks():
    # the batch's positives are joined from the values of nodes= (data-dependent sizes): no full graph,
    # but compiled with breaks it equals eager
    fn = lambda x: losses.ncontrast(G, x[:10], nodes=ROWS)  # noqa: E731
    x = torch.randn(40, 8)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = fn(xe)
    eager.backward()
    torch._dynamo.reset()
    out = torch.compile(fn, backend="aot_eager")(xc)
    out.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(xc.grad, xe.grad)


def _twin_graph(seed):
    # same node and edge counts as another seed's, other edges: only the data tells them apart
    gen = torch.Generator().manual_seed(seed)
    return gkdfast.Graph(torch.randint(0, 40, (2, 200), generator=gen), 40,
                         edge_weight=torch.rand(200, generator=gen) + 0.5)


@pytest.mark.parametrize("name", ["sage", "gat", "ncontrast"])
def test_one_compiled_function_serves_two_graphs_of_one_size(name):
    # Before: what was derived from a graph (SAGE's and GAT's CSR views, ncontrast's positives) sat in
    # module-level weak-keyed tables, whose entry for the first graph Dynamo took as a constant: the
    # compiled function called with graph B returned graph A's result.
    torch.manual_seed(2)
    model = {"sage": SAGE(8, 16, 3), "gat": GAT(8, 16, 3)}.get(name)
    if model is not None:
        model.eval()
        fn = lambda g, x: model(x, g).sum()  # noqa: E731
    else:
        fn = lambda g, x: losses.ncontrast(g, x, hops=2)  # noqa: E731
    a, b = _twin_graph(5), _twin_graph(6)
    x = torch.randn(40, 8)
    want = [fn(a, x), fn(b, x)]  # (eager first: builds each graph's caches, as the README asks)
    assert not torch.allclose(want[0], want[1])
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        got = [compiled(a, x), compiled(b, x), compiled(a, x)]
    torch.testing.assert_close(got, [want[0], want[1], want[0]])


@pytest.mark.parametrize("name", ["lsp", "gsp_linear_mse", "gcn"])
def test_graphs_of_new_sizes_do_not_recompile_each_time(name):
    # Before: lsp formatted a size into its (unraised) error text and compared with a plain-int
    # num_nodes, and gsp's Gram loop ran over range(N): each new size compiled again, and the ninth
    # failed with the recompile limit (mini-batch and sampled-subgraph training meet many sizes).
    import torch._dynamo.testing

    torch.manual_seed(3)
    model = GCN(8, 16, 3).eval()
    fn = {"lsp": lambda g, x, t: losses.lsp(g, x, t),
          "gsp_linear_mse": lambda g, x, t: losses.gsp(x, t),
          "gcn": lambda g, x, t: model(x, g).sum()}[name]
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    for n in (30, 37, 44, 51, 58):
        gen = torch.Generator().manual_seed(n)
        g = gkdfast.Graph(torch.randint(0, n, (2, 4 * n), generator=gen), n)
        x, t = torch.randn(n, 8, generator=gen), torch.randn(n, 8, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(compiled(g, x, t), fn(g, x, t))
    assert counter.frame_count <= 2  # the first size, then one dynamic-shape graph


@pytest.mark.parametrize("name", ["kd", "crd", "nt_xent", "lsp", "gsp_rbf_kl"])
def test_a_temperature_that_changes_between_calls_compiles(name):
    # Before: math.isfinite() of the (then symbolic) float did not trace: fullgraph raised from the
    # second value on.
    fn = {"kd": lambda x, tau: losses.kd(x, T, temperature=tau),
          "crd": lambda x, tau: losses.crd(x, T, tau=tau),
          "nt_xent": lambda x, tau: losses.nt_xent(x, T, tau=tau),
          "lsp": lambda x, tau: losses.lsp(G, x, T, tau=tau),
          "gsp_rbf_kl": lambda x, tau: losses.gsp(x, T, kernel="rbf", loss="kl", gamma=tau)}[name]
    import torch._dynamo.testing

    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    x = torch.randn(40, 8)
    # (a torch that specialises floats compiles each value apart and never traces the symbolic check)
    with torch._dynamo.config.patch(specialize_float=False):
        compiled = torch.compile(fn, fullgraph=True, backend=counter)
        for tau in (4.0, 3.0, 2.0):
            torch.testing.assert_close(compiled(x, tau), fn(x, tau))
    if name == "kd":  # plain torch: one symbolic graph; the native ops take tau as a float argument,
        assert counter.frame_count <= 2  # which compiles per value (without raising, the point here)


def test_tracing_a_cold_graph_leaves_no_trace_time_values_in_its_caches():
    # Before: a compiled eval under inference_mode stored inference tensors in the graph (the next
    # eager training step failed), and a non-strict torch.export stored FakeTensors (later eager
    # calls returned FakeTensors).  Traced code now computes them without storing them.
    torch.manual_seed(0)
    x = torch.randn(40, 8)
    g = gkdfast.Graph(torch.randint(0, 40, (2, 200)), 40)  # unsorted: a permutation to invert
    fn = lambda graph, v: gkdfast.edge_softmax(graph, gkdfast.sddmm(graph, v, v)).sum()  # noqa: E731
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager")
    with torch.inference_mode():
        compiled(g, x)
    assert g._dst is None and g._inv_perm is None and g._transpose is None
    xe = x.clone().requires_grad_()
    fn(g, xe).backward()  # eager training step on the same graph
    assert xe.grad is not None

    from gkdfast.nn import GCNConv

    conv = GCNConv(8, 4).eval()
    ei = torch.randint(0, 40, (2, 200))
    cold = gkdfast.Graph(ei, 40)
    want = conv(x, gkdfast.Graph(ei.clone(), 40))

    class HoldsGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.g = conv, cold

        def forward(self, v):
            return self.conv(v, self.g)

    exported = torch.export.export(HoldsGraph(), (x,), strict=False)
    assert cold._transpose is None and cold._dst is None
    torch.testing.assert_close(exported.module()(x), want)
    out = conv(x, cold)
    assert type(out) is torch.Tensor
    torch.testing.assert_close(out, want)


def test_another_threads_compile_does_not_count_as_tracing_here(monkeypatch):
    """torch.compiler.is_compiling() is one process-wide flag: while any thread compiled, eager calls in
    every other thread skipped the graph caches, the sparse first layer and the Philox dropout."""
    import torch.compiler as tc

    from gkdfast._tracing import tracing

    monkeypatch.setattr(tc, "_is_compiling_flag", True)  # what another thread's compile session sets
    assert tc.is_compiling()
    assert not tracing()
    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 2]]))
    with torch.inference_mode():
        g.transpose_csr()
        g.gcn_norm_coefficients()
    assert g._transpose is not None and not g._transpose[0].is_inference()
    assert not g.gcn_norm_coefficients().is_inference()
