"""Files from someone else (review 108, docs/processes.md): a crafted file gives a one-line error naming
it, never a native crash, a decompression bomb, or a file written or read outside its folder.

Loads that crashed the process natively run in a subprocess, so the old behaviour fails the test
instead of killing pytest."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import REPO
from gkdfast.data import DataFormatError, csbm, load_mmap, save_mmap, save_npz
from gkdfast.data.npz import load_npz_bundle


def _planetoid_with_out_of_range_indices(folder):
    """A Planetoid folder whose ``tx`` stores a column index far past its shape (toarray wrote there)."""
    os.makedirs(folder, exist_ok=True)
    f, c = 4, 2
    tx = sp.csr_matrix(np.ones((2, f), np.float32))
    tx.indices[:] = 1 << 28
    parts = dict(x=sp.csr_matrix(np.eye(2, f, dtype=np.float32)), y=np.eye(2, c),
                 allx=sp.csr_matrix(np.ones((4, f), np.float32)), ally=np.tile(np.eye(1, c), (4, 1)), tx=tx,
                 ty=np.eye(2, c), graph=defaultdict(list, {0: [1], 1: [0, 2], 2: [1], 3: [4], 4: [3], 5: [4]}))
    for name, obj in parts.items():
        with open(os.path.join(folder, f"ind.x.{name}"), "wb") as fh:
            pickle.dump(obj, fh, protocol=4)
    with open(os.path.join(folder, "ind.x.test.index"), "w") as fh:
        fh.write("4\n5\n")


def _load_in_subprocess(code: str):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_sparse_indices_past_the_shape_are_a_format_error(tmp_path):
    folder = str(tmp_path / "planetoid")
    _planetoid_with_out_of_range_indices(folder)
    res = _load_in_subprocess(
        "import sys, gkdfast.data as d\n"
        f"try:\n    d.load_planetoid({folder!r}, 'x')\n"
        "except d.DataFormatError as e:\n    print('refused:', e); sys.exit(3)\n")
    assert res.returncode == 3, (res.returncode, res.stderr[-2000:])  # (a segmentation fault: -11)
    assert "ind.x.tx: the feature matrix is a malformed sparse matrix" in res.stdout


def test_a_gnn_benchmark_npz_with_bad_attribute_indices_is_a_format_error(tmp_path):
    path = str(tmp_path / "bench.npz")
    adj = sp.csr_matrix(np.array([[0, 1], [1, 0]], np.float32))
    np.savez(path, adj_data=adj.data, adj_indices=adj.indices, adj_indptr=adj.indptr, adj_shape=adj.shape,
             attr_data=np.ones(2, np.float32), attr_indices=np.array([0, 1 << 28]), attr_indptr=np.array([0, 1, 2]),
             attr_shape=np.array([2, 3]), labels=np.array([0, 1]))
    res = _load_in_subprocess(
        "import sys, gkdfast.data as d\n"
        f"try:\n    d.load({path!r})\n"
        "except d.DataFormatError as e:\n    print('refused:', e); sys.exit(3)\n")
    assert res.returncode == 3, (res.returncode, res.stderr[-2000:])
    assert "malformed sparse matrix" in res.stdout


def test_zip_members_a_bomb_needs_are_refused(tmp_path):
    pytest.importorskip("bz2")  # (a Python built without it cannot write the member)
    plain = str(tmp_path / "plain.npz")
    save_npz(csbm(num_nodes=60, seed=0), plain)
    bomb = str(tmp_path / "bzip2.npz")
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_BZIP2) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(DataFormatError, match="compressed with method 12; only stored and deflate"):
        load_npz_bundle(bomb)
    assert load_npz_bundle(plain).num_nodes == 60


def test_a_listed_extra_array_cannot_name_a_file_outside_the_bundle(tmp_path):
    folder = str(tmp_path / "bundle")
    save_mmap(csbm(num_nodes=60, seed=0), folder)
    np.save(str(tmp_path / "secret.npy"), np.zeros(60, np.float32))
    meta_path = os.path.join(folder, "meta.json")
    with open(meta_path) as fh:
        meta = json.load(fh)
    meta["arrays"]["extra__/../../secret"] = {"dtype": "float32", "shape": [60]}
    with open(meta_path, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(DataFormatError, match="extra arrays are named extra__<letters, digits, _>"):
        load_mmap(folder)


def test_names_read_from_files_stay_inside_the_output_folder(tmp_path):
    from gkdfast._io import file_stem

    for name in ("../ESCAPED", "/tmp/x", "..", "a/../../b", ""):
        stem = file_stem(name)
        assert "/" not in stem and not stem.startswith(".") and stem
    out = tmp_path / "out"
    out.mkdir()
    assert os.path.dirname(os.path.abspath(os.path.join(out, file_stem("../../x") + ".npz"))) == str(out)


def test_a_planted_lock_symlink_is_not_followed(tmp_path):
    from gkdfast._io import exclusive_dir

    folder = tmp_path / "reused"
    folder.mkdir()
    victim = tmp_path / "victim"
    os.symlink(victim, folder / ".lock")
    with pytest.raises(FileExistsError, match="is a symbolic link"):  # (a path error: exit 2)
        with exclusive_dir(str(folder)):
            pass
    assert not victim.exists()


def test_bench_never_imports_from_its_output_folder(tmp_path, monkeypatch):
    from gkdfast import cli

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    out = tmp_path / "results"
    assert cli.main(["bench", "--pytest", "--only", "pooling", "--out", str(out)]) == 0
    (cmd, kw), = calls
    assert kw["cwd"] != str(out) and os.path.basename(kw["cwd"]) == "benchmarks"
    if sys.version_info >= (3, 11):
        assert cmd[1] == "-P"  # (python -m puts the working directory first on sys.path otherwise)


def test_teacher_outputs_with_wrong_hidden_rows_are_refused():
    from gkdfast.distill import Distiller, TeacherOutputs, terms
    from gkdfast.nn import MLP

    data = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
    bad = TeacherOutputs(torch.randn(200, 3), torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"the teacher's hidden embedding is \[1, 5\], data has 200 rows"):
        Distiller(MLP(8, 8, 3), [terms.CrossEntropy(1.0)], teacher=bad, epochs=1).fit(data)


def test_json_and_csv_failures_are_format_errors(tmp_path):
    from gkdfast.data.graph_json import load_graph_json
    from gkdfast.data._util import csv_rows, parse_json

    with pytest.raises(DataFormatError, match=r"deep.json: not valid JSON \(RecursionError"):
        parse_json("deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match="big.csv: not a readable CSV table"):
        csv_rows("big.csv", "a,b\n" + "x" * 200_000 + ",1\n")
    folder = tmp_path / "gj"
    folder.mkdir()
    (folder / "graphs.json").write_text(json.dumps({"01": [[0, 1]], "2": [[0, 1]]}))
    (folder / "target.csv").write_text("id,target\n1,0\n2,1\n")
    with pytest.raises(DataFormatError, match="without leading zeros"):  # (a KeyError '1' before)
        load_graph_json(str(folder))


def test_adjacency_and_typed_graph_files_with_a_decreasing_indptr_are_format_errors(tmp_path):
    # Before: scipy's tocoo() of such a CSR wrote past an array (exit 139) in the gnn-benchmark and
    # HeCo readers; only the feature and label matrices had been checked.
    bench = str(tmp_path / "bench.npz")
    np.savez(bench, adj_data=np.ones(2, np.float32), adj_indices=np.array([1, 0]),
             adj_indptr=np.array([0, 10**7, 2]), adj_shape=np.array([2, 2]), labels=np.array([0, 1]))
    heco = tmp_path / "heco"
    heco.mkdir()
    np.savetxt(str(heco / "pa.txt"), np.array([[0, 0], [1, 1]]), fmt="%d")
    np.save(str(heco / "labels.npy"), np.array([0, 1]))
    np.savez(str(heco / "p_feat.npz"), format=b"csr", shape=np.array([2, 3]), data=np.ones(2, np.float32),
             indices=np.array([0, 1], np.int32), indptr=np.array([0, 10**7, 2], np.int32))
    res = _load_in_subprocess(
        "import sys, gkdfast.data as d\n"
        "from gkdfast.hetero.readers import load_heco\n"
        "codes = []\n"
        f"for call in (lambda: d.load({bench!r}), lambda: load_heco({str(heco)!r}, target_type='p')):\n"
        "    try:\n        call(); codes.append('loaded')\n"
        "    except d.DataFormatError as e:\n        print('refused:', e); codes.append('refused')\n"
        "sys.exit(3 if codes == ['refused', 'refused'] else 1)\n")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr[-2000:])
    assert res.stdout.count("indptr must be a non-decreasing sequence") == 2


def test_split_files_are_checked_for_bomb_members(tmp_path):
    pytest.importorskip("lzma")
    from gkdfast.data.geom_splits import geom_gcn_split

    data = csbm(num_nodes=60, seed=0)
    folder = tmp_path / "splits"
    folder.mkdir()
    with zipfile.ZipFile(str(folder / f"{data.name}_split_0.6_0.2_0.npz"), "w", zipfile.ZIP_LZMA) as z:
        for k in ("train_mask", "val_mask", "test_mask"):
            with z.open(k + ".npy", "w") as fh:
                np.lib.format.write_array(fh, np.zeros(60, np.uint8))
    with pytest.raises(DataFormatError, match="compressed with method 14"):
        geom_gcn_split(data, str(folder), 0)
