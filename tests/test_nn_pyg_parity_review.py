"""Cases a review of the layers against PyG's found (helper 122): SAGEConv skipped its linear maps'
hooks (pruning, weight norm), GINConv refused modules PyG takes, and PyG's third forward argument or
lazy / bipartite widths gave errors that named neither the cause nor the fix."""
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import gkdfast
from gkdfast.nn import GATConv, GCNConv, GINConv, SAGEConv


def _ring(n=6):
    return gkdfast.Graph(torch.stack([torch.arange(n), (torch.arange(n) + 1) % n]), n)


@pytest.mark.parametrize("aggr", ["mean", "sum", "gcn", "max"])
def test_sageconv_runs_the_hooks_of_both_linear_maps(aggr):
    """With out < in (the usual first layer) lin_l's weight was read directly: its hooks did not fire and
    a pruned lin_l gave the unpruned output in eval mode."""
    torch.manual_seed(0)
    g, x = _ring(), torch.randn(6, 8)
    conv = SAGEConv(8, 4, aggr=aggr)
    fired = []
    for lin in (conv.lin_l, conv.lin_r):
        if lin is not None:
            lin.register_forward_hook(lambda m, i, o: fired.append(m))
    conv(x, g)
    assert len(fired) == (1 if aggr == "gcn" else 2)
    prune.l1_unstructured(conv.lin_l, "weight", 0.5)
    with torch.no_grad():
        conv.lin_l.weight_orig.add_(1.0)  # an optimiser step: only the pruning hook recomputes the weight
    conv(x, g)  # (the hook runs at the call; eval's output must use the recomputed weight)
    want = SAGEConv(8, 4, aggr=aggr)
    want.load_state_dict({k.replace("_orig", ""): v for k, v in conv.state_dict().items() if "mask" not in k})
    with torch.no_grad():
        want.lin_l.weight.copy_(conv.lin_l.weight)  # the pruned weight: what the layer must use
    torch.testing.assert_close(conv.eval()(x, g), want.eval()(x, g))


# (a pruned SAGE first layer in training: tests/test_graph_nn_review_cases.py, test_a_pruned_first_layer_trains)


class _Twice(nn.Module):
    """[N, F] -> [N, 2F]: a module before the first Linear that changes the width."""

    def forward(self, x):
        return torch.cat([x, x], dim=1)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 4)),
    lambda: nn.Sequential(_Twice(), nn.Linear(16, 4)),  # the Linear's 16 is not the input width (8)
])
def test_ginconv_takes_modules_whose_input_width_is_not_known(make):
    out = GINConv(make())(torch.randn(6, 8), _ring())
    assert out.shape == (6, 4)


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(8, 4), nn.ReLU()),
    lambda: nn.Sequential(nn.Dropout(0.1), nn.Linear(8, 4)),  # looked through: keeps the width
    lambda: nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 4)),
    lambda: nn.Sequential(nn.Sequential(nn.Identity(), nn.Linear(8, 4)), nn.ReLU()),
])
def test_ginconv_still_checks_a_known_width(make):
    with pytest.raises(ValueError, match="x has 5 features but the layer expects 8"):
        GINConv(make())(torch.randn(6, 5), _ring())


def test_integer_scalars_of_numpy_and_torch_are_widths():
    """`labels.max() + 1` from a NumPy array (or a torch tensor) as the class count."""
    np = pytest.importorskip("numpy")
    g, x = _ring(), torch.randn(6, 8)
    for width in (np.int64(3), torch.tensor(3)):
        for conv in (GCNConv(np.int64(8), width), SAGEConv(8, width), GATConv(8, width), GINConv(np.int32(8), width)):
            assert conv(x, g).shape == (6, 3)
            assert type(conv.in_channels) is int


@pytest.mark.parametrize("layer, third, pyg", [
    (lambda: GATConv(8, 4), torch.randn(6, 3), "edge_attr"),
    (lambda: SAGEConv(8, 4), torch.randn(6), "size"),
    (lambda: SAGEConv(8, 4), (6, 6), "size"),
])
def test_pyg_third_forward_argument_is_named(layer, third, pyg):
    with pytest.raises(TypeError, match=rf"third argument of forward is sparse_input .*\({pyg}\) is not supported"):
        layer()(torch.randn(6, 8), _ring(), third)


@pytest.mark.parametrize("make, match", [
    (lambda: GCNConv(-1, 4), "in_channels must be a positive int, got -1 .PyG's lazy width"),
    (lambda: GATConv(-1, 4), "in_channels must be a positive int, got -1 .PyG's lazy width"),
    (lambda: SAGEConv((8, 8), 4), r"got \(8, 8\) .PyG's bipartite"),
    (lambda: SAGEConv(8, 0), "out_channels must be a positive int, got 0"),
    (lambda: GINConv(8, True), "out_channels must be a positive int, got True"),
    (lambda: SAGEConv(8, 4, aggr="add"), "PyG's 'add' is 'sum' here"),
])
def test_pyg_constructor_arguments_fail_in_one_line(make, match):
    with pytest.raises(ValueError, match=match):
        make()
