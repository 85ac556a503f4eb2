"""gkdfast.data.dcsbm: structure (symmetric int32 CSR, no duplicates), realised degree and homophily,
heavy-tailed degrees, split, determinism, bad input, and that a GNN beats an MLP on it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gkdfast.data import csbm, dcsbm, edge_homophily
from gkdfast.data.dcsbm import _TRAIN_PER_CLASS
from gkdfast.nn import MLP, SAGE


@pytest.fixture(scope="module")
def g():
    return dcsbm(num_nodes=6000, avg_degree=20, num_classes=6, feature_dim=32, seed=2)


def test_structure_is_a_symmetric_int32_csr_without_duplicates(g):
    d = g.validate()
    gr = d.graph
    assert gr.index_dtype == torch.int32 and gr.rowptr.dtype == torch.int32 and gr.perm is None
    assert d.x.dtype == torch.float32 and d.x.shape == (6000, 32) and d.y.dtype == torch.int64
    src, dst = gr.col.long(), gr.dst.long()
    assert not bool((src == dst).any())
    key = dst * 6000 + src
    assert bool((key[1:] > key[:-1]).all())  # sorted by (dst, src) and strictly: no duplicate edge
    rev = torch.sort(src * 6000 + dst).values
    assert torch.equal(rev, key)  # the reversed edge set is the edge set


def test_realised_degree_and_homophily(g):
    mean_deg = g.num_edges / g.num_nodes
    assert 0.8 * 20 < mean_deg <= 20  # a few duplicate draws dropped, never more edges than asked
    assert abs(edge_homophily(g.graph, g.y) - 0.8) < 0.04
    assert abs(g.extras["edge_homophily"] - edge_homophily(g.graph, g.y)) < 1e-6
    for h in (0.3, 0.95):
        d = dcsbm(num_nodes=3000, avg_degree=10, num_classes=5, feature_dim=4, homophily=h, seed=1)
        assert abs(edge_homophily(d.graph, d.y) - h) < 0.05


def test_degrees_are_heavy_tailed_and_capped(g):
    deg = g.graph.in_degree().float()
    flat = csbm(num_nodes=6000, num_classes=6, avg_degree=20, feature_dim=4, seed=2).graph.in_degree().float()
    # power law: hubs far above the mean, most nodes below it; the Poisson-like csbm has neither
    assert deg.max() / deg.mean() > 10 and flat.max() / flat.mean() < 3
    assert deg.median() < 0.8 * deg.mean()
    assert int(deg.max()) == g.extras["max_degree"]
    capped = dcsbm(num_nodes=6000, avg_degree=20, num_classes=6, feature_dim=4, max_degree=60, seed=2)
    assert int(capped.graph.in_degree().max()) < 2 * 60 < deg.max()  # expected-degree cap + Poisson noise
    lighter = dcsbm(num_nodes=6000, avg_degree=20, num_classes=6, feature_dim=4, degree_exponent=4.0, seed=2)
    assert lighter.graph.in_degree().max() < deg.max()


def test_classes_split_and_determinism(g):
    assert torch.bincount(g.y).tolist() == [1000] * 6
    assert torch.bincount(g.y[g.train_mask], minlength=6).tolist() == [_TRAIN_PER_CLASS] * 6
    assert torch.bincount(g.y[g.val_mask], minlength=6).tolist() == [30] * 6
    again = dcsbm(num_nodes=6000, avg_degree=20, num_classes=6, feature_dim=32, seed=2)
    assert torch.equal(again.graph.col, g.graph.col) and torch.equal(again.x, g.x)
    skewed = dcsbm(num_nodes=3000, avg_degree=5, num_classes=4, feature_dim=4, class_skew=0.5, seed=0)
    sizes = torch.bincount(skewed.y).tolist()
    assert sum(sizes) == 3000 and sizes == sorted(sizes, reverse=True) and sizes[0] > 1.5 * sizes[-1]


@pytest.mark.parametrize("kw, word", [(dict(num_classes=1), "num_classes"), (dict(homophily=1.5), "homophily"),
                                      (dict(degree_exponent=2.0), "degree_exponent"),
                                      (dict(max_degree=3), "max_degree"), (dict(feature_dim=0), "feature_dim")])
def test_bad_arguments(kw, word):
    with pytest.raises(ValueError, match=word):
        dcsbm(**dict(dict(num_nodes=500, avg_degree=10, num_classes=5), **kw))


def _fit(model, d, graph, epochs=60):
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    tr = d.train_mask
    best_val, best_test = -1.0, 0.0
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        F.cross_entropy((model(d.x, graph) if graph is not None else model(d.x))[tr], d.y[tr]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            pred = (model(d.x, graph) if graph is not None else model(d.x)).argmax(1)
        val = float((pred[d.val_mask] == d.y[d.val_mask]).float().mean())
        if val > best_val:
            best_val, best_test = val, float((pred[d.test_mask] == d.y[d.test_mask]).float().mean())
    return best_test


def test_gnn_clearly_beats_mlp_on_defaults():
    # products-shaped defaults (47 classes, 100 features, default labels per class), small and sparse
    torch.manual_seed(0)
    d = dcsbm(num_nodes=5000, avg_degree=20, seed=0)
    gnn = _fit(SAGE(100, 64, 47), d, d.graph)
    mlp = _fit(MLP(100, 64, 47), d, None)
    assert gnn > mlp + 0.10, (gnn, mlp)


def test_calibration_script_smoke(capsys):
    import json

    from conftest import load_repo_script

    mod = load_repo_script("scripts/calibrate_dcsbm.py")
    mod.main(["--nodes", "1500", "--avg-degree", "5", "--features", "8", "--classes", "4", "--epochs", "2",
              "--hidden", "8", "--set", "mean_norm=3.5"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["nodes"] == 1500 and res["dcsbm"] == {"mean_norm": 3.5}
    assert all(0.0 <= res[k] <= 1.0 for k in ("sage", "mlp", "mlp_all"))
    assert res["sage_minus_mlp"] == pytest.approx(res["sage"] - res["mlp"], abs=1e-3)


def test_every_search_path_is_searchsorted(monkeypatch):
    """The generator's inverse-CDF searches (the native guided one, and without it the pure-PyTorch
    one that groups the queries first) return torch.searchsorted's indices, ties and both ends
    included, so the graphs are bit for bit the same whichever runs."""
    import importlib

    from gkdfast import _backend

    module = importlib.import_module("gkdfast.data.dcsbm")  # (the package exports the function by that name)

    g = torch.Generator().manual_seed(3)
    cw = torch.cumsum(torch.rand(5000, generator=g, dtype=torch.float64), 0)
    r = torch.cat([torch.rand(20000, generator=g, dtype=torch.float64) * float(cw[-1]),
                   cw[::37], torch.tensor([0.0, float(cw[-1])], dtype=torch.float64)])
    monkeypatch.setattr(module, "_GROUPED_SEARCH_MIN", 1)
    monkeypatch.setattr(module, "_SEARCH_GROUPS", 64)
    want = torch.searchsorted(cw, r)
    assert torch.equal(module._grouped_search(cw, r), want)
    assert torch.equal(module._searcher(cw)(r), want)
    with _backend.forced("reference"):
        assert torch.equal(module._searcher(cw)(r), want)
        grouped = dcsbm(num_nodes=3000, avg_degree=10, num_classes=5, feature_dim=4, seed=2)
    monkeypatch.setattr(module, "_GROUPED_SEARCH_MIN", 1 << 62)
    default = dcsbm(num_nodes=3000, avg_degree=10, num_classes=5, feature_dim=4, seed=2)
    assert torch.equal(grouped.graph.rowptr, default.graph.rowptr) and torch.equal(grouped.graph.col, default.graph.col)
    assert grouped.extras["edge_homophily"] == default.extras["edge_homophily"]


def test_labels_past_a_byte_are_counted_apart():
    """The same-label count reads byte-wide labels when they fit; with 300 classes it must not fold
    them (an int8 cast is one-to-one up to 255 only): all edges cross classes here."""
    many = dcsbm(num_nodes=3000, avg_degree=20, num_classes=300, feature_dim=4, homophily=0.0, seed=1)
    assert abs(many.extras["edge_homophily"] - edge_homophily(many.graph, many.y)) < 1e-6


def test_the_graph_is_the_one_generated_before_the_faster_build():
    """A golden SHA-1 of one seed's CSR, computed with the generator before its searches were grouped
    and its CSR build went byte-wide (session 26): the same seed gives the same graph."""
    import hashlib

    if not torch.__version__.startswith("2.13"):
        pytest.skip("golden value of torch 2.13's CPU random stream (the CI torch)")
    # The second case: more classes than int8 holds (the draws' int64 class path), computed with the
    # generator of session 29, before the native search and the narrow gathers.
    for kwargs, want in ((dict(num_nodes=3000, avg_degree=10, num_classes=5, feature_dim=4, seed=2),
                          "9535d643d7fba75eab9f3bedcfaf5faab431a93e"),
                         (dict(num_nodes=3000, avg_degree=20, num_classes=300, feature_dim=4, seed=1),
                          "816ea54fc2f706ae500cae2ac783890a93416740")):
        d = dcsbm(**kwargs)
        h = hashlib.sha1()
        for t in (d.graph.rowptr, d.graph.col):
            h.update(t.contiguous().numpy().tobytes())
        assert h.hexdigest() == want, kwargs
