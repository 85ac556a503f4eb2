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


# ------------------------------------------------------------------ one-line errors at the API (session 35)
BAD_ARGUMENTS = [
    # (call, exception, what the message must say)
    (lambda: gkdfast.losses.rsd(torch.randn(4, 3), torch.randn(3, 5)), ValueError, "gkdfast.losses.rsd: student has"),
    (lambda: gkdfast.losses.rsd(torch.randn(4, 3), torch.randn(4, 5), nodes=torch.tensor([9])), ValueError,
     "gkdfast.losses.rsd: nodes has indices outside"),
    (lambda: _terms().CRD(num_negatives=-3), ValueError, "CRD: num_negatives must be None or an int >= 1"),
    (lambda: _terms().NContrast(hops=0), ValueError, "NContrast: hops must be an int >= 1"),
    (lambda: _terms().NContrast(tau=-1), ValueError, "NContrast: tau must be a finite number > 0"),
    (lambda: _terms().CrossEntropy(label_smoothing=2.0), ValueError, "CrossEntropy: label_smoothing must be"),
    (lambda: _distiller(lr=float("nan")), ValueError, "Distiller: lr must be a finite number >= 0"),
    (lambda: _distiller(weight_decay=-1.0), ValueError, "Distiller: weight_decay must be a finite number >= 0"),
    (lambda: _relation_spmm(rows=2), ValueError, "relation_spmm: x_src has 2 rows but the relation's edges"),
    (lambda: _relation_spmm(num_dst=-1), ValueError, "relation_spmm: num_dst must be an int in [0, 4]"),
    (lambda: gkdfast.gcn_norm(_graph(), dtype=torch.int64), TypeError, "gkdfast.gcn_norm: dtype must be"),
    (lambda: gkdfast.global_pool(torch.ones(4, 2), [0, 2, 4]), TypeError, "gkdfast.global_pool: x and ptr must"),
    (lambda: gkdfast.Graph(EI, num_nodes=4.5), TypeError, "gkdfast.Graph: num_nodes must be an int"),
    (lambda: _accuracy(torch.randn(4)), ValueError, "accuracy: logits must be [N, C] and y [N]"),
    (lambda: gkdfast.data.random_split(torch.randn(4)), TypeError, "random_split: y must hold integer class"),
]


def _accuracy(logits):
    from gkdfast.distill import accuracy

    return accuracy(logits, torch.tensor([0, 1, 0, 1]))


def _terms():
    from gkdfast.distill import terms

    return terms


def _distiller(**kw):
    from gkdfast.distill import Distiller

    return Distiller(torch.nn.Linear(3, 2), [_terms().CrossEntropy()], **kw)


def _relation_spmm(rows=4, num_dst=3):
    from gkdfast.hetero.graph import relation_spmm

    g = gkdfast.Graph(torch.tensor([[0, 3, 1], [0, 0, 2]]), num_nodes=4)  # sources up to id 3
    return relation_spmm(g, torch.ones(rows, 1), num_dst)


@pytest.mark.parametrize("call, exc, text", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_naming_the_function(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value) and "\n" not in str(info.value)


def test_distiller_takes_a_single_term():
    from gkdfast.distill import Distiller

    assert len(Distiller(torch.nn.Linear(3, 2), _terms().CrossEntropy()).terms) == 1


def test_kd_nan_teacher_row_stays_nan_while_minus_inf_classes_are_masked():
    s = torch.randn(2, 3)
    t = torch.tensor([[0.0, float("-inf"), 1.0], [float("nan")] * 3])
    per_row = gkdfast.losses.kd(s, t, reduction="none")
    assert torch.isfinite(per_row[0]) and torch.isnan(per_row[1])  # the NaN row came out 0
