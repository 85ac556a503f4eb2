"""Control: the condensation's starting point (the same random training nodes per class, their real induced
subgraph, real features) scored like a condensed graph (3 GCNs, seeds s*100+r)."""
import os, statistics, sys, torch
from gkdfast.data import load
from gkdfast.graph import Graph
from gkdfast.condense import train_and_test, prepare_features, class_counts, synthetic_size
from gkdfast.condense.synthetic import synthetic_labels
from gkdfast.condense.condenser import sparse_if_mostly_zero
ratio = float(sys.argv[1])
d = load(os.environ.get("GKDFAST_DATA", "../shared/data") + "/planetoid", name="cora")
xf = prepare_features(d.x)
x = sparse_if_mostly_zero(xf)
tr = d.train_mask.nonzero().flatten()
n = synthetic_size(ratio, d.num_nodes, d.num_classes, tr.numel())
counts = class_counts(d.y[tr], d.num_classes, n)
per_seed = []
for s in range(5):
    gen = torch.Generator().manual_seed(s)
    rows = []
    for c, k in enumerate(counts):  # the same draw as gkdfast.condense.synthetic.initial_features
        idx = tr[d.y[tr] == c]
        rows.append(idx[torch.randperm(idx.numel(), generator=gen)[:k]])
    nodes = torch.cat(rows)
    pos = torch.full((d.num_nodes,), -1); pos[nodes] = torch.arange(n)
    ei = d.graph.edge_index
    keep = (pos[ei[0]] >= 0) & (pos[ei[1]] >= 0)
    g = Graph(pos[ei[:, keep]], n)
    accs = [train_and_test(xf[nodes], g, synthetic_labels(counts), torch.arange(n), d, x, seed=s * 100 + r).test_acc
            for r in range(3)]
    per_seed.append(statistics.fmean(accs))
    print(s, int(keep.sum()), "induced edges", [round(100 * a, 2) for a in accs], flush=True)
print("mean", round(100 * statistics.fmean(per_seed), 2), "std", round(100 * statistics.pstdev(per_seed), 2))
