"""Malformed data that used to pass a reader silently or crash with a raw error (issue 18):
NaN/inf features and labels < -1 in any reader, a MUSAE feature key "-1", truncated and corrupt
.npz members.  Each must give a one-line error naming the file or the field."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from gkdfast.data import GraphData, csbm, load, save_npz


@pytest.fixture
def tiny():
    return csbm(num_nodes=60, num_classes=3, feature_dim=4, seed=0)


def _with(d: GraphData, **kw) -> GraphData:
    fields = dict(graph=d.graph, x=d.x, y=d.y, train_mask=d.train_mask, val_mask=d.val_mask,
                  test_mask=d.test_mask, num_classes=d.num_classes, name="toy")
    fields.update(kw)
    return GraphData(**fields)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_validate_refuses_non_finite_features_and_names_the_row(tiny, bad):
    x = tiny.x.clone()
    x[37, 2] = bad
    with pytest.raises(ValueError, match=r"x has NaN or inf \(first in row 37\)"):
        _with(tiny, x=x).validate()


def test_validate_accepts_finite_features_whose_sum_overflows(tiny):
    """The finiteness check sums x first (one cheap pass); a sum that overflows to inf from finite
    values must fall through to the exact row search, not be reported as a bad feature."""
    x = tiny.x.clone()
    x[:, 0] = 3e38
    assert not bool(torch.isfinite(x.sum()))
    _with(tiny, x=x).validate()


def test_validate_refuses_labels_below_minus_one_and_float_labels(tiny):
    y = tiny.y.clone()
    y[5] = -2
    with pytest.raises(ValueError, match="label -2 < -1"):
        _with(tiny, y=y, train_mask=tiny.train_mask & (y >= 0), val_mask=tiny.val_mask & (y >= 0),
              test_mask=tiny.test_mask & (y >= 0)).validate()
    with pytest.raises(ValueError, match="integer class ids"):
        _with(tiny, y=tiny.y.float()).validate()


def test_validate_scans_features_in_chunks(tiny, monkeypatch):
    import gkdfast.data.graphdata as gd

    monkeypatch.setattr(gd, "_FINITE_CHUNK_ROWS", 7)  # the bad row sits in a later chunk
    x = tiny.x.clone()
    x[50, 0] = float("nan")
    with pytest.raises(ValueError, match="row 50"):
        _with(tiny, x=x).validate()
    assert _with(tiny).validate() is not None


def _musae_dir(tmp_path, feats):
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / "toy_edges.csv").write_text("id_1,id_2\n0,1\n1,2\n")
    (d / "toy_target.csv").write_text("id,name,page_type\n0,a,tv\n1,b,gov\n2,c,tv\n")
    (d / "toy_features.json").write_text(feats)
    return d


def test_musae_negative_feature_key_is_refused_not_wrapped(tmp_path):
    with pytest.raises(ValueError, match=r"toy_features.json: negative node id -1"):
        load(_musae_dir(tmp_path, '{"0": [0], "1": [1], "-1": [2]}'))


def test_gnn_benchmark_reader_refuses_nan_features(tmp_path):
    # The gnn-benchmark reader had no feature check of its own; GraphData.validate now covers it.
    import scipy.sparse as sp

    adj = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32))
    attr = np.ones((3, 2), dtype=np.float32)
    attr[2, 1] = np.nan
    path = tmp_path / "toy.npz"
    np.savez(path, adj_data=adj.data, adj_indices=adj.indices, adj_indptr=adj.indptr, adj_shape=adj.shape,
             attr_matrix=attr, labels=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"x has NaN or inf \(first in row 2\)"):
        load(path)


def _truncate_member(path, member, keep_bytes):
    """Rewrites an uncompressed .npz with ``member`` cut short (a consistent zip, a short array)."""
    with zipfile.ZipFile(path) as z:
        items = {n: z.read(n) for n in z.namelist()}
    items[member] = items[member][:keep_bytes]
    with zipfile.ZipFile(path, "w") as z:
        for n, b in items.items():
            z.writestr(n, b)


def test_truncated_npz_member_is_reported_as_truncated(tmp_path):
    d = csbm(num_nodes=40, num_classes=2, feature_dim=3, seed=1)
    path = tmp_path / "g.npz"
    save_npz(d, path, compressed=False)
    _truncate_member(path, "x.npy", 200)
    with pytest.raises(ValueError, match="g.npz: has a truncated or malformed member"):
        load(path)


def test_corrupt_npz_member_is_a_clear_error_not_badzipfile(tmp_path):
    d = csbm(num_nodes=40, num_classes=2, feature_dim=3, seed=1)
    path = tmp_path / "g.npz"
    save_npz(d, path, compressed=False)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("x.npy")
    # Flip bytes inside x.npy's data: the CRC check fails when the member is read.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    raw[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"g.npz: is corrupt \(BadZipFile"):
        load(path)


def test_int_tables_accept_float_written_ids_and_stay_exact_past_2_pow_53():
    from gkdfast.data._util import DataFormatError, parse_int_table

    big = 2**60 + 1  # float64 would round this to 2**60
    got = parse_int_table("f.txt", f"1.0 2.0\n{big} 3", 2, "edge list")
    assert got.dtype == np.int64 and got.tolist() == [[1, 2], [big, 3]]
    with pytest.raises(DataFormatError, match="f.txt: edge list: .*non-integer"):
        parse_int_table("f.txt", "1 2.5", 2, "edge list")
    with pytest.raises(DataFormatError, match="expected 2 integer columns per line, found 3 on line 1"):
        parse_int_table("f.txt", "1 2 3", 2, "edge list")


def test_pick_dataset_matches_ignoring_case_and_names_the_choices():
    from gkdfast.data._util import DataFormatError, pick_dataset

    assert pick_dataset("d", ["MUTAG", "PROTEINS"], "mutag", "TU") == "MUTAG"
    assert pick_dataset("d", ["cora"], None, "Planetoid") == "cora"
    with pytest.raises(DataFormatError, match="holds TU datasets"):
        pick_dataset("d", ["MUTAG", "PROTEINS"], None, "TU")
    with pytest.raises(DataFormatError, match="no TU dataset 'x' here"):
        pick_dataset("d", ["MUTAG"], "x", "TU")


@pytest.mark.parametrize("graphs,targets,match", [
    ('{"0": [[0, 1]], "1": [[0, 2]]}', "id,target\n0,1\n", "no label for graph id 1"),
    ('{"0": [[0, -1]]}', "id,target\n0,1\n", "negative node id"),
    ('{"0": [[0, 1], [2]]}', "id,target\n0,1\n", r"\[u, v\] integer pairs"),
    ('{"0": [[0, 1]]', "id,target\n0,1\n", "not valid JSON"),
    ('{"a": [[0, 1]]}', "id,target\na,1\n", "integer"),
    ('{"0": [[0, 1]]}', "graph,label\n0,1\n", "header 'id,target'"),
    ('{"0": [[0, 1]]}', "id,target\n0,1\n0,0\n", "appears twice"),
])
def test_graph_json_malformed_folders_are_one_line_errors(tmp_path, graphs, targets, match):
    from gkdfast.data import load_graph_json
    from gkdfast.data._util import DataFormatError

    (tmp_path / "graphs.json").write_text(graphs)
    (tmp_path / "target.csv").write_text(targets)
    with pytest.raises(DataFormatError, match=match):
        load_graph_json(tmp_path)


def test_graph_json_small_folder_loads_through_the_format_guess(tmp_path):
    (tmp_path / "graphs.json").write_text('{"1": [[0, 1], [1, 2], [2, 2]], "0": [[0, 1]]}')
    (tmp_path / "target.csv").write_text("id,target\n0,0\n1,1\n")
    ds = load(str(tmp_path))
    assert (len(ds), ds.num_nodes, ds.graph.num_edges) == (2, 5, 2 * 3)  # self-loop dropped
    assert ds.y.tolist() == [0, 1] and ds.ptr.tolist() == [0, 2, 5]  # graphs ordered by id


def test_musae_feature_rows_without_a_header_keep_their_first_row_and_ids_must_be_integers(tmp_path):
    from gkdfast.data import load
    from gkdfast.data._util import DataFormatError

    (tmp_path / "x_edges.csv").write_text("id_1,id_2\n0,1\n1,2\n")
    (tmp_path / "x_target.csv").write_text("id,target\n0,a\n1,b\n2,a\n")
    (tmp_path / "x_features.csv").write_text("0,5,1.0\n1,2,1.0\n")  # no header: the first row is data
    d = load(str(tmp_path), format="musae")
    assert d.x.shape == (3, 6) and d.x[0, 5] == 1.0 and d.x[1, 2] == 1.0
    with pytest.raises(DataFormatError, match="feature index 5 >= feature_dim=3"):
        load(str(tmp_path), format="musae", feature_dim=3)
    (tmp_path / "x_features.csv").write_text("node,feature,value\n0,5,1.0\n1,2.5,1.0\n")
    with pytest.raises(DataFormatError, match="must be integers"):
        load(str(tmp_path), format="musae")
