"""Heterogeneous graphs: meta-path composition, HeCo/MAGNN readers, R-GCN/HAN, HIRE, CLI, bad files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import need_data
from gkdfast.cli import main
from gkdfast.graph import Graph
from gkdfast.hetero import HeteroGraph, compose_metapath
from gkdfast.hetero.experiment import run_hetero_experiment
from gkdfast.hetero.hire import cross_similarity_gap, relation_loss
from gkdfast.hetero.models import HAN, RGCN
from gkdfast.hetero.readers import load_heco, load_hetero, load_magnn_imdb


def _dense(g: Graph, rows: int, cols: int) -> torch.Tensor:
    a = torch.zeros(max(rows, g.num_nodes), max(cols, g.num_nodes))
    ei = g.edge_index
    a[ei[0], ei[1]] = 1.0
    return a[:rows, :cols]


def test_metapath_equals_the_dense_product():
    gen = torch.Generator().manual_seed(0)
    n_m, n_a, n_k = 30, 12, 7
    ma = torch.stack([torch.randint(0, n_m, (60,), generator=gen), torch.randint(0, n_a, (60,), generator=gen)])
    ak = torch.stack([torch.randint(0, n_a, (20,), generator=gen), torch.randint(0, n_k, (20,), generator=gen)])
    g_ma, g_ak = Graph(ma, num_nodes=n_m), Graph(ak, num_nodes=n_a)
    path = compose_metapath([g_ma, g_ak, g_ak.t(), g_ma.t()], [n_m, n_a, n_k, n_a, n_m])
    d_ma, d_ak = _dense(g_ma, n_m, n_a), _dense(g_ak, n_a, n_k)
    ref = ((d_ma @ d_ak @ d_ak.T @ d_ma.T) > 0).float()
    ref.fill_diagonal_(0)
    assert torch.equal(_dense(path, n_m, n_m), ref)
    assert path.num_edges == int(ref.sum()) > 0


def test_metapath_over_the_cap_is_refused_with_the_fix():
    hg = HeteroGraph.toy()
    with pytest.raises(ValueError, match=r"movie-actor-movie: the product could hold 12 pairs, over max_nnz=5; "
                                         r"raise max_nnz"):
        hg.metapath("movie", "actor", "movie", max_nnz=5)


def test_cross_similarity_gap_equals_the_dense_formula_and_is_differentiable():
    gen = torch.Generator().manual_seed(1)
    s_a = torch.randn(9, 4, generator=gen, requires_grad=True)
    s_b = torch.randn(5, 4, generator=gen)
    t_a, t_b = torch.randn(9, 6, generator=gen), torch.randn(5, 6, generator=gen)
    got = cross_similarity_gap(s_a, s_b, t_a, t_b)
    n = torch.nn.functional.normalize
    ref = ((n(s_a, dim=1) @ n(s_b, dim=1).T - n(t_a, dim=1) @ n(t_b, dim=1).T) ** 2).sum() / (9 * 5)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6)
    got.backward()
    assert float(got.detach()) > 0 and s_a.grad.abs().sum() > 0


def test_hire_relation_loss_reaches_the_student_through_every_type():
    hg = HeteroGraph.toy()
    torch.manual_seed(0)
    teacher, student = RGCN(hg, 16, 2), RGCN(hg, 4, 2)
    with torch.no_grad():
        _, t_hidden = teacher.eval()(hg, return_hidden=True)
    _, s_hidden = student(hg, return_hidden=True)
    loss = relation_loss(s_hidden, t_hidden, "movie")
    loss.backward()
    assert float(loss.detach()) > 0
    assert student.inputs.emb["actor"].weight.grad.abs().sum() > 0  # the cross-type pair trains the actor side


def test_models_give_target_logits():
    hg = HeteroGraph.toy()
    assert RGCN(hg, 8, 2)(hg).shape == (6, 2)
    logits, hidden = HAN(hg, 8, 2, heads=2)(hg, return_hidden=True)
    assert logits.shape == (6, 2) and list(hidden) == ["movie"]


def test_run_hetero_experiment_rows():
    res = run_hetero_experiment(HeteroGraph.toy(), teacher="han:8", students=["rgcn:4"], seeds=[0, 1], epochs=3)
    assert [(r["method"], len(r["test_acc"])) for r in res["rows"]] == [("teacher", 2), ("none", 2), ("kd", 2),
                                                                      ("hire", 2)]
    with pytest.raises(ValueError, match="does not run on a heterogeneous graph"):
        run_hetero_experiment(HeteroGraph.toy(), methods=["glnn"])


def _heco(tmp_path, n_p=12, n_a=5):
    """A tiny folder in the HeCo layout: papers (target), authors, pap.npz."""
    gen = np.random.default_rng(0)
    pa = np.stack([np.arange(n_p), gen.integers(0, n_a, n_p)], axis=1)
    np.savetxt(tmp_path / "pa.txt", pa, fmt="%d")
    np.save(tmp_path / "labels.npy", np.arange(n_p) % 2)
    m = sp.coo_matrix((np.ones(n_p), (pa[:, 0], pa[:, 0])), shape=(n_p, n_p))
    sp.save_npz(tmp_path / "pap.npz", m)
    for part, ids in (("train", [0, 1, 2, 3]), ("val", [4, 5, 6, 7]), ("test", [8, 9, 10, 11])):
        np.save(tmp_path / f"{part}_20.npy", np.array(ids))
    return tmp_path


def test_heco_folder_target_inferred_and_overridden(tmp_path):
    hg = load_heco(_heco(tmp_path))
    assert hg.target == "paper" and hg.num_nodes == {"paper": 12, "author": 5}
    with pytest.raises(ValueError, match="no relation file involves the target type 'x'"):
        load_heco(tmp_path, target_type="x")
    assert load_heco(tmp_path, target_type="p").target == "paper"
    # An override whose type has another node count than labels.npy has labels: the labels (and splits)
    # belong to another type; before, authors 5..11 were invented to carry the papers' labels.
    with pytest.raises(ValueError, match=r"labels\.npy: has 12 labels, but the relation files name 5 nodes of the "
                                         r"target type 'author'"):
        load_heco(tmp_path, target_type="author")


def test_heco_override_to_a_larger_type_says_the_labels_belong_to_another_type(tmp_path):
    """Freebase's actors outnumber its labelled movies: the id range check used to fire first and ask
    for labels to be added to type 'a'."""
    with pytest.raises(ValueError, match=r"labels\.npy: has 3492 labels, but ma\.txt names nodes of the target type "
                                         r"'actor' up to id 33400: the labels belong to another type \(movie\)"):
        load_heco(need_data("hetero_heco_format/freebase"), target_type="actor")


def test_cli_hetero_folder_runs_kd_and_hire(tmp_path):
    (tmp_path / "mini").mkdir()
    _heco(tmp_path / "mini")
    out = str(tmp_path / "out")
    rc = main(["distill", "--data", str(tmp_path), "--name", "mini", "--methods", "kd,hire", "--seeds", "1",
               "--epochs", "2", "--quiet", "--device", "cpu", "--out", out])
    assert rc == 0
    rows = json.load(open(os.path.join(out, "results.json")))["rows"]
    assert [r["method"] for r in rows] == ["teacher", "none", "kd", "hire"]
    assert rows[0]["model"] == "RGCN:64"


def test_cli_hetero_rejects_flags_of_the_homogeneous_pipeline(tmp_path, capsys):
    (tmp_path / "mini").mkdir()
    _heco(tmp_path / "mini")
    for flags in (["--missing-rate", "0.3"], ["--setting", "inductive"], ["--fairness", "sp"],
                  ["--protocol", "published"]):
        rc = main(["distill", "--data", str(tmp_path), "--name", "mini", "--seeds", "1", "--epochs", "1",
                   "--quiet", "--device", "cpu", "--out", str(tmp_path / "out")] + flags)
        assert rc == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert flags[0] in err and "heterogeneous" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_malformed_heco_files_name_the_file_and_the_fix(tmp_path):
    d = _heco(tmp_path)
    np.savetxt(d / "pa.txt", np.array([[0, 1], [40, 2]]), fmt="%d")  # paper 40: beyond the 12 labels
    with pytest.raises(ValueError, match=r"pa\.txt: target id 40 is out of range: .*labels\.npy has 12 labels"):
        load_heco(d)
    np.savetxt(d / "pa.txt", np.array([[0, 1], [2, 2]]), fmt="%d")
    np.save(d / "test_20.npy", np.array([8, 99]))
    with pytest.raises(ValueError, match=r"test_20\.npy: target id 99 outside \[0, 12\)"):
        load_heco(d)
    np.save(d / "test_20.npy", np.array([8, 9]))
    sp.save_npz(d / "x_feat.npz", sp.csr_matrix(np.eye(3)))  # a type no relation file names
    with pytest.raises(ValueError, match=r"x_feat\.npz: features of the unknown node type 'x'.*add its relation"):
        load_heco(d)
    os.remove(d / "x_feat.npz")
    sp.save_npz(d / "pzp.npz", sp.coo_matrix(np.eye(12)))
    with pytest.raises(ValueError, match=r"pzp\.npz: meta-path through the unknown node type 'z'"):
        load_heco(d)
    os.remove(d / "pzp.npz")
    os.remove(d / "labels.npy")
    with pytest.raises(ValueError, match=r"labels\.npy: no such file"):
        load_heco(d)


def test_relation_naming_an_unknown_type_is_refused():
    hg = HeteroGraph.toy()
    hg.relations[("movie", "mx", "studio")] = hg.relations[("movie", "ma", "actor")]
    with pytest.raises(ValueError, match="relation 'mx' names the unknown node type 'studio'"):
        hg.validate()


@pytest.mark.parametrize("rel,counts", [
    ("hetero_heco_format/imdb", {"movie": 4275, "actor": 5432, "director": 2083, "keyword": 7313}),
    ("hetero_heco_format/freebase", {"movie": 3492, "actor": 33401, "director": 2502, "writer": 4459}),
    ("hetero_heco_format/aminer", {"paper": 6564, "author": 13329, "reference": 35890})])
def test_heco_sets_match_the_data_readme(rel, counts):
    hg = load_hetero(need_data(rel))
    assert hg.num_nodes == counts
    assert int(hg.val_mask.sum()) == 1000 and int(hg.test_mask.sum()) == 1000
    assert int(hg.y.min()) == 0


def _magnn(d):
    """A tiny folder in MAGNN's IMDB layout: 4 movies, 2 directors, 3 actors."""
    types = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    np.save(d / "node_types.npy", types)
    pairs = [(0, 4), (1, 4), (2, 5), (3, 5), (0, 6), (1, 7), (2, 8), (3, 6)]  # movie-director, movie-actor
    r, c = np.array(pairs).T
    adj = sp.coo_matrix((np.ones(2 * len(pairs)), (np.r_[r, c], np.r_[c, r])), shape=(9, 9))
    sp.save_npz(d / "adjM.npz", adj)
    for k, n in enumerate((4, 2, 3)):
        sp.save_npz(d / f"features_{k}.npz", sp.csr_matrix(np.eye(n, 5)))
    np.save(d / "labels.npy", np.array([0, 1, 0, 1]))
    np.savez(d / "train_val_test_idx.npz", train_idx=np.array([0, 1]), val_idx=np.array([2]), test_idx=np.array([3]))
    return d


def test_malformed_magnn_files_name_the_file(tmp_path):
    d = _magnn(tmp_path)
    hg = load_magnn_imdb(d)
    assert hg.num_nodes == {"movie": 4, "director": 2, "actor": 3} and int(hg.train_mask.sum()) == 2
    for bad, match in (({"test_idx": np.array([3, 4])}, r"\(test_idx\): target id 4 outside \[0, 4\)"),
                       ({"val_idx": np.array([-1])}, r"\(val_idx\): target id -1 outside"),
                       ({"test_idx": None}, r"train_val_test_idx\.npz: not an \.npz with train_idx, val_idx")):
        parts = dict({"train_idx": np.array([0, 1]), "val_idx": np.array([2]), "test_idx": np.array([3])}, **bad)
        np.savez(d / "train_val_test_idx.npz", **{k: v for k, v in parts.items() if v is not None})
        with pytest.raises(ValueError, match=match):
            load_magnn_imdb(d)
    (d / "adjM.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"adjM\.npz: not a scipy sparse \.npz"):
        load_magnn_imdb(d)


def test_magnn_imdb_matches_the_data_readme():
    hg = load_magnn_imdb(need_data("hetero_imdb_magnn"))
    assert hg.relations[("movie", "ma", "actor")].num_edges == 12828
    assert hg.relations[("movie", "md", "director")].num_edges == 4278
    assert hg.metapaths["mam"].num_edges // 2 == 40540 and hg.metapaths["mdm"].num_edges // 2 == 6584


class _Store(dict):
    """Stands in for a PyG node / edge store (attribute access)."""

    __getattr__ = dict.get


class _FakeHeteroData:
    """The part of PyG's HeteroData that HeteroGraph.from_pyg reads (PyG is not installed here)."""

    def __init__(self, hg: HeteroGraph):
        self.node_types = list(hg.num_nodes)
        self.edge_types = [r for r in hg.relations if not r[1].startswith("rev_")]
        self.stores = {t: _Store(num_nodes=n, x=hg.x.get(t)) for t, n in hg.num_nodes.items()}
        self.stores[hg.target].update(y=hg.y, train_mask=hg.train_mask, val_mask=hg.val_mask, test_mask=hg.test_mask)
        for r in self.edge_types:
            self.stores[r] = _Store(edge_index=hg.relations[r].edge_index)

    def __getitem__(self, key):
        return self.stores[key]


def test_from_pyg_rebuilds_relations_reverses_and_metapaths():
    toy = HeteroGraph.toy()
    hg = HeteroGraph.from_pyg(_FakeHeteroData(toy), "movie", {"mam": ("movie", "actor", "movie")})
    assert set(hg.relations) == set(toy.relations)
    assert torch.equal(hg.metapaths["mam"].edge_index, toy.metapaths["mam"].edge_index)
    with pytest.raises(ValueError, match="target 'studio' is not a node type"):
        HeteroGraph.from_pyg(_FakeHeteroData(toy), "studio")


def test_hetero_model_specs_take_a_depth():
    from gkdfast.hetero.models import build_hetero_model

    hg = HeteroGraph.toy()
    assert len(build_hetero_model("rgcn:16x1", hg).self_lin) == 1
    assert len(build_hetero_model("rgcn:16", hg).self_lin) == 2
    assert len(build_hetero_model("rgcn", hg).self_lin) == 2
    for bad in ("rgcn:0", "rgcn:16x0", "rgcn:ax2", "han:8x2"):
        with pytest.raises(ValueError, match="bad model spec"):
            build_hetero_model(bad, hg)


def test_teacher_auto_picks_the_best_validation_candidate(monkeypatch):
    import gkdfast.hetero.experiment as ex

    hg = HeteroGraph.toy()
    val = {"rgcn:8": 0.25, "hgt:8": 0.75, "han:8": 0.5}
    seen = []

    def fake_train(model, g, loss_fn, **kw):  # the validation accuracy each candidate reaches, by type
        seen.append(kw)
        spec = {"RGCN": "rgcn:8", "HGT": "hgt:8", "HAN": "han:8"}[type(model).__name__]
        return {"best_val": val[spec], "best_epoch": 1, "epochs": 1, "seconds": 0.0}

    monkeypatch.setattr(ex, "train_hetero", fake_train)
    spec, model, table = ex.select_hetero_teacher(hg, ["rgcn:8", "hgt:8", "han:8"], train={"epochs": 7})
    assert spec == "hgt:8" and type(model).__name__ == "HGT"
    assert [(r["model"], r["val_acc"]) for r in table] == [("rgcn:8", 0.25), ("hgt:8", 0.75), ("han:8", 0.5)]
    assert all(kw == {"epochs": 7} for kw in seen)
    hg.metapaths.clear()  # HAN needs meta-path graphs: skipped, not an error
    assert [r["model"] for r in ex.select_hetero_teacher(hg, ["rgcn:8", "han:8"])[2]] == ["rgcn:8"]


def test_teacher_auto_selection_is_cached_and_a_rerun_gives_the_same_rows(tmp_path, monkeypatch):
    import gkdfast.hetero.experiment as ex

    kw = dict(teacher="auto", students=["rgcn:4"], methods=["kd"], seeds=[0], epochs=3,
              teacher_params={"epochs": 4, "patience": None}, cache_dir=str(tmp_path))
    first = run_hetero_experiment(HeteroGraph.toy(), **kw)
    files = list(tmp_path.glob("hetero-teacher-select-*.json"))
    assert len(files) == 1
    trained = []
    real = ex.train_hetero
    monkeypatch.setattr(ex, "train_hetero", lambda model, *a, **k: trained.append(type(model).__name__) or
                        real(model, *a, **k))
    logs = []
    again = run_hetero_experiment(HeteroGraph.toy(), log=logs.append, **kw)
    # only the picked teacher and the students train again; the rows are the same
    assert trained[0] == first["rows"][0]["model"].split(":")[0] and len(trained) == 3
    assert [r["test_acc"] for r in again["rows"]] == [r["test_acc"] for r in first["rows"]]
    assert again["teacher_selection"] == first["teacher_selection"]
    assert any("(cached)" in line for line in logs)
    # another seed, candidate list or training setting is another key: trained again, not read
    ex.select_hetero_teacher(HeteroGraph.toy(), ["rgcn:8"], seed=1, train={"epochs": 2}, cache_dir=str(tmp_path))
    assert len(list(tmp_path.glob("hetero-teacher-select-*.json"))) == 2
    files[0].write_text("{not json")  # a damaged file is ignored: the candidates train again
    trained.clear()
    run_hetero_experiment(HeteroGraph.toy(), **kw)
    assert len(trained) == 3 + 2


def test_teacher_params_reach_the_teacher_only_and_auto_is_recorded():
    details = []
    res = run_hetero_experiment(HeteroGraph.toy(), teacher="auto", students=["rgcn:4"], methods=["kd"], seeds=[0],
                                epochs=3, teacher_params={"epochs": 5, "patience": None}, details=details)
    assert [r["model"] for r in res["teacher_selection"]] == ["rgcn:64", "hgt:64", "han:64"]
    assert res["rows"][0]["model"] in ("RGCN:64", "HGT:64", "HAN:64")
    assert [(d["method"], d["epochs"]) for d in details] == [("teacher", 5), ("none", 3), ("kd", 3)]
    # the selection's winner serves seed 0 as it is: the same rows as naming that teacher
    named = run_hetero_experiment(HeteroGraph.toy(), teacher=res["rows"][0]["model"].lower(), students=["rgcn:4"],
                                  methods=["kd"], seeds=[0], epochs=3, teacher_params={"epochs": 5, "patience": None})
    assert [r["test_acc"] for r in named["rows"]] == [r["test_acc"] for r in res["rows"]]
    assert "teacher_selection" not in named
    with pytest.raises(ValueError, match="unknown key 'dropout'"):
        run_hetero_experiment(HeteroGraph.toy(), teacher_params={"dropout": 0.1})


def test_cli_hetero_teacher_settings(tmp_path):
    (tmp_path / "mini").mkdir()
    _heco(tmp_path / "mini")
    out = str(tmp_path / "out")
    rc = main(["distill", "--data", str(tmp_path), "--name", "mini", "--teacher", "hgt:8", "--methods", "kd",
               "--seeds", "1", "--epochs", "2", "--set", "teacher.epochs=4", "--set", "teacher.patience=None",
               "--quiet", "--device", "cpu", "--out", out])
    assert rc == 0
    rows = json.load(open(os.path.join(out, "results.json")))["rows"]
    assert rows[0]["model"] == "HGT:8" and [r["method"] for r in rows] == ["teacher", "none", "kd"]
    rc = main(["distill", "--data", str(tmp_path), "--name", "mini", "--teacher", "auto", "--methods", "kd",
               "--seeds", "1", "--epochs", "2", "--quiet", "--device", "cpu", "--out", out])
    assert rc == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert [r["model"] for r in res["teacher_selection"]] == ["rgcn:64", "hgt:64", "han:64"]


def test_heco_labels_from_one_are_shifted_and_unlabelled_nodes_stay_unlabelled(tmp_path):
    d = _heco(tmp_path)
    for part, ids in (("train", [0, 1, 2]), ("val", [4, 5, 6]), ("test", [8, 9, 10])):  # paper 11 in no split
        np.save(d / f"{part}_20.npy", np.array(ids))
    y = np.arange(12) % 2 + 1  # classes 1..2, as MEOW's IMDB writes them
    y[11] = -1  # an unlabelled paper: before, it kept the labels from shifting (an empty class 0 stayed)
    np.save(d / "labels.npy", y)
    hg = load_heco(d)
    assert hg.y.tolist() == [0, 1] * 5 + [0, -1]


def test_metapath_between_two_types_keeps_pairs_with_equal_ids():
    """A path ending on another type: row u and column u are different nodes (movie 0 -> actor 0 was
    dropped as a 'self' pair)."""
    hg = HeteroGraph.toy()
    ma = hg.metapath("movie", "actor")
    assert torch.equal(ma.edge_index, hg.relations[("movie", "ma", "actor")].edge_index)
    mama = hg.metapath("movie", "actor", "movie", "actor")
    d = _dense(hg.relations[("movie", "ma", "actor")], 6, 3)
    want = ((d @ d.T @ d) > 0).float()
    assert torch.equal(_dense(mama, 6, 3), want) and bool(want[0, 0])


def test_metapath_cap_is_checked_on_the_product_built_so_far():
    """A 3-relation path whose first two relations are small but whose full product is large."""
    n = 400
    a_hub = Graph(torch.tensor([[0, 1], [0, 0]]), num_nodes=n)  # two a's -> one hub
    hub_c = Graph(torch.stack([torch.zeros(n, dtype=torch.long), torch.arange(n)]), num_nodes=n)  # hub -> every c
    c_d = Graph(torch.stack([torch.arange(n), torch.arange(n)]), num_nodes=n)  # c -> d one to one
    dense = compose_metapath([a_hub, hub_c, c_d], [2, 1, n, n], max_nnz=10_000, drop_self=False)
    assert dense.num_edges == 2 * n
    with pytest.raises(ValueError, match=r"could hold 800 pairs, over max_nnz=500"):
        compose_metapath([a_hub, hub_c, c_d], [2, 1, n, n], max_nnz=500, drop_self=False)


def test_validate_refuses_an_id_beyond_its_type():
    hg = HeteroGraph.toy()
    ei = hg.relations[("movie", "ma", "actor")].edge_index.clone()
    ei[1, 0] = 5  # actor 5 of 3 (the relation graph has 6 rows, so the graph itself accepts it)
    hg.relations[("movie", "ma", "actor")] = Graph(ei, num_nodes=6)
    with pytest.raises(ValueError, match="relation 'ma' has 'actor' id 5, but 'actor' has 3 nodes"):
        hg.validate()


def test_from_pyg_adds_a_reverse_for_every_relation_without_one():
    toy = HeteroGraph.toy()
    fake = _FakeHeteroData(toy)
    ma = toy.relations[("movie", "ma", "actor")].edge_index
    fake.edge_types = [("movie", "ma", "actor"), ("movie", "plays", "actor"), ("movie", "sequel", "movie"),
                       ("movie", "similar", "movie")]
    fake.stores[("movie", "plays", "actor")] = _Store(edge_index=ma.flip(1))
    fake.stores[("movie", "sequel", "movie")] = _Store(edge_index=torch.tensor([[0, 2], [1, 3]]))
    fake.stores[("movie", "similar", "movie")] = _Store(edge_index=torch.tensor([[0, 1], [1, 0]]))  # symmetric
    hg = HeteroGraph.from_pyg(fake, "movie")
    assert {r for r in hg.relations if r[1].startswith("rev_")} == {
        ("actor", "rev_ma", "movie"), ("actor", "rev_plays", "movie"), ("movie", "rev_sequel", "movie")}
    # both directions shipped under one name ("to", as PyG's IMDB): no third copy
    fake.edge_types = [("movie", "to", "actor"), ("actor", "to", "movie")]
    fake.stores[("movie", "to", "actor")] = _Store(edge_index=ma)
    fake.stores[("actor", "to", "movie")] = _Store(edge_index=ma.flip(0))
    assert sorted(HeteroGraph.from_pyg(fake, "movie").relations) == [("actor", "to", "movie"), ("movie", "to", "actor")]


def test_magnn_reader_refuses_other_targets_non_contiguous_types_and_names_a_negative_type(tmp_path):
    d = _magnn(tmp_path)
    with pytest.raises(ValueError, match="labels movies only"):
        load_hetero(d, target_type="director")
    assert load_hetero(d, target_type="movie").target == "movie"
    with pytest.raises(ValueError, match="ships one split"):
        load_hetero(d, split=40)
    np.save(d / "node_types.npy", np.array([0, 0, 0, 1, 0, 1, 2, 2, 2]))
    with pytest.raises(ValueError, match=r"node_types\.npy: node types are not in contiguous blocks"):
        load_magnn_imdb(d)
    np.save(d / "node_types.npy", np.array([0, 0, 0, 0, 1, 1, 2, 2, -1]))
    with pytest.raises(ValueError, match=r"type id -1 unknown"):
        load_magnn_imdb(d)


def test_heco_split_reaches_the_reader_through_load_and_the_cli(tmp_path, capsys):
    from gkdfast.data import load

    (tmp_path / "mini").mkdir()
    d = _heco(tmp_path / "mini")
    for part, ids in (("train", [0, 1]), ("val", [4, 5]), ("test", [8, 9])):
        np.save(d / f"{part}_40.npy", np.array(ids))
    assert int(load(str(d), split=40).train_mask.sum()) == 2
    assert int(load(str(d)).train_mask.sum()) == 4
    out = str(tmp_path / "out")
    assert main(["distill", "--data", str(tmp_path), "--name", "mini", "--split", "40", "--methods", "kd",
                 "--seeds", "1", "--epochs", "1", "--quiet", "--device", "cpu", "--out", out]) == 0
    assert main(["distill", "--split", "40", "--epochs", "1", "--quiet", "--out", str(tmp_path / "o2")]) == 2
    assert "--split: for heterogeneous data" in capsys.readouterr().err


def test_hetero_runner_refuses_settings_it_would_ignore():
    with pytest.raises(ValueError, match=r"--set kd\.batch_size \(overrides\['kd'\]\['batch_size'\]\): not used on a heterogeneous"):
        run_hetero_experiment(HeteroGraph.toy(), teacher="rgcn:8", students=["rgcn:4"], epochs=1,
                              overrides={"kd": {"batch_size": 16}})
    with pytest.raises(ValueError, match=r"--set reliant\.\* \(overrides\['reliant'\]\): method 'reliant' does not run here"):
        run_hetero_experiment(HeteroGraph.toy(), teacher="rgcn:8", students=["rgcn:4"], epochs=1,
                              overrides={"reliant": {"alpha": 1.0}})
    res = run_hetero_experiment(HeteroGraph.toy(), teacher="rgcn:8", students=["rgcn:4"], epochs=1,
                                overrides={"hire": {"beta": 2.0}, "none": {"lr": 0.02}})
    assert [r["method"] for r in res["rows"]] == ["teacher", "none", "kd", "hire"]


def test_explicit_hetero_format_honours_name():
    from gkdfast.data import load

    root = need_data("hetero_heco_format")
    a = load(root, format="hetero", name="imdb")  # was: "neither the HeCo layout ... nor MAGNN's IMDB"
    assert a.target == "movie" and a.num_nodes == load(root, name="imdb").num_nodes


def test_every_student_run_records_its_relation_gap_to_the_teacher():
    import gkdfast.hetero.experiment as ex
    from gkdfast.distill import recipes

    details, logs = [], []
    hg = HeteroGraph.toy()
    run_hetero_experiment(hg, teacher="rgcn:8", students=["rgcn:4"], methods=["kd", "hire"], seeds=[0], epochs=30,
                          overrides={"hire": {"beta": 100.0}}, details=details, log=logs.append)
    gaps = {d["method"]: d["relation_gap"] for d in details}
    assert gaps["teacher"] is None and all(gaps[m] > 0 for m in ("none", "kd", "hire"))
    assert gaps["hire"] < gaps["none"]  # the term, weighted up, pulls the student's similarities to the teacher's
    assert sum("relation gap to the teacher" in line for line in logs) == 3
    # the recorded figure is the loss itself on the trained student (same seed, same training: same weights)
    r = recipes.get("kd")
    kw = {"lr": r.lr, "weight_decay": r.weight_decay, "epochs": 30, "patience": r.patience}
    torch.manual_seed(0)
    teacher = ex.build_hetero_model("rgcn:8", hg)
    ex.train_hetero(teacher, hg, ex._supervised(hg), **kw)
    torch.manual_seed(0)
    student = ex.build_hetero_model("rgcn:4", hg)
    ex.train_hetero(student, hg, ex._supervised(hg), **kw)
    with torch.no_grad():
        want = relation_loss(student(hg, return_hidden=True)[1], teacher(hg, return_hidden=True)[1], hg.target)
    assert gaps["none"] == pytest.approx(float(want), rel=1e-6)
