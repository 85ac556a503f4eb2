"""scripts/graphmlp_encoder_check.py (the experiment behind the report's Graph-MLP / CiteSeer note):
both students and both feature scalings run end to end on the real CiteSeer files and print one
well-formed result line.  Two epochs only: this checks the script, not the accuracy it reports."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, load_repo_script, need_data


@pytest.mark.parametrize("student,normalize", [("ours", False), ("ref", True)])
def test_runs_and_reports(student, normalize):
    planetoid = need_data("planetoid/ind.citeseer")
    cmd = [sys.executable, os.path.join(REPO, "scripts", "graphmlp_encoder_check.py"), "--data",
           os.path.dirname(planetoid), "--student", student, "--epochs", "2", "--seeds", "0"]
    if normalize:
        cmd.append("--normalize")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stderr
    m = re.search(rf"citeseer student={student} normalize={normalize} .*: ([0-9.]+) ± ([0-9.]+)", out.stdout)
    assert m, out.stdout
    assert 0.0 < float(m.group(1)) <= 100.0 and float(m.group(2)) == 0.0  # one seed: no spread


def test_runs_the_graphmlp_recipe_not_its_own_loop():
    """The script's number is the recipe's: same seed, same accuracy as GraphMLP.fit with the script's
    settings; and the script builds no optimiser of its own."""

    import torch

    from gkdfast.data import load
    from gkdfast.distill import accuracy, recipes

    planetoid = need_data("planetoid/ind.citeseer")
    path = os.path.join(REPO, "scripts", "graphmlp_encoder_check.py")
    assert "torch.optim" not in open(path).read()
    script = load_repo_script("scripts/graphmlp_encoder_check.py")
    data = load(os.path.dirname(planetoid), name="citeseer")
    got = script.run_seed(data, "ref", 0, alpha=1.0, tau=2.0, epochs=2)
    torch.manual_seed(0)
    recipe = recipes.get("graphmlp", alpha=1.0, tau=2.0, epochs=2, patience=None, proj_dim=None)
    trained = recipe.fit(lambda f: script.make_ref_student(f, data.num_classes), data, seed=0)
    assert trained.fit.epochs == 2  # fixed epochs: no early stopping
    with torch.no_grad():
        want = accuracy(trained.model.eval()(trained.inputs), data.y, data.test_mask)
    assert got == want
