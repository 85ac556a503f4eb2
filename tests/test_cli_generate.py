"""``gkdfast generate`` (a dcsbm graph saved memory-mappable) and the synthetic-graph shape flags of
``gkdfast distill`` (--avg-degree/--features/--classes), plus ``distill --data`` on a generated folder."""
import json
import os
import re

from conftest import run_cli

from gkdfast.data import load_mmap

_cli = run_cli


def _one_line_error(r, needle):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_generate_then_distill_from_the_folder(tmp_path):
    out = str(tmp_path / "g")
    r = _cli("generate", "--nodes", "3000", "--avg-degree", "12", "--features", "16", "--classes", "6",
             "--seed", "1", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert re.search(r": 3000 nodes, \d+ directed edges, 16 features, 6 classes, edge homophily 0\.\d+; "
                     r"[\d.]+ s, peak RSS [\d.]+ GiB", r.stdout), r.stdout
    d = load_mmap(out)
    assert d.num_nodes == 3000 and d.num_classes == 6 and d.extras["generator"]["seed"] == 1
    _one_line_error(_cli("generate", "--nodes", "3000", "--out", out), "already exists")

    res = str(tmp_path / "res")
    r = _cli("distill", "--data", out, "--seeds", "1", "--epochs", "5", "--teacher", "sage:16",
             "--student", "mlp:16", "--methods", "glnn", "--out", res, "--quiet")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(res, "results.json")) as f:
        result = json.load(f)
    assert result["dataset"] == "dcsbm" and result["num_nodes"] == 3000


def test_homophily_flag_reaches_the_generator(tmp_path):
    """--homophily sets the planted homophily: the realised edge homophily follows it."""
    got = {}
    for h in ("0.2", "0.9"):
        out = str(tmp_path / f"g{h}")
        r = _cli("generate", "--nodes", "3000", "--avg-degree", "12", "--features", "8", "--classes", "6",
                 "--homophily", h, "--out", out, "--no-progress")
        assert r.returncode == 0, r.stderr
        got[h] = load_mmap(out).extras["edge_homophily"]
    assert abs(got["0.2"] - 0.2) < 0.05 and abs(got["0.9"] - 0.9) < 0.05
    _one_line_error(_cli("generate", "--nodes", "3000", "--homophily", "1.5", "--out", str(tmp_path / "bad")),
                    "homophily must be in [0, 1]")


def test_distill_shape_flags_switch_to_dcsbm(tmp_path):
    res = str(tmp_path / "res")
    r = _cli("distill", "--nodes", "1500", "--avg-degree", "8", "--features", "8", "--classes", "4",
             "--seeds", "1", "--epochs", "3", "--teacher", "gcn:8", "--student", "mlp:8", "--methods", "kd",
             "--out", res, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "dcsbm: 1500 nodes" in r.stderr and "8 features, 4 classes" in r.stderr


def test_shape_flags_refused_with_data(tmp_path):
    _one_line_error(_cli("distill", "--data", str(tmp_path), "--classes", "4"), "--classes shape the built-in")
    _one_line_error(_cli("generate", "--nodes", "100", "--classes", "1", "--out", str(tmp_path / "x")),
                    "num_classes")
