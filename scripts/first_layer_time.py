"""Epoch time (forward + backward + Adam) of an MLP(128), a GCN(64), a GAT(64, 8 heads, input dropout
0.6), a SAGE(64) (mean and DGL's "gcn" aggregator) and a GIN(64) on a bag-of-words graph (default: Facebook, 22,470 x 4,714 features), first layer through the
cached CSR copy vs dense (``SPARSE_DENSITY = 0``).  One thread.

    python scripts/first_layer_time.py [DATA_DIR [MODELS]]   # default ../shared/data/facebook_page_page, all
    python scripts/first_layer_time.py ../shared/data/facebook_page_page sage,gin
    GKDFAST_KEEP_FREED_MEMORY=1 python scripts/first_layer_time.py ...   # freed memory kept (gkdfast.cpu_memory)
"""
import os
import sys
import time

import torch

import gkdfast
from gkdfast.data import load
from gkdfast.nn import sparse_input

torch.set_num_threads(1)
if os.environ.get("GKDFAST_KEEP_FREED_MEMORY") == "1":  # as the gkdfast command does by default
    from gkdfast.cpu_memory import keep_freed_memory

    print("freed memory kept:", keep_freed_memory())
here = os.path.dirname(os.path.abspath(__file__))
d = load(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data", "facebook_page_page"))
C = int(d.y.max()) + 1
print(d.x.shape, "nnz %.4f" % (float(torch.count_nonzero(d.x)) / d.x.numel()))
CASES = (("mlp", 128, {}), ("gcn", 64, {}),
         ("gat", 64, dict(heads=8, dropout=0.6, input_dropout=0.6, attn_dropout=0.6)),  # the GAT paper's teacher
         ("sage", 64, {}), ("sage", 64, dict(aggr="gcn")), ("gin", 64, {}))
only = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
for name, hid, kw in CASES:
    if only is not None and name not in only:
        continue
    for mode in ("dense", "sparse"):
        sparse_input.SPARSE_DENSITY = 0.05 if mode == "sparse" else 0.0
        sparse_input._CACHE.clear()
        torch.manual_seed(0)
        m = gkdfast.nn.build_model(name, d.x.size(1), hid, C, **kw).train()
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        times = []
        for ep in range(6):
            t = time.perf_counter()
            opt.zero_grad()
            out = m(d.x, d.graph)
            torch.nn.functional.cross_entropy(out[d.train_mask], d.y[d.train_mask]).backward()
            opt.step()
            times.append(time.perf_counter() - t)
        label = f"{name}({hid}{', ' + kw['aggr'] if 'aggr' in kw else ''})"
        print(f"{label} {mode:6s} first epoch {times[0]*1e3:7.1f} ms, median of next 5 {sorted(times[1:])[2]*1e3:7.1f} ms", flush=True)
