"""Every reader on the real files of shared/data, checked against the counts in its README.

Data root: ``$GKDFAST_DATA`` or ``../shared/data`` relative to the repository.  Missing data is a
skip locally and a failure under ``CI=true``.  Each dataset is loaded once per module.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from gkdfast.data import GraphDataset, inductive_split, load, random_split, save_npz

from conftest import need_data as need


_cache = {}


def get(key, rel, **kw):
    if key not in _cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _cache[key] = load(need(rel), **kw)
    return _cache[key]


def check(d, nodes, und_edges, features, classes):
    d.validate()
    assert d.num_nodes == nodes
    assert d.num_edges == 2 * und_edges
    assert d.num_features == features
    assert d.num_classes == classes
    assert d.x.dtype == torch.float32 and d.y.dtype == torch.int64
    ei = d.graph.edge_index
    assert not bool((ei[0] == ei[1]).any())
    assert torch.equal(d.graph.in_degree(), d.graph.out_degree())


# name, path, load kwargs, nodes, undirected edges, features, classes  (README / SOURCE.txt numbers)
NODE_DATASETS = [
    ("cora", "planetoid", dict(name="cora"), 2708, 5278, 1433, 7),
    ("citeseer", "planetoid", dict(name="citeseer"), 3327, 4552, 3703, 6),
    ("pubmed", "planetoid/ind.pubmed", {}, 19717, 44324, 500, 3),
    ("gb-cora", "gnn_benchmark_npz/cora.npz", {}, 2708, 5278, 1433, 7),
    ("gb-citeseer", "gnn_benchmark_npz", dict(name="citeseer"), 3312, 4536, 3703, 6),
    ("cora_ml", "cora_ml/cora_ml.npz", {}, 2995, 8158, 2879, 7),
    ("facebook", "facebook_page_page", {}, 22470, 170823, 4714, 4),
    ("twitch-de", "twitch", dict(name="DE"), 9498, 153138, 3170, 2),
    ("twitch-engb", "twitch", dict(name="EN"), 7126, 35324, 3170, 2),
    ("twitch-es", "twitch/ES", {}, 4648, 59382, 3170, 2),
    ("twitch-fr", "twitch/FR/musae_FR_edges.csv", {}, 6549, 112666, 3170, 2),
    ("twitch-ptbr", "twitch/PTBR", dict(feature_dim=3170), 1912, 31299, 3170, 2),
    ("twitch-ru", "twitch/RU", {}, 4385, 37304, 3170, 2),
    ("twitch-tw", "twitch/TW", dict(feature_dim=3170), 2772, 63462, 3170, 2),
    ("github", "github_social", {}, 37700, 289003, 1, 2),
    ("blogcatalog", "blogcatalog/BlogCatalog.mat", {}, 5196, 171743, 8189, 6),
    ("wiki", "wiki_tadw", {}, 2405, 11596, 4973, 17),
]


@pytest.mark.parametrize("key,rel,kw,nodes,edges,feats,classes", NODE_DATASETS, ids=[t[0] for t in NODE_DATASETS])
def test_node_dataset_counts(key, rel, kw, nodes, edges, feats, classes):
    d = get(key, rel, **kw)
    check(d, nodes, edges, feats, classes)
    tr, va, te = d.train_mask, d.val_mask, d.test_mask
    assert int(tr.sum()) > 0 and int(te.sum()) > 0


def test_planetoid_public_split():
    for key, n_train in (("cora", 140), ("citeseer", 120)):
        d = get(key, "planetoid", name=key)
        assert d.extras["split"] == "public"
        assert d.train_mask.nonzero().flatten().tolist() == list(range(n_train))
        assert d.val_mask.nonzero().flatten().tolist() == list(range(n_train, n_train + 500))
        assert int(d.test_mask.sum()) == 1000
        assert torch.bincount(d.y[d.train_mask], minlength=d.num_classes).tolist() == [20] * d.num_classes
    cora = get("cora", "planetoid", name="cora")
    assert int(cora.x.sum()) == 49216 and bool(((cora.x == 0) | (cora.x == 1)).all())
    assert torch.bincount(cora.y).tolist() == [351, 217, 418, 818, 426, 298, 180]


def test_citeseer_isolated_placeholders():
    d = get("citeseer", "planetoid", name="citeseer")
    unl = (d.y < 0).nonzero().flatten()
    assert unl.numel() == 15 and bool((unl >= 2312).all())
    assert bool((d.x[unl] == 0).all()) and int(d.extras["feature_mask"].sum()) == 3312
    assert int(d.graph.in_degree()[unl].sum()) == 16  # "isolated" in Kipf's wording, yet they have edges
    assert not bool((d.train_mask | d.val_mask | d.test_mask)[unl].any())


def test_pubmed_partial_features():
    d = get("pubmed", "planetoid/ind.pubmed")
    fm = d.extras["feature_mask"]
    assert int(fm.sum()) == 1060 and bool((d.x[~fm] == 0).all())
    assert int(d.train_mask.sum()) == 60 and int(d.test_mask.sum()) == 1000
    assert bool((d.y >= 0).all())


def test_planetoid_and_gnn_benchmark_cora_agree():
    """Both Cora copies: same sizes and same class histogram (node order differs)."""
    a, b = get("cora", "planetoid", name="cora"), get("gb-cora", "gnn_benchmark_npz/cora.npz")
    assert sorted(torch.bincount(a.y).tolist()) == sorted(torch.bincount(b.y).tolist())
    assert sorted(a.graph.in_degree().tolist()) == sorted(b.graph.in_degree().tolist())


def test_musae_labels_and_features():
    fb = get("facebook", "facebook_page_page")
    assert fb.extras["class_names"] == ["company", "government", "politician", "tvshow"]
    assert torch.bincount(fb.y).tolist() == [6495, 6880, 5768, 3327]
    assert int(fb.x.sum()) == 314583
    fr = get("twitch-fr", "twitch/FR/musae_FR_edges.csv")
    assert fr.extras["duplicate_target_rows"] == 2 and bool((fr.y >= 0).all())
    assert fr.extras["class_names"] == ["False", "True"]
    en = get("twitch-engb", "twitch", name="EN")
    assert torch.bincount(en.y).tolist() == [3238, 3888]
    gh = get("github", "github_social")
    assert gh.extras.get("featureless") and torch.bincount(gh.y).tolist() == [27961, 9739]


def test_mat_label_reduction():
    bc = get("blogcatalog", "blogcatalog/BlogCatalog.mat")
    assert not bc.extras["multi_label"] and bool((bc.y >= 0).all())
    wk = get("wiki", "wiki_tadw")
    assert len(wk.extras["label_columns"]) == 17 and 11 not in wk.extras["label_columns"]
    assert int(torch.bincount(wk.y).min()) > 0


@pytest.mark.parametrize("rel,graphs,nodes,edges,classes,feats", [
    ("tu_mutag", 188, 3371, 3721, 2, 7),
    ("tu_proteins", 1113, 43471, 81044, 2, 3 + 1),
    ("tu_enzymes", 600, 19580, 37282, 6, 3 + 18),
])
def test_tu(rel, graphs, nodes, edges, classes, feats):
    ds = get(rel, rel)
    assert isinstance(ds, GraphDataset)
    assert ds.num_graphs == len(ds) == graphs and ds.num_nodes == nodes and ds.graph.num_edges == 2 * edges
    assert ds.num_classes == classes and ds.num_features == feats
    assert int(ds.ptr[-1]) == nodes and torch.equal(torch.bincount(ds.batch), ds.ptr[1:] - ds.ptr[:-1])
    # no edge crosses graphs; per-graph views add up
    ei = ds.graph.edge_index
    assert torch.equal(ds.batch[ei[0]], ds.batch[ei[1]])
    assert sum(ds[i].graph.num_edges for i in range(len(ds))) == ds.graph.num_edges
    g5 = ds[5]
    assert g5.x.shape[0] == g5.graph.num_nodes == int(ds.ptr[6] - ds.ptr[5])
    m = ds.train_mask.long() + ds.val_mask.long() + ds.test_mask.long()
    assert bool((m == 1).all())
    assert abs(int(ds.train_mask.sum()) - 0.8 * graphs) <= classes
    if rel == "tu_mutag":
        assert ds.label_values == [-1, 1] and torch.bincount(ds.y).tolist() == [63, 125]


def test_real_npz_round_trip(tmp_path):
    d = get("cora_ml", "cora_ml/cora_ml.npz")
    p = tmp_path / "cora_ml_bundle.npz"
    save_npz(d, p)
    e = load(p)
    for f in ("x", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(e, f), getattr(d, f))
    assert torch.equal(e.graph.rowptr, d.graph.rowptr) and torch.equal(e.graph.col, d.graph.col)


def test_real_random_split_and_inductive():
    d = get("cora", "planetoid", name="cora")
    tr, va, te = random_split(d.y, 20, 30, seed=4)
    assert torch.bincount(d.y[tr], minlength=7).tolist() == [20] * 7
    assert torch.bincount(d.y[va], minlength=7).tolist() == [30] * 7
    assert int(te.sum()) == d.num_nodes - 350
    s = inductive_split(d, 0.2, seed=0)
    assert s.ind_idx.numel() == 200 and s.observed.num_nodes == 2508
    ei = s.full.graph.edge_index
    touching = s.ind_test_mask[ei[0]] | s.ind_test_mask[ei[1]]
    assert s.observed.num_edges == int((~touching).sum())


def test_format_npz_accepts_gnn_benchmark_files():
    d = load(need("cora_ml/cora_ml.npz"), format="npz", seed=3)
    assert d.extras["format"] == "gnn-benchmark" and d.num_nodes == 2995
    assert d.extras["split"] == "random(20/30 per class, seed=3)"


def test_split_file_and_split_folder_point_at_the_split_files_option():
    """Geom-GCN split files are masks for a graph loaded separately: the message says how to pass both
    (it used to say "splits come with" the graph, or to pick one of the 30 files as if it were a graph)."""
    with pytest.raises(ValueError, match="only split masks.*--split-dir"):
        load(need("planetoid_geom_gcn_splits/cora_split_0.6_0.2_0.npz"))
    with pytest.raises(ValueError, match=r"only split files \(30 like citeseer_split_0.6_0.2_0.npz\).*--split-dir"):
        load(need("planetoid_geom_gcn_splits"))


def test_ambiguous_directory_needs_name():
    with pytest.raises(ValueError, match="name="):
        load(need("planetoid"))
    with pytest.raises(ValueError, match="name=") as err:
        load(need("twitch"))
    assert "ENGB" in str(err.value) and "linkx_splits" not in str(err.value)  # a split folder is no dataset


def test_cli_reads_a_planetoid_prefix_and_notes_featureless_data(tmp_path):
    from conftest import run_cli

    r = run_cli("distill", "--data", need("planetoid/ind.cora"), "--seeds", "1", "--epochs", "1", "--methods", "kd",
                "--student", "mlp", "--no-progress", "--out", str(tmp_path / "cora"))
    assert r.returncode == 0, r.stderr
    assert "cora: 2708 nodes" in r.stderr
    r = run_cli("distill", "--data", need("github_social"), "--seeds", "1", "--epochs", "1", "--methods", "kd",
                "--student", "mlp", "--no-progress", "--out", str(tmp_path / "git"))
    assert r.returncode == 0, r.stderr
    assert "no node features" in r.stderr


def test_reddit_threads_graph_json_matches_the_data_readme():
    ds = get("reddit_threads_10k", "reddit_threads_10k")
    assert isinstance(ds, GraphDataset) and ds.extras["format"] == "graph-json"
    # README: 10,000 graphs, 237,390 nodes, 247,549 listed pairs of which 1,365 are self-loops (dropped)
    assert (len(ds), ds.num_nodes, ds.graph.num_edges // 2, ds.num_classes) == (10000, 237390, 247549 - 1365, 2)
    deg = ds.graph.rowptr[1:] - ds.graph.rowptr[:-1]
    assert torch.equal(ds.x.argmax(1), deg.clamp(max=16)) and torch.equal(ds.x.sum(1), torch.ones(ds.num_nodes))
    ei = ds.graph.edge_index
    assert torch.equal(ds.batch[ei[0]], ds.batch[ei[1]])  # no edge crosses graphs
    assert torch.bincount(ds.y).tolist() == [4843, 5157]


def test_split_dir_gives_seed_i_the_geom_gcn_split_i(tmp_path):
    from conftest import run_cli
    from gkdfast.data import geom_gcn_split, with_split_files
    from gkdfast.distill.experiment import seed_split

    cora, splits = load(need("planetoid"), name="cora"), need("planetoid_geom_gcn_splits")
    marked = with_split_files(cora, splits, seeds=[0, 3])
    for seed in (0, 3):
        got, want = seed_split(marked, seed), geom_gcn_split(cora, splits, seed)
        for m in ("train_mask", "val_mask", "test_mask"):
            assert torch.equal(getattr(got, m), getattr(want, m))
        assert got.extras["split"] == f"geom-gcn {seed}"
    assert not torch.equal(seed_split(marked, 0).train_mask, seed_split(marked, 3).train_mask)
    with pytest.raises(ValueError, match="numbered 0-9"):
        with_split_files(cora, splits, seeds=[10])
    with pytest.raises(FileNotFoundError, match="no such directory"):
        with_split_files(cora, str(tmp_path / "nowhere"), seeds=[0])
    r = run_cli("distill", "--data", need("planetoid"), "--name", "cora", "--split-dir", splits, "--student", "mlp:16",
                "--methods", "none", "--seeds", "2", "--seed", "9", "--epochs", "2", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "numbered 0-9; seed 10" in r.stderr  # seeds 9 and 10: fails before training
    r = run_cli("distill", "--protocol", "published", "--data", need("planetoid"), "--name", "cora", "--split-dir",
                splits, "--methods", "glnn", "--out", str(tmp_path / "p"))
    assert r.returncode == 2 and "--split-dir" in r.stderr and "published protocol" in r.stderr
    r = run_cli("distill", "--data", need("planetoid"), "--name", "cora", "--split-dir", splits, "--student", "mlp:16",
                "--methods", "none", "--seeds", "2", "--epochs", "2", "--out", str(tmp_path / "ok"))
    assert r.returncode == 0, r.stderr
    assert "split geom-gcn files" in r.stderr
