"""The three ways a gkdfast.nn model computes its output agree for every layer option: the full-graph
forward, layer-wise inference (row blocks of the whole graph) and the sampled-block forward at full
fan-out.  Each path implements the layers' aggregation separately; this sweep is what caught
``SAGE(aggr="gcn")`` taking a minimum in layer-wise inference and raising on blocks."""
import itertools

import pytest
import torch

import gkdfast
from gkdfast.nn.layerwise import layerwise_inference
from gkdfast.sampling import sample_blocks

CONFIGS = [("gcn", {}), ("gcn", {"normalize": False}), ("gat", {"heads": 2}), ("gat", {"heads": 2, "out_heads": 2}),
           ("gin", {}), ("gin", {"train_eps": True, "eps": 0.5}), ("mlp", {})] + \
          [("sage", {"aggr": a}) for a in ("mean", "sum", "max", "min", "gcn")]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CONFIGS])
def test_full_layerwise_and_block_forward_agree(name, kw, weighted):
    torch.manual_seed(0)
    n = 60
    ei = torch.randint(0, n, (2, 300))
    g = gkdfast.Graph(ei, n, edge_weight=torch.rand(300) + 0.1 if weighted else None)
    x = torch.randn(n, 20)
    seeds = torch.arange(0, n, 3)
    max_deg = int((g.rowptr[1:] - g.rowptr[:-1]).max())
    for hidden, layers, bn in itertools.product((8, 32), (1, 3), (False, True)):  # 8 < 20 < 32: both orders
        model = gkdfast.nn.build_model(name, 20, hidden, 4, num_layers=layers, batch_norm=bn, **kw)
        if bn:  # running statistics that are not the identity
            model.train()(x, g)
        model.eval()
        full = model(x, g)
        rows, _ = layerwise_inference(model, x, g, progress=False, chunk_rows=7)
        torch.testing.assert_close(rows, full, atol=2e-5, rtol=1e-4, msg=f"layerwise {hidden} {layers} {bn}")
        n_id, blocks = sample_blocks(g, seeds, [max_deg + 1] * layers, seed=0)
        torch.testing.assert_close(model.forward_blocks(x[n_id], blocks), full[seeds], atol=2e-5, rtol=1e-4,
                                   msg=f"blocks {hidden} {layers} {bn}")
