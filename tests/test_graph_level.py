"""Graph classification (issue 16): batched small graphs, TU edge cases, k-fold splits, graph models,
DFAD-GNN's generator (gradients reach it, empty graphs) and ``gkdfast distill --task graph``."""
import json
import os

import pytest
import torch

import gkdfast
from conftest import need_data, run_cli
from gkdfast.data import load_tu
from gkdfast.data.batching import GraphBatch, GraphLoader, collate, select_graphs, stratified_kfold
from gkdfast.distill.datafree import (BNStatistics, DFADConfig, GraphGenerator, distill_dfad, feature_layout,
                                      onehot_frequencies, size_frequencies)
from gkdfast.distill.graph_experiment import dfad_generator_for
from gkdfast.distill.graph_level import GraphTrainConfig, train_graph_classifier
from gkdfast.nn.graph_models import GraphClassifier


def _write_tu(folder, name, edges, indicator, labels, node_labels=None):
    os.makedirs(folder, exist_ok=True)
    w = lambda suffix, rows: open(os.path.join(folder, f"{name}_{suffix}.txt"), "w").write(  # noqa: E731
        "".join(f"{r}\n" for r in rows))
    w("A", [f"{a}, {b}" for a, b in edges])
    w("graph_indicator", indicator)
    w("graph_labels", labels)
    if node_labels is not None:
        w("node_labels", node_labels)
    return str(folder)


@pytest.fixture
def tiny_tu(tmp_path):
    # graph 1: path 1-2-3 plus isolated node 4; graph 2: no nodes at all; graph 3: edge 5-6
    edges = [(1, 2), (2, 1), (2, 3), (3, 2), (5, 6), (6, 5)]
    return load_tu(_write_tu(tmp_path / "tiny", "TINY", edges, [1, 1, 1, 1, 3, 3], [0, 1, 0],
                             node_labels=[0, 1, 0, 2, 1, 1]))


def test_select_graphs_matches_each_graph_including_empty_and_isolated(tiny_tu):
    assert (tiny_tu.ptr.tolist(), tiny_tu.y.tolist()) == ([0, 4, 4, 6], [0, 1, 0])
    b = select_graphs(tiny_tu, [2, 1, 0])
    assert b.ptr.tolist() == [0, 2, 2, 6] and b.batch.tolist() == [0, 0, 2, 2, 2, 2]
    assert b.y.tolist() == [0, 1, 0]
    assert torch.equal(b.x, torch.cat([tiny_tu[2].x, tiny_tu[0].x]))
    edges = sorted(map(tuple, b.graph.edge_index.t().tolist()))
    assert edges == [(0, 1), (1, 0), (2, 3), (3, 2), (3, 4), (4, 3)]  # node 5 (isolated) keeps no edge


def test_select_graphs_on_mutag_equals_collate_of_single_graphs():
    ds = load_tu(need_data("tu_mutag"))
    idx = [5, 187, 0, 5, 42]
    a, b = select_graphs(ds, idx), collate([ds[i] for i in idx])
    assert torch.equal(a.ptr, b.ptr) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.equal(a.graph.rowptr.long(), b.graph.rowptr.long())
    assert torch.equal(a.graph.col.long(), b.graph.col.long())


def test_tu_node_count_disagreeing_with_indicator_is_a_clear_error(tmp_path):
    folder = _write_tu(tmp_path / "bad", "BAD", [(1, 2), (2, 1)], [1, 1, 2], [0, 1], node_labels=[0, 1])
    with pytest.raises(ValueError, match="2 rows for 3 nodes"):
        load_tu(folder)
    folder = _write_tu(tmp_path / "bad2", "BAD", [(1, 4), (4, 1)], [1, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="node ids must be in 1..3"):
        load_tu(folder)


def test_stratified_kfold_tests_every_graph_once_and_keeps_class_shares():
    y = torch.tensor([0] * 63 + [1] * 125)  # MUTAG's class counts
    splits = stratified_kfold(y, 10, seed=3)
    tested = torch.cat([te for _, te in splits])
    assert sorted(tested.tolist()) == list(range(188))
    for tr, te in splits:
        assert set(tr.tolist()).isdisjoint(te.tolist()) and len(tr) + len(te) == 188
        assert 6 <= int((y[te] == 0).sum()) <= 7 and 12 <= int((y[te] == 1).sum()) <= 13
    assert not torch.equal(splits[0][1], stratified_kfold(y, 10, seed=4)[0][1])
    with pytest.raises(ValueError, match="folds"):
        stratified_kfold(y, 1)


def test_graph_loader_shuffles_reproducibly_and_covers_everything(tiny_tu):
    ys = lambda seed: [b.y.tolist() for b in GraphLoader(tiny_tu, batch_size=2, shuffle=True, seed=seed)]  # noqa
    assert ys(0) == ys(0)
    first = GraphLoader(tiny_tu, batch_size=2, shuffle=True, seed=0)
    passes = [sorted(sum((b.y.tolist() for b in first), [])) for _ in range(2)]
    assert passes == [[0, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize("conv", ["gin", "gcn", "sage", "gat"])
def test_batched_forward_equals_one_graph_at_a_time(conv, tiny_tu):
    torch.manual_seed(0)
    model = GraphClassifier(conv, tiny_tu.num_features, 16, 2, num_layers=2, pool="max" if conv == "gat" else None)
    model.eval()
    together = model(select_graphs(tiny_tu, [0, 1, 2]))
    alone = torch.cat([model(select_graphs(tiny_tu, [i])) for i in range(3)])
    torch.testing.assert_close(together, alone)
    assert torch.isfinite(together).all()


@pytest.mark.parametrize("conv", ["gin", "gcn"])
@pytest.mark.parametrize("norm", ["layer", "none"])
def test_norm_option_drops_batchnorm_and_keeps_batch_independence(conv, norm, tiny_tu):
    from torch import nn

    torch.manual_seed(0)
    model = GraphClassifier(conv, tiny_tu.num_features, 16, 2, num_layers=2, norm=norm)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # GIN's inner MLP too
    assert any(isinstance(m, nn.LayerNorm) for m in model.modules()) == (norm == "layer")
    assert model.label == f"{conv.upper()}(2x16,{norm})"
    # no running statistics: training mode gives the same per-graph outputs alone or batched
    model.train()
    model.dropout = 0.0
    together = model(select_graphs(tiny_tu, [0, 1, 2]))
    alone = torch.cat([model(select_graphs(tiny_tu, [i])) for i in range(3)])
    torch.testing.assert_close(together, alone)


def test_norm_option_and_model_spec_errors():
    from gkdfast.distill.graph_experiment import parse_graph_model

    spec = parse_graph_model("gcn:32x2/layer")
    assert (spec.conv, spec.hidden, spec.num_layers, spec.norm, spec.label) == ("gcn", 32, 2, "layer",
                                                                                "GCN(2x32,layer)")
    assert spec.build(7, 2).norm == "layer" and parse_graph_model("gin").norm == "batch"
    with pytest.raises(ValueError, match="norm must be one of batch, layer, none"):
        parse_graph_model("gcn/group")
    with pytest.raises(ValueError, match="norm must be one of batch, layer, none"):
        GraphClassifier("gcn", 7, 16, 2, norm="instance")
    with pytest.raises(ValueError, match="GraphClassifier: num_classes must be a positive int, got 0"):
        GraphClassifier("gcn", 7, 16, 0)
    with pytest.raises(ValueError, match=r"GraphClassifier: dropout must be in \[0, 1\), got 1.0"):
        GraphClassifier("gin", 7, 16, 2, dropout=1.0)
    for bad in ("gin:0", "gin:32x0", "gin:x3", "gin:32xa/layer"):
        with pytest.raises(ValueError, match=r"expected conv\[:hidden\[xlayers\]\]\[/norm\]"):
            parse_graph_model(bad)
    assert parse_graph_model("gin:32").num_layers == 3 and parse_graph_model("gin:32x5").num_layers == 5


def _mutag_teacher(epochs=15):
    ds = load_tu(need_data("tu_mutag"))
    torch.manual_seed(0)
    t = train_graph_classifier(GraphClassifier("gin", 7, 32, 2, 3), ds, torch.arange(0, 188, 2),
                               torch.arange(1, 188, 4), GraphTrainConfig(epochs=epochs))
    return ds, t


def test_generator_edges_are_hard_symmetric_and_pass_gradients():
    torch.manual_seed(0)
    gen = GraphGenerator(num_nodes=6, onehot_dim=4, cont_dim=1)
    b = gen(torch.randn(3, 32))
    assert set(b.edge_weight.detach().unique().tolist()) <= {0.0, 1.0}
    assert set(b.x[:, :4].sum(1).tolist()) == {1.0}
    dense = torch.zeros(18, 18)
    src, dst = b.graph.edge_index
    dense[dst, src] = b.edge_weight.detach()
    assert torch.equal(dense, dense.t()) and dense.diagonal().abs().sum() == 0
    assert dense[:6, 6:].abs().sum() == 0  # no edge between generated graphs
    teacher = GraphClassifier("gin", 5, 16, 3, 2).eval()
    teacher(b).square().sum().backward()
    assert gen.adj.weight.grad.abs().sum() > 0 and gen.feat.weight.grad.abs().sum() > 0


def test_generator_producing_empty_graphs_still_gives_finite_outputs_and_gradients():
    gen = GraphGenerator(num_nodes=5, onehot_dim=3, edge_bias=-60.0)
    b = gen(torch.randn(4, 32))
    assert b.edge_weight.detach().abs().sum() == 0
    for conv in ("gin", "gcn"):
        out = GraphClassifier(conv, 3, 8, 2, 2).eval()(b)
        assert torch.isfinite(out).all()
    gen.zero_grad()
    GraphClassifier("gin", 3, 8, 2, 2).eval()(gen(torch.randn(4, 32))).sum().backward()
    assert gen.feat.weight.grad.abs().sum() > 0


def test_sized_generator_keeps_each_graphs_first_nodes_and_their_pairs():
    torch.manual_seed(0)
    prior = torch.tensor([0., 0., 1., 0., 2., 0., 1.])  # sizes 2, 4 and 6
    gen = GraphGenerator(num_nodes=6, onehot_dim=4, cont_dim=1, edge_bias=1.0, size_prior=prior)
    b = gen(torch.randn(64, 32))
    sizes = (b.ptr[1:] - b.ptr[:-1]).tolist()
    assert set(sizes) == {2, 4, 6} and 20 < sizes.count(4) < 44
    src, dst = b.graph.edge_index
    assert b.graph.num_edges == sum(s * (s - 1) for s in sizes)  # every ordered pair of a graph, no more
    owner = torch.repeat_interleave(torch.arange(64), torch.tensor(sizes))
    assert torch.equal(owner[src], owner[dst]) and bool((src != dst).all())
    n = b.graph.num_nodes
    dense = torch.zeros(n, n)
    dense[dst, src] = b.edge_weight.detach()
    assert torch.equal(dense, dense.t()) and dense.sum() > 0
    # each graph gives the model what it gives the same graph alone
    model = GraphClassifier("gin", 5, 16, 3, 2).eval()
    out = model(b)
    for g in (0, 1, 2):
        lo, hi = int(b.ptr[g]), int(b.ptr[g + 1])
        keep = (src >= lo) & (src < hi)
        alone = GraphBatch(gkdfast.Graph(torch.stack([src[keep], dst[keep]]) - lo, hi - lo), b.x[lo:hi],
                           torch.tensor([0, hi - lo]), None, b.edge_weight[keep])
        torch.testing.assert_close(model(alone)[0], out[g])
    out.square().sum().backward()
    assert gen.adj.weight.grad.abs().sum() > 0 and gen.feat.weight.grad.abs().sum() > 0
    for bad in (torch.ones(6), torch.tensor([0., 1., 1., 0., 0., 0., 0.]), torch.zeros(7)):
        with pytest.raises(ValueError, match="size_prior must be"):
            GraphGenerator(num_nodes=6, onehot_dim=4, size_prior=bad)


def test_dfad_size_prior_draws_the_training_graphs_sizes():
    ds = load_tu(need_data("tu_mutag"))
    train = torch.arange(0, 188, 2)
    counts = select_graphs(ds, train).ptr.diff()
    gen = dfad_generator_for(ds, train, DFADConfig(size_prior=True))
    assert gen.n == int(torch.quantile(counts.double(), 0.95).ceil())
    torch.manual_seed(0)
    drawn = gen.eval()(torch.randn(512, 32)).ptr.diff()
    assert int(drawn.min()) >= int(counts.min()) and int(drawn.max()) == gen.n
    assert abs(float(drawn.double().mean() - counts.clamp(max=gen.n).double().mean())) < 1.0
    assert dfad_generator_for(ds, train, DFADConfig(size_prior=True, max_nodes=12)).n == 12
    assert dfad_generator_for(ds, train, DFADConfig()).size_prior is None
    with pytest.raises(ValueError, match="max_nodes"):
        DFADConfig(size_prior=True, max_nodes=1)


def test_size_frequencies_clamps_and_refuses():
    assert size_frequencies(torch.tensor([1, 2, 7]), 4).tolist() == pytest.approx([0, 0, 2 / 3, 0, 1 / 3])
    with pytest.raises(ValueError, match="max_nodes must be >= 2"):
        size_frequencies(torch.tensor([3]), 1)
    with pytest.raises(ValueError, match="no graph sizes"):
        size_frequencies(torch.tensor([], dtype=torch.int64), 4)


def test_onehot_frequencies_and_their_errors():
    x = torch.tensor([[1., 0., 0., 5.], [1., 0., 0., 2.], [0., 0., 1., 1.], [1., 0., 0., 0.]])
    assert torch.allclose(onehot_frequencies(x, 3), torch.tensor([0.75, 0.0, 0.25]))
    assert torch.allclose(onehot_frequencies(x[:0], 3), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="k must be >= 1"):
        onehot_frequencies(x, 0)


def _type_shares(gen, n=256):
    torch.manual_seed(3)
    with torch.no_grad():
        return gen.eval()(torch.randn(n, 32)).x[:, :gen.onehot_dim].mean(0)


def test_generator_onehot_prior_sets_the_first_graphs_feature_classes():
    torch.manual_seed(0)
    uniform = _type_shares(GraphGenerator(num_nodes=6, onehot_dim=4))
    torch.manual_seed(0)
    prior = _type_shares(GraphGenerator(num_nodes=6, onehot_dim=4, onehot_prior=torch.tensor([0.85, 0.15, 0., 0.])))
    assert uniform.min() > 0.1  # no prior: every class drawn
    assert prior[0] > 0.6 and prior[2:].sum() < 0.02, prior
    with pytest.raises(ValueError, match="onehot_prior must be"):
        GraphGenerator(num_nodes=6, onehot_dim=4, onehot_prior=torch.ones(3))
    with pytest.raises(ValueError, match="onehot_prior must be"):
        GraphGenerator(num_nodes=6, onehot_dim=2, onehot_prior=torch.tensor([1.5, -0.5]))


def test_dfad_generator_for_reads_the_training_graphs_type_frequencies():
    ds = load_tu(need_data("tu_mutag"))
    train = torch.arange(0, 188, 2)
    torch.manual_seed(0)
    shares = _type_shares(dfad_generator_for(ds, train, DFADConfig()))
    real = onehot_frequencies(select_graphs(ds, train).x, 7)
    assert real[0] > 0.6  # MUTAG: mostly carbon
    assert abs(float(shares[0] - real[0])) < 0.15 and shares[3:].sum() < 0.05, (shares, real)
    torch.manual_seed(0)
    plain = _type_shares(dfad_generator_for(ds, train, DFADConfig(onehot_prior=False)))
    assert plain[3:].sum() > 0.3  # a uniform start draws the types MUTAG almost never has


@pytest.mark.parametrize("bad, match", [(dict(student_loss="mse"), "student_loss must be"),
                                        (dict(temperature=0.0), "temperature must be > 0")])
def test_dfad_rejects_bad_student_loss_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        DFADConfig(epochs=1, **bad)
    cfg = DFADConfig(epochs=1)
    for key, value in bad.items():  # changed after construction: distill_dfad still refuses it
        setattr(cfg, key, value)
    with pytest.raises(ValueError, match=match):
        distill_dfad(GraphClassifier("gin", 3, 8, 2, 2), GraphClassifier("gcn", 3, 8, 2, 2),
                     GraphGenerator(num_nodes=4, onehot_dim=3), cfg)


def test_dfad_student_losses_differ_and_both_train():
    torch.manual_seed(0)
    teacher = GraphClassifier("gin", 3, 8, 2, 2).eval()
    outs = {}
    for loss in ("kl", "l1"):
        torch.manual_seed(1)
        student, gen = GraphClassifier("gcn", 3, 8, 2, 2), GraphGenerator(num_nodes=5, onehot_dim=3)
        cfg = DFADConfig(epochs=3, iters=1, student_steps=2, batch_size=8, num_nodes=5, student_loss=loss,
                         temperature=2.0)
        student, hist = distill_dfad(teacher, student, gen, cfg, seed=0)
        assert all(torch.isfinite(torch.tensor(h)).all() for h in hist)
        outs[loss] = [p.detach().clone() for p in student.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(outs["kl"], outs["l1"]))


def test_dfad_refuses_students_that_ignore_edge_weights():
    with pytest.raises(ValueError, match="ignore edge weights"):
        distill_dfad(GraphClassifier("gin", 3, 8, 2, 2), GraphClassifier("sage", 3, 8, 2, 2),
                     GraphGenerator(num_nodes=4, onehot_dim=3), DFADConfig(epochs=1))


def test_dfad_generator_learns_and_students_differ():
    ds, teacher = _mutag_teacher()
    assert feature_layout(ds.x) == 7
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    fidelity, real_logits = {}, {}
    for conv in ("gin", "gcn"):
        torch.manual_seed(0)
        gen = GraphGenerator(num_nodes=18, onehot_dim=7)
        gen.eval()
        before_p = gen.edge_probabilities(z).detach().clone()
        before_w = [p.detach().clone() for p in gen.parameters()]
        student = GraphClassifier(conv, 7, 16, 2, 2)
        cfg = DFADConfig(epochs=4, iters=2, student_steps=2, batch_size=16, num_nodes=18)
        student, hist = distill_dfad(teacher, student, gen, cfg, seed=0)
        gen.eval()
        assert not torch.allclose(gen.edge_probabilities(z), before_p)  # its outputs changed
        assert all(not torch.equal(a, p) for a, p in zip(before_w, gen.parameters()))  # every parameter moved
        assert all(torch.isfinite(torch.tensor(h)).all() for h in hist)
        with torch.no_grad():
            fake = gen(torch.randn(256, 32, generator=torch.Generator().manual_seed(2)))
            fidelity[conv] = float((student(fake) - teacher(fake)).abs().mean())
            real_logits[conv] = student(select_graphs(ds, range(len(ds))))
    # The public re-implementation's generator gets no gradient and every student scores the same; here each
    # student ends its own game at a different distance from the teacher and says different things on real graphs.
    assert fidelity["gin"] != fidelity["gcn"], fidelity
    assert (real_logits["gin"] - real_logits["gcn"]).abs().max() > 1e-2
    assert all(p.requires_grad for p in teacher.parameters())  # the teacher is handed back unfrozen


def test_bn_matching_pulls_generated_graphs_towards_the_teachers_statistics():
    ds, teacher = _mutag_teacher()
    torch.manual_seed(0)
    gen = GraphGenerator(num_nodes=18, onehot_dim=7)
    z = torch.randn(64, 32)

    def bn_gap():
        gen.eval()
        with BNStatistics(teacher) as bn, torch.no_grad():
            teacher(gen(z))
            return float(bn.loss())

    before = bn_gap()
    cfg = DFADConfig(epochs=3, iters=2, student_steps=1, generator_steps=5, lr_generator=0.01, bn_match=1.0,
                     batch_size=32, num_nodes=18)
    distill_dfad(teacher, GraphClassifier("gcn", 7, 16, 2, 2), gen, cfg, seed=0)
    assert bn_gap() < 0.5 * before


def test_cli_graph_task_writes_one_row_per_method_and_student(tmp_path):
    folder = need_data("tu_mutag")
    out = str(tmp_path / "g")
    r = run_cli("distill", "--task", "graph", "--data", folder, "--teacher", "gin:16x2", "--student", "gin:8x2,gcn:8x2",
                "--methods", "kd,dfad,gfkd", "--folds", "10", "--max-folds", "2", "--epochs", "2", "--dfad-epochs", "1",
                "--set", "gfkd.iterations=2", "--set", "gfkd.student_epochs=1", "--set", "gfkd.num_graphs=6",
                "--out", out)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    keys = [(row["method"], row["model"]) for row in res["rows"]]
    assert keys == [("teacher", "GIN(2x16)"), ("none", "GIN(2x8)"), ("kd", "GIN(2x8)"), ("dfad", "GIN(2x8)"),
                    ("gfkd", "GIN(2x8)"), ("none", "GCN(2x8)"), ("kd", "GCN(2x8)"), ("dfad", "GCN(2x8)"),
                    ("gfkd", "GCN(2x8)")]
    assert all(len(row["test_acc"]) == 2 for row in res["rows"])
    assert os.path.getsize(os.path.join(out, "results.png")) > 0 and "2 fold(s)" in r.stdout


def test_cli_graph_task_bad_method_is_one_clean_line(tmp_path):
    r = run_cli("distill", "--task", "graph", "--data", need_data("tu_mutag"), "--methods", "glnn",
                "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "graph classification knows kd, dfad, gfkd" in r.stderr.strip().splitlines()[-1]


def test_cli_graph_task_rejects_flags_of_the_node_pipeline(tmp_path):
    r = run_cli("distill", "--task", "graph", "--data", need_data("tu_mutag"), "--missing-rate", "0.3",
                "--setting", "inductive", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "--missing-rate, --setting inductive" in last and "graph classification" in last


def test_cli_graph_task_set_reaches_the_configs_and_rejects_unknown_names():
    from gkdfast.cli_graph import _apply_set

    from gkdfast.distill.gfkd import GFKDConfig

    tc, dc, gc = _apply_set(["dfad.bn_match=1.0", "kd.temperature=4", "gfkd.iterations=7"], GraphTrainConfig(),
                            DFADConfig(), GFKDConfig())
    assert (dc.bn_match, tc.temperature, gc.iterations) == (1.0, 4, 7)
    with pytest.raises(ValueError, match="dfad.bogus: unknown"):
        _apply_set(["dfad.bogus=1"], GraphTrainConfig(), DFADConfig(), GFKDConfig())
    with pytest.raises(ValueError, match="kd.\\*, dfad.\\* and gfkd.\\*"):
        _apply_set(["glnn.lamb=1"], GraphTrainConfig(), DFADConfig(), GFKDConfig())


def test_conditional_generator_makes_graphs_the_teacher_puts_in_the_requested_class():
    ds, teacher = _mutag_teacher()
    torch.manual_seed(0)
    gen = GraphGenerator(num_nodes=18, onehot_dim=7, num_classes=2)
    z, c = torch.randn(64, 32), torch.arange(64) % 2

    def hit_rate():
        gen.eval()
        with torch.no_grad():
            return float((teacher(gen(z, c)).argmax(-1) == c).float().mean())

    before = hit_rate()
    cfg = DFADConfig(epochs=3, iters=2, student_steps=1, generator_steps=5, lr_generator=0.01, conditional=1.0,
                     batch_size=32, num_nodes=18)
    distill_dfad(teacher, GraphClassifier("gcn", 7, 16, 2, 2), gen, cfg, seed=0)
    after = hit_rate()
    assert after >= 0.8 and after > before, (before, after)
    with pytest.raises(ValueError, match="needs the classes"):
        gen(z)


def test_conditional_generator_requests_the_classes_in_the_set_proportions(monkeypatch):
    from gkdfast.distill import datafree

    assert datafree.class_counts([0.75, 0.25], 32).tolist() == [24, 8]
    assert datafree.class_counts([1, 1, 1], 32).tolist() == [11, 11, 10]  # sums to the batch exactly
    teacher = GraphClassifier("gin", 7, 8, 2, 2).eval()
    gen = GraphGenerator(num_nodes=6, onehot_dim=7, num_classes=2)
    requested = []
    real_forward = GraphGenerator.forward

    def forward(self, z, c=None):
        requested.append(c.clone())
        return real_forward(self, z, c)

    monkeypatch.setattr(GraphGenerator, "forward", forward)
    cfg = DFADConfig(epochs=1, iters=2, student_steps=1, generator_steps=1, conditional=1.0, batch_size=32,
                     num_nodes=6, class_proportions=(0.75, 0.25))
    distill_dfad(teacher, GraphClassifier("gcn", 7, 8, 2, 2), gen, cfg, seed=0)
    assert requested and all(torch.bincount(c, minlength=2).tolist() == [24, 8] for c in requested)
    assert not torch.equal(requested[0], requested[1])  # dealt in a fresh order per batch
    for bad in ((0.5, -0.5), (0.0, 0.0), ()):
        with pytest.raises(ValueError, match="class_proportions must be"):
            DFADConfig(conditional=1.0, class_proportions=bad)
    with pytest.raises(ValueError, match="needs conditional > 0"):
        DFADConfig(class_proportions=(0.5, 0.5))
    with pytest.raises(ValueError, match="3 entries for 2 classes"):
        distill_dfad(teacher, GraphClassifier("gcn", 7, 8, 2, 2), gen,
                     DFADConfig(epochs=1, conditional=1.0, class_proportions=(1, 1, 1)), seed=0)


def test_graph_training_review_edges():
    """A batch size of 1 is refused (it would skip every batch and train nothing); a bool mask selects
    its graphs rather than ids 0 and 1; no validation graph keeps the last epoch instead of the first."""
    ds = load_tu(need_data("tu_mutag"))
    with pytest.raises(ValueError, match="BatchNorm, which needs batches of at least 2 graphs"):
        train_graph_classifier(GraphClassifier("gcn", ds.num_features, 8, ds.num_classes, 2), ds, range(20),
                               range(20, 30), GraphTrainConfig(epochs=1, batch_size=1))
    layer = GraphClassifier("gcn", ds.num_features, 8, ds.num_classes, 2, norm="layer")  # no BatchNorm: batches of 1
    train_graph_classifier(layer, ds, range(6), range(6, 9), GraphTrainConfig(epochs=1, batch_size=1))
    none_val = torch.zeros(len(ds), dtype=torch.bool)  # an all-False mask: no validation graph either
    mask = torch.zeros(len(ds), dtype=torch.bool)
    mask[[5, 9, 40]] = True
    assert select_graphs(ds, mask).y.tolist() == select_graphs(ds, [5, 9, 40]).y.tolist()
    assert [b.num_graphs for b in GraphLoader(ds, mask, batch_size=2)] == [2, 1]
    with pytest.raises(ValueError, match="one entry per graph"):
        select_graphs(ds, mask[:10])
    torch.manual_seed(0)
    model = GraphClassifier("gcn", ds.num_features, 8, ds.num_classes, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = train_graph_classifier(model, ds, range(40), none_val, GraphTrainConfig(epochs=2, batch_size=8))
    changed = [k for k, v in trained.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed  # trained, and kept (the last epoch: nothing to select on)
    with pytest.raises(ValueError, match="no training batch"):
        train_graph_classifier(GraphClassifier("gcn", ds.num_features, 8, ds.num_classes, 2), ds, [3], [4],
                               GraphTrainConfig(epochs=1, batch_size=2))


def test_gfkd_fake_graphs_take_their_metadata_from_the_given_graphs_only():
    from gkdfast.distill.gfkd import GFKDConfig, fake_graphs_for

    ds = load_tu(need_data("tu_mutag"))
    cfg = GFKDConfig(num_graphs=4, onehot_prior=True)  # the atom-type frequencies start the features
    every, some = fake_graphs_for(ds, cfg, 0), fake_graphs_for(ds, cfg, 0, graphs=range(20))
    again = fake_graphs_for(ds, cfg, 0, graphs=torch.arange(20))
    assert torch.equal(some.x(), again.x())
    assert not torch.equal(every.x(), some.x())  # other graphs' statistics, another start


def test_tu_graphs_missing_from_the_end_of_the_indicator_are_empty_graphs(tmp_path):
    ds = load_tu(_write_tu(tmp_path / "tail", "TAIL", [(1, 2), (2, 1)], [1, 1, 2], [0, 1, 0, 1]))
    assert len(ds) == 4 and (ds.ptr[1:] - ds.ptr[:-1]).tolist() == [2, 1, 0, 0]
    with pytest.raises(gkdfast.data.DataFormatError, match="graph ids must be in 1..2"):
        load_tu(_write_tu(tmp_path / "over", "OVER", [(1, 2), (2, 1)], [1, 1, 3], [0, 1]))


def test_dfad_with_a_model_that_ignores_edge_weights_is_refused_before_training(monkeypatch):
    import gkdfast.distill.graph_experiment as ge

    def never(*a, **k):
        raise AssertionError("trained before the models were checked")

    monkeypatch.setattr(ge, "train_graph_classifier", never)
    ds = load_tu(need_data("tu_mutag"))
    with pytest.raises(ValueError, match="DFAD-GNN: the student is SAGE, whose layers ignore edge weights"):
        ge.run_graph_experiment(ds, ge.parse_graph_model("gin"), [ge.parse_graph_model("gin"),
                                                                   ge.parse_graph_model("sage")], ["kd", "dfad"])


def test_epochs_flag_caps_gfkd_student_epochs_and_set_still_wins(tmp_path, monkeypatch):
    from gkdfast.distill import graph_experiment

    seen = []

    def capture(*a, **kw):
        seen.append(kw["gfkd_cfg"])
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(graph_experiment, "run_graph_experiment", capture)
    from gkdfast.cli import main

    base = ["distill", "--task", "graph", "--data", need_data("tu_mutag"), "--quiet", "--out", str(tmp_path / "o")]
    for extra in (["--epochs", "3"], ["--epochs", "3", "--set", "gfkd.student_epochs=7"]):
        main(base + extra)
    assert [c.student_epochs for c in seen] == [3, 7]


def test_a_students_rows_do_not_depend_on_the_other_methods_and_the_protocol_is_recorded():
    """The global RNG ran on from one student and method to the next: the second student's no-KD row
    changed when a method was added (the cause of the moving baselines in docs/results-graph-level.md)."""
    from gkdfast.distill.graph_experiment import GraphTrainConfig, parse_graph_model, run_graph_experiment

    ds = load_tu(need_data("tu_mutag"))
    teacher = parse_graph_model("gin:8x2")
    students = [parse_graph_model("gin:8x2"), parse_graph_model("gcn:8x2")]
    runs = [run_graph_experiment(ds, teacher, s, methods, folds=10, max_folds=1, train_cfg=GraphTrainConfig(epochs=4))
            for s, methods in ((students, []), (students, ["kd"]), (students[1:], ["kd"]))]
    rows = [{(r["method"], r["model"]): r["test_acc"] for r in res["rows"]} for res in runs]
    assert all(rows[1][key] == acc for key, acc in rows[0].items())  # a method added
    assert all(rows[1][key] == acc for key, acc in rows[2].items())  # the other student left out
    assert runs[0]["protocol"] == {"name": "stratified k-fold", "folds": 10, "folds_run": 1, "seed": 0}
    with pytest.raises(ValueError, match="max_folds"):
        run_graph_experiment(ds, teacher, students, [], folds=10, max_folds=0)


def test_graph_loader_epochs_taken_by_threads_are_distinct_and_it_pickles():
    """Two threads starting epochs of one shuffling loader used to read the same epoch (same order): the
    epoch is now taken, under a lock, when iteration starts."""
    import pickle
    import threading

    loader = GraphLoader(list(range(20)), batch_size=20, shuffle=True, seed=3)  # (iter() alone reads no graph)
    barrier, epochs = threading.Barrier(4), []

    def start():
        barrier.wait()
        it = iter(loader)
        epochs.append(it)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader._epoch == 4
    copy = pickle.loads(pickle.dumps(loader))
    assert copy._epoch == 4 and copy._epoch_lock is not loader._epoch_lock
