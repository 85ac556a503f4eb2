"""The shared argument checks (gkdfast._checks): every graph entry point reports a non-graph, a
node tensor with the wrong row count and one on another device with the same wording, naming the
function and the argument."""
import pytest
import torch

import gkdfast
from gkdfast import _checks
from gkdfast.sampling import NeighborLoader, sample_neighbors

EI = torch.tensor([[0, 1, 2], [1, 2, 0]])


def _graph():
    return gkdfast.Graph(EI, 3)


# (public name in the message, argument named in the message, call(graph, node_tensor))
GRAPH_CALLS = [
    ("gkdfast.spmm", "x", lambda g, x: gkdfast.spmm(g, x)),
    ("gkdfast.sddmm", "a", lambda g, x: gkdfast.sddmm(g, x, x)),
    ("gkdfast.nn.GCNConv", "x", lambda g, x: gkdfast.nn.GCNConv(2, 2)(x, g)),
    ("gkdfast.nn.SAGEConv", "x", lambda g, x: gkdfast.nn.SAGEConv(2, 2)(x, g)),
    ("gkdfast.losses.lsp", "student", lambda g, x: gkdfast.losses.lsp(g, x, x)),
    ("gkdfast.losses.ncontrast", "z", lambda g, x: gkdfast.losses.ncontrast(g, x)),
]


@pytest.mark.parametrize("where,arg,call", GRAPH_CALLS, ids=[c[0] for c in GRAPH_CALLS])
def test_a_non_graph_is_refused_with_the_build_hint(where, arg, call):
    with pytest.raises(TypeError, match=rf"^{where}: graph must be a gkdfast.Graph, got Tensor \(build one with"):
        call(EI, torch.randn(3, 2))


@pytest.mark.parametrize("where,arg,call", GRAPH_CALLS, ids=[c[0] for c in GRAPH_CALLS])
def test_wrong_row_count_names_the_function(where, arg, call):
    with pytest.raises(ValueError, match=rf"^{where}: .* 4 rows but the graph has 3 nodes$"):
        call(_graph(), torch.randn(4, 2))


@pytest.mark.parametrize("where,arg,call", GRAPH_CALLS, ids=[c[0] for c in GRAPH_CALLS])
def test_wrong_device_names_the_argument(where, arg, call):
    x = torch.randn(3, 2, device="meta")
    with pytest.raises(ValueError, match=rf"^{where}: {arg} is on meta but the graph is on cpu; move one"):
        call(_graph(), x)


def test_samplers_share_the_graph_check():
    for where, call in (("gkdfast.sample_neighbors", lambda: sample_neighbors(EI, torch.tensor([0]), 2)),
                        ("gkdfast.sampling.NeighborLoader", lambda: NeighborLoader(EI, torch.tensor([0]), [2]))):
        with pytest.raises(TypeError, match=rf"^{where}: graph must be a gkdfast.Graph"):
            call()


def test_check_rows_match_counts_all_shards_when_told():
    g = _graph()
    with pytest.raises(ValueError, match="the 2 shards of z have 5 rows together but the graph has 3 nodes"):
        _checks.check_rows_match(g, torch.randn(3, 2), "w", "z", num_rows=5,
                                 rows_text="the 2 shards of z have 5 rows together")
    x = torch.randn(3, 2)
    assert _checks.check_node_matrix(g, x, "w") is x
