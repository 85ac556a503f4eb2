"""Calibration check of gkdfast.data.dcsbm: how much a GNN teacher gains over an MLP, and how close
a feature-only model can get to the teacher when it is given labels everywhere.

Trains, full batch on one graph (Adam, lr 0.01, dropout 0.5, the epoch with the best validation
accuracy out of --epochs):

* ``sage``      2-layer GraphSAGE (mean) on the training labels (the teacher);
* ``mlp``       2-layer MLP on the training labels (the student without KD);
* ``mlp_all``   2-layer MLP on the labels of every node outside a held-out half of the test nodes
                (a proxy for GLNN, whose student sees the teacher's soft labels on every node).

All three are scored on that held-out half.  Example (about 4 minutes on one busy core)::

    python scripts/calibrate_dcsbm.py --nodes 100000 --epochs 200
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from gkdfast.data import dcsbm
from gkdfast.nn import MLP, SAGE


def train(model, x, graph, y, train_idx, val_idx, test_idx, epochs, lr=0.01, weight_decay=0.0):
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_val, best_test = -1.0, 0.0

    def run(train_mode):
        model.train(train_mode)
        return model(x, graph) if graph is not None else model(x)

    for _ in range(epochs):
        opt.zero_grad()
        out = run(True)
        F.cross_entropy(out[train_idx], y[train_idx]).backward()
        opt.step()
        with torch.no_grad():
            pred = run(False).argmax(1)
        val = float((pred[val_idx] == y[val_idx]).float().mean())
        if val > best_val:
            best_val, best_test = val, float((pred[test_idx] == y[test_idx]).float().mean())
    return best_test


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--avg-degree", type=float, default=51)
    p.add_argument("--features", type=int, default=100)
    p.add_argument("--classes", type=int, default=47)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="another dcsbm argument, e.g. --set mean_norm=3 --set homophily=0.7")
    args = p.parse_args(argv)
    kw = {k: float(v) if "." in v else int(v) for k, v in (s.split("=", 1) for s in args.set)}
    t0 = time.time()
    d = dcsbm(num_nodes=args.nodes, avg_degree=args.avg_degree, feature_dim=args.features,
              num_classes=args.classes, seed=args.seed, **kw)
    gen_s = time.time() - t0
    torch.manual_seed(args.seed)
    test = d.test_mask.nonzero().flatten()
    test = test[torch.randperm(test.numel(), generator=torch.Generator().manual_seed(args.seed))]
    held, seen = test[: test.numel() // 2], test[test.numel() // 2:]
    tr, va = d.train_mask.nonzero().flatten(), d.val_mask.nonzero().flatten()
    all_idx = torch.cat([tr, seen])
    c, f = d.num_classes, d.num_features
    res = {"nodes": d.num_nodes, "edges": d.num_edges, "edge_homophily": round(d.extras["edge_homophily"], 4),
           "dcsbm": kw, "generate_s": round(gen_s, 1)}
    for name, model, graph, idx in (("sage", SAGE(f, args.hidden, c), d.graph, tr),
                                    ("mlp", MLP(f, args.hidden, c), None, tr),
                                    ("mlp_all", MLP(f, args.hidden, c), None, all_idx)):
        t = time.time()
        res[name] = round(train(model, d.x, graph, d.y, idx, va, held, args.epochs), 4)
        res[name + "_s"] = round(time.time() - t, 1)
    res["sage_minus_mlp"] = round(res["sage"] - res["mlp"], 4)
    res["sage_minus_mlp_all"] = round(res["sage"] - res["mlp_all"], 4)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
