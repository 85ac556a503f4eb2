"""Mini-batch (neighbour-sampled) training on a bag-of-words graph: one epoch of ``fit_sampled`` with
the batches' feature rows gathered dense (``SPARSE_DENSITY = 0``) vs sliced as sparse CSR rows that
the first layer multiplies as they are.  Default: Facebook (22,470 x 4,714, 0.3 % non-zeros),
SAGE(64) and GCN(64), fan-outs (15, 10), 1,024 seeds per batch, one thread.

    python scripts/sampled_bow_time.py [DATA_DIR]      # default ../shared/data/facebook_page_page
"""
import os
import sys
import time

import torch

import gkdfast
from gkdfast.data import load
from gkdfast.nn import sparse_input
from gkdfast.sampling import NeighborLoader, fit_sampled
from gkdfast.sampling.train import batch_features

torch.set_num_threads(1)
here = os.path.dirname(os.path.abspath(__file__))
d = load(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "facebook_page_page"))
C = int(d.y.max()) + 1
d.train_mask = torch.ones_like(d.train_mask)  # every node a seed: one epoch = N / 1,024 batches
print(d.x.shape, "nnz %.4f" % (float(torch.count_nonzero(d.x)) / d.x.numel()))
batch = next(iter(NeighborLoader(d.graph, torch.arange(1024), [15, 10], batch_size=1024, shuffle=False)))
for name in ("sage", "gcn"):
    for mode in ("dense", "sparse"):
        sparse_input.SPARSE_DENSITY = 0.05 if mode == "sparse" else 0.0
        sparse_input._CACHE.clear()
        model = gkdfast.nn.build_model(name, d.x.size(1), 64, C)
        rows = batch_features(model, d.x, batch.n_id)
        size = (rows.values().numel() * 4 + rows.col_indices().numel() * 8 if rows.layout == torch.sparse_csr
                else rows.numel() * 4)
        torch.manual_seed(0)
        t = time.perf_counter()
        fit_sampled(model, d, fanouts=(15, 10), batch_size=1024, epochs=1, progress=False)
        print(f"{name}(64) {mode:6s} epoch {time.perf_counter() - t:6.1f} s, one batch's feature rows "
              f"({batch.n_id.numel():,} nodes) {size / 2**20:7.1f} MiB", flush=True)
