"""Shared fixtures and helpers for the gkdfast tests.

* ``device`` fixture: ``"cpu"`` always, ``"cuda"`` (marked ``cuda``) when a GPU is visible, so a
  test written once runs on every backend the machine has.
* Hypothesis profile ``gkdfast`` (default): few examples, no deadline, because two busy cores are
  shared by many people; ``HYPOTHESIS_PROFILE=thorough`` runs more.
* Plain helpers (importable as ``from conftest import ...``): dense adjacency, random graphs, and
  the real-data root ``DATA_ROOT`` (``$GKDFAST_DATA`` or ``../shared/data`` beside the repository)
  with ``need_data(rel)``: the path, a skip when it is missing locally, a failure under ``CI=true``.
"""
from __future__ import annotations

import os

import pytest
import torch

from gkdfast.data import default_root

try:  # hypothesis is a test dependency; keep conftest importable without it
    from hypothesis import HealthCheck, settings

    settings.register_profile("gkdfast", max_examples=15, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("thorough", max_examples=200, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gkdfast"))
except ImportError:  # pragma: no cover
    pass

HAS_CUDA = torch.cuda.is_available()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = default_root()


def load_repo_script(relpath: str):
    """The script ``REPO/relpath`` (e.g. ``scripts/quality.py``) imported as a module, for its tests."""
    import importlib.util

    name = os.path.splitext(os.path.basename(relpath))[0] + "_script"
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, relpath))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def need_data(rel: str = "") -> str:
    """``DATA_ROOT/rel`` if it exists (a Planetoid prefix ``dir/ind.cora`` counts when its ``.graph``
    file does); otherwise a skip, or a failure under ``CI=true``, where the data must be present."""
    path = os.path.join(DATA_ROOT, rel) if rel else DATA_ROOT
    if not (os.path.exists(path) or os.path.exists(path + ".graph")):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real data missing under CI: {path}")
        pytest.skip(f"real data not found: {path}")
    return path

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                              pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")])]


def pytest_collection_modifyitems(config, items):
    # Anything marked cuda but not parametrised through DEVICES still skips cleanly without a GPU.
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _default_backend(monkeypatch):
    """Every test starts on the automatic backend, whatever the caller's environment says, with no
    backend choice remembered from an earlier test (one that patches what a choice depends on must
    not meet a stale one), and with the CLI's one-line errors (``GKDFAST_DEBUG`` unset)."""
    monkeypatch.delenv("GKDFAST_BACKEND", raising=False)
    monkeypatch.delenv("GKDFAST_DEBUG", raising=False)
    from gkdfast import _backend

    _backend._NATIVE_CHOICES.clear()


# ------------------------------------------------------------------------------------ helpers
def dense_adj(edge_index: torch.Tensor, num_nodes: int, weight=None, dtype=torch.float64) -> torch.Tensor:
    """``A[i, j] = sum of weights of edges j -> i`` (destination rows), duplicates added."""
    src, dst = edge_index[0].long().cpu(), edge_index[1].long().cpu()
    w = torch.ones(src.numel(), dtype=dtype) if weight is None else weight.detach().cpu().to(dtype)
    a = torch.zeros(num_nodes, num_nodes, dtype=dtype)
    a.index_put_((dst, src), w, accumulate=True)
    return a


def dense_reduce(edge_index, num_nodes, x, reduce, weight=None):
    """Row-by-row loop oracle for spmm (tiny graphs only): float64, on CPU."""
    x = x.detach().cpu().double()
    src, dst = edge_index[0].long().cpu(), edge_index[1].long().cpu()
    w = None if weight is None else weight.detach().cpu().double()
    out = torch.zeros(num_nodes, x.size(1), dtype=torch.float64)
    for i in range(num_nodes):
        es = (dst == i).nonzero().flatten()
        if es.numel() == 0:
            continue
        msg = x[src[es]] * (w[es].unsqueeze(-1) if w is not None else 1.0)
        if reduce == "sum":
            out[i] = msg.sum(0)
        elif reduce == "mean":
            out[i] = msg.mean(0)
        elif reduce == "max":
            out[i] = msg.max(0).values
        else:
            out[i] = msg.min(0).values
    return out


def random_edge_index(num_nodes: int, num_edges: int, seed: int = 0, dtype=torch.int64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    if num_nodes == 0:
        return torch.zeros(2, 0, dtype=dtype, device=device)
    return torch.randint(0, num_nodes, (2, num_edges), generator=g).to(dtype=dtype, device=device)


def tiny_graphs():
    """Named hand-built graphs covering the edge cases the kernels must get right:
    (name, edge_index [2, E] int64, num_nodes)."""
    hub = torch.stack([torch.arange(1, 41), torch.zeros(40, dtype=torch.long)])  # 40 in-edges into node 0
    hub = torch.cat([hub, torch.tensor([[0, 0], [1, 2]])], 1)
    return [
        ("empty", torch.zeros(2, 0, dtype=torch.long), 4),
        ("no_nodes", torch.zeros(2, 0, dtype=torch.long), 0),
        ("isolated", torch.tensor([[0, 1], [1, 0]]), 5),
        ("self_loops", torch.tensor([[0, 1, 1, 2], [0, 1, 2, 2]]), 3),
        ("duplicates", torch.tensor([[0, 0, 0, 2, 1], [1, 1, 1, 1, 2]]), 3),
        ("unsorted", torch.tensor([[3, 0, 2, 1, 0], [0, 3, 1, 3, 2]]), 4),
        ("hub", hub, 41),
    ]


TINY_IDS = [t[0] for t in tiny_graphs()]


def run_cli(*args, timeout=180):
    """``python -m gkdfast.cli ARGS`` in a fresh process from the repository root, one thread, this
    checkout first on the path, ``GKDFAST_DEBUG`` unset (so errors are the one-line user messages)."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("GKDFAST_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "gkdfast.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)



@pytest.fixture(scope="session")
def cora():
    """Cora with its public split (a real graph; tests of the recipes run on it)."""
    from gkdfast.data import load

    return load(need_data("planetoid"), name="cora")


@pytest.fixture(scope="session")
def small_cora(cora):
    """The first 400 Cora nodes and the edges among them (a small real graph)."""
    import dataclasses

    from gkdfast.data.splits import subgraph

    keep = torch.zeros(cora.num_nodes, dtype=torch.bool)
    keep[:400] = True
    g, _ = subgraph(cora.graph, keep)
    return dataclasses.replace(cora, graph=g, x=cora.x[keep], y=cora.y[keep], train_mask=cora.train_mask[keep],
                               val_mask=cora.val_mask[keep], test_mask=cora.test_mask[keep], extras={})
