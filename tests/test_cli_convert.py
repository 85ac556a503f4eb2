"""``gkdfast convert``: a graph in any supported format read once and saved memory-mappable, then
opened by ``distill --data``; refused inputs (several graphs, typed graphs, an existing --out) are one
line."""
import gzip
import os

import torch

from conftest import need_data, run_cli

from gkdfast.data import load, load_mmap


def _one_line_error(r, needle):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


def _ogb_folder(root):
    raw = root / "raw"
    raw.mkdir(parents=True)
    n = 300  # random split: 20 + 30 per class of 3, the rest test
    edges = "".join(f"{i},{(i * 7 + 3) % n}\n" for i in range(n))
    raw.joinpath("edge.csv.gz").write_bytes(gzip.compress(edges.encode()))
    raw.joinpath("node-label.csv.gz").write_bytes(gzip.compress("".join(f"{i % 3}\n" for i in range(n)).encode()))
    feats = "".join(f"{i * 0.5:.3f},{-i},{i % 7}.25\n" for i in range(n))
    raw.joinpath("node-feat.csv.gz").write_bytes(gzip.compress(feats.encode()))
    return root


def test_convert_an_ogb_folder_then_distill_from_it(tmp_path):
    src = _ogb_folder(tmp_path / "ogbn_toy")
    out = str(tmp_path / "mm")
    r = run_cli("convert", "--data", str(src), "--seed", "3", "--out", out)
    assert r.returncode == 0, r.stderr
    assert ": 300 nodes, " in r.stdout and "3 features, 3 classes" in r.stdout and "seed=3" in r.stdout, r.stdout
    want, got = load(src, seed=3), load_mmap(out)
    assert torch.equal(got.graph.rowptr.long(), want.graph.rowptr.long())
    assert torch.equal(got.graph.col.long(), want.graph.col.long())
    assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
    assert torch.equal(got.train_mask, want.train_mask) and torch.equal(got.test_mask, want.test_mask)
    _one_line_error(run_cli("convert", "--data", str(src), "--out", out), "already exists")
    assert run_cli("convert", "--data", str(src), "--out", out, "--overwrite").returncode == 0

    res = str(tmp_path / "res")
    r = run_cli("distill", "--data", out, "--seeds", "1", "--epochs", "3", "--teacher", "sage:8",
                "--student", "mlp:8", "--methods", "kd", "--out", res, "--quiet")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(res, "results.json"))


def test_convert_refuses_what_is_not_one_graph(tmp_path):
    _one_line_error(run_cli("convert", "--data", need_data("tu_mutag"), "--out", str(tmp_path / "a")),
                    "holds GraphDataset, not one node-classification graph")
    _one_line_error(run_cli("convert", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "b")),
                    "no such file or directory")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
