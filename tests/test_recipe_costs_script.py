"""``scripts/recipe_costs.py``: one fresh process per recipe and backend; the published setting's
GNN student; ours and the reference backend side by side, every number in the JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, need_data


def test_published_structure_recipe_costs_both_backends(tmp_path):
    root = need_data("planetoid")
    out = tmp_path / "costs.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "recipe_costs.py"), "--data", root,
                           "--name", "cora", "--protocol", "published", "--methods", "none,lsp",
                           "--backends", "native,reference", "--epochs", "2", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| method | student | epochs | native s / epoch")
    assert len(lines) == 4 and all(line.endswith("x |") for line in lines[2:])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["method"], r["backend"]) for r in rows] == [("none", "native"), ("none", "reference"),
                                                          ("lsp", "native"), ("lsp", "reference")]
    for r in rows:
        assert r["student"] == "GCN(64)" and r["epochs"] == 2
        assert r["sec_per_epoch"] > 0 and r["peak_rss_mib"] > 0
    assert rows[2]["teacher"] == "GAT(64)" and rows[0]["teacher"] is None


def test_bad_backend_is_a_usage_error():
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "recipe_costs.py"), "--data", ".",
                           "--backends", "cuda"], capture_output=True, text=True)
    assert done.returncode == 2 and "--backends" in done.stderr
