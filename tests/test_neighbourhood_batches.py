"""Neighbourhood batches (Distiller(batch_edges="neighbours")): LSP on each batch node's whole
neighbourhood for a graph-free student, the other terms untouched."""
import dataclasses

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.distill import Distiller, TeacherOutputs, terms
from gkdfast.distill.neighbourhood import neighbourhood_batch
from gkdfast.losses import lsp
from gkdfast.nn import GCN, MLP


def _random_graph(n=300, e=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return gkdfast.Graph(torch.randint(0, n, (2, e), generator=g), num_nodes=n)


def test_each_batch_node_gets_its_full_graph_lsp_term():
    """Per centre, LSP over the batch graph equals LSP over the full graph; repeated batch nodes get one
    centre row (the first), neighbour rows none, and only the centres' CSR rows are read."""
    graph = _random_graph()
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(300, 8, generator=g, dtype=torch.float64), torch.randn(300, 8, generator=g, dtype=torch.float64)
    full = lsp(graph, s, t, reduction="none")
    nodes = torch.randint(0, 300, (50,), generator=g)  # with repeats
    rows, bg, b = neighbourhood_batch(graph, nodes)
    assert b == 50 and torch.equal(rows[:b], nodes)
    extra = rows[b:]
    assert torch.equal(extra, torch.unique(extra)) and not set(extra.tolist()) & set(nodes.tolist())
    part = lsp(bg, s[rows], t[rows], reduction="none")
    uniq, inv = torch.unique(nodes, return_inverse=True)
    first = torch.full((uniq.numel(),), b).scatter_reduce(0, inv, torch.arange(b), "amin")
    torch.testing.assert_close(part[first], full[uniq], rtol=0, atol=1e-12)
    assert bg.num_edges == int(graph.in_degree()[uniq].sum())
    others = torch.ones(rows.numel(), dtype=torch.bool)
    others[first] = False
    assert float(part[others].abs().max()) == 0.0 and int(bg.in_degree()[others].sum()) == 0
    # the neighbours the batch graph names are the full graph's, node for node
    ei = bg.edge_index
    got = sorted(zip(rows[ei[0]].tolist(), rows[ei[1]].tolist()))
    src, dst = graph.edge_index
    want = sorted((j, i) for j, i in zip(src.tolist(), dst.tolist()) if i in set(uniq.tolist()))
    assert got == want


def test_isolated_batch_nodes_and_an_empty_batch():
    graph = gkdfast.Graph(torch.tensor([[1], [0]]), num_nodes=4)  # 1 -> 0; nodes 2, 3 have no in-edge
    rows, bg, b = neighbourhood_batch(graph, torch.tensor([2, 3]))
    assert rows.tolist() == [2, 3] and bg.num_edges == 0 and b == 2
    rows, bg, b = neighbourhood_batch(graph, torch.tensor([], dtype=torch.long))
    assert rows.numel() == 0 and bg.num_edges == 0 and b == 0


def _problem():
    data = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    data = dataclasses.replace(data, x=data.x.double())
    g = torch.Generator().manual_seed(1)
    teacher = TeacherOutputs(torch.randn(200, 3, generator=g, dtype=torch.float64),
                             torch.randn(200, 6, generator=g, dtype=torch.float64))
    return data, teacher


def _student():
    torch.manual_seed(0)
    return MLP(8, 16, 3, num_layers=2, dropout=0.0).double()


def test_lsp_steps_see_whole_neighbourhoods_and_the_other_terms_only_the_batch(monkeypatch):
    """Every LSP step's loss is the full-graph per-node term averaged over the batch nodes that have an
    in-edge, computed from the student's own full-graph hidden rows; CE and KD read the batch nodes."""
    data, teacher = _problem()
    student = _student()
    seen = {"lsp": [], "ce": []}
    real_lsp, real_ce = terms.LSP.forward, terms.CrossEntropy.forward

    def spy_lsp(self, ctx):
        v = real_lsp(self, ctx)
        seen["lsp"].append((ctx.nodes.clone(), ctx.hidden.detach().clone(), float(v.detach()), int(ctx.observed.sum())))
        return v

    def spy_ce(self, ctx):
        seen["ce"].append((int(ctx.labelled.sum()), int(data.train_mask[ctx.nodes[:int(ctx.observed.sum())]].sum())))
        return real_ce(self, ctx)

    monkeypatch.setattr(terms.LSP, "forward", spy_lsp)
    monkeypatch.setattr(terms.CrossEntropy, "forward", spy_ce)
    Distiller(student, [terms.CrossEntropy(1.0), terms.LogitKD(1.0), terms.LSP(1.0, kernel="rbf", gamma=0.5)],
              teacher, epochs=2, patience=None, batch_size=50, batch_edges="neighbours").fit(data, data.x)
    assert len(seen["lsp"]) == 8  # 200 nodes, batches of 50, 2 epochs
    for nodes, hidden, value, observed in seen["lsp"]:
        b = observed
        assert b == 50 and nodes.numel() > b  # the in-neighbours came along
        centres = nodes[:b]
        full = lsp(data.graph, torch.zeros(200, hidden.size(1), dtype=hidden.dtype).index_copy(0, nodes, hidden),
                   teacher.hidden, kernel="rbf", gamma=0.5, reduction="none")
        has_edge = data.graph.in_degree()[centres] > 0
        assert value == pytest.approx(float(full[centres][has_edge].mean()), rel=1e-12)
    for labelled, train_in_batch in seen["ce"]:
        assert labelled == train_in_batch  # neighbour rows are never labelled


def test_neighbour_rows_change_nothing_for_per_node_terms():
    """Without LSP the extra rows are run through the student but read by no term: the same weights as
    ordinary batches (float64, no dropout)."""
    data, teacher = _problem()
    out = {}
    for edges in ("induced", "neighbours"):
        student = _student()
        Distiller(student, [terms.CrossEntropy(0.5), terms.LogitKD(1.0)], teacher, epochs=3, patience=None,
                  batch_size=50, seed=2, batch_edges=edges).fit(data, data.x)
        out[edges] = student.state_dict()
    for name, w in out["induced"].items():
        torch.testing.assert_close(out["neighbours"][name], w, rtol=0, atol=1e-12)


def spy_teacher_logit_rows(monkeypatch, teacher) -> list:
    """Patches LogitKD so each step appends whether its context reads the teacher's logits for the
    centres (the observed rows, first) only, NaN in the neighbour rows, the teacher's hidden rows for
    every row (LSP compares each in-edge), and gives a finite KD value."""
    seen = []
    real = terms.LogitKD.forward

    def spy(self, ctx):
        b = int(ctx.observed.sum())
        v = real(self, ctx)
        seen.append(torch.equal(ctx.teacher_logits[:b], teacher.logits[ctx.nodes[:b]])
                    and bool(ctx.teacher_logits[b:].isnan().all()) and ctx.nodes.numel() > b
                    and torch.equal(ctx.teacher_hidden, teacher.hidden[ctx.nodes]) and bool(torch.isfinite(v)))
        return v

    monkeypatch.setattr(terms.LogitKD, "forward", spy)
    return seen


def test_teacher_logits_are_read_for_the_centres_only(monkeypatch):
    """KD reads the observed rows, i.e. the centres, so the teacher's logits of the neighbour rows are
    not read: NaN there (a term that read them would show it in the loss); the centres' rows are the
    teacher's, and the steps' losses stay finite."""
    data, teacher = _problem()
    seen = spy_teacher_logit_rows(monkeypatch, teacher)
    res = Distiller(_student(), [terms.LogitKD(1.0), terms.LSP(1.0)], teacher, epochs=2, patience=None,
                    batch_size=50, batch_edges="neighbours").fit(data, data.x)
    assert seen == [True] * 8
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)


class _MaskedByProduct(terms.LossTerm):
    """A user term that claims masked rows but combines them by multiplying with the mask."""

    name = "by_product"
    needs_teacher = True
    masked_rows_only = True

    def forward(self, ctx):
        per_row = (ctx.logits - ctx.teacher_logits).square().sum(-1)
        return (per_row * ctx.observed).sum() / ctx.observed.sum()


def test_a_term_that_multiplies_by_its_mask_is_stopped_with_one_clear_error():
    data, teacher = _problem()
    with pytest.raises(FloatingPointError, match="non-finite loss on a neighbourhood batch"):
        Distiller(_student(), [_MaskedByProduct(1.0), terms.LSP(1.0)], teacher, epochs=1, patience=None,
                  batch_size=50, batch_edges="neighbours").fit(data, data.x)
    # the same term on ordinary batches: no NaN rows, trains
    res = Distiller(_student(), [_MaskedByProduct(1.0)], teacher, epochs=1, patience=None,
                    batch_size=50).fit(data, data.x)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)


def test_pad_neighbour_rows():
    from gkdfast.distill.neighbourhood import pad_neighbour_rows

    out = pad_neighbour_rows(torch.arange(6.0).view(2, 3), 5)
    assert out.shape == (5, 3) and out[:2].tolist() == [[0, 1, 2], [3, 4, 5]] and bool(out[2:].isnan().all())
    assert pad_neighbour_rows(torch.ones(2, 3, dtype=torch.float64), 2).dtype == torch.float64


def test_labelled_first_batches_expand_too():
    """Graph-MLP's batches (training nodes first, drawn nodes with replacement) with neighbours: a
    repeated node is one centre, and the label rows stay the first ones."""
    data, teacher = _problem()
    student = _student()
    res = Distiller(student, [terms.CrossEntropy(1.0), terms.LSP(1.0)], teacher, epochs=3, patience=None,
                    batch_size=100, batching="labelled_first", batch_edges="neighbours").fit(data, data.x)
    assert res.epochs == 3 and all(h["lsp"] >= 0 for h in res.history)


def test_bad_arguments():
    data, teacher = _problem()
    with pytest.raises(ValueError, match="batch_edges must be 'induced' or 'neighbours'"):
        Distiller(_student(), [terms.LSP(1.0)], teacher, batch_size=10, batch_edges="all")
    for kw in (dict(batch_size=None), dict(batch_size=10, passes="separate")):
        with pytest.raises(ValueError, match="batch_edges='neighbours' adds each batch node's in-neighbours"):
            Distiller(_student(), [terms.LSP(1.0)], teacher, batch_edges="neighbours", **kw)
    # a term that reads rows beyond its masks would see the neighbour rows: refused
    with pytest.raises(ValueError, match="term 'ncontrast' reads batch rows beyond its masks"):
        Distiller(_student(), [terms.CrossEntropy(1.0), terms.NContrast(1.0)], None, batch_size=10,
                  batch_edges="neighbours")
    with pytest.raises(ValueError, match="graph-free student"):
        Distiller(GCN(8, 16, 3).double(), [terms.LSP(1.0)], teacher, batch_size=10, batch_edges="neighbours")
