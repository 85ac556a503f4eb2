"""fit_sampled with loss terms: a GNN student distilled on neighbour-sampled batches."""
import pytest
import torch

from gkdfast.data import csbm
from gkdfast.distill import TeacherOutputs, terms
from gkdfast.nn import SAGE
from gkdfast.sampling import NeighborLoader, fit_sampled


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
