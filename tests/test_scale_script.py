"""scripts/scale.py: one tiny size end to end (its own process per size), then the table, JSON and PNG."""
from __future__ import annotations

import json
import os

import pytest

from conftest import load_repo_script


@pytest.fixture(scope="module")
def scale():
    return load_repo_script("scripts/scale.py")


def test_tiny_scaling_run_writes_table_json_and_png(scale, tmp_path):
    out = str(tmp_path / "scale")
    rc = scale.main(["--sizes", "3000", "--out", out, "--teacher", "untrained", "--hidden", "16",
                     "--student-epochs", "1", "--train-per-class", "5", "--batch-size", "512", "--threads", "1",
                     "--no-progress"])
    assert rc == 0
    rec = json.load(open(os.path.join(out, "scale.json")))
    run = rec["runs"][0]
    assert run["num_nodes"] == 3000 and run["generator"] in ("dcsbm", "csbm")
    assert run["teacher"] == "untrained"
    assert [s["stage"] for s in run["stages"]] == ["generate", "inference", "student", "baseline", "evaluate"]
    assert all(s["seconds"] > 0 and s["peak_rss_bytes"] > 0 and "cpu_seconds" in s for s in run["stages"])
    table = open(os.path.join(out, "scale.md")).read()
    assert table.count("| 3,000 |") == 6  # five stages + the accuracy row
    assert os.path.getsize(os.path.join(out, "scale.png")) > 1000


def test_sizes_are_checked(scale):
    assert scale.parse_sizes("1e5,2.45e6") == [100000, 2450000]
    with pytest.raises(SystemExit, match="--sizes"):
        scale.parse_sizes("12")
