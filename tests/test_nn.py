"""gkdfast.nn: layers against torch_geometric with copied weights, gradients, training, API errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gkdfast
from gkdfast import nn as gnn

pyg_nn = pytest.importorskip("torch_geometric.nn")

N, F_IN = 40, 12


def _graph_data(seed=0, num_nodes=N, num_edges=160, self_loops=False, isolated=3):
    """Random directed graph (unsorted edges, duplicates allowed) whose last ``isolated`` nodes have
    no edges at all."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, num_nodes - isolated, (2, num_edges), generator=g)
    if not self_loops:
        ei = ei[:, ei[0] != ei[1]]
    x = torch.randn(num_nodes, F_IN, generator=g)
    return ei, x


def _close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# ------------------------------------------------------------------------------ layers vs PyG
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_gcnconv_matches_pyg(weighted, normalize):
    ei, x = _graph_data(1)
    w = torch.rand(ei.size(1)) + 0.1 if weighted else None
    ours = gnn.GCNConv(F_IN, 7, normalize=normalize)
    with torch.no_grad():
        ours.bias.uniform_(-1, 1)
    ref = pyg_nn.GCNConv(F_IN, 7, normalize=normalize)
    ref.lin.weight.data.copy_(ours.lin.weight)
    ref.bias.data.copy_(ours.bias)
    g = gkdfast.Graph(ei, N)
    _close(ours(x, g, w), ref(x, ei, w))
    # A weight stored on the graph is used like the explicit argument.
    if weighted:
        _close(ours(x, gkdfast.Graph(ei, N, w)), ref(x, ei, w))


@pytest.mark.parametrize("aggr", ["mean", "sum", "max", "min"])
@pytest.mark.parametrize("out_channels", [5, 20])  # 5 < F_IN takes the transform-first path
@pytest.mark.parametrize("root_weight", [True, False])
def test_sageconv_matches_pyg(aggr, out_channels, root_weight):
    ei, x = _graph_data(2)
    ours = gnn.SAGEConv(F_IN, out_channels, aggr=aggr, root_weight=root_weight)
    ref = pyg_nn.SAGEConv(F_IN, out_channels, aggr=aggr if aggr != "sum" else "add", root_weight=root_weight)
    ref.lin_l.weight.data.copy_(ours.lin_l.weight)
    ref.lin_l.bias.data.copy_(ours.lin_l.bias)
    if root_weight:
        ref.lin_r.weight.data.copy_(ours.lin_r.weight)
    _close(ours(x, gkdfast.Graph(ei, N)), ref(x, ei))
    # PyG's SAGEConv ignores edge weights; so does ours.
    _close(ours(x, gkdfast.Graph(ei, N, torch.rand(ei.size(1)))), ref(x, ei))


@pytest.mark.parametrize("train_eps", [False, True])
def test_ginconv_matches_pyg(train_eps):
    ei, x = _graph_data(3)
    mlp = torch.nn.Sequential(torch.nn.Linear(F_IN, 16), torch.nn.ReLU(), torch.nn.Linear(16, 6))
    ours = gnn.GINConv(mlp, eps=0.25, train_eps=train_eps)
    ref = pyg_nn.GINConv(mlp, eps=0.25, train_eps=train_eps)  # the same module: identical weights
    _close(ours(x, gkdfast.Graph(ei, N)), ref(x, ei))
    assert isinstance(ours.eps, torch.nn.Parameter) == train_eps


def test_ginconv_int_constructor_and_edge_weight():
    ei, x = _graph_data(4)
    conv = gnn.GINConv(F_IN, 6)
    assert conv(x, gkdfast.Graph(ei, N)).shape == (N, 6)
    w = torch.rand(ei.size(1))
    dense = torch.zeros(N, N).index_put_((ei[1], ei[0]), w, accumulate=True)
    _close(conv(x, gkdfast.Graph(ei, N), edge_weight=w), conv.nn(dense @ x + x))


def _copy_gat(ours, ref):
    ref.lin.weight.data.copy_(ours.lin.weight)
    ref.att_src.data.copy_(ours.att_src)
    ref.att_dst.data.copy_(ours.att_dst)
    with torch.no_grad():
        ours.bias.uniform_(-0.5, 0.5)
    ref.bias.data.copy_(ours.bias)


@pytest.mark.parametrize("heads,concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("add_self_loops", [True, False])
def test_gatconv_matches_pyg(heads, concat, add_self_loops):
    ei, x = _graph_data(5)
    ours = gnn.GATConv(F_IN, 5, heads=heads, concat=concat, add_self_loops=add_self_loops)
    ref = pyg_nn.GATConv(F_IN, 5, heads=heads, concat=concat, add_self_loops=add_self_loops)
    _copy_gat(ours, ref)
    out = ours(x, gkdfast.Graph(ei, N))
    assert out.shape == (N, heads * 5 if concat else 5)
    _close(out, ref(x, ei))


def test_gatconv_existing_self_loops_replaced_like_pyg():
    ei, x = _graph_data(6, self_loops=True)
    assert bool((ei[0] == ei[1]).any())
    ours = gnn.GATConv(F_IN, 4, heads=2)
    ref = pyg_nn.GATConv(F_IN, 4, heads=2)
    _copy_gat(ours, ref)
    _close(ours(x, gkdfast.Graph(ei, N)), ref(x, ei))


def test_gatconv_caches_derived_graph():
    from gkdfast.nn import _utils

    ei, x = _graph_data(7)
    g = gkdfast.Graph(ei, N)
    conv = gnn.GATConv(F_IN, 4)
    conv(x, g)
    looped = _utils.with_self_loops_csr(g)
    conv(x, g)
    assert _utils.with_self_loops_csr(g) is looped
    assert looped.num_edges == ei.size(1) + N and looped.perm is None


# ------------------------------------------------------------------------------ gradients
def _layer_pairs():
    ours_gcn = gnn.GCNConv(F_IN, 6)
    ref_gcn = pyg_nn.GCNConv(F_IN, 6)
    ref_gcn.lin.weight.data.copy_(ours_gcn.lin.weight)
    ours_sage = gnn.SAGEConv(F_IN, 6)
    ref_sage = pyg_nn.SAGEConv(F_IN, 6)
    ref_sage.lin_l.load_state_dict(ours_sage.lin_l.state_dict())
    ref_sage.lin_r.load_state_dict(ours_sage.lin_r.state_dict())
    ours_gat = gnn.GATConv(F_IN, 3, heads=2)
    ref_gat = pyg_nn.GATConv(F_IN, 3, heads=2)
    _copy_gat(ours_gat, ref_gat)
    return [("gcn", ours_gcn, ref_gcn, ours_gcn.lin.weight, ref_gcn.lin.weight),
            ("sage", ours_sage, ref_sage, ours_sage.lin_l.weight, ref_sage.lin_l.weight),
            ("gat", ours_gat, ref_gat, ours_gat.att_src, ref_gat.att_src)]


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["gcn", "sage", "gat"])
def test_gradients_match_pyg(idx):
    torch.manual_seed(0)
    name, ours, ref, p_ours, p_ref = _layer_pairs()[idx]
    ei, x = _graph_data(8)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    target = torch.randn(N, ours(x, gkdfast.Graph(ei, N)).size(1))
    (ours(x1, gkdfast.Graph(ei, N)) * target).sum().backward()
    (ref(x2, ei) * target).sum().backward()
    _close(x1.grad, x2.grad)
    _close(p_ours.grad, p_ref.grad)
    assert all(p.grad is not None for p in ours.parameters())


def test_gatconv_gradcheck_float64():
    ei, x = _graph_data(9, num_nodes=8, num_edges=20, isolated=1)
    g = gkdfast.Graph(ei, 8)
    conv = gnn.GATConv(F_IN, 3, heads=2).double()
    x = x[:8].double().requires_grad_()
    assert torch.autograd.gradcheck(lambda inp: conv(inp, g), (x,))


# ------------------------------------------------------------------------------ models
def _toy_problem(seed=0):
    """Two communities whose labels are readable from the features of the neighbours."""
    g = torch.Generator().manual_seed(seed)
    n = 60
    y = torch.arange(n) % 3
    src = torch.randint(0, n, (400,), generator=g)
    dst = torch.randint(0, n, (400,), generator=g)
    keep = (y[src] == y[dst]) & (src != dst)
    ei = torch.stack([src[keep], dst[keep]])
    x = F.one_hot(y, 3).float() + 0.8 * torch.randn(n, 3, generator=g)
    x = torch.cat([x, torch.randn(n, 5, generator=g)], 1)
    return gkdfast.Graph(ei, n), x, y


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "gin", "mlp"])
def test_models_train_and_return_hidden(name):
    torch.manual_seed(0)
    graph, x, y = _toy_problem()
    model = gnn.build_model(name, x.size(1), 16, 3, num_layers=2, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        logits, hidden = model(x, graph, return_hidden=True)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    model.eval()
    logits, hidden = model(x, graph, return_hidden=True)
    assert logits.shape == (x.size(0), 3) and hidden.shape == (x.size(0), 16)
    # hidden is exactly the input of the final layer (in eval mode, where dropout is the identity).
    last = model.layers[-1]
    _close(last(hidden) if name == "mlp" else last(hidden, graph), logits)
    _close(model(x, graph), logits)


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "gin", "mlp"])
def test_models_three_layers_batch_norm_double(name):
    graph, x, _ = _toy_problem(1)
    model = gnn.build_model(name, x.size(1), 8, 4, num_layers=3, batch_norm=True).double()
    logits, hidden = model(x.double(), graph, return_hidden=True)
    assert logits.dtype == torch.float64 and logits.shape == (x.size(0), 4) and hidden.shape == (x.size(0), 8)
    assert len(model.layers) == 3 and len(model.norms) == 2


def test_single_layer_model_hidden_is_input():
    graph, x, _ = _toy_problem()
    logits, hidden = gnn.GCN(x.size(1), 16, 3, num_layers=1)(x, graph, return_hidden=True)
    assert logits.shape == (x.size(0), 3) and hidden is x


def test_mlp_ignores_graph():
    graph, x, _ = _toy_problem()
    mlp = gnn.MLP(x.size(1), 16, 3).eval()
    _close(mlp(x), mlp(x, graph))


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "gin", "mlp"])
def test_input_dropout_drops_input_features_in_training_only(name):
    """``input_dropout`` zeroes input entries before the first layer (training), not in eval; 0 (the
    default) changes nothing; a value outside [0, 1) is an error."""
    graph, x, _ = _toy_problem()
    torch.manual_seed(0)
    model = gnn.build_model(name, x.size(1), 16, 3, dropout=0.0, input_dropout=0.5)
    first = model.layers[0]
    seen = []
    first.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    model.train()(x, graph)
    zeroed = (seen[-1] == 0) & (x != 0)
    assert 0.3 < zeroed.float().mean().item() < 0.7  # about half the entries dropped
    kept = seen[-1] != 0
    _close(seen[-1][kept], 2 * x[kept])  # survivors scaled by 1 / (1 - p)
    model.eval()(x, graph)
    _close(seen[-1], x)
    plain = gnn.build_model(name, x.size(1), 16, 3, dropout=0.0)
    assert plain.input_dropout == 0.0
    with pytest.raises(ValueError, match="input_dropout"):
        gnn.build_model(name, x.size(1), 16, 3, input_dropout=1.0)


def test_gat_model_head_widths():
    m = gnn.GAT(8, 16, 3, heads=4, out_heads=2)
    assert m.layers[0].heads == 4 and m.layers[0].out_channels == 4 and m.layers[0].concat
    assert m.layers[1].heads == 2 and not m.layers[1].concat
    with pytest.raises(ValueError, match="divisible"):
        gnn.GAT(8, 10, 3, heads=4)


def test_sparse_linear_matches_linear_on_bag_of_words():
    from gkdfast.nn.sparse_input import _operand, sparse_linear

    torch.manual_seed(0)
    x = (torch.rand(40, 300) < 0.01).float()            # 1 % non-zeros: the sparse path
    dense = torch.randn(40, 300)                         # the dense path
    for inp in (x, dense):
        lin = torch.nn.Linear(300, 6)
        ref = torch.nn.Linear(300, 6)
        ref.load_state_dict(lin.state_dict())
        out, want = sparse_linear(lin, inp), ref(inp)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
        out.square().sum().backward()
        want.square().sum().backward()
        torch.testing.assert_close(lin.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lin.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-4)
    assert _operand(x).layout == torch.sparse_csr and _operand(x) is _operand(x)  # converted once
    assert _operand(dense) is dense
    assert _operand(x.clone().requires_grad_()).layout == torch.strided  # a trainable input stays dense


def test_sparse_operand_cache_follows_the_tensor():
    import gc

    from gkdfast.nn import sparse_input

    x = (torch.rand(30, 200) < 0.01).float()
    first = sparse_input._operand(x)
    assert first.layout == torch.sparse_csr and sparse_input._operand(x) is first
    x[0, 0] = 5.0  # written in place: converted again, with the new value
    again = sparse_input._operand(x)
    assert again is not first and float(again.to_dense()[0, 0]) == 5.0
    key = id(x)
    del x, first, again
    gc.collect()
    assert key not in sparse_input._CACHE  # freed with the tensor: mini-batch slices do not pile up


@pytest.mark.parametrize("name", ["gcn", "gat", "mlp", "sage", "sage:sum", "sage:gcn", "sage:max", "gin"])
@pytest.mark.parametrize("layers", [1, 2])
def test_first_layer_on_bag_of_words_equals_the_dense_layer(name, layers):
    torch.manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, 40, (2, 160)), 40)
    x = (torch.rand(40, 300) < 0.01).float()  # 1 % non-zeros: the first layer takes the sparse product
    name, _, aggr = name.partition(":")
    kw = {"aggr": aggr} if aggr else {}
    model = gnn.build_model(name, 300, 16, 4, num_layers=layers, **kw).train()
    twin = gnn.build_model(name, 300, 16, 4, num_layers=layers, **kw).train()
    twin.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    out = model(x, g)
    torch.manual_seed(1)
    want = twin(x.clone().requires_grad_(), g)  # an input that requires grad stays on the dense path
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    want.square().sum().backward()
    for (n, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=n)


@pytest.mark.parametrize("aggr", ["mean", "sum", "gcn", "max"])
def test_sage_and_gin_layers_apply_their_linear_map_first_on_sparse_input(aggr, monkeypatch):
    """The sparse path multiplies the cached CSR copy before the aggregation (a wide input never
    reaches spmm), and a CSR input (what input dropout hands the first layer) gives the dense result."""
    import gkdfast.nn.sage_conv as sage_module
    from gkdfast.nn.sparse_input import sparse_operand

    torch.manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, 30, (2, 120)), 30, edge_weight=torch.rand(120))
    x = (torch.rand(30, 500) < 0.01).float()
    widths, real = [], sage_module.spmm
    monkeypatch.setattr(sage_module, "spmm", lambda graph, h, *a, **k: widths.append(h.size(1)) or real(graph, h, *a, **k))
    conv = gnn.SAGEConv(500, 8, aggr=aggr)
    out = conv(x, g, sparse_input=True)
    assert widths[0] == (500 if aggr == "max" else 8)  # max / min aggregate the features themselves
    torch.testing.assert_close(out, conv(x.clone().requires_grad_(), g), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv(sparse_operand(x), g), out, atol=1e-5, rtol=1e-5)
    gin = gnn.GINConv(500, 8, train_eps=True)
    out = gin(x, g, sparse_input=True)
    torch.testing.assert_close(out, gin(x.clone().requires_grad_(), g), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gin(sparse_operand(x), g), out, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert gin.eps.grad is not None and gin.nn[0].weight.grad.abs().sum() > 0


def test_gin_with_a_hooked_or_custom_first_module_keeps_the_plain_order():
    """A forward hook on ``nn``'s first Linear must still fire: the layer then runs ``nn`` as a module."""
    torch.manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, 20, (2, 60)), 20)
    x = (torch.rand(20, 300) < 0.02).float()
    gin = gnn.GINConv(300, 8)
    seen = []
    gin.nn[0].register_forward_hook(lambda mod, args, out: seen.append(args[0].shape))
    out = gin(x, g, sparse_input=True)
    assert seen == [torch.Size([20, 300])]
    seen.clear()
    gin_plain = gnn.GINConv(300, 8)
    gin_plain.load_state_dict(gin.state_dict())
    torch.testing.assert_close(gin_plain(x, g, sparse_input=True), out, atol=1e-5, rtol=1e-5)
    # nn not starting with a Linear: no reordering, the plain formula on the dense features
    mlp = torch.nn.Sequential(torch.nn.LayerNorm(300), torch.nn.Linear(300, 8))
    want = mlp(gkdfast.spmm(g, x, "sum") + x)
    torch.testing.assert_close(gnn.GINConv(mlp)(x, g, sparse_input=True), want, atol=1e-5, rtol=1e-5)


def test_projection_head():
    head = gnn.ProjectionHead(16, 32, 8)
    kinds = [type(m) for m in head.net]
    assert kinds == [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear]
    z = head(torch.randn(10, 16))
    assert z.shape == (10, 8)
    z.sum().backward()
    assert head.net[0].weight.grad is not None


def test_build_model_names_and_errors():
    for name, cls in [("gcn", gnn.GCN), ("SAGE", gnn.SAGE), ("gat", gnn.GAT), ("gin", gnn.GIN), ("mlp", gnn.MLP)]:
        assert type(gnn.build_model(name, 4, 8, 2)) is cls
    assert gnn.build_model("sage", 4, 8, 2, aggr="max").layers[0].aggr == "max"
    with pytest.raises(ValueError, match="unknown model"):
        gnn.build_model("transformer", 4, 8, 2)
    with pytest.raises(TypeError):
        gnn.build_model(3, 4, 8, 2)
    with pytest.raises(TypeError):
        gnn.build_model("mlp", 4, 8, 2, heads=2)  # not a parameter of MLP


# ------------------------------------------------------------------------------ bad input
def test_bad_input_errors():
    ei, x = _graph_data(10)
    g = gkdfast.Graph(ei, N)
    conv = gnn.GCNConv(F_IN, 4)
    with pytest.raises(TypeError, match="gkdfast.Graph"):
        conv(x, ei)
    with pytest.raises(ValueError, match="features"):
        conv(x[:, :5], g)
    with pytest.raises(ValueError, match="rows"):
        conv(x[:10], g)
    with pytest.raises(ValueError, match="2-D"):
        conv(x[0], g)
    with pytest.raises(TypeError, match="floating"):
        conv(x.long(), g)
    with pytest.raises(ValueError, match="graph is required"):
        gnn.GCN(F_IN, 8, 2)(x)
    with pytest.raises(ValueError, match="aggr"):
        gnn.SAGEConv(4, 4, aggr="median")
    with pytest.raises(ValueError):
        gnn.GINConv(4)
    with pytest.raises(TypeError):
        gnn.GINConv("mlp", 4)
    with pytest.raises(ValueError, match="heads"):
        gnn.GATConv(4, 4, heads=0)
    with pytest.raises(ValueError, match="num_layers"):
        gnn.MLP(4, 8, 2, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        gnn.GCN(4, 8, 2, dropout=1.5)


def test_empty_graph_and_isolated_nodes():
    x = torch.randn(5, F_IN)
    g = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), 5)
    gcn = gnn.GCNConv(F_IN, 3)
    _close(gcn(x, g), gcn.lin(x) + gcn.bias)  # only the self-loop, weight 1/sqrt(1*1)
    gat = gnn.GATConv(F_IN, 3, heads=2)
    _close(gat(x, g), gat.lin(x) + gat.bias)  # each node attends only to itself
    sage = gnn.SAGEConv(F_IN, 3)
    _close(sage(x, g), sage.lin_l.bias + sage.lin_r(x))
    for name in ["gcn", "sage", "gat", "gin"]:
        assert gnn.build_model(name, F_IN, 8, 2)(x, g).shape == (5, 2)


# ------------------------------------------------------------------------------ backends
@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "gin"])
def test_reference_backend_gives_same_output(name, monkeypatch):
    torch.manual_seed(0)
    graph, x, y = _toy_problem(2)
    model = gnn.build_model(name, x.size(1), 8, 3).eval()

    def run():
        model.zero_grad()
        logits = model(x, graph)
        F.cross_entropy(logits, y).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    native_out, native_grads = run()
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    ref_out, ref_grads = run()
    _close(native_out, ref_out)
    for a, b in zip(native_grads, ref_grads):
        _close(a, b)


def test_edge_sum_backward_matches_gather():
    from gkdfast.nn._utils import edge_sum

    ei, _ = _graph_data(11)
    g = gkdfast.Graph(ei, N)
    a = torch.randn(N, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(N, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v: edge_sum(g, u, v), (a, b))
    _close(edge_sum(g, a, b), a[g.col.long()] + b[g.dst.long()])


@pytest.mark.parametrize("name", ["gcn", "sage", "gat", "gin"])
def test_layers_match_pyg_on_every_device(name, device):
    ei, x = _graph_data(12)
    ours = {"gcn": lambda: gnn.GCNConv(F_IN, 6), "sage": lambda: gnn.SAGEConv(F_IN, 6),
            "gat": lambda: gnn.GATConv(F_IN, 3, heads=2), "gin": lambda: gnn.GINConv(F_IN, 6)}[name]()
    if name == "gcn":
        ref = pyg_nn.GCNConv(F_IN, 6)
        ref.lin.weight.data.copy_(ours.lin.weight)
    elif name == "sage":
        ref = pyg_nn.SAGEConv(F_IN, 6)
        ref.lin_l.load_state_dict(ours.lin_l.state_dict())
        ref.lin_r.load_state_dict(ours.lin_r.state_dict())
    elif name == "gat":
        ref = pyg_nn.GATConv(F_IN, 3, heads=2)
        _copy_gat(ours, ref)
    else:
        ref = pyg_nn.GINConv(ours.nn)
    ours, ref, x, ei = ours.to(device), ref.to(device), x.to(device), ei.to(device)
    _close(ours(x, gkdfast.Graph(ei, N)), ref(x, ei), tol=1e-4)


@pytest.mark.parametrize("name", ["gcn", "gat", "mlp", "sage", "gin"])
def test_input_dropout_on_bag_of_words_drops_stored_non_zeros(name):
    torch.manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, 60, (2, 240)), 60)
    x = (torch.rand(60, 400) < 0.02).float() * torch.rand(60, 400)  # 2 % non-zeros: sparse first layer
    model = gnn.build_model(name, 400, 16, 4, input_dropout=0.5).train()
    twin = gnn.build_model(name, 400, 16, 4, input_dropout=0.5).train()
    twin.load_state_dict(model.state_dict())
    seen = []
    model.layers[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    torch.manual_seed(1)
    out = model(x, g)
    dropped = seen[-1]
    assert dropped.layout == torch.sparse_csr  # the first layer got the dropped sparse copy
    dense = dropped.to_dense()
    assert torch.equal(dense[x == 0], torch.zeros_like(dense[x == 0]))  # zeros stay zero
    kept = dense[x != 0] != 0
    assert 0.35 < kept.float().mean().item() < 0.65  # about half the non-zeros dropped
    torch.testing.assert_close(dense[x != 0][kept], 2 * x[x != 0][kept])  # survivors scaled by 1 / (1 - p)
    twin.input_dropout = 0.0  # the same dropped input through the dense layer
    from gkdfast.nn.philox_dropout import draw_seed

    torch.manual_seed(1)
    draw_seed()  # the seed the input dropout drew, so the hidden dropout draws the same mask as above
    want = twin(dense.requires_grad_(), g)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    model.eval()(x, g)
    assert seen[-1] is x  # eval: no input dropout, the features themselves

