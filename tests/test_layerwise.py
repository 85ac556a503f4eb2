"""layerwise_inference equals the models' full forward (eval mode) for every layer type."""
import os

import pytest
import torch

import gkdfast
from gkdfast.nn import GAT, GCN, GIN, MLP, SAGE, layerwise_inference


def _graph(n=37, e=150, seed=0, weighted=False, self_loops=True):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n - 4, (e,), generator=gen)  # the last 4 nodes have no out-edges
    dst = torch.randint(0, n - 3, (e,), generator=gen)  # ... and the last 3 no in-edges: isolated
    if not self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    ei = torch.unique(torch.stack([src, dst]), dim=1)
    w = torch.rand(ei.size(1), generator=gen) + 0.1 if weighted else None
    return gkdfast.Graph(ei, num_nodes=n, edge_weight=w)


def _trained_bn(model, x, g):
    """BatchNorm with non-trivial running statistics (a few train-mode forwards)."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x, g)
    return model.eval()


MODELS = [
    ("gcn", lambda f, bn: GCN(f, 16, 5, num_layers=3, batch_norm=bn)),
    ("gcn-narrow", lambda f, bn: GCN(f, 4, 3, batch_norm=bn)),  # out < in: transform before aggregating
    ("sage", lambda f, bn: SAGE(f, 16, 5, num_layers=3, batch_norm=bn)),
    ("sage-narrow", lambda f, bn: SAGE(f, 4, 3, batch_norm=bn)),
    ("sage-max", lambda f, bn: SAGE(f, 16, 5, batch_norm=bn, aggr="max")),
    ("sage-sum", lambda f, bn: SAGE(f, 16, 5, batch_norm=bn, aggr="sum")),
    # DGL's "gcn" aggregator (the CPF teacher): wide and narrow (transform before aggregating)
    ("sage-gcn", lambda f, bn: SAGE(f, 16, 5, batch_norm=bn, aggr="gcn")),
    ("sage-gcn-narrow", lambda f, bn: SAGE(f, 4, 3, batch_norm=bn, aggr="gcn")),
    ("gin-narrow", lambda f, bn: GIN(f, 4, 3, batch_norm=bn, eps=0.3)),
    ("gin", lambda f, bn: GIN(f, 16, 5, batch_norm=bn, eps=0.3)),
    ("gat", lambda f, bn: GAT(f, 16, 5, heads=4, batch_norm=bn)),
    ("gat-3", lambda f, bn: GAT(f, 8, 5, num_layers=3, heads=2, out_heads=3, batch_norm=bn)),
    ("mlp", lambda f, bn: MLP(f, 16, 5, batch_norm=bn)),
]


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("name,make", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("chunk", [5, 1000])
def test_matches_full_forward(name, make, bn, chunk):
    torch.manual_seed(0)
    g = _graph(weighted=name.startswith(("gcn", "gin")))
    x = torch.randn(g.num_nodes, 12)
    model = _trained_bn(make(12, bn), x, g)
    with torch.no_grad():
        ref_logits, ref_hidden = model(x, g, return_hidden=True)
    logits, hidden = layerwise_inference(model, x, g, chunk_rows=chunk, progress=False)
    assert logits.shape == ref_logits.shape and hidden.shape == ref_hidden.shape
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-4)
    assert not model.training


def test_gcn_uses_full_graph_degrees():
    """A chunk's rows see neighbours outside the chunk with their *global* degree."""
    torch.manual_seed(1)
    g = _graph(n=40, e=300, seed=3)
    x = torch.randn(40, 6)
    model = GCN(6, 8, 2).eval()
    ref = model(x, g)
    for chunk in (1, 3, 7, 39, 40):
        torch.testing.assert_close(layerwise_inference(model, x, g, chunk_rows=chunk, progress=False)[0],
                                   ref, atol=1e-5, rtol=1e-4)


def test_memory_mapped_outputs(tmp_path):
    torch.manual_seed(2)
    g = _graph()
    x = torch.randn(g.num_nodes, 12)
    model = SAGE(12, 16, 5, num_layers=4).eval()
    ref_logits, ref_hidden = model(x, g, return_hidden=True)
    logits, hidden = layerwise_inference(model, x, g, chunk_rows=6, out_dir=str(tmp_path), progress=False)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-4)
    # Only the results remain, as raw row-major float32 files.
    assert sorted(os.listdir(tmp_path)) == ["hidden.f32", "logits.f32"]
    raw = torch.from_file(str(tmp_path / "logits.f32"), size=ref_logits.numel(), dtype=torch.float32)
    torch.testing.assert_close(raw.view_as(ref_logits), ref_logits, atol=1e-5, rtol=1e-4)


def test_one_layer_hidden_is_x(tmp_path):
    g = _graph()
    x = torch.randn(g.num_nodes, 12)
    model = GCN(12, 16, 5, num_layers=1).eval()
    logits, hidden = layerwise_inference(model, x, g, chunk_rows=8, out_dir=str(tmp_path), progress=False)
    torch.testing.assert_close(logits, model(x, g), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hidden, x)
    assert sorted(os.listdir(tmp_path)) == ["hidden.f32", "logits.f32"]


def test_graph_without_edges_and_progress(capsys):
    g = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), num_nodes=9)
    x = torch.randn(9, 4)
    for model in (GCN(4, 8, 3).eval(), SAGE(4, 8, 3).eval(), GAT(4, 8, 3, heads=2).eval(), GIN(4, 8, 3).eval()):
        torch.testing.assert_close(layerwise_inference(model, x, g, chunk_rows=4)[0], model(x, g),
                                   atol=1e-5, rtol=1e-4)


def test_restores_training_mode():
    g = _graph()
    model = SAGE(12, 16, 5).train()
    layerwise_inference(model, torch.randn(g.num_nodes, 12), g, chunk_rows=10, progress=False)
    assert model.training


def test_bad_input():
    g = _graph()
    x = torch.randn(g.num_nodes, 12)
    with pytest.raises(TypeError, match="gkdfast.nn model"):
        layerwise_inference(torch.nn.Linear(12, 3), x, g)
    with pytest.raises(ValueError, match="chunk_rows"):
        layerwise_inference(SAGE(12, 8, 3), x, g, chunk_rows=0)
    with pytest.raises(ValueError, match=r"x must be \[N, 12\]"):
        layerwise_inference(SAGE(12, 8, 3), torch.randn(g.num_nodes, 5), g)
    with pytest.raises(ValueError, match="graph has"):
        layerwise_inference(SAGE(12, 8, 3), torch.randn(3, 12), g)
    with pytest.raises(TypeError, match="gkdfast.Graph is required"):
        layerwise_inference(SAGE(12, 8, 3), x, None)
    with pytest.raises(TypeError, match=r"float32 models.*torch.float64.*model.float\(\)"):
        layerwise_inference(SAGE(12, 8, 3).double(), x, g)


def test_int32_csr_graph():
    """Large graphs come with int32 CSR indices (gkdfast.data.dcsbm)."""
    torch.manual_seed(3)
    g = _graph(weighted=True)
    g32 = g.to(index_dtype=torch.int32)
    assert g32.rowptr.dtype == torch.int32
    x = torch.randn(g.num_nodes, 12)
    for model in (GCN(12, 16, 5).eval(), SAGE(12, 16, 5).eval(), GAT(12, 16, 5, heads=2).eval()):
        torch.testing.assert_close(layerwise_inference(model, x, g32, chunk_rows=7, progress=False)[0],
                                   model(x, g), atol=1e-5, rtol=1e-4)
