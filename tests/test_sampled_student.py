"""fit_sampled with loss terms: a GNN student distilled on neighbour-sampled batches; with
batch_edges="neighbours" (LSP) each step's seeds are the centres of a neighbourhood batch (the centres,
then every in-neighbour of them)."""
import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill import TeacherOutputs, terms
from gkdfast.losses import lsp
from gkdfast.nn import SAGE
from gkdfast.sampling import NeighborLoader, fit_sampled
from gkdfast.sampling.train import NeighbourhoodBatch

from conftest import DEVICES


def _data():
    return csbm(num_nodes=300, num_classes=3, feature_dim=12, seed=1)


def _teacher(n=300, c=3, h=5):
    g = torch.Generator().manual_seed(1)
    return TeacherOutputs(torch.randn(n, c, generator=g), torch.randn(n, h, generator=g))


def _model():
    torch.manual_seed(0)
    return SAGE(12, 16, 3, dropout=0.0)


def test_a_cross_entropy_term_on_the_training_nodes_is_plain_training():
    data = _data()
    plain, termed = _model(), _model()
    fit_sampled(plain, data, fanouts=(4, 3), batch_size=20, epochs=3, seed=5, progress=False)
    fit_sampled(termed, data, fanouts=(4, 3), batch_size=20, epochs=3, seed=5, progress=False,
                terms=[terms.CrossEntropy(1.0)], nodes=data.train_mask)
    for name, w in plain.state_dict().items():
        torch.testing.assert_close(termed.state_dict()[name], w, rtol=1e-5, atol=1e-6)


def test_terms_read_the_seeds_teacher_rows_and_labels(monkeypatch):
    """Every node is a seed by default; each step's KD and GSP see the seeds' teacher rows, the label
    term the seeds among the training nodes."""
    data, teacher = _data(), _teacher()
    checks, seeds_seen = [], set()
    real = terms.GSP.forward

    def spy(self, ctx):
        checks.append(torch.equal(ctx.teacher_logits, teacher.logits[ctx.nodes])
                      and torch.equal(ctx.teacher_hidden, teacher.hidden[ctx.nodes])
                      and torch.equal(ctx.labelled, data.train_mask[ctx.nodes])
                      and ctx.hidden.shape == (ctx.nodes.numel(), 16))
        seeds_seen.update(ctx.nodes.tolist())
        return real(self, ctx)

    monkeypatch.setattr(terms.GSP, "forward", spy)
    stats = fit_sampled(_model(), data, fanouts=(4, 3), batch_size=50, epochs=2, seed=5, progress=False,
                        terms=[terms.CrossEntropy(0.5), terms.LogitKD(1.0), terms.GSP(1.0, proj_dim=8)],
                        teacher=teacher)
    assert checks == [True] * 12 and seeds_seen == set(range(300))  # 6 batches x 2 epochs, every node
    assert stats["epochs"] == 2 and stats["nodes_per_s"] > 0


def test_labelled_first_batches_and_patience(monkeypatch):
    data, teacher = _data(), _teacher()
    train = set(data.train_mask.nonzero().flatten().tolist())
    batches = []
    real = NeighborLoader.sample

    def spy(self, seeds, epoch=None):
        if seeds.numel() > 1:  # (not the one-seed probe of the widths)
            batches.append((set(seeds[:len(train)].tolist()) == train, seeds.numel(), seeds.unique().numel(), epoch))
        return real(self, seeds, epoch)

    monkeypatch.setattr(NeighborLoader, "sample", spy)
    stats = fit_sampled(_model(), data, fanouts=(4, 3), batch_size=100, epochs=4, seed=5, progress=False,
                        terms=[terms.CrossEntropy(1.0), terms.LogitKD(1.0)], teacher=teacher,
                        batching="labelled_first", eval_every=10)
    train_batches = [b for b in batches if b[0]]
    assert [b[1:] for b in train_batches] == [(100, 100, e) for e in range(4)] and stats["epochs"] == 4
    # lr 0: the validation accuracy never improves after the first evaluation; patience 2 stops at 3
    stats = fit_sampled(_model(), data, fanouts=(4, 3), batch_size=100, epochs=10, lr=0.0, seed=5, progress=False,
                        terms=[terms.LogitKD(1.0)], teacher=teacher, patience=2)
    assert stats["epochs"] == 3 and len(stats["history"]) == 3 and stats["best_epoch"] == 1


def test_bad_arguments():
    data, teacher = _data(), _teacher()
    kw = dict(fanouts=(4, 3), batch_size=50, epochs=1, progress=False)
    with pytest.raises(ValueError, match="term .lsp. needs the graph around each node.*batch_edges=.neighbours."):
        fit_sampled(_model(), data, terms=[terms.LSP(1.0)], teacher=teacher, **kw)
    with pytest.raises(ValueError, match="need teacher="):
        fit_sampled(_model(), data, terms=[terms.LogitKD(1.0)], **kw)
    with pytest.raises(ValueError, match="teacher's hidden rows"):
        fit_sampled(_model(), data, terms=[terms.GSP(1.0)], teacher=TeacherOutputs(teacher.logits), **kw)
    with pytest.raises(TypeError, match="sequence of LossTerm"):
        fit_sampled(_model(), data, terms=["kd"], teacher=teacher, **kw)
    with pytest.raises(ValueError, match="batch_size must be larger"):
        fit_sampled(_model(), data, terms=[terms.LogitKD(1.0)], teacher=teacher, batching="labelled_first",
                    **dict(kw, batch_size=10))
    with pytest.raises(ValueError, match="patience must be a positive int"):
        fit_sampled(_model(), data, patience=0, **kw)
    # plain training reads the training nodes' labels only: seeds beyond them need terms
    for bad in (dict(nodes=torch.arange(300)), dict(batching="labelled_first", batch_size=100)):
        with pytest.raises(ValueError, match="need terms="):
            fit_sampled(_model(), data, **dict(kw, **bad))
    with pytest.raises(ValueError, match="batch_edges must be 'sampled' or 'neighbours'"):
        fit_sampled(_model(), data, terms=[terms.LSP(1.0)], teacher=teacher, batch_edges="induced", **kw)
    with pytest.raises(ValueError, match="plain training takes terms=None"):
        fit_sampled(_model(), data, batch_edges="neighbours", **kw)
    with pytest.raises(ValueError, match="term 'ncontrast' reads batch rows beyond its masks"):
        fit_sampled(_model(), data, terms=[terms.NContrast(1.0)], teacher=teacher, batch_edges="neighbours", **kw)


@pytest.mark.parametrize("device", DEVICES)
def test_each_step_is_the_full_graph_lsp_over_its_centres(monkeypatch, device):
    """With every neighbour sampled (fan-outs -1) the student's rows are its full-graph forward, so each
    step's LSP must be the full-graph per-node LSP averaged over that step's centres (those with an
    in-edge); the neighbour rows are neither observed nor labelled."""
    data, teacher = _data(), _teacher()
    model = _model()
    with torch.no_grad():
        _, full_hidden = model(data.x, data.graph, return_hidden=True)
    model.to(device)  # (the graph and features stay on the CPU; each batch moves to the model's device)
    per_node = lsp(data.graph, full_hidden, teacher.hidden, kernel="laplace", gamma=0.01, reduction="none")
    has_in = data.graph.in_degree() > 0
    got, want, centre_sets = [], [], []
    real = terms.LSP.forward

    def spy(self, ctx):
        v = real(self, ctx)
        b = int(ctx.observed.sum())
        assert bool(ctx.observed[:b].all()) and not bool(ctx.observed[b:].any()) and ctx.neighbourhood
        assert not bool(ctx.labelled[b:].any()) and ctx.graph.rowptr.device == ctx.hidden.device
        centres = ctx.nodes[:b].cpu()
        assert torch.equal(ctx.teacher_hidden.cpu(), teacher.hidden[ctx.nodes.cpu()])
        centre_sets.append(set(centres.tolist()))
        got.append(float(v.detach()))
        want.append(float(per_node[centres][has_in[centres]].mean()))
        return v

    monkeypatch.setattr(terms.LSP, "forward", spy)
    fit_sampled(model, data, fanouts=(-1, -1), batch_size=60, epochs=1, lr=0.0, seed=1, progress=False,
                terms=[terms.CrossEntropy(1.0), terms.LSP(1.0)], teacher=teacher, batch_edges="neighbours")
    assert len(got) == 5 and set().union(*centre_sets) == set(range(300))
    assert sum(len(s) for s in centre_sets) == 300  # a partition of the nodes into 5 batches of centres
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6)


def test_neighbour_rows_change_nothing_for_per_node_and_pair_terms():
    """A node's sampled neighbourhood depends on (seed, epoch, node) only, so the centres' rows are the
    same with or without their neighbours in the batch: CE + KD + GSP train the same weights."""
    data, teacher = _data(), _teacher()
    kw = dict(fanouts=(4, 3), batch_size=25, epochs=2, seed=5, progress=False, teacher=teacher)
    out = {}
    for edges in ("sampled", "neighbours"):
        model = _model()
        fit_sampled(model, data, terms=[terms.CrossEntropy(0.5), terms.LogitKD(1.0, temperature=2.0),
                                        terms.GSP(1.0, proj_dim=None, max_samples=None)],
                    batch_edges=edges, **kw)
        out[edges] = model.state_dict()
    for name, w in out["sampled"].items():
        torch.testing.assert_close(out["neighbours"][name], w, rtol=1e-5, atol=1e-6)


def test_neighbourhood_steps_read_the_teacher_logits_of_the_centres_only(monkeypatch):
    """The neighbour rows' teacher logits are never read (NaN in the step's context); the centres' are
    the teacher's, and the teacher's hidden rows are read for every row (LSP compares each in-edge)."""
    from test_neighbourhood_batches import spy_teacher_logit_rows

    data, teacher = _data(), _teacher()
    seen = spy_teacher_logit_rows(monkeypatch, teacher)
    fit_sampled(_model(), data, fanouts=(4, 3), batch_size=50, epochs=1, seed=5, progress=False,
                terms=[terms.LogitKD(1.0), terms.LSP(1.0)], teacher=teacher, batch_edges="neighbours")
    assert seen == [True] * 6  # 300 nodes, 6 steps


def test_a_term_that_multiplies_by_its_mask_is_stopped_on_neighbourhood_steps():
    from test_neighbourhood_batches import _MaskedByProduct

    data, teacher = _data(), _teacher()
    with pytest.raises(FloatingPointError, match="non-finite loss on a neighbourhood batch"):
        fit_sampled(_model(), data, fanouts=(4, 3), batch_size=50, epochs=1, seed=5, progress=False,
                    terms=[_MaskedByProduct(1.0), terms.LSP(1.0)], teacher=teacher, batch_edges="neighbours")


def test_lsp_trains_the_student_towards_the_teacher_and_labelled_first_expands(monkeypatch):
    data, teacher = _data(), _teacher()
    sizes = []
    real = NeighborLoader.sample

    def spy(self, seeds, epoch=None):
        sizes.append(seeds.numel())
        return real(self, seeds, epoch)

    monkeypatch.setattr(NeighborLoader, "sample", spy)
    model = _model()
    with torch.no_grad():
        before = float(lsp(data.graph, model(data.x, data.graph, return_hidden=True)[1], teacher.hidden,
                             kernel="laplace", gamma=0.01))
    fit_sampled(model, data, fanouts=(4, 3), batch_size=120, epochs=30, lr=0.02, seed=5, progress=False,
                terms=[terms.LSP(1.0)], teacher=teacher, batching="labelled_first", batch_edges="neighbours",
                eval_every=30)
    with torch.no_grad():
        after = float(lsp(data.graph, model(data.x, data.graph, return_hidden=True)[1], teacher.hidden,
                             kernel="laplace", gamma=0.01))
    assert after < 0.8 * before
    # each step samples its 120 centres plus their in-neighbours (none of this graph's nodes is isolated)
    steps = [s for s in sizes if s > 120 and s != 1]
    assert len(steps) == 30 and all(s <= 300 for s in steps)


def test_the_sampler_wraps_each_step_and_refuses_repeated_seeds_in_either_mode():
    from gkdfast.sampling.train import _sampler

    data = _data()
    loader = NeighborLoader(data.graph, torch.arange(300), (3, 2), batch_size=10, seed=0)
    item = _sampler(loader, "neighbours")(torch.tensor([7, 3, 9]), 0)
    assert isinstance(item, NeighbourhoodBatch) and item.num_seeds == 3
    assert item.batch.seeds[:3].tolist() == [7, 3, 9] and item.batch.seeds.unique().numel() == item.batch.num_seeds
    assert _sampler(loader, "sampled") == loader.sample
    for edges in ("sampled", "neighbours"):
        with pytest.raises(ValueError, match="distinct"):
            _sampler(loader, edges)(torch.tensor([7, 3, 7]), 0)
