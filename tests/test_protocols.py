"""``gkdfast distill --protocol published`` (gkdfast.distill.protocols): the CPF split on the largest
connected component, Graph-MLP's preprocessing and encoder, the CLI's results.json, and the default
common protocol left as it was."""
from __future__ import annotations

import json

import pytest
import torch

from gkdfast.data import GraphData, csbm
from gkdfast.data.preprocess import largest_connected_component, row_normalize
from gkdfast.distill.experiment import parse_model, run_experiment, seed_split
from gkdfast.distill.protocols import PUBLISHED_METHODS, prepare, published_settings
from gkdfast.graph import Graph


def _two_components(n_big=400, n_small=30, classes=4):
    """A csbm graph of ``n_big`` nodes plus a path of ``n_small`` nodes not connected to it."""
    big = csbm(num_nodes=n_big, num_classes=classes, feature_dim=8, seed=0)
    ei = big.graph.edge_index.long()
    path = torch.arange(n_big, n_big + n_small - 1)
    small = torch.cat([torch.stack([path, path + 1]), torch.stack([path + 1, path])], dim=1)
    n = n_big + n_small
    y = torch.cat([big.y, torch.arange(n_small) % classes])
    mask = torch.zeros(n, dtype=torch.bool)
    return GraphData(Graph(torch.cat([ei, small], dim=1), n), torch.cat([big.x, torch.rand(n_small, 8)]), y,
                     mask, mask.clone(), mask.clone(), classes, "toy")


def test_cpf_split_is_20_30_per_class_inside_the_largest_component():
    data = _two_components()
    cpf = published_settings("cora", ["glnn"])[0]
    d = prepare(data, cpf)
    assert d.num_nodes == 400 and d.extras["lcc_nodes"].tolist() == list(range(400))
    for seed in (0, 1):
        s = seed_split(d, seed)
        for c in range(4):
            assert int((s.train_mask & (s.y == c)).sum()) == 20
            assert int((s.val_mask & (s.y == c)).sum()) == 30
        assert int(s.test_mask.sum()) == 400 - 4 * 50
        assert not bool((s.train_mask & s.val_mask).any() or (s.train_mask & s.test_mask).any())
    a, b = seed_split(d, 0), seed_split(d, 1)
    assert bool((a.train_mask != b.train_mask).any())  # a fresh split per seed
    # The component's edges survive, the path's are gone.
    assert d.graph.num_edges == data.graph.num_edges - 2 * 29


def test_largest_component_slices_every_node_field():
    data = _two_components()
    data.train_mask[[0, 410]] = True
    d = largest_connected_component(data)
    assert d.train_mask.tolist().count(True) == 1 and bool(d.train_mask[0])
    assert torch.equal(d.x, data.x[:400]) and torch.equal(d.y, data.y[:400])


def test_row_normalize_rows_sum_to_one_and_zero_rows_stay_zero():
    d = csbm(num_nodes=200, feature_dim=6, seed=0)
    x = d.x.clone()
    x[3] = 0.0
    out = row_normalize(GraphData(d.graph, x, d.y, d.train_mask, d.val_mask, d.test_mask, d.num_classes))
    sums = out.x.abs().sum(1)
    assert torch.allclose(sums[torch.arange(200) != 3], torch.ones(199), atol=1e-6)
    assert float(out.x[3].abs().sum()) == 0.0
    assert torch.allclose(out.x[0] * x[0].abs().sum(), x[0], atol=1e-6)  # a scaling, not a reshuffle


def test_graphmlp_setting_uses_its_encoder_in_order_and_row_normalised_features():
    s = published_settings("citeseer", ["graphmlp"])[0]
    assert s.key == "graphmlp" and s.row_normalize and s.teacher is None
    model = s.students[0].build(10, 3)
    layers = [type(m).__name__ for m in model.encoder]
    assert layers == ["Linear", "GELU", "LayerNorm", "Dropout", "Linear"]
    assert model.encoder[3].p == 0.6 and model.encoder[0].out_features == 256
    model.eval()
    x = torch.randn(5, 10)
    logits, z = model(x, return_hidden=True)
    assert torch.allclose(z, model.encoder(x)) and torch.allclose(logits, model.classifier(z))
    kw = s.overrides["graphmlp"]  # CiteSeer: alpha 1, tau_GraphMLP 0.5 (ours divides: 2.0), no projection
    assert (kw["alpha"], kw["tau"], kw["proj_dim"], kw["epochs"], kw["patience"]) == (1.0, 2.0, None, 400, None)
    # the reference's batches: 2000 nodes per step, training nodes first (its get_batch)
    assert (kw["batch_size"], kw["batching"]) == (2000, "labelled_first") and "batch_size" not in s.overrides["none"]


def test_published_settings_group_the_recipes_and_reject_unknown_ones():
    keys = [s.key for s in published_settings("cora")]
    assert keys == ["cpf", "graphmlp", "gnn"]
    gnn = published_settings("cora", ["gcrd", "kd+gcrd"])[0]
    assert gnn.methods == ("gcrd", "kd_gcrd") and gnn.teacher.name == "gat" and dict(gnn.teacher.options)["heads"] == 8
    assert [x.label for x in gnn.students] == ["GCN(64)", "SAGE(64)", "GAT(32)"]
    assert dict(gnn.students[2].options)["heads"] == 4
    assert set(PUBLISHED_METHODS) >= {"glnn", "nosmog", "graphmlp", "lsp", "gsp", "gcrd", "kd_gcrd"}
    with pytest.raises(ValueError, match="no published setting for 'reliant'"):
        published_settings("cora", ["reliant"])


def _cli(tmp_path, name, *extra):
    from gkdfast.cli import main

    out = tmp_path / name
    rc = main(["distill", "--nodes", "500", "--epochs", "2", "--seeds", "1", "--no-progress", "--quiet",
               "--device", "cpu", "--out", str(out), *extra])
    return rc, out


def test_cli_published_writes_results_with_the_protocol_recorded(tmp_path):
    from gkdfast.distill.results import validate

    rc, out = _cli(tmp_path, "pub", "--protocol", "published", "--methods", "glnn,graphmlp,kd_gcrd",
                   "--set", "graphmlp.alpha=2.5")
    assert rc in (0, None)
    res = json.loads((out / "results.json").read_text())
    validate(res)
    proto = res["protocol"]
    assert proto["name"] == "published"
    assert [s["key"] for s in proto["settings"]] == ["cpf", "graphmlp", "gnn"]
    # what --set changed is recorded with the setting it changed, and only there
    assert proto["settings"][1]["set"] == {"graphmlp": {"alpha": 2.5}}
    assert "set" not in proto["settings"][0] and "set" not in proto["settings"][2]
    assert proto["settings"][0]["lcc"] and proto["settings"][1]["row_normalize"]
    rows = {(r["method"], r["model"]) for r in res["rows"]}
    assert {("teacher", "SAGE(128)"), ("glnn", "MLP(128)"), ("graphmlp", "GMLP(256)"), ("teacher", "GAT(64)"),
            ("kd_gcrd", "GCN(64)"), ("kd_gcrd", "SAGE(64)")} <= rows
    assert ("teacher", "GMLP(256)") not in rows  # Graph-MLP trains without a teacher


def test_cli_published_rejects_flags_that_would_change_its_models(tmp_path, capsys):
    rc, _ = _cli(tmp_path, "bad", "--protocol", "published", "--teacher", "gcn")
    assert rc == 2
    assert "drop --teacher" in capsys.readouterr().err
    rc, _ = _cli(tmp_path, "bad2", "--protocol", "published", "--student", "gcn:16")
    assert rc == 2
    assert "picks among its students" in capsys.readouterr().err


def test_cli_published_student_picks_one_gnn_student(tmp_path):
    rc, out = _cli(tmp_path, "gcn", "--protocol", "published", "--methods", "glnn,kd", "--student", "gcn")
    assert rc in (0, None)
    res = json.loads((out / "results.json").read_text())
    models = [r["model"] for r in res["rows"]]
    assert "GCN(64)" in models and "SAGE(64)" not in models
    assert "MLP(128)" in models  # the cpf setting names no gcn: it keeps its student


def test_common_protocol_is_unchanged(tmp_path):
    """``--protocol common`` is the default and gives the same rows as the experiment run directly."""
    rc_a, a = _cli(tmp_path, "default", "--student", "mlp:16", "--methods", "glnn,gcrd")
    rc_b, b = _cli(tmp_path, "common", "--protocol", "common", "--student", "mlp:16", "--methods", "glnn,gcrd")
    assert rc_a in (0, None) and rc_b in (0, None)
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    assert "protocol" not in ra and "protocol" not in rb
    key = [(r["method"], r["model"], r["test_acc"]) for r in ra["rows"]]
    assert key == [(r["method"], r["model"], r["test_acc"]) for r in rb["rows"]]
    direct = run_experiment(csbm(num_nodes=500, seed=0), teacher=parse_model("sage"),
                            students=[parse_model("mlp:16")], methods=["glnn", "gcrd"], seeds=[0], epochs=2)
    assert key == [(r["method"], r["model"], r["test_acc"]) for r in direct["rows"]]
    assert [m for m, _, _ in key] == ["teacher", "none", "glnn", "gcrd"]


def test_cpf_teacher_uses_the_gcn_aggregator_mean_over_neighbours_and_self():
    from gkdfast.nn import SAGEConv

    teacher = published_settings("cora", ["glnn"])[0].teacher
    assert dict(teacher.options) == {"aggr": "gcn"}
    g = Graph(torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]]), 4)  # node 3 has no in-edge
    conv = SAGEConv(3, 2, aggr="gcn")
    assert conv.lin_r is None  # the node is inside the mean, no separate root weight
    x = torch.randn(4, 3)
    adj = torch.zeros(4, 4)
    adj[g.edge_index[1], g.edge_index[0]] = 1.0
    want = conv.lin_l(((adj + torch.eye(4)) @ x) / (adj.sum(1, keepdim=True) + 1))
    assert torch.allclose(conv(x, g), want, atol=1e-5)


def test_cpf_keeps_the_latest_of_equally_good_epochs_like_the_reference():
    s = published_settings("cora_ml", ["glnn", "nosmog"])[0]
    assert s.teacher_params["ties"] == "last"
    assert all(s.overrides[m]["ties"] == "last" for m in ("none", "glnn", "nosmog"))
    gnn = published_settings("cora", ["kd"])[0]  # the other settings keep the default
    assert gnn.key == "gnn" and all(v.get("ties", "first") == "first" for v in gnn.overrides.values())


def test_quality_published_table_puts_the_paper_figure_beside_ours(tmp_path):
    """scripts/quality.py --protocol published --from-json: one row per (method, model), the published
    figure and the gap beside our mean; docs/results.md is not written."""
    import dataclasses
    import importlib.util
    import os

    from conftest import REPO
    from gkdfast.distill.protocols import run_published
    from gkdfast.distill.results import save_json

    data = dataclasses.replace(csbm(num_nodes=500, seed=0), name="cora")
    res = run_published(data, methods=["glnn"], epochs=2)
    save_json(res, str(tmp_path / "results.json"))
    spec = importlib.util.spec_from_file_location("quality_script", os.path.join(REPO, "scripts", "quality.py"))
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    out = tmp_path / "table.md"
    report = tmp_path / "results.md"
    report.write_text("# Distillation quality and wall time\n\ncommon table\n")
    argv = ["--protocol", "published", "--from-json", str(tmp_path / "*.json"), "--out", str(out),
            "--results-md", str(report)]
    quality.main(argv)
    text = out.read_text()
    # the same table is the marked second section of docs/results.md; a rerun replaces it, not repeats it
    quality.main(argv)
    merged = report.read_text()
    assert merged.startswith("# Distillation quality and wall time\n\ncommon table\n")
    assert merged.count("<!-- published-table:start -->") == 1 and merged.count("### cora") == 1
    assert "## Second table: every recipe in its published setting" in merged
    assert quality._kept_published_block(str(report)).endswith("<!-- published-table:end -->")
    glnn = next(r for r in res["rows"] if r["method"] == "glnn")
    acc = 100 * glnn["test_acc_mean"]
    assert f"| cpf | glnn | MLP(128) | {acc:.2f} ± 0.00 | 1 | 80.54 | {acc - 80.54:+.2f} |" in text
    assert "| cpf | teacher | SAGE(128) |" in text


def test_set_teacher_changes_the_teacher_of_every_setting_with_one_and_records_it(tmp_path):
    from gkdfast.distill.protocols import with_teacher

    gnn = published_settings("cora", ["kd"])[0]
    # back to the first choice, a 3-layer GAT(4 x 64)
    t = with_teacher(gnn, {"hidden": 256, "num_layers": 3, "heads": 4, "attn_dropout": 0.3, "input_dropout": 0.0,
                           "lr": 0.005}).teacher
    assert (t.name, t.hidden, t.num_layers) == ("gat", 256, 3)
    assert dict(t.options) == {"heads": 4, "attn_dropout": 0.3, "input_dropout": 0.0}
    changed = with_teacher(gnn, {"lr": 0.005, "patience": 50})
    assert changed.teacher == gnn.teacher and changed.teacher_params["lr"] == 0.005
    assert changed.teacher_params["patience"] == 50 and changed.teacher_params["epochs"] == 500
    # another model drops the options the old one had (GCN takes no heads)
    assert dict(with_teacher(gnn, {"model": "gcn"}).teacher.options) == {}
    graphmlp = published_settings("cora", ["graphmlp"])[0]
    assert with_teacher(graphmlp, {"hidden": 8}) is graphmlp  # teacher-free: nothing to change
    with pytest.raises(ValueError, match="cannot be built"):
        with_teacher(gnn, {"headz": 8})
    with pytest.raises(ValueError, match="unknown model"):
        with_teacher(gnn, {"model": "transformer"})
    with pytest.raises(ValueError, match="positive integer"):
        with_teacher(gnn, {"hidden": 0})

    rc, out = _cli(tmp_path, "teach", "--protocol", "published", "--methods", "kd", "--student", "gcn",
                   "--set", "teacher.hidden=32", "--set", "teacher.num_layers=2", "--set", "teacher.heads=8")
    assert rc in (0, None)
    res = json.loads((out / "results.json").read_text())
    assert ("teacher", "GAT(32)") in {(r["method"], r["model"]) for r in res["rows"]}
    spec = res["protocol"]["settings"][0]["teacher_spec"]
    assert (spec["model"], spec["hidden"], spec["num_layers"], spec["heads"]) == ("gat", 32, 2, 8)
    assert "--set teacher" in res["protocol"]["settings"][0]["notes"][-1]


def test_set_data_changes_the_preparation_and_a_gcnii_teacher_runs_from_the_command_line(tmp_path):
    from gkdfast.distill.protocols import with_preparation

    gnn = published_settings("cora", ["kd"])[0]
    assert not gnn.row_normalize and not gnn.lcc
    changed = with_preparation(gnn, {"row_normalize": True, "lcc": True})
    assert changed.row_normalize and changed.lcc and "--set data" in changed.notes[-1]
    assert with_preparation(gnn, {}) is gnn and with_preparation(gnn, None) is gnn
    with pytest.raises(ValueError, match="unknown; data"):
        with_preparation(gnn, {"normalise": True})
    with pytest.raises(ValueError, match="True or False"):
        with_preparation(gnn, {"row_normalize": 1})

    rc, out = _cli(tmp_path, "deep", "--protocol", "published", "--methods", "kd", "--student", "gcn",
                   "--set", "teacher.model=gcnii", "--set", "teacher.num_layers=4", "--set", "teacher.theta=0.5",
                   "--set", "data.row_normalize=True")
    assert rc in (0, None)
    res = json.loads((out / "results.json").read_text())
    setting = res["protocol"]["settings"][0]
    assert setting["row_normalize"] is True and setting["teacher_spec"]["model"] == "gcnii"
    assert setting["teacher_spec"]["theta"] == 0.5 and "heads" not in setting["teacher_spec"]
    assert ("teacher", "GCNII(64)") in {(r["method"], r["model"]) for r in res["rows"]}


def test_every_set_value_is_checked_before_anything_trains(monkeypatch):
    import gkdfast.distill.protocols as protocols
    from gkdfast.data import csbm
    from gkdfast.distill.protocols import with_teacher

    def never(*a, **k):
        raise AssertionError("trained before the --set values were checked")

    monkeypatch.setattr(protocols, "run_experiment", never)
    monkeypatch.setattr(protocols, "prepare", never)
    data = csbm(num_nodes=300, num_classes=3, seed=0)
    with pytest.raises(ValueError, match="lamdb"):  # a misspelt hyperparameter of a later setting's recipe
        protocols.run_published(data, methods=["glnn", "kd"], overrides={"kd": {"lamdb": 0.3}})
    with pytest.raises(ValueError, match="not among the methods run"):
        protocols.run_published(data, methods=["glnn"], overrides={"kd": {"temperature": 2.0}})
    with pytest.raises(ValueError, match="trains a teacher"):
        protocols.run_published(data, methods=["graphmlp"], overrides={"teacher": {"hidden": 8}})
    with pytest.raises(ValueError, match="cannot be built"):  # fits no setting's teacher: before the first
        protocols.run_published(data, methods=["glnn", "kd"], overrides={"teacher": {"heads": 2}})
    gnn = published_settings("cora", ["kd"])[0]
    assert with_teacher(gnn, {"model": "gcnii"}).teacher.num_layers == 64  # the new model's own depth
    assert with_teacher(gnn, {"hidden": 32}).teacher.num_layers == gnn.teacher.num_layers
    with pytest.raises(ValueError, match="expected a number"):
        with_teacher(gnn, {"dropout": "high"})


def test_two_spellings_of_one_recipe_merge_their_set_values():
    from gkdfast.distill import recipes

    assert recipes.by_name({"glnn": {"lamb": 0.3}, "GLNN": {"temperature": 2.0}}) == \
        {"glnn": {"lamb": 0.3, "temperature": 2.0}}
    with pytest.raises(ValueError, match="unknown method"):
        recipes.by_name({"glnm": {"lamb": 0.3}})


def test_flags_the_published_protocol_or_the_common_one_does_not_take(tmp_path, capsys):
    rc, _ = _cli(tmp_path, "cache", "--protocol", "published", "--methods", "kd", "--cache-dir", str(tmp_path))
    assert rc == 2 and "drop --cache-dir" in capsys.readouterr().err
    rc, _ = _cli(tmp_path, "data", "--set", "data.lcc=True")
    assert rc == 2 and "--set data.*: only under --protocol published" in capsys.readouterr().err
    rc, _ = _cli(tmp_path, "teach", "--set", "teacher.hidden=8")
    assert rc == 2 and "name it with --teacher" in capsys.readouterr().err


def test_the_six_later_recipes_have_published_settings():
    settings = {s.key: s for s in published_settings("citeseer", ["freekd", "oad", "gsdn", "sail", "t2gnn",
                                                                   "ta_ensemble"])}
    assert list(settings) == ["peers", "gsdn", "sail", "t2gnn", "ta"]
    assert settings["peers"].methods == ("freekd", "oad") and settings["peers"].teacher is None
    assert [s.label for s in settings["peers"].students] == ["GCN(16)"]
    assert [s.label for s in settings["gsdn"].students] == ["MLP(1024)"]
    t2 = settings["t2gnn"]
    assert (t2.split, t2.missing_rate, t2.overrides["t2gnn"]) == ("fraction", 0.3, {"topk": 0, "lamb": 0.9})
    assert "t2gnn" not in published_settings("cora", ["t2gnn"])[0].overrides  # CiteSeer's command only
    assert settings["ta"].methods == ("kd", "ta_ensemble") and settings["ta"].teacher.label == "SAGE(128)"
    # without --methods the original eight run, as before
    assert [s.key for s in published_settings("cora")] == ["cpf", "graphmlp", "gnn"]


def test_fraction_split_is_stratified_60_20_20_and_seeded():
    from gkdfast.data import fraction_split

    y = torch.cat([torch.zeros(50, dtype=torch.long), torch.ones(30, dtype=torch.long), torch.full((5,), -1)])
    tr, va, te = fraction_split(y, 0.6, 0.2, seed=1)
    assert not (tr & va).any() and not (tr & te).any() and not (va & te).any()
    assert [int(m[y == 0].sum()) for m in (tr, va, te)] == [30, 10, 10]
    assert [int(m[y == 1].sum()) for m in (tr, va, te)] == [18, 6, 6]
    assert not (tr | va | te)[y < 0].any()
    assert torch.equal(tr, fraction_split(y, 0.6, 0.2, seed=1)[0])
    assert not torch.equal(tr, fraction_split(y, 0.6, 0.2, seed=2)[0])
    with pytest.raises(ValueError, match="fractions"):
        fraction_split(y, 0.9, 0.2)
    d = prepare(csbm(num_nodes=200, num_classes=4, seed=0), published_settings("cora", ["t2gnn"])[0])
    a, b = seed_split(d, 0), seed_split(d, 1)
    assert int(a.train_mask.sum()) == 120 and int(a.val_mask.sum()) == 40 and int(a.test_mask.sum()) == 40
    assert not torch.equal(a.train_mask, b.train_mask) and a.extras["split"].startswith("fraction(60/20/20")


def test_quick_epochs_cap_also_caps_a_recipes_earlier_stages(monkeypatch):
    """``--epochs N`` caps OAD's warm-up (and T2-GNN's teachers, TA's assistants) too, not only its
    last stage: a quick check stays quick."""
    from gkdfast.distill.recipes.oad import OAD

    seen = {}
    real_fit = OAD.fit

    def spy(self, *a, **kw):
        seen.update(epochs=self.epochs, warmup=self.warmup_epochs)
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(OAD, "fit", spy)
    run_experiment(csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0), teacher=None,
                   students=[parse_model("gcn:8")], methods=["oad"], seeds=[0], epochs=2)
    assert seen == {"epochs": 2, "warmup": 2}


def test_published_rows_know_their_setting_where_two_settings_share_a_model_label(tmp_path):
    """cpf and ta both train a SAGE(128) teacher and an MLP(128) student: the table tells them apart by
    the settings' row counts, and the paper's CPF figures go on the cpf rows only."""
    import dataclasses

    from conftest import load_repo_script
    from gkdfast.distill.protocols import run_published
    from gkdfast.distill.results import save_json

    data = dataclasses.replace(csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0), name="cora")
    res = run_published(data, methods=["glnn", "ta_ensemble"], epochs=1,
                        overrides={"ta_ensemble": {"de_maxiter": 2}})
    counts = [(s["key"], s["num_rows"]) for s in res["protocol"]["settings"]]
    assert counts == [("cpf", 3), ("ta", 4)] and len(res["rows"]) == 7
    save_json(res, str(tmp_path / "results.json"))
    quality = load_repo_script("scripts/quality_published.py")
    assert quality.row_settings(res) == ["cpf"] * 3 + ["ta"] * 4
    text = quality.markdown(quality.read_results(str(tmp_path / "results.json")), "cmd")
    teacher_rows = [line for line in text.splitlines() if "| teacher | SAGE(128) |" in line]
    assert [line.split(" | ")[0] for line in teacher_rows] == ["| cpf", "| ta"]
    assert "| 80.52 |" in teacher_rows[0]
    assert "80.52" not in teacher_rows[1]  # the CPF teacher's paper figure is not the ta teacher's


def test_merged_published_files_keep_each_files_settings(tmp_path):
    """One dataset's rows from several files: an older file without row counts (labelled by model) must
    not turn another file's rows (here the peers' GCN rows) into the wrong setting."""
    import json

    from conftest import load_repo_script

    quality = load_repo_script("scripts/quality_published.py")
    row = {"test_acc_mean": 0.8, "test_acc_std": 0.0, "test_acc": [0.8]}
    old = {"dataset": "cora", "protocol": {"name": "published", "settings": [{"key": "cpf", "num_nodes": 5}]},
           "rows": [dict(row, method="none", model="MLP(128)")]}
    new = {"dataset": "cora", "protocol": {"name": "published",
                                           "settings": [{"key": "peers", "num_nodes": 5, "num_rows": 2}]},
           "rows": [dict(row, method="none", model="GCN(16)"), dict(row, method="freekd", model="GCN(16)")]}
    for name, res in (("a-cpf.json", old), ("b-peers.json", new)):
        with open(tmp_path / name, "w") as f:
            json.dump(res, f)
    merged = quality.read_results(str(tmp_path / "*.json"))["cora"]
    assert quality.row_settings(merged) == ["cpf", "peers", "peers"]


def test_teacher_auto_picks_each_settings_teacher_by_validation(tmp_path, monkeypatch):
    """``--teacher auto`` under the published protocol: the setting's own teacher and the common
    candidates compete on validation accuracy, on each seed's own split where the split is re-drawn per
    seed (here a random one), and each seed's winner teaches that seed."""
    import dataclasses

    from gkdfast.distill import teacher_select
    from gkdfast.distill.protocols import run_published

    monkeypatch.setattr(teacher_select, "DEFAULT_CANDIDATES", ("gcn:16", "gat:64", "mlp:16"))
    data = dataclasses.replace(csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0), name="cora")
    res = run_published(data, methods=["kd", "graphmlp"], epochs=3, seeds=[0, 1], auto_teacher=True, students=["gcn"])
    gnn = next(s for s in res["protocol"]["settings"] if s["key"] == "gnn")
    cands = gnn["teacher_selection"]["candidates"]
    # the setting's own GAT(64) first; the common gat:64 has its label, so it is left out
    assert [c["model"] for c in cands] == ["GAT(64)", "GCN(16)", "MLP(16)"]
    best = max(cands, key=lambda c: c["val_acc"])["model"]
    assert gnn["teacher_selection"]["picked"] == best == gnn["teacher"]
    per_seed = gnn["teacher_selection"]["per_seed"]
    assert sorted(per_seed) == ["0", "1"] and per_seed["0"]["picked"] == best
    for pick in per_seed.values():
        assert pick["picked"] == max(pick["candidates"], key=lambda c: c["val_acc"])["model"]
    teacher_rows = [r for r in res["rows"] if r["method"] == "teacher"]
    assert {r["model"] for r in teacher_rows} == {p["picked"] for p in per_seed.values()}
    assert sum(len(r["test_acc"]) for r in teacher_rows) == 2
    assert "--teacher auto" in gnn["notes"][-1]
    graphmlp = next(s for s in res["protocol"]["settings"] if s["key"] == "graphmlp")
    assert "teacher_selection" not in graphmlp  # teacher-free: nothing to pick

    rc, out = _cli(tmp_path, "auto", "--protocol", "published", "--methods", "kd", "--student", "gcn",
                   "--teacher", "auto", "--epochs", "2")
    assert rc in (0, None)
    assert "teacher_selection" in json.loads((out / "results.json").read_text())["protocol"]["settings"][0]
