"""The recipes of issue 14 on real graphs (Cora): each test checks what makes the method more than
plain KD or plain training, plus the sparse top-k PPR and the missing-data mask they rely on."""

import dataclasses
import json

import pytest
import torch

from gkdfast.data import mask_missing
from gkdfast.distill import recipes
from gkdfast.distill.distiller import accuracy, call_model
from gkdfast.distill.ppr import dense_ppr, ppr_graph, topk_ppr
from gkdfast.distill.recipes.assistants import fit_mix_weights, mix_soft_labels
from gkdfast.distill.recipes.gsdn import in_edges
from gkdfast.nn import GCN, MLP


# -- helpers ---------------------------------------------------------------------------------------
def test_topk_ppr_equals_the_dense_reference(small_cora):
    g = small_cora.graph
    idx, val = topk_ppr(g, k=8, eps=1e-10, block=64, method="power")
    dense = dense_ppr(g)
    dense.fill_diagonal_(-1.0)
    ref_val, _ = dense.topk(8, dim=1)
    assert torch.allclose(val, ref_val.clamp(min=0), atol=1e-6)
    # the returned targets carry exactly the dense scores
    picked = dense.gather(1, idx).clamp(min=0)
    assert torch.allclose(picked, val, atol=1e-6)
    # blocks of any size give the same answer
    idx2, val2 = topk_ppr(g, k=8, eps=1e-10, block=7, method="power")
    assert torch.allclose(val2, val, atol=1e-7)


def test_ppr_graph_adds_weighted_edges_to_a(small_cora):
    g = small_cora.graph
    pg = ppr_graph(g, k=3)
    assert pg.num_edges > g.num_edges
    assert pg.edge_weight is not None and bool((pg.edge_weight > 0).all())
    with pytest.raises(ValueError, match="k must be"):
        topk_ppr(g, k=0)
    with pytest.raises(ValueError, match="alpha"):
        topk_ppr(g, k=2, alpha=1.5)


def test_mask_missing_is_seeded_symmetric_and_at_the_rate(cora):
    a, b, c = mask_missing(cora, 0.3, seed=1), mask_missing(cora, 0.3, seed=1), mask_missing(cora, 0.3, seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.graph.edge_index, b.graph.edge_index)
    assert not torch.equal(a.extras["missing_features"], c.extras["missing_features"])
    assert abs(float(a.extras["missing_features"].float().mean()) - 0.3) < 0.01
    assert abs(a.graph.num_edges / cora.graph.num_edges - 0.7) < 0.03
    ei = a.graph.edge_index
    pairs = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert all((v, u) in pairs for u, v in pairs)  # both directions go together
    assert float(a.x[a.extras["missing_features"]].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="rate must be in"):
        mask_missing(cora, 1.0)
    # The edges come from their own stream: an edges-only mask deletes the full mask's edges, whatever
    # the feature width.
    edges_only = mask_missing(cora, 0.3, seed=1, features=False)
    assert torch.equal(edges_only.graph.edge_index, a.graph.edge_index) and torch.equal(edges_only.x, cora.x)
    narrow = mask_missing(dataclasses.replace(cora, x=cora.x[:, :7]), 0.3, seed=1)
    assert torch.equal(narrow.graph.edge_index, a.graph.edge_index)


def test_in_edges_lists_every_in_edge_of_the_batch(small_cora):
    g = small_cora.graph
    nodes = torch.tensor([5, 0, 17])
    anchor, nbr = in_edges(g, nodes)
    ei = g.edge_index
    expected = sorted((int(d), int(s)) for s, d in zip(ei[0], ei[1]) if int(d) in (5, 0, 17))
    assert sorted(zip(anchor.tolist(), nbr.tolist())) == expected


# -- the recipes -----------------------------------------------------------------------------------
def test_ta_ensemble_weights_leave_out_a_bad_assistant(cora):
    y = cora.y[cora.val_mask]
    torch.manual_seed(0)
    good1 = 3 * torch.nn.functional.one_hot(y, 7).float() + torch.randn(y.numel(), 7)
    good2 = 3 * torch.nn.functional.one_hot(y, 7).float() + torch.randn(y.numel(), 7)
    bad = 3 * torch.randn(y.numel(), 7)
    w = fit_mix_weights([good1, bad, good2], y, seed=0)
    assert float(w[1]) < 0.05 and abs(float(w.sum()) - 1) < 1e-5
    assert not torch.allclose(w, torch.full((3,), 1 / 3), atol=0.1)
    p = mix_soft_labels([good1, bad, good2], w)
    uniform = mix_soft_labels([good1, bad, good2], torch.ones(3))
    assert accuracy(p, y) >= accuracy(uniform, y)
    with pytest.raises(ValueError, match="mix must be"):
        recipes.get("ta_ensemble", mix="median").fit(lambda f: MLP(f, 8, 7), cora, torch.zeros(1))


def test_ta_ensemble_fit_gives_a_bad_assistant_the_least_weight(small_cora, monkeypatch):
    from gkdfast.distill.recipes.assistants import TAEnsemble

    d = small_cora
    good = torch.nn.functional.one_hot(d.y, 7).float() * 4.0  # an assistant that knows the labels
    noisy = good + 3.0 * torch.randn(good.shape, generator=torch.Generator().manual_seed(0))
    bad = torch.nn.functional.one_hot((d.y + 1) % 7, 7).float() * 4.0  # confidently wrong everywhere
    fake = [{"logits": z, "val_acc": accuracy(z, d.y, d.val_mask), "seconds": 0.0} for z in (noisy, bad, good)]
    monkeypatch.setattr(TAEnsemble, "assistants", lambda self, *a, **kw: fake)
    torch.manual_seed(0)
    t = recipes.get("ta_ensemble", epochs=2, patience=None, de_maxiter=20).fit(
        lambda f: MLP(f, 8, 7), d, GCN(d.x.size(1), 8, 7).eval(), seed=0)
    w = t.extras["weights"]
    assert len(w) == 3 and abs(sum(w) - 1) < 1e-3
    assert w[1] < 0.05 and w[2] == max(w)  # the wrong one is left out, the exact one leads: not uniform
    assert t.extras["source_val_acc"][1] == 0.0


def test_oad_peers_agree_more_than_independently_trained_peers(cora):
    def run(**kw):
        torch.manual_seed(0)
        return recipes.get("oad", warmup_epochs=5, epochs=30, patience=None, **kw).fit(
            lambda f: GCN(f, 16, 7), cora, seed=0)

    online = run()
    alone = run(kd_weight=1e-12, gan_weight=0.0)  # the KD value is still recorded, its pull is nil
    assert online.extras["best_peer"] in range(4) and len(online.extras["peer_val_acc"]) == 4
    # the online terms pull the peers' predictions together: far less disagreement at the end
    assert online.fit.history[-1]["peer_kd"] < 0.5 * alone.fit.history[-1]["peer_kd"]
    assert "cyclic_gan" in online.fit.history[-1] and "cyclic_gan" not in alone.fit.history[-1]
    with pytest.raises(ValueError, match="num_branches"):
        recipes.get("oad", num_branches=1).fit(lambda f: GCN(f, 16, 7), cora)


def test_freekd_agent_learns_a_node_dependent_policy(cora):
    torch.manual_seed(0)
    r = recipes.get("freekd", epochs=60, patience=None)
    group_holder = {}
    orig = r.peer_terms

    def keep(group):
        terms = orig(group)
        group_holder["agent"] = terms[1]
        return terms

    r.peer_terms = keep
    t = r.fit(lambda f: GCN(f, 16, 7), cora, seed=0)
    agent = group_holder["agent"]
    fractions = t.extras["forward_fraction"]
    assert len(fractions) == 60
    # the directions change over training (plain mutual KD would keep both, or one, fixed)
    assert max(fractions) - min(fractions) > 0.05, fractions
    # and depend on the node: the learnt probabilities differ across nodes
    from gkdfast.distill.recipes.freekd import node_state

    with torch.no_grad():
        (z0, _), (z1, _) = agent.group.last
        probs = agent.action_probs(node_state(z0, z1, cora.y, cora.train_mask, agent.log_degree))
    assert float(probs[:, 0].std()) > 1e-3
    assert len(t.extras["peer_val_acc"]) == 2
    # both networks are usable results: each member's validation accuracy is the one reported for it
    assert len(t.members) == 2 and t.model is t.members[t.extras["best_peer"]]
    for member, acc in zip(t.members, t.extras["peer_val_acc"]):
        assert not member.training
        with torch.no_grad():
            pred = member(cora.x, cora.graph).argmax(1)
        assert float((pred[cora.val_mask] == cora.y[cora.val_mask]).float().mean()) == pytest.approx(acc, abs=1e-6)


def test_t2gnn_imputes_only_missing_entries_and_uses_ppr_edges(small_cora):
    d = mask_missing(small_cora, 0.3, seed=0)
    seen = {}
    from gkdfast.distill.recipes import t2gnn as mod

    orig = mod.T2GNN._teacher

    def spy(self, model, data, tag, seed, **kw):
        out = orig(self, model, data, tag, seed, **kw)
        seen[tag] = model
        return out

    mod.T2GNN._teacher = spy
    try:
        torch.manual_seed(0)
        t = recipes.get("t2gnn", teacher_epochs=30, epochs=20, topk=5, patience=None).fit(
            lambda f: GCN(f, 16, 7), d, seed=0)
    finally:
        mod.T2GNN._teacher = orig
    layer = seen["feature"].mlp.layers[0]
    assert torch.equal(layer.rows, d.train_mask.nonzero().flatten())  # the rows its cross-entropy reads
    imputed, missing = seen["feature"].imputed.detach(), d.extras["missing_features"][layer.rows]
    assert float(imputed[missing].abs().sum()) > 0          # the missing entries were learnt
    assert float(imputed[~missing].abs().sum()) == 0.0      # the observed ones never enter the model
    assert t.extras["ppr_edges"] > 0
    hist = t.fit.history[-1]
    assert {"kd_fea", "kd_str", "contrast_fea", "contrast_str"} <= set(hist)
    with pytest.raises(ValueError, match="lamb"):
        recipes.get("t2gnn", lamb=1.5).fit(lambda f: GCN(f, 16, 7), d)


def test_imputation_on_the_loss_rows_equals_imputation_everywhere(small_cora):
    """ImputingMLP(rows=train) is the full [N, F] imputation when only the training rows reach the
    loss: the other rows' parameters get zero gradients and stay at 0 under Adam with weight decay."""
    from gkdfast.distill.recipes.t2gnn import ImputingMLP

    d = mask_missing(small_cora, 0.3, seed=1)
    miss, tr = d.extras["missing_features"], d.train_mask
    models = []
    for rows in (None, tr.nonzero().flatten()):
        torch.manual_seed(3)
        m = ImputingMLP(miss, 32, 7, rows=rows)
        opt = torch.optim.Adam(m.parameters(), lr=0.01, weight_decay=5e-4)
        for _ in range(5):
            loss = torch.nn.functional.cross_entropy(m(d.x)[tr], d.y[tr])
            opt.zero_grad()
            loss.backward()
            opt.step()
        models.append(m.eval())
    full, rows = models
    assert float(full.imputed[~tr].detach().abs().max()) == 0.0
    assert float(full.imputed[tr][miss[tr]].detach().abs().sum()) > 0
    torch.testing.assert_close(rows.imputed, full.imputed[tr], atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(rows(d.x), full(d.x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="rows must be node ids"):
        ImputingMLP(miss, 8, 7, rows=torch.tensor([0, d.num_nodes]))
    with pytest.raises(ValueError, match="missing mask"):
        ImputingMLP(miss, 8, 7)(d.x[:10])


def test_gsdn_needs_an_mlp_and_learns_from_neighbours(small_cora):
    with pytest.raises(ValueError, match="graph-free"):
        recipes.get("gsdn").fit(lambda f: GCN(f, 16, 7), small_cora)
    torch.manual_seed(0)
    r = recipes.get("gsdn", epochs=3, patience=None)
    t = r.fit(lambda f: MLP(f, 32, 7), small_cora, seed=0)
    assert t.fit.history[-1]["gsdn"] == t.fit.history[-1]["gsdn"]  # finite
    assert not t.uses_graph


def test_gsdn_first_layer_sharing_is_the_same_loss_and_gradient(small_cora):
    """With an MLP student the term applies its first layer to each node once and mixes the outputs
    (bag-of-words Cora features: through the sparse slice); loss and gradients equal the dense path."""
    from gkdfast.distill.recipes.gsdn import NeighbourSelfDistill, _first_linear
    from gkdfast.distill.terms import Dims, StepContext

    d = small_cora
    torch.manual_seed(0)
    student = MLP(d.x.size(1), 32, 7)
    assert _first_linear(student) is student.layers[0]
    assert _first_linear(MLP(d.x.size(1), 32, 7, input_dropout=0.2)) is None and _first_linear(None) is None
    term = NeighbourSelfDistill().bind(d.x, d.y, d.train_mask)
    term.setup(Dims(32, None, 7))
    nodes = torch.arange(0, 64)
    out = []
    for fast in (False, True):
        torch.manual_seed(5)
        ctx = StepContext(nodes=nodes, logits=torch.zeros(64, 7), hidden=None, teacher_logits=None,
                          teacher_hidden=None, y=d.y[nodes], labelled=d.train_mask[nodes],
                          observed=torch.ones(64, dtype=torch.bool), inputs=d.x[nodes],
                          forward=lambda xx: student(xx, return_hidden=True), full_graph=d.graph,
                          full_batch=False, student=student if fast else None)
        student.zero_grad()
        term.zero_grad()
        loss = term(ctx)
        loss.backward()
        out.append((loss.detach(), student.layers[0].weight.grad.clone(), term.factor.weight.grad.clone()))
    (l0, g0, f0), (l1, g1, f1) = out
    torch.testing.assert_close(l1, l0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g1, g0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(f1, f0, atol=1e-5, rtol=1e-4)


def test_gsdn_beats_the_plain_mlp_on_cora(cora):
    # ~25 s on one core since the first layer is shared per node (it was ~2 min and skipped by default)
    accs = {}
    for m in ("none", "gsdn"):
        torch.manual_seed(0)
        t = recipes.get(m, epochs=30, patience=None).fit(lambda f: MLP(f, 128, 7), cora, seed=0)
        accs[m] = accuracy(call_model(t.model.eval(), cora.x, None, False, False)[0], cora.y, cora.test_mask)
    assert accs["gsdn"] > accs["none"] + 0.08, accs


def test_cli_lists_the_new_methods_and_rejects_a_bad_missing_rate(capsys):
    from gkdfast.cli import main

    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = capsys.readouterr().out
    for name in ("freekd", "oad", "t2gnn", "gsdn", "sail", "ta_ensemble", "--missing-rate"):
        assert name in out
    assert main(["distill", "--missing-rate", "1.5", "--methods", "t2gnn"]) != 0
    assert "--missing-rate must be in [0, 1)" in capsys.readouterr().err


def test_sail_intra_distillation_pulls_the_shallow_mode_towards_the_propagated_one(small_cora):
    from gkdfast.distill.recipes.sail import edgeless

    def shallow_vs_deep(intra):
        torch.manual_seed(0)
        t = recipes.get("sail", epochs=15, intra_weight=intra, baseline=False, probe_epochs=20).fit(
            lambda f: GCN(f, 32, 7), small_cora, seed=0)
        enc = t.model.encoder.eval()
        with torch.no_grad():
            deep = enc(small_cora.x, small_cora.graph, return_hidden=True)[1]
            shallow = enc(small_cora.x, edgeless(small_cora.num_nodes), return_hidden=True)[1]
        return float(torch.nn.functional.cosine_similarity(deep, shallow, dim=1).mean()), t

    with_intra, t = shallow_vs_deep(1.0)
    without, _ = shallow_vs_deep(0.0)
    assert with_intra > without, (with_intra, without)
    out = t.model(small_cora.x, small_cora.graph)  # encoder + linear probe: the row's classifier
    assert out.shape == (small_cora.num_nodes, 7)
    with pytest.raises(ValueError, match="GNN student"):
        recipes.get("sail", epochs=1).fit(lambda f: MLP(f, 8, 7), small_cora)
    with pytest.raises(ValueError, match="drop rates"):
        recipes.get("sail", edge_drop_1=1.0).fit(lambda f: GCN(f, 8, 7), small_cora)


@pytest.mark.parametrize("grace_weight", [0.0, 0.5])
def test_sail_adds_graces_two_view_loss_only_when_weighted(grace_weight, small_cora, monkeypatch):
    from gkdfast.distill.recipes import sail as sail_mod

    seen = []
    real = sail_mod._ViewTerm.two_views

    def two_views(self, ctx):
        seen.append(self.name)
        return real(self, ctx)

    monkeypatch.setattr(sail_mod._ViewTerm, "two_views", two_views)
    torch.manual_seed(0)
    recipes.get("sail", epochs=3, probe_epochs=2, baseline=False, grace_weight=grace_weight).fit(
        lambda f: GCN(f, 16, 7), small_cora, seed=0)
    assert seen == (["sail"] * 3 if grace_weight else [])
    with pytest.raises(ValueError, match="grace_weight"):
        recipes.get("sail", grace_weight=-1.0).fit(lambda f: GCN(f, 8, 7), small_cora)


def test_sail_reports_the_grace_baseline_of_the_same_run(small_cora):
    torch.manual_seed(0)
    t = recipes.get("sail", epochs=3, probe_epochs=10).fit(lambda f: GCN(f, 16, 7), small_cora, seed=0)
    assert 0.0 <= t.extras["grace_probe_acc"] <= 1.0 and "sail_probe_val_acc" in t.extras
    grace = t.baselines["grace"]  # GRACE's encoder + its own probe: another model than SAIL's
    assert grace.model.encoder is not t.model.encoder
    with torch.no_grad():
        logits = grace.model(small_cora.x, small_cora.graph)
    val = small_cora.val_mask  # the probe keeps its best validation epoch
    acc = float((logits[val].argmax(1) == small_cora.y[val]).float().mean())
    assert acc == pytest.approx(t.extras["grace_probe_val_acc"])


def test_sail_picks_the_intra_weight_by_the_probes_validation_accuracy(small_cora, monkeypatch):
    from gkdfast.distill.recipes import sail as sail_mod

    # (the first 400 Cora nodes hold no test node of the public split: its last 100 validation nodes test here)
    last = torch.arange(small_cora.num_nodes) >= 300
    small_cora = dataclasses.replace(small_cora, val_mask=small_cora.val_mask & ~last, test_mask=last)
    trained_weights, starts = [], []
    real_train = sail_mod.SAIL._train

    def train(self, encoder, term, *a, **kw):
        trained_weights.append(getattr(term, "intra_weight", None))
        starts.append([p.detach().clone() for p in encoder.parameters()])
        return real_train(self, encoder, term, *a, **kw)

    monkeypatch.setattr(sail_mod.SAIL, "_train", train)
    torch.manual_seed(0)
    t = recipes.get("sail", epochs=3, probe_epochs=10, baseline=False, intra_weight=(0, 1.0)).fit(
        lambda f: GCN(f, 16, 7), small_cora, seed=0)
    assert trained_weights == [0.0, 1.0]
    assert all(torch.equal(a, b) for a, b in zip(*starts))  # every candidate from the same initial weights
    by_weight = t.extras["sail_probe_val_acc_by_intra_weight"]
    assert set(by_weight) == {0.0, 1.0}
    pick = t.extras["sail_intra_weight"]
    assert by_weight[pick] == max(by_weight.values()) == t.extras["sail_probe_val_acc"]
    if by_weight[0.0] == by_weight[1.0]:
        assert pick == 0.0  # the first candidate on a tie
    with torch.no_grad():  # the returned model is the picked candidate's encoder + probe
        logits = t.model(small_cora.x, small_cora.graph)
    val, test = small_cora.val_mask, small_cora.test_mask
    assert float((logits[val].argmax(1) == small_cora.y[val]).float().mean()) == pytest.approx(by_weight[pick])
    test_by_weight = t.extras["sail_probe_test_acc_by_intra_weight"]
    assert set(test_by_weight) == {0.0, 1.0}  # reported for every candidate, the picked one as the model scores
    assert float((logits[test].argmax(1) == small_cora.y[test]).float().mean()) == pytest.approx(test_by_weight[pick])
    for bad in ((), (1.0, -1.0), (1.0, 1.0), "heavy"):
        with pytest.raises(ValueError, match="intra_weight"):
            recipes.get("sail", intra_weight=bad).fit(lambda f: GCN(f, 8, 7), small_cora)


def test_a_sail_candidate_trains_exactly_as_the_single_weight_run(small_cora, monkeypatch):
    from gkdfast.distill.recipes import sail as sail_mod

    trained = {}
    real_train = sail_mod.SAIL._train

    def train(self, encoder, term, *a, **kw):
        out = real_train(self, encoder, term, *a, **kw)
        weights = [p.detach().clone() for p in encoder.parameters()]
        trained.setdefault(getattr(term, "intra_weight", "grace"), []).append(weights)
        return out

    monkeypatch.setattr(sail_mod.SAIL, "_train", train)
    runs = []
    for weights in ((1.0,), (0.0, 1.0)):
        torch.manual_seed(0)
        runs.append(recipes.get("sail", epochs=3, probe_epochs=10, intra_weight=weights).fit(
            lambda f: GCN(f, 16, 7), small_cora, seed=0))
    alone, in_list = trained[1.0]  # intra_weight=1 alone, then as the second of two candidates
    assert len(alone) > 0 and all(torch.equal(a, b) for a, b in zip(alone, in_list))
    assert runs[1].extras["sail_probe_val_acc_by_intra_weight"][1.0] == runs[0].extras["sail_probe_val_acc"]


def test_the_grace_baseline_is_a_row_of_the_experiment():
    from gkdfast.data import csbm
    from gkdfast.distill.experiment import ModelSpec, run_experiment
    from gkdfast.distill.results import validate

    data = csbm(num_nodes=200, num_classes=3, feature_dim=16, seed=0)
    details, lines = [], []
    res = run_experiment(data, teacher=None, students=[ModelSpec("gcn", 16, 2, 0.5)], methods=["sail"],
                         seeds=(0, 1), overrides={"sail": {"epochs": 2, "probe_epochs": 5, "intra_weight": [0, 1]},
                                                  "none": {"epochs": 2}}, details=details, log=lines.append)
    validate(res)
    rows = {r["method"]: r for r in res["rows"]}
    assert list(rows) == ["none", "sail", "grace"]
    assert len(rows["grace"]["test_acc"]) == 2 and rows["grace"]["train_seconds"] > 0
    # the recipe's choices reach the per-run records and the log, not the summary rows
    picks = [r["extras"]["sail_intra_weight"] for r in details if r["method"] == "sail"]
    assert len(picks) == 2 and set(picks) <= {0.0, 1.0}
    assert "extras" not in next(r for r in details if r["method"] == "none")
    assert sum("sail_intra_weight=" in line for line in lines) == 2
    # one weight for the dataset, from the same records as a runs log holds them (JSON: string keys)
    from gkdfast.distill.recipes.sail import pick_intra_weight_per_dataset

    pick = pick_intra_weight_per_dataset(json.loads(json.dumps(details)))
    val = {w: [r["extras"]["sail_probe_val_acc_by_intra_weight"][w] for r in details if r["method"] == "sail"]
           for w in (0.0, 1.0)}
    means = {w: sum(v) / 2 for w, v in val.items()}
    assert pick["weight"] == (1.0 if means[1.0] > means[0.0] else 0.0)
    assert pick["val_mean"] == pytest.approx(means) and pick["seeds"] == [0, 1]
    assert pick["test_acc"] == [r["extras"]["sail_probe_test_acc_by_intra_weight"][pick["weight"]]
                                for r in details if r["method"] == "sail"]
    with pytest.raises(ValueError, match="no sail run"):
        pick_intra_weight_per_dataset([r for r in details if r["method"] != "sail"])
    mixed = json.loads(json.dumps(details)) + [dict(r, dataset="other") for r in details]
    with pytest.raises(ValueError, match="differ in dataset; pick one with dataset=..."):
        pick_intra_weight_per_dataset(mixed)
    assert pick_intra_weight_per_dataset(mixed, dataset="other")["test_acc"] == pick["test_acc"]
    # each record says which hyperparameters trained it (the GRACE row: its SAIL run's); other ones are not mixed in
    given = {"sail.epochs": 2, "sail.probe_epochs": 5, "sail.intra_weight": [0, 1]}
    assert all(r["params"] == given for r in json.loads(json.dumps(details)) if r["method"] in ("sail", "grace"))
    other = [dict(r, params=dict(given, **{"sail.inter": "fade"})) for r in json.loads(json.dumps(details))]
    with pytest.raises(ValueError, match="differ in params"):
        pick_intra_weight_per_dataset(json.loads(json.dumps(details)) + other)


@pytest.mark.parametrize("name,kw", [("freekd", {"epochs": 4}), ("oad", {"epochs": 3, "warmup_epochs": 2}),
                                     ("t2gnn", {"epochs": 3, "teacher_epochs": 3, "topk": 3}),
                                     ("sail", {"epochs": 2, "probe_epochs": 5})])
def test_rerun_with_the_same_checkpoint_dir_resumes_to_the_same_model(name, kw, small_cora, tmp_path):
    d = mask_missing(small_cora, 0.3, seed=0) if name == "t2gnn" else small_cora

    def run(rng):
        torch.manual_seed(rng)
        t = recipes.get(name, patience=None, **kw).fit(lambda f: GCN(f, 16, 7), d, seed=0,
                                                       checkpoint_dir=str(tmp_path / "ck"))
        with torch.no_grad():
            return t.model.eval()(d.x, d.graph), t.fit.epochs

    # The second run starts from another RNG state: it agrees only by finding every stage's checkpoint
    (a, ea), (b, eb) = run(0), run(1)
    assert ea == eb and torch.allclose(a, b)
    assert any(p.name.startswith("ck") for p in tmp_path.iterdir())


@pytest.mark.parametrize("name,kw", [("gsdn", {"epochs": 3}),
                                     ("ta_ensemble", {"epochs": 3, "assistant_epochs": 3, "de_maxiter": 5})])
def test_rerun_of_an_mlp_student_recipe_resumes_to_the_same_model(name, kw, small_cora, tmp_path):
    torch.manual_seed(0)
    teacher = GCN(small_cora.x.size(1), 16, 7).eval() if name == "ta_ensemble" else None

    def run(rng):
        torch.manual_seed(rng)
        t = recipes.get(name, patience=None, **kw).fit(lambda f: MLP(f, 16, 7), small_cora, teacher, seed=0,
                                                       checkpoint_dir=str(tmp_path / "ck"))
        with torch.no_grad():
            return t.model.eval()(t.inputs), t.fit.epochs

    # The second run starts from another RNG state: only the finished checkpoints can make it agree
    (a, ea), (b, eb) = run(0), run(1)
    assert ea == eb and torch.allclose(a, b)
    assert any(p.name.startswith("ck") for p in tmp_path.iterdir())


def test_freekd_confidence_prior_sends_knowledge_from_the_surer_network():
    from gkdfast.distill.recipes.freekd import FreeKDAgent, node_state
    from gkdfast.distill.recipes.peers import PeerGroup

    torch.manual_seed(0)
    group = PeerGroup([MLP(4, 8, 3), MLP(4, 8, 3)])
    sure = torch.tensor([[6.0, 0.0, 0.0], [0.0, 0.0, 0.1]])  # node 0: Φ sure; node 1: Φ unsure
    unsure = torch.tensor([[0.1, 0.0, 0.0], [0.0, 6.0, 0.0]])
    state = node_state(sure, unsure, torch.tensor([0, 1]), torch.tensor([False, False]), torch.zeros(2))
    with_prior = FreeKDAgent(group, confidence_prior=5.0).action_probs(state)[:, 0]
    assert with_prior[0] > 0.95 and with_prior[1] < 0.05  # the lower-entropy network teaches
    without = FreeKDAgent(group, confidence_prior=0.0).action_probs(state)[:, 0]
    assert ((without - 0.5).abs() < 0.45).all()  # an untrained policy alone has no such preference
    with pytest.raises(ValueError, match="reward must be"):
        FreeKDAgent(group, reward="accuracy")


def test_freekd_teacher_gap_rewards_the_direction_from_the_network_that_is_right():
    from gkdfast.distill.recipes.freekd import FreeKDAgent
    from gkdfast.distill.recipes.peers import PeerGroup

    torch.manual_seed(0)
    agent = FreeKDAgent(PeerGroup([MLP(4, 8, 3), MLP(4, 8, 3)]), confidence_prior=0.0)
    state = torch.rand(64, 9)
    ce = torch.stack([torch.zeros(64), torch.ones(64)], 1)  # Φ right on every node
    opt = torch.optim.SGD(agent.policy.parameters(), lr=0.5)
    before = float(agent.action_probs(state)[:, 0].mean().detach())
    for _ in range(30):
        with torch.no_grad():
            actions = torch.bernoulli(agent.action_probs(state))
        loss = agent._direction_loss(state, actions, ce, torch.ones(64, dtype=torch.bool))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(agent.action_probs(state)[:, 0].mean().detach()) > before + 0.2  # learns "Φ teaches Ψ"


def test_peer_group_selects_on_the_best_member_or_the_ensemble():
    from gkdfast.distill.recipes.peers import PeerGroup

    good, bad = MLP(2, 4, 2), MLP(2, 4, 2)
    group = PeerGroup([good, bad])
    y = torch.tensor([0, 1, 0, 1])
    group.last = [(torch.tensor([[1., 0.], [0., 1.], [1., 0.], [0., 1.]]), None),
                  (torch.tensor([[0., 1.], [1., 0.], [0., 1.], [0., 1.]]), None)]
    assert group.member_accuracy(y, None, 4) == 1.0  # the best member, not the mean
    assert group.member_accuracy(y, None, 5) is None  # last forward did not cover every row
    group.select = "mean"
    assert group.member_accuracy(y, None, 4) is None
    with pytest.raises(ValueError, match="select must be"):
        PeerGroup([good, bad], select="vote")


@pytest.mark.parametrize("select", ["best", "mean"])
def test_distiller_scores_a_peer_group_on_its_best_member_or_its_ensemble(select):
    from gkdfast.data import csbm
    from gkdfast.distill.distiller import Distiller
    from gkdfast.distill.recipes.peers import PeerCE, PeerGroup, best_peer

    data = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    torch.manual_seed(0)
    group = PeerGroup([GCN(8, 4, 3), GCN(8, 4, 3)], select=select)
    fit = Distiller(group, [PeerCE(group)], None, epochs=1, patience=None).fit(data, data.x)
    _, member_accs = best_peer(group, data, data.x, "cpu")
    group.eval()
    with torch.no_grad():
        ensemble = accuracy(group(data.x, data.graph), data.y, data.val_mask)
    expected = max(member_accs) if select == "best" else ensemble
    assert fit.best_val_acc == pytest.approx(expected)


def test_imputing_mlp_reads_missing_entries_as_zero_whatever_x_holds_there(small_cora):
    from gkdfast.distill.recipes.t2gnn import ImputingMLP

    d = mask_missing(small_cora, 0.3, seed=2)
    miss = d.extras["missing_features"]
    torch.manual_seed(0)
    m = ImputingMLP(miss, 16, 7).eval()
    noisy = d.x.masked_fill(miss, 5.0)  # a caller that did not zero them: the imputed values replace them
    with torch.no_grad():
        torch.testing.assert_close(m(noisy), m(d.x))
        assert m.mlp.layers[0]._observed(d.x) is d.x  # already zero there: no copy


def test_missing_rate_masks_each_seeds_data_for_every_method(tmp_path, monkeypatch):
    import json

    from gkdfast.cli import main
    from gkdfast.data import missing

    calls, seen_edges = [], []
    real_mask = missing.mask_missing

    def mask(data, rate, seed):
        out = real_mask(data, rate, seed)
        calls.append((rate, seed, data.graph.num_edges, out.graph.num_edges))
        return out

    real_fit = recipes.KD.fit

    def fit(self, make_student, data, *a, **kw):  # what the distilled student trains on
        seen_edges.append(data.graph.num_edges)
        return real_fit(self, make_student, data, *a, **kw)

    monkeypatch.setattr(missing, "mask_missing", mask)
    monkeypatch.setattr(recipes.KD, "fit", fit)
    out = tmp_path / "run"
    rc = main(["distill", "--nodes", "500", "--teacher", "gcn:8", "--student", "mlp:8", "--methods", "kd",
               "--epochs", "3", "--seeds", "2", "--missing-rate", "0.3", "--no-progress", "--device", "cpu",
               "--out", str(out)])
    assert rc in (0, None)
    assert [(r, s) for r, s, _, _ in calls] == [(0.3, 0), (0.3, 1)]  # once per seed, seeded by it
    assert all(after < before for _, _, before, after in calls)
    assert seen_edges == [after for _, _, _, after in calls]  # the student trained on the masked graph
    res = json.loads((out / "results-missing-0.3.json").read_text())  # its own file beside a plain run's
    assert "[missing 30%]" in res["dataset"] and all(len(r["test_acc"]) == 2 for r in res["rows"])


def test_t2gnn_structure_teacher_fingerprint_follows_its_ppr_graph():
    """helper 118: topk / ppr_alpha changed between a kill and its resume went through silently (the PPR
    graph was held outside every setting the checkpoint fingerprint reads)."""
    import hashlib

    from gkdfast.distill.checkpoint_file import hash_module_settings
    from gkdfast.distill.recipes.t2gnn import EmbeddingGCN

    from gkdfast import Graph

    a = Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    b = Graph(torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]]), 3)

    def digest(graph):
        torch.manual_seed(0)
        h = hashlib.sha256()
        hash_module_settings(h, EmbeddingGCN(graph, 4, 8, 2))
        return h.hexdigest()

    assert digest(a) == digest(a)
    assert digest(a) != digest(b)


def test_freekd_direction_log_survives_a_resume(small_cora, tmp_path, monkeypatch):
    """session 40: the per-epoch Φ→Ψ fractions were a list on the agent, so a resumed run logged only the
    epochs after its checkpoint; they now come from the Distiller's checkpointed history."""
    from gkdfast.distill import distiller as distiller_module

    def fit(ckpt=None):
        torch.manual_seed(0)
        return recipes.get("freekd", epochs=4, patience=None).fit(lambda f: GCN(f, 16, 7), small_cora, seed=0,
                                                                  checkpoint_dir=ckpt)

    whole = fit().extras["forward_fraction"]
    assert len(whole) == 4 and all(0.0 <= f <= 1.0 for f in whole)

    class Killed(Exception):
        pass

    real = distiller_module.write_checkpoint

    def write_then_die(path, state, ddp=None):  # killed right after epoch 2's checkpoint
        real(path, state, ddp)
        if state["epoch"] == 2:
            raise Killed

    ckpt = str(tmp_path / "ck")
    with monkeypatch.context() as m:
        m.setattr(distiller_module, "write_checkpoint", write_then_die)
        with pytest.raises(Killed):
            fit(ckpt)
    assert fit(ckpt).extras["forward_fraction"] == whole
