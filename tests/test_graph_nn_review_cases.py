"""Cases a review of the graph object, the models and the recipes found broken: half-precision GCN
degrees, caches built under ``torch.inference_mode()``, silent index narrowing, stale sparse feature
copies, float64 models on weighted graphs, re-initialisation, hooks on a first layer, and recipe
settings that were accepted but not used."""
import pytest
import torch
from torch.nn.utils import prune

import gkdfast
from gkdfast import _backend
from gkdfast.data import csbm
from gkdfast.distill import recipes
from gkdfast.nn import GAT, GCN, MLP, SAGE, build_model

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _star(n=5001):
    """Node 0 with n - 1 in-edges: past float16's (2,048) and bfloat16's (256) exact counts."""
    return gkdfast.Graph(torch.stack([torch.arange(1, n), torch.zeros(n - 1, dtype=torch.long)]), n)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_degrees_are_summed_in_at_least_float32(dtype, weighted):
    g = _star()
    w = torch.ones(g.num_edges, dtype=dtype) if weighted else None
    got = g.gcn_norm_coefficients(w, dtype)
    want = (1.0 / torch.tensor(float(g.num_edges + 1)).sqrt()).to(dtype)
    assert got.dtype == dtype and got[0] == want  # bfloat16 weighted gave deg 256 before


def test_caches_built_under_inference_mode_do_not_break_later_training():
    ei = torch.tensor([[2, 0, 1, 3], [1, 0, 2, 2]])  # not in CSR order: the graph keeps a permutation
    g = gkdfast.Graph(ei, 4)
    x = torch.randn(4, 3)
    gat = GAT(3, 4, 2, heads=2)
    with torch.inference_mode():
        gkdfast.sddmm(g, x, x)
        g.out_degree()
        gat.eval()(x, g)  # caches the graph with self-loops
    assert not g.transpose_csr()[0].is_inference() and not g.inv_perm.is_inference()
    a = torch.randn(4, 3, requires_grad=True)
    gkdfast.sddmm(g, a, a).sum().backward()
    gkdfast.spmm(g, a).sum().backward()
    gat.train()(a, g).sum().backward()
    assert a.grad is not None


def test_sparse_features_under_inference_mode_and_then_training():
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    x = torch.zeros(3, 100)
    x[0, 1] = 1.0
    model = GCN(100, 8, 3)
    with torch.inference_mode():
        model.eval()(x, g)  # builds the sparse copy of x
        xi = torch.zeros(3, 100)
        xi[1, 2] = 1.0
        model(xi, g)  # an inference tensor: no version counter to watch, dense path
    MLP(100, 8, 3)(x).sum().backward()


def test_sparse_feature_copy_follows_a_swap_of_the_storage():
    torch.manual_seed(0)
    x = torch.zeros(6, 200)
    x[0, 3] = 1.0
    mlp = MLP(200, 8, 3, dropout=0.0).eval()
    mlp(x)
    y = torch.zeros(6, 200)
    y[2, 7] = 4.0
    x.data = y  # keeps the version counter: the copy was reused before
    torch.testing.assert_close(mlp(x), mlp(y.clone()))


def test_graph_to_and_undirected_graph_refuse_other_index_dtypes():
    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), 40000)
    with pytest.raises(TypeError, match="index_dtype must be torch.int32 or torch.int64"):
        g.to(index_dtype=torch.int16)
    with pytest.raises(TypeError, match="index_dtype must be torch.int32 or torch.int64"):
        g.to(index_dtype=torch.float32)
    from gkdfast.graph_build import undirected_graph

    with pytest.raises(TypeError, match="index_dtype"):
        undirected_graph(torch.tensor([0]), torch.tensor([1]), 2, index_dtype=torch.int16)


def test_gcn_norm_returns_a_graph_carrying_its_normalised_weights():
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3, edge_weight=torch.tensor([5.0, 6.0, 7.0]))
    w = torch.tensor([1.0, 2.0, 3.0])
    looped, norm_w = gkdfast.gcn_norm(g, edge_weight=w)
    assert torch.equal(looped.edge_weight, norm_w) and looped.num_edges == 6
    x = torch.randn(3, 2)
    torch.testing.assert_close(gkdfast.spmm(looped, x), gkdfast.spmm(g, x, edge_weight=w, norm="gcn"))


def test_bool_inputs_are_not_orders_or_edges():
    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), 2)
    with pytest.raises(ValueError, match="custom order"):
        g.reorder(torch.tensor([True, False]))
    adj = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.tensor([True, False]), (2, 2))
    assert gkdfast.Graph.from_sparse(adj).edge_index.tolist() == [[0], [1]]


@native
def test_native_pooling_message_speaks_of_rows():
    with pytest.raises(ValueError, match=r"must equal the number of rows of x, 4"):
        gkdfast.global_pool(torch.randn(4, 2), torch.tensor([0, 2, 5]), "sum")


@pytest.mark.parametrize("name", ["gcn", "gin", "gcnii", "segcn", "sage", "gat"])
def test_float64_models_on_a_float32_weighted_graph(name):
    d = csbm(num_nodes=40, num_classes=3, feature_dim=8, seed=0)
    g = gkdfast.Graph(d.graph.edge_index, d.num_nodes, edge_weight=torch.rand(d.graph.num_edges) + 0.5)
    model = build_model(name, 8, 8, 3, num_nodes=40).double() if name == "segcn" else \
        build_model(name, 8, 8, 3).double()
    out = model(d.x.double(), g)
    assert out.dtype == torch.float64 and out.shape == (40, 3)


def test_reset_parameters_keeps_glorot_in_gcn_and_gat():
    torch.manual_seed(0)
    for model in (GCN(1000, 16, 3), GAT(1000, 16, 3, heads=1)):
        model.reset_parameters()
        w = model.layers[0].lin.weight
        bound = (6.0 / (w.size(0) + w.size(1))) ** 0.5  # glorot's; kaiming's default would be 1/sqrt(1000)
        assert float(w.detach().abs().max()) > 0.9 * bound


@pytest.mark.parametrize("make, first", [(lambda: GCN(300, 8, 2), "lin"), (lambda: SAGE(300, 8, 2), "lin_l")])
@pytest.mark.parametrize("bag_of_words", [True, False])
def test_a_pruned_first_layer_trains(make, first, bag_of_words):
    """GCN's sparse path, and SAGE's reordered product on any input (helper 122), read the weight
    directly, skipping the pruning hook: the second step then failed ("backward through the graph a
    second time": the pruned weight was the first step's tensor)."""
    torch.manual_seed(0)
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    x = torch.zeros(3, 300)
    x[0, 5] = x[2, 9] = 1.0
    if not bag_of_words:
        x = torch.randn(3, 300)
    model = make()
    prune.l1_unstructured(getattr(model.layers[0], first), "weight", 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(x, g).sum().backward()
        opt.step()


def test_gsdn_rescaled_layers_get_the_decay_of_their_effective_weights(monkeypatch):
    from gkdfast.distill import distiller as distiller_mod
    from gkdfast.distill.recipes.gsdn import _ScaledLinear

    seen = {}
    real = distiller_mod.Distiller._param_groups

    def spy(self):
        seen["groups"], seen["terms"], seen["student"] = real(self), self.terms, self.student
        return seen["groups"]

    monkeypatch.setattr(distiller_mod.Distiller, "_param_groups", spy)
    d = csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0)
    recipes.get("gsdn", epochs=1, weight_decay=5e-4).fit(lambda f: MLP(f, 16, 3), d)
    groups = seen["groups"]
    scaled = [m for m in seen["terms"].modules() if isinstance(m, _ScaledLinear)]
    assert len(scaled) == 2
    for m in scaled:
        g = next(g for g in groups if any(p is m.weight for p in g["params"]))
        assert g["weight_decay"] == pytest.approx(5e-4 * m.scale ** 2)
    ids = [id(p) for g in groups for p in g["params"]]
    want = {id(p) for p in seen["student"].parameters()} | {id(p) for p in seen["terms"].parameters()}
    assert len(ids) == len(set(ids)) and set(ids) == want  # every parameter once


def test_recipe_settings_that_were_accepted_but_unused():
    with pytest.raises(ValueError, match="unknown hyperparameter 'kd_weight'"):
        recipes.get("kd_gcrd", kd_weight=5.0)
    assert "probe_epochs" in recipes.get("sail").stage_epochs


def test_online_warm_up_and_assistants_train_with_the_recipe_settings(monkeypatch):
    from gkdfast.distill import distiller as distiller_mod

    seen = []
    real = distiller_mod.Distiller.__init__

    def spy(self, *a, **kw):
        seen.append(dict(kw))
        real(self, *a, **kw)

    monkeypatch.setattr(distiller_mod.Distiller, "__init__", spy)
    d = csbm(num_nodes=80, num_classes=3, feature_dim=8, seed=0)
    recipes.get("oad", epochs=1, warmup_epochs=1, ties="last", gan_weight=0.0).fit(
        lambda f: GCN(f, 8, 3), d)
    assert [kw["ties"] for kw in seen] == ["last", "last"]  # warm-up and online phase
    seen.clear()
    teacher = gkdfast.distill.teacher_outputs(GCN(8, 8, 3), d.x, d.graph)
    recipes.get("ta_ensemble", epochs=1, assistant_epochs=1, assistant_widths=(8,), lr=0.003,
                de_maxiter=1).fit(lambda f: MLP(f, 8, 3), d, teacher)
    assert seen[0]["lr"] == 0.003  # the assistant (KD's default lr is 0.01)


# ------------------------------------------------------------------------------ session 34 review
def test_a_graph_without_reordering_or_weights_is_freed_after_a_gat_layer():
    """csr_view cached the graph itself under its own weak key: the cache kept every such graph alive,
    and after edge weights were assigned SAGE aggregated with them through the stale entry."""
    import gc
    import weakref

    from gkdfast.nn import GATConv, SAGEConv

    g = gkdfast.Graph(torch.tensor([[1, 2, 3, 4], [0, 1, 2, 3]]), 5)  # already in CSR order
    ref = weakref.ref(g)
    GATConv(4, 2, add_self_loops=False)(torch.randn(5, 4), g)
    del g
    gc.collect()
    assert ref() is None
    g = gkdfast.Graph(torch.tensor([[1, 2, 3, 4], [0, 0, 2, 3]]), 5)
    sage, x = SAGEConv(4, 2), torch.randn(5, 4)
    before = sage(x, g)
    g.edge_weight = torch.tensor([5.0, 0.1, 2.0, 3.0])
    torch.testing.assert_close(sage(x, g), before)  # SAGE ignores edge weights


def test_reset_parameters_of_a_gin_around_one_module_and_of_a_graph_classifier():
    from gkdfast.nn import GINConv
    from gkdfast.nn.graph_models import GraphClassifier

    conv = GINConv(torch.nn.Linear(5, 3))
    model = GraphClassifier("gin", 4, 8, 2, num_layers=2)
    for module in (conv, model):
        with torch.no_grad():
            for p in module.parameters():
                p.fill_(123.0)
        module.reset_parameters()
        assert all(float(p.detach().abs().max()) < 123.0 for p in module.parameters() if p.numel() > 1)


def test_gat_attention_vectors_use_pygs_glorot_bound():
    from gkdfast.nn import GATConv

    torch.manual_seed(0)
    conv = GATConv(16, 8, heads=8)
    bound = (6.0 / (8 + 8)) ** 0.5  # PyG: sqrt(6 / (H + C)); xavier_uniform_ on [1, H, C] gave sqrt(6 / 72)
    for att in (conv.att_src, conv.att_dst):
        assert 0.9 * bound < float(att.detach().abs().max()) <= bound
