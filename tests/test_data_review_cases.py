"""Data-layer cases a second review found broken: Cold Brew masks with unlabelled nodes, a bundle round
trip freezing the split, a prefix matching an unrelated dataset, Geom-GCN files on another node order,
explicit zeros read as edges, a 1 x N label row, unchecked weights."""
import os

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch

from conftest import need_data
from gkdfast.data import csbm, load, save_npz
from gkdfast.distill.experiment import seed_split


def test_cold_start_masks_leave_unlabelled_nodes_out():
    from gkdfast.data.isolation import cold_start_masks, isolation_split

    d = csbm(num_nodes=600, num_classes=3, feature_dim=8, seed=0)
    d.y[::7] = -1
    d.train_mask &= d.y >= 0
    d.val_mask &= d.y >= 0
    d.test_mask &= d.y >= 0
    tr, va, te = cold_start_masks(isolation_split(d), 0)
    assert not bool(((va | te) & (d.y < 0)).any())  # counted as wrong answers before


def test_a_saved_bundle_keeps_its_split_rule_and_per_node_extras(tmp_path):
    d = csbm(num_nodes=300, num_classes=3, feature_dim=8, seed=0)
    d.extras["isolated_mask"] = torch.arange(300) % 5 == 0
    p = str(tmp_path / "g.npz")
    save_npz(d, p)
    e = load(p)
    assert e.extras["split"] == d.extras["split"]
    assert torch.equal(e.extras["isolated_mask"], d.extras["isolated_mask"])
    a, b = seed_split(e, 1), seed_split(e, 2)
    assert not torch.equal(a.train_mask, b.train_mask)  # every seed trained on the saved masks before


def test_a_name_prefix_matches_within_one_collection_only():
    root = os.path.dirname(need_data("twitch"))
    assert load(need_data("twitch"), name="EN").name.lower().endswith("engb")
    with pytest.raises(ValueError):
        load(root, name="cora")  # was Cora-ML, silently


def test_geom_gcn_split_files_refuse_another_node_order():
    from gkdfast.data.geom_splits import geom_gcn_split

    d = load(need_data("gnn_benchmark_npz/cora.npz"))
    with pytest.raises(ValueError, match="Planetoid's node order"):
        geom_gcn_split(d, need_data("planetoid_geom_gcn_splits"), 0, name="cora")


def test_explicit_zeros_are_no_edges_and_a_label_row_is_a_vector(tmp_path):
    adj = sp.csr_matrix((np.array([1.0, 1.0, 0.0, 0.0]), (np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]))),
                        shape=(3, 3))
    assert adj.nnz == 4  # two stored zeros
    p = str(tmp_path / "g.mat")
    scipy.io.savemat(p, {"network": adj, "group": np.array([0, 1, 1])})  # savemat stores labels as 1 x N
    g = load(p)
    assert g.graph.edge_index.tolist() == [[1, 0], [0, 1]] and g.y.tolist() == [0, 1, 1]


def test_bundle_weights_must_be_finite(tmp_path):
    p = str(tmp_path / "w.npz")
    np.savez(p, edge_index=np.array([[0, 1], [1, 0]]), x=np.ones((2, 2), np.float32), y=np.array([0, 1]),
             edge_weight=np.array([1.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="edge_weight contains NaN or inf"):
        load(p)
    np.savez(p, edge_index=np.array([[0, 1], [1, 0]]), x=np.ones((2, 2), np.float32), y=np.array([0, 1]),
             num_classes=np.array([2, 2]))
    with pytest.raises(ValueError, match="num_classes must be one number"):
        load(p)


def test_the_memory_mapped_layout_keeps_per_node_extras(tmp_path):
    """save_mmap (gkdfast convert) dropped per-node tensor extras such as Cold Brew's isolated-node mask,
    which its isolation(...) split rule needs."""
    from gkdfast.data import load_mmap, save_mmap
    from gkdfast.data.isolation import isolation_split

    d = isolation_split(csbm(num_nodes=600, num_classes=3, feature_dim=8, seed=0))
    save_mmap(d, str(tmp_path / "mm"))
    e = load_mmap(str(tmp_path / "mm"))
    assert torch.equal(e.extras["isolated_mask"], d.extras["isolated_mask"])
    assert int(seed_split(e, 1).test_mask.sum()) > 0


def test_skewed_dcsbm_classes_share_cross_class_edges_by_mass():
    # a uniformly chosen other class gave the smallest class (129 of 20,000 nodes) a mean degree of 74
    # against 6 for the largest, past max_degree; balanced classes keep their graph bit for bit
    from gkdfast.data import dcsbm

    d = dcsbm(num_nodes=20000, avg_degree=10, num_classes=10, class_skew=2, homophily=0.2, max_degree=50,
              feature_dim=4)
    deg = d.graph.in_degree().float()
    small = int(torch.bincount(d.y).argmin())
    assert float(deg[d.y == small].mean()) < 25


def test_generator_edge_cases():
    from gkdfast.data import csbm, dcsbm
    from gkdfast.data.splits import fraction_split
    from gkdfast.data.synthetic import power_law_graph

    assert power_law_graph(0, 0).num_nodes == 0 and power_law_graph(5, 0).num_edges == 0
    for bad in (lambda: csbm(avg_degree=float("nan")), lambda: dcsbm(num_nodes=100, degree_exponent=float("nan")),
                lambda: power_law_graph(-5, 0)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="at most num_nodes - 1"):
        dcsbm(num_nodes=40, num_classes=5)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    tr, va, te = fraction_split(y, 0.5, 0.5, seed=0)
    assert int(tr.sum() + va.sum() + te.sum()) == 6 and not bool((tr & va).any())


def test_rcm_pattern_keeps_pairs_joined_by_256_parallel_edges_and_ids_are_checked():
    import gkdfast
    from gkdfast.graph_build import symmetric_csr
    from gkdfast.reorder import _scipy_pattern

    g = gkdfast.Graph(torch.tensor([[0] * 256 + [2], [1] * 256 + [3]]), 4)  # int8 counts wrapped to 0
    col, rowptr = g.col.clone(), g.rowptr.clone()
    assert _scipy_pattern(g)[0, 1] and _scipy_pattern(g)[1, 0]
    assert torch.equal(g.col, col) and torch.equal(g.rowptr, rowptr)  # (scipy shares the graph's arrays)
    with pytest.raises(ValueError, match="past int64"):
        symmetric_csr(np.array([2**63 + 1], np.uint64), np.array([0], np.uint64), 3)
    with pytest.raises(TypeError, match="num_nodes must be an int"):
        symmetric_csr([0], [1], 3.9)


def test_the_sub_folders_offered_at_a_data_root_skip_split_folders_and_survive_unreadable_ones(tmp_path,
                                                                                               monkeypatch):
    """Only sub-folders that hold data are offered; an unreadable one (lost+found on a mounted volume) is
    offered rather than turning the hint into a PermissionError, and nothing is read deeper than one
    level below the listed folders."""
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        save_npz(csbm(num_nodes=60, seed=0), str(tmp_path / name / "g.npz"))
    np.savez(tmp_path / "beta" / "extra.npz", train_mask=np.ones(3, bool))  # beta: two files, still data
    (tmp_path / "splits").mkdir()
    np.savez(tmp_path / "splits" / "cora_split_0.6_0.2_0.npz", train_mask=np.ones(3, bool))
    (tmp_path / "locked" / "deep" / "deeper").mkdir(parents=True)
    real_listdir = os.listdir

    def listdir(path):
        if os.path.basename(os.path.normpath(path)) == "locked":
            raise PermissionError(13, "Permission denied", path)
        assert os.path.basename(os.path.normpath(path)) != "deeper", "read two levels down"
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    with pytest.raises(ValueError, match=r"one of \[alpha, beta, locked\]"):
        load(str(tmp_path))
