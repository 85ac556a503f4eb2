"""gkdfast.distill: every recipe end to end on a tiny CSBM, KD beats no-KD, resume after a kill,
teacher cache, position features, PGD, results schema."""
import copy
import dataclasses
import json
import os

import pytest
import torch
import torch.nn.functional as F

from gkdfast.data import csbm
from gkdfast.distill import Distiller, StopTraining, TeacherOutputs, recipes, teacher_outputs, terms
from gkdfast.distill.adversarial import pgd_delta
from gkdfast.distill.experiment import parse_model, run_experiment, seed_split
from gkdfast.distill.positional import position_features, random_walks
from gkdfast.distill.results import format_markdown, format_table, save_json, save_png, validate
from gkdfast.nn import GCN, MLP, SAGE


@pytest.fixture(scope="module")
def tiny():
    return csbm(num_nodes=300, num_classes=3, feature_dim=16, avg_degree=8, seed=3)


@pytest.fixture(scope="module")
def tiny_teacher(tiny):
    torch.manual_seed(0)
    t = GCN(16, 32, 3, dropout=0.5)
    Distiller(t, [terms.CrossEntropy()], lr=0.01, epochs=60, patience=None).fit(tiny)
    return t, teacher_outputs(t, tiny.x, tiny.graph)


# RELIANT needs a sensitive attribute and HIRE a typed graph: tests/test_fairness.py, tests/test_hetero.py.
@pytest.mark.parametrize("name", [n for n in recipes.names() if n not in ("reliant", "hire")])
def test_each_recipe_runs_and_its_loss_decreases(name, tiny, tiny_teacher):
    _, tout = tiny_teacher
    kw = {"epochs": 15, "patience": None}
    if name == "nosmog":
        kw.update(pos_dim=8, walk_length=10, walks_per_node=2, batch_size=128, adv_steps=2)
    if name == "coldbrew":
        kw.update(regress_epochs=10, hidden=16)
    if name == "oad":
        kw.update(warmup_epochs=3)
    if name == "t2gnn":
        kw.update(teacher_epochs=10, topk=5)
    if name == "ta_ensemble":
        kw.update(assistant_widths=(16, 8), assistant_epochs=10)
    recipe = recipes.get(name, **kw)
    torch.manual_seed(0)
    student = "gcn" if name in ("lsp", "sail") else "mlp"
    make = (lambda f: GCN(f, 16, 3)) if student == "gcn" else (lambda f: MLP(f, 32, 3))
    trained = recipe.fit(make, tiny, tout if recipe.needs_teacher else None, seed=0)
    losses = [h["loss"] for h in trained.fit.history]
    assert len(losses) == 15
    assert all(torch.isfinite(torch.tensor(losses)))
    # Averages over the first and last 3 epochs: mini-batch noise never hides a real decrease.
    assert sum(losses[-3:]) < sum(losses[:3]), (name, losses)
    out = trained.model(trained.inputs, tiny.graph) if trained.uses_graph else trained.model(trained.inputs)
    assert out.shape == (300, 3)


def test_kd_student_beats_the_plain_student_on_csbm():
    # CSBM defaults: features alone separate classes weakly, the graph a lot, so a GNN teacher has
    # much to transfer (MLP ~0.55-0.6 vs GCN ~0.9).  A 0.1 margin is far below the usual ~0.3 gap.
    data = csbm(num_nodes=800, seed=0)
    torch.manual_seed(0)
    teacher = GCN(data.num_features, 64, data.num_classes)
    Distiller(teacher, [terms.CrossEntropy()], epochs=100, patience=30).fit(data)
    tout = teacher_outputs(teacher, data.x, data.graph)
    accs = {}
    for name in ("none", "glnn"):
        torch.manual_seed(0)
        trained = recipes.get(name, epochs=100).fit(lambda f: MLP(f, 64, data.num_classes), data, tout)
        accs[name] = Distiller(trained.model, [terms.CrossEntropy()]).evaluate(data, trained.inputs)
    assert accs["glnn"] > accs["none"] + 0.1, accs


class _Kill(RuntimeError):
    pass


def _resume_setup(data, tout):
    torch.manual_seed(1)
    student = MLP(data.num_features, 32, data.num_classes, dropout=0.5)
    ts = [terms.CrossEntropy(0.5), terms.LogitKD(0.5, temperature=2.0),
          terms.GSP(1.0, kernel="cosine", proj_dim=8, max_samples=40)]
    return student, ts


def test_resume_after_a_kill_ends_identical_to_an_uninterrupted_run(tiny, tiny_teacher, tmp_path):
    _, tout = tiny_teacher
    opts = dict(epochs=8, patience=None, batch_size=64, lr=0.01)
    student, ts = _resume_setup(tiny, tout)
    full = Distiller(student, ts, tout, **opts).fit(tiny, select_best=False)
    ref_state = {k: v.clone() for k, v in full.student.state_dict().items()}

    ckpt = str(tmp_path / "run")

    def kill_at_3(epoch, info):
        if epoch == 3:
            raise _Kill("simulated kill")

    student, ts = _resume_setup(tiny, tout)
    with pytest.raises(_Kill):
        Distiller(student, ts, tout, checkpoint_dir=ckpt, **opts).fit(tiny, callbacks=[kill_at_3], select_best=False)
    assert torch.load(os.path.join(ckpt, "checkpoint.pt"), weights_only=False)["epoch"] == 3

    seen = []
    torch.manual_seed(12345)  # a different global RNG state: the checkpoint must restore it
    student, ts = _resume_setup(tiny, tout)
    res = Distiller(student, ts, tout, checkpoint_dir=ckpt, **opts).fit(
        tiny, callbacks=[lambda e, i: seen.append(e)], select_best=False)
    assert seen == [4, 5, 6, 7, 8]  # continued from epoch 3, not from scratch
    assert res.epochs == 8
    assert [h["loss"] for h in res.history] == [h["loss"] for h in full.history]
    for k, v in res.student.state_dict().items():
        assert torch.equal(v, ref_state[k]), k
    # A finished run restarted returns at once with the same weights.
    student, ts = _resume_setup(tiny, tout)
    again = Distiller(student, ts, tout, checkpoint_dir=ckpt, **opts).fit(
        tiny, callbacks=[lambda e, i: seen.append(-1)], select_best=False)
    assert -1 not in seen
    for k, v in again.student.state_dict().items():
        assert torch.equal(v, ref_state[k]), k


def test_stop_training_callback_stops_and_resumes(tiny, tmp_path):
    def stop(epoch, info):
        if epoch == 2:
            raise StopTraining

    torch.manual_seed(0)
    r = Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=5, patience=None,
                  checkpoint_dir=str(tmp_path)).fit(tiny, callbacks=[stop])
    assert r.epochs == 2
    r = Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=5, patience=None,
                  checkpoint_dir=str(tmp_path)).fit(tiny)
    assert r.epochs == 5


def test_ties_pick_the_first_or_the_last_of_equally_good_epochs(tiny, tmp_path):
    # lr 0: every epoch has the same validation accuracy, so every epoch ties the best
    def fit(ties, **kw):
        torch.manual_seed(0)
        return Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], lr=0.0, epochs=6, ties=ties, **kw).fit(tiny)

    first, last = fit("first", patience=None), fit("last", patience=None)
    assert first.best_epoch == 1 and last.best_epoch == 6
    assert fit("first", patience=2).epochs == 3  # no better epoch after the first: stops after 2 more
    assert fit("last", patience=2).epochs == 6   # a tie restarts the count, as the reference's >=
    assert recipes.get("kd", ties="last").distiller(MLP(16, 8, 3), None).ties == "last"
    with pytest.raises(ValueError, match="ties must be 'first' or 'last'"):
        fit("middle")
    Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=1, checkpoint_dir=str(tmp_path)).fit(tiny)
    with pytest.raises(ValueError, match="different run"):  # the rule is part of the run's identity
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=1, ties="last",
                  checkpoint_dir=str(tmp_path)).fit(tiny)


def test_checkpoint_of_another_run_is_refused(tiny, tmp_path):
    Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], epochs=1, checkpoint_dir=str(tmp_path)).fit(tiny)
    with pytest.raises(ValueError, match="different run"):
        Distiller(MLP(16, 12, 3), [terms.CrossEntropy()], epochs=1, checkpoint_dir=str(tmp_path)).fit(tiny)


@pytest.mark.parametrize("batch_size", [None, 64])
def test_observed_mask_keeps_unobserved_teacher_rows_out(tiny, tiny_teacher, batch_size):
    """Inductive setting: teacher rows of unobserved nodes must never reach a loss.  Poison them with
    NaN: training stays finite and ends exactly as with harmless values in those rows."""
    _, tout = tiny_teacher
    observed = torch.ones(tiny.num_nodes, dtype=torch.bool)
    observed[tiny.test_mask.nonzero().flatten()[::2]] = False  # half of the test nodes are unseen
    results = []
    for fill in (float("nan"), 0.0):
        logits = tout.logits.clone()
        logits[~observed] = fill
        hidden = tout.hidden.clone()
        hidden[~observed] = fill
        torch.manual_seed(0)
        student = MLP(16, 16, 3)
        r = Distiller(student, [terms.CrossEntropy(0.5), terms.LogitKD(0.5), terms.RSD(0.1)],
                      TeacherOutputs(logits, hidden), epochs=5, patience=None, batch_size=batch_size,
                      observed=observed).fit(tiny)
        assert all(torch.isfinite(p).all() for p in student.parameters())
        assert all(h["loss"] == h["loss"] for h in r.history)  # no NaN loss in any epoch
        results.append([p.detach().clone() for p in student.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("change", ["dropout", "term_setting", "epochs", "same_shape_data", "teacher"])
def test_checkpoint_refused_when_anything_that_shapes_the_numbers_differs(tiny, tmp_path, change):
    """Same shapes, different run: reusing the folder must fail, never resume or report the old run."""
    torch.manual_seed(0)
    teacher = SAGE(16, 24, 3)

    def make(dropout=0.5, temperature=1.0, epochs=2):
        return Distiller(MLP(16, 8, 3, dropout=dropout), [terms.CrossEntropy(), terms.LogitKD(1.0, temperature)],
                         teacher=teacher, epochs=epochs, checkpoint_dir=str(tmp_path))

    make().fit(tiny)
    make().fit(tiny)  # the identical run resumes (here: is already done) without complaint
    data = tiny
    if change == "same_shape_data":
        data = dataclasses.replace(tiny, x=tiny.x + 0.5)
    elif change == "teacher":
        with torch.no_grad():
            next(teacher.parameters()).add_(1.0)
    kw = {"dropout": {"dropout": 0.1}, "term_setting": {"temperature": 4.0}, "epochs": {"epochs": 3}}.get(change, {})
    with pytest.raises(ValueError, match="different run"):
        make(**kw).fit(data)


def test_teacher_cache_hit_and_memory_map(tiny, tmp_path):
    torch.manual_seed(0)
    teacher = SAGE(16, 24, 3)
    a = teacher_outputs(teacher, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    b = teacher_outputs(teacher, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    assert not a.cached and b.cached and a.key == b.key
    assert torch.equal(a.logits, b.logits) and torch.equal(a.hidden, b.hidden)
    assert b.logits.shape == (300, 3) and b.hidden.shape == (300, 24)
    files = os.listdir(tmp_path / "teachers" / a.key)
    assert sorted(files) == ["hidden.f32", "logits.f32", "meta.json"]
    teacher.eval()
    with torch.no_grad():
        assert torch.allclose(b.logits, teacher(tiny.x, tiny.graph))
    # Different weights or different features: a different entry.
    with torch.no_grad():
        next(teacher.parameters()).add_(1.0)
    c = teacher_outputs(teacher, tiny.x, tiny.graph, cache_dir=str(tmp_path))
    assert c.key != a.key and not c.cached
    d = teacher_outputs(teacher, tiny.x + 1, tiny.graph, cache_dir=str(tmp_path))
    assert d.key != c.key
    # The Distiller given a module uses (and fills) the cache.
    res = Distiller(MLP(16, 8, 3), [terms.LogitKD()], teacher, epochs=1, cache_dir=str(tmp_path)).fit(tiny)
    assert res.teacher.cached


def test_user_module_without_hidden_and_errors(tiny, tiny_teacher):
    _, tout = tiny_teacher

    class Plain(torch.nn.Module):
        uses_graph = False

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.lin(x)

    r = Distiller(Plain(), [terms.CrossEntropy(0.5), terms.LogitKD(0.5)], tout, epochs=3).fit(tiny)
    assert r.epochs == 3
    with pytest.raises(ValueError, match="hidden"):
        Distiller(Plain(), [terms.RSD()], tout, epochs=1).fit(tiny)
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(MLP(16, 8, 3), [terms.LogitKD()], epochs=1).fit(tiny)
    with pytest.raises(ValueError):
        Distiller(MLP(16, 8, 3), [], epochs=1)
    with pytest.raises(ValueError):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], batch_size=0)
    with pytest.raises(TypeError):
        Distiller(MLP(16, 8, 3), [lambda ctx: 0])
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        recipes.get("glnn", lamda=0.5)
    with pytest.raises(ValueError, match="unknown method"):
        recipes.get("nope")


def test_gnn_student_minibatch_uses_induced_subgraph_for_lsp(tiny, tiny_teacher):
    _, tout = tiny_teacher
    torch.manual_seed(0)
    r = Distiller(GCN(16, 16, 3), [terms.CrossEntropy(), terms.LSP(1.0)], tout, epochs=3, batch_size=100,
                  patience=None).fit(tiny)
    assert len(r.history) == 3 and all(h["lsp"] >= 0 for h in r.history)


def test_random_walks_follow_edges_and_position_features_are_deterministic(tiny):
    w = random_walks(tiny.graph, walk_length=6, walks_per_node=2, seed=0)
    assert w.shape == (600, 7)
    assert torch.equal(w[:300, 0], torch.arange(300))
    edges = set(map(tuple, tiny.graph.edge_index.t().tolist()))
    deg = tiny.graph.in_degree()
    for a, b in zip(w[:, :-1].flatten().tolist(), w[:, 1:].flatten().tolist()):
        assert (b, a) in edges or (a == b and deg[a] == 0)
    p1 = position_features(tiny.graph, dim=8, walk_length=10, walks_per_node=2, seed=1)
    p2 = position_features(tiny.graph, dim=8, walk_length=10, walks_per_node=2, seed=1)
    assert p1.shape == (300, 8) and p1.dtype == torch.float32 and torch.equal(p1, p2)
    assert torch.isfinite(p1).all()


def test_pgd_delta_stays_in_the_ball_and_increases_the_loss():
    torch.manual_seed(0)
    w = torch.randn(5, 1)
    x = torch.randn(10, 5)
    d = pgd_delta(lambda z: (z @ w).sum(), x, eps=0.1, steps=5)
    assert d.abs().max() <= 0.1 + 1e-7
    assert ((x + d) @ w).sum() > (x @ w).sum()
    assert torch.equal(pgd_delta(lambda z: z.sum(), x, eps=0.0), torch.zeros_like(x))


def test_results_schema_table_and_png(tmp_path):
    data = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    res = run_experiment(data, teacher=parse_model("gcn:16"), students=[parse_model("mlp:16")],
                         methods=["kd", "glnn"], seeds=[0, 1], epochs=5, out=str(tmp_path / "out"))
    validate(res)
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "kd", "glnn"]
    assert all(len(r["test_acc"]) == 2 for r in res["rows"])
    assert res["num_nodes"] == 200 and res["num_edges"] == data.graph.num_edges
    path = str(tmp_path / "results.json")
    save_json(res, path)
    with open(path) as f:
        loaded = json.load(f)
    assert set(loaded) == {"dataset", "num_nodes", "num_edges", "rows"}
    assert set(loaded["rows"][0]) == {"method", "model", "test_acc_mean", "test_acc_std", "test_acc",
                                      "train_seconds", "inference_ms_per_1k_nodes"}
    save_png(res, str(tmp_path / "r.png"))
    assert os.path.getsize(tmp_path / "r.png") > 1000
    assert "glnn" in format_table(res) and "| glnn |" in format_markdown(res)
    bad = dict(res, rows=[dict(res["rows"][0], test_acc=[1.5])])
    with pytest.raises(ValueError):
        validate(bad)


def test_seed_split_redraws_random_splits_only():
    data = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    a, b = seed_split(data, 0), seed_split(data, 1)
    assert not torch.equal(a.train_mask, b.train_mask)
    assert int(a.train_mask.sum()) == 60 and int(a.val_mask.sum()) == 90
    fixed = type(data)(**{**data.__dict__, "extras": {"split": "public"}})
    assert seed_split(fixed, 5) is fixed


def test_projection_terms_survive_a_one_row_last_batch(tiny, tiny_teacher):
    _, tout = tiny_teacher
    # 300 nodes in batches of 299: the last batch has one row (BatchNorm cannot train on it).
    torch.manual_seed(0)
    r = Distiller(MLP(16, 8, 3), [terms.CrossEntropy(), terms.GSP(1.0, proj_dim=4), terms.CRD(1.0, proj_dim=4)],
                  tout, epochs=2, batch_size=299, patience=None).fit(tiny)
    assert r.epochs == 2


def test_term_heads_take_the_students_dtype(tiny, tiny_teacher):
    """A float64 student (default dtype float32): the projection heads and RSD's map the terms build
    in fit are float64 too, and training runs."""
    _, tout = tiny_teacher
    torch.manual_seed(0)
    student = MLP(16, 8, 3).double()
    loss_terms = [terms.CrossEntropy(), terms.GSP(1.0, proj_dim=4), terms.CRD(1.0, proj_dim=4), terms.RSD(1.0)]
    r = Distiller(student, loss_terms, tout, epochs=2, batch_size=100, patience=None).fit(tiny, tiny.x.double())
    assert r.epochs == 2
    heads = [p for t in loss_terms for p in t.parameters()]
    assert heads and all(p.dtype == torch.float64 for p in heads)


# -- inductive setting ---------------------------------------------------------------------------
def test_inductive_setting_end_to_end_teacher_never_sees_held_out_nodes(tmp_path, monkeypatch):
    """Every recipe runs in the inductive setting; nothing trained (teacher, students, their teacher
    outputs) sees a held-out node, and accuracy is measured on the held-out nodes only."""
    import gkdfast.distill.experiment as experiment
    from gkdfast.data import inductive_split

    data = csbm(num_nodes=400, num_classes=4, feature_dim=12, seed=2)
    seen_sizes = []
    real_fit = Distiller.fit

    def spy(self, d, inputs=None, *a, **k):
        seen_sizes.append(d.num_nodes)
        return real_fit(self, d, inputs, *a, **k)

    monkeypatch.setattr(Distiller, "fit", spy)
    overrides = {"nosmog": dict(pos_dim=8, walk_length=8, walks_per_node=2, batch_size=128, adv_steps=1),
                 "coldbrew": dict(regress_epochs=5, hidden=16)}
    res = experiment.run_experiment(
        data, teacher=parse_model("gcn:16"), students=[parse_model("mlp:16"), parse_model("gcn:8")],
        methods={"MLP(16)": ["glnn", "nosmog", "coldbrew", "graphmlp"], "GCN(8)": ["kd", "lsp"]},
        seeds=[0], epochs=4, overrides=overrides, setting="inductive", inductive_fraction=0.25,
        out=str(tmp_path / "out"))
    validate(res)
    split = inductive_split(experiment.seed_split(data, 0), 0.25, 0)
    n_obs = split.observed.num_nodes
    assert n_obs == data.num_nodes - split.ind_idx.numel() and split.ind_idx.numel() > 0
    assert seen_sizes and all(n == n_obs for n in seen_sizes), (seen_sizes, n_obs)
    assert [(r["method"], r["model"]) for r in res["rows"]] == [
        ("teacher", "GCN(16)"), ("none", "MLP(16)"), ("glnn", "MLP(16)"), ("nosmog", "MLP(16)"),
        ("coldbrew", "MLP(16)"), ("graphmlp", "MLP(16)"), ("none", "GCN(8)"), ("kd", "GCN(8)"), ("lsp", "GCN(8)")]
    # Accuracy is over the held-out nodes: a multiple of 1 / (number of held-out nodes).
    k = split.ind_idx.numel()
    for r in res["rows"]:
        assert abs(r["test_acc"][0] * k - round(r["test_acc"][0] * k)) < 1e-4, r
    # A transductive run shares the --out folder without tripping over the inductive checkpoints.
    experiment.run_experiment(data, teacher=parse_model("gcn:16"), students=[parse_model("mlp:16")],
                              methods=["glnn"], seeds=[0], epochs=2, out=str(tmp_path / "out"))


def test_nosmog_position_features_of_a_new_node_are_its_observed_neighbours_mean():
    from gkdfast.data import inductive_split

    data = csbm(num_nodes=300, num_classes=3, feature_dim=6, seed=4)
    split = inductive_split(data, 0.3, seed=1)
    recipe = recipes.get("nosmog", pos_dim=4, walk_length=5, walks_per_node=1)
    seen = recipe.inputs(split.observed, seed=0)
    full = recipe.inputs_on(data, split, seen)
    assert full.shape == (data.num_nodes, 6 + 4)
    assert torch.equal(full[:, :6], data.x)
    assert torch.equal(full[split.obs_idx], seen)  # observed nodes keep what they trained with
    src, dst = data.graph.edge_index
    observed = torch.zeros(data.num_nodes, dtype=torch.bool)
    observed[split.obs_idx] = True
    for i in split.ind_idx[:20].tolist():
        nbrs = src[(dst == i) & observed[src]]
        want = full[nbrs, 6:].mean(0) if nbrs.numel() else torch.zeros(4)
        assert torch.allclose(full[i, 6:], want, atol=1e-6), i


def test_recipe_with_graph_inputs_and_no_inductive_version_says_so():
    class Custom(recipes.GLNN):
        def inputs(self, data, seed=0):
            return data.x * 2

    with pytest.raises(NotImplementedError, match="inductive"):
        Custom().inputs_on(None, None, None)


def test_separate_passes_replay_glnns_reference_schedule(tiny, tiny_teacher):
    """passes="separate" is GLNN's ``train_mini_batch`` twice per epoch: the label pass over the
    training nodes (loss × λ, stepping even at λ = 0), then the soft pass over every node, each
    ``max(1, n // B)`` batches of a random order with the remainder dropped.  A hand-written replica of
    that loop, drawing its orders from the same generator, ends at the same weights."""
    _, tout = tiny_teacher
    batch, epochs, seed = 64, 3, 7
    torch.manual_seed(0)
    student = MLP(16, 16, 3, dropout=0.0)
    init = copy.deepcopy(student.state_dict())
    Distiller(student, [terms.CrossEntropy(0.0), terms.LogitKD(1.0)], tout, lr=0.01, weight_decay=5e-3,
              epochs=epochs, patience=None, batch_size=batch, seed=seed, passes="separate").fit(tiny)

    replica = MLP(16, 16, 3, dropout=0.0)
    replica.load_state_dict(init)
    optim = torch.optim.Adam(replica.parameters(), lr=0.01, weight_decay=5e-3)
    gen = torch.Generator().manual_seed(seed)
    labelled = tiny.train_mask.nonzero().flatten()
    every = torch.arange(tiny.num_nodes)
    assert labelled.numel() < batch < every.numel() and every.numel() % batch != 0  # both branches of the rule

    def reference_pass(rows, loss_of, weight):
        count = max(1, rows.numel() // batch)
        # (one batch of every row: its order changes nothing, and gkdfast draws none)
        order = rows[torch.randperm(rows.numel(), generator=gen)][: count * batch] if count > 1 else rows
        for b in order.split(batch) if count > 1 else [order]:
            loss = loss_of(b) * weight
            optim.zero_grad()
            loss.backward()
            optim.step()

    for _ in range(epochs):
        reference_pass(labelled, lambda b: F.cross_entropy(replica(tiny.x[b]), tiny.y[b]), 0.0)
        reference_pass(every, lambda b: F.kl_div(F.log_softmax(replica(tiny.x[b]), -1),
                                                 F.softmax(tout.logits[b], -1), reduction="batchmean"), 1.0)
    for (name, a), b in zip(student.state_dict().items(), replica.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    # the zero-weight label pass is not a no-op: without it (joint) the weights differ
    joint = MLP(16, 16, 3, dropout=0.0)
    joint.load_state_dict(init)
    Distiller(joint, [terms.CrossEntropy(0.0), terms.LogitKD(1.0)], tout, lr=0.01, weight_decay=5e-3,
              epochs=epochs, patience=None, batch_size=batch, seed=seed).fit(tiny)
    assert any(not torch.allclose(a, b) for a, b in zip(joint.state_dict().values(), student.state_dict().values()))
    assert recipes.get("glnn", passes="separate").distiller(MLP(16, 8, 3), tout).passes == "separate"
    with pytest.raises(ValueError, match="passes must be 'joint' or 'separate'"):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], passes="both")


def test_labelled_first_batching_replays_graph_mlps_batches(tiny):
    """batching="labelled_first": one step per epoch on the training nodes followed by nodes drawn with
    replacement; CE reads only the first rows and the neighbour-contrastive term the whole graph's Â^r
    restricted to the batch.  A replica of Graph-MLP's loop (same generator) ends at the same weights."""
    from gkdfast.losses import ncontrast

    batch, epochs, seed, alpha, tau = 120, 4, 3, 2.0, 0.5
    torch.manual_seed(0)
    student = MLP(16, 16, 3, dropout=0.0)
    init = copy.deepcopy(student.state_dict())
    r = Distiller(student, [terms.CrossEntropy(1.0), terms.NContrast(alpha, tau, hops=2)], lr=0.01,
                  weight_decay=5e-3, epochs=epochs, patience=None, batch_size=batch, seed=seed,
                  batching="labelled_first").fit(tiny)
    assert r.epochs == epochs

    replica = MLP(16, 16, 3, dropout=0.0)
    replica.load_state_dict(init)
    optim = torch.optim.Adam(replica.parameters(), lr=0.01, weight_decay=5e-3)
    gen = torch.Generator().manual_seed(seed)
    train = tiny.train_mask.nonzero().flatten()
    assert train.numel() < batch
    for _ in range(epochs):
        b = torch.cat([train, torch.randint(tiny.num_nodes, (batch - train.numel(),), generator=gen)])
        logits, hidden = replica(tiny.x[b], return_hidden=True)
        loss = F.cross_entropy(logits[: train.numel()], tiny.y[train]) + \
            alpha * ncontrast(tiny.graph, hidden, tau=tau, hops=2, nodes=b)
        optim.zero_grad()
        loss.backward()
        optim.step()
    for (name, a), b in zip(student.state_dict().items(), replica.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    with pytest.raises(ValueError, match="batch_size must be larger"):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], batch_size=train.numel(),
                  batching="labelled_first").fit(tiny)
    with pytest.raises(ValueError, match="needs a batch_size"):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], batching="labelled_first")
    with pytest.raises(ValueError, match="batching must be 'partition' or 'labelled_first'"):
        Distiller(MLP(16, 8, 3), [terms.CrossEntropy()], batching="sorted")
    assert recipes.get("graphmlp", batch_size=500, batching="labelled_first").distiller(
        MLP(16, 8, 3), None).batching == "labelled_first"


def test_eval_logits_runs_graph_free_models_in_chunks_without_autograd(tiny):
    from gkdfast.distill.distiller import eval_logits

    torch.manual_seed(0)
    mlp, gcn = MLP(16, 32, 3, dropout=0.5), GCN(16, 8, 3, dropout=0.5)
    seen = []
    mlp.register_forward_hook(lambda m, args, out: seen.append(args[0].size(0)))
    whole = eval_logits(mlp, tiny.x, None, False, chunk=1000)
    parts = eval_logits(mlp, tiny.x, None, False, chunk=64)
    assert seen == [300, 64, 64, 64, 64, 44] and not mlp.training  # eval mode: no dropout, same rows
    torch.testing.assert_close(parts, whole)
    assert not parts.requires_grad
    g = eval_logits(gcn, tiny.x, tiny.graph, True, chunk=64)  # a GNN sees the whole graph at once
    assert g.shape == (300, 3) and not g.requires_grad and not gcn.training


def test_table_and_plot_name_the_setting_of_rows_from_several_published_settings(tmp_path):
    from gkdfast.distill.results import format_table, row_settings, save_png, validate

    row = {"method": "teacher", "model": "SAGE(128)", "test_acc_mean": 0.8, "test_acc_std": 0.0,
           "test_acc": [0.8], "train_seconds": 1.0, "inference_ms_per_1k_nodes": 0.1}
    res = {"dataset": "cora", "num_nodes": 10, "num_edges": 20, "rows": [row, dict(row, method="none"), row],
           "protocol": {"name": "published", "settings": [{"key": "cpf", "num_rows": 2}, {"key": "ta", "num_rows": 1}]}}
    validate(res)
    assert row_settings(res) == ["cpf", "cpf", "ta"]
    lines = format_table(res).splitlines()
    assert lines[1].split()[:3] == ["setting", "method", "model"]
    assert lines[3].split()[:3] == ["cpf", "teacher", "SAGE(128)"]
    assert lines[5].split()[:3] == ["ta", "teacher", "SAGE(128)"]
    save_png(res, str(tmp_path / "r.png"))
    one = dict(res, rows=[row], protocol={"name": "published", "settings": [{"key": "cpf", "num_rows": 1}]})
    assert row_settings(one) is None and "setting" not in format_table(one)  # one setting: nothing to tell apart
    bad = dict(res, protocol={"name": "published", "settings": [{"key": "cpf", "num_rows": 1}, {"key": "ta"}]})
    assert row_settings(bad) is None


def test_a_model_with_per_node_tables_is_refused_in_the_inductive_setting_before_training():
    from gkdfast.data import csbm
    from gkdfast.distill.experiment import ModelSpec, run_experiment

    data = csbm(num_nodes=300, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="SEGCN.*inductive"):
        run_experiment(data, teacher=ModelSpec("segcn", 16), students=[ModelSpec("mlp", 16)], methods=["kd"],
                       setting="inductive", epochs=1)


def test_seed_split_redraws_with_the_graphs_own_per_class_counts():
    from gkdfast.data import dcsbm
    from gkdfast.distill.experiment import seed_split

    d = dcsbm(3000, 10, 5, 16, seed=1)  # products-shaped: 5 labelled nodes per class
    s = seed_split(d, 7)
    assert int(s.train_mask.sum()) == int(d.train_mask.sum()) == 25 and int(s.val_mask.sum()) == 150
    assert s.extras["split"] == "random(5/30 per class, seed=7)"
    assert bool((s.train_mask != d.train_mask).any())  # redrawn for the seed
