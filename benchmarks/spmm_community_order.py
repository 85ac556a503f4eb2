"""spmm sum forward on the products-sized dcsbm graph in community order, against the time to stream
the E·d·4 bytes it gathers (same run, interleaved): the node-order lever of docs/spmm-perf.md.

The communities are the generator's planted classes (``data.y``); in real use any partition works
(a teacher's predicted classes, METIS or Louvain parts): ``GraphData.reorder("community", communities=...)``.

    python benchmarks/spmm_community_order.py [--nodes 2450000] [--dim 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2_450_000)
    p.add_argument("--edges", type=int, default=124_950_000, help="requested directed edges (dcsbm drops repeats)")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import gkdfast
    from gkdfast.data import dcsbm

    data = dcsbm(args.nodes, avg_degree=args.edges / args.nodes, num_classes=47, feature_dim=1, seed=0)
    x = torch.randn(args.nodes, args.dim)
    rows = []
    for order in ("none", "community"):
        if order == "none":
            g, xx = data.graph.to(index_dtype=torch.int32), x
        else:
            g, r = data.graph.reorder("community", communities=data.y)
            g, xx = g.to(index_dtype=torch.int32), r.permute(x)

        def run():
            with torch.no_grad():
                gkdfast.spmm(g, xx, "sum")

        res = _peers.stream_vs(run, g.num_edges * args.dim * 4, repeats=args.repeats)
        rows.append({"order": order, "index": "int32", "nodes": args.nodes, "edges": g.num_edges, "dim": args.dim,
                     "threads": args.threads, **res})
        print(f"order={order:<10} spmm {res['ms']:8.0f} ms  stream {res['stream_ms']:6.0f} ms "
              f"({res['stream_gbps']:.1f} GB/s)  ratio {res['ratio']:.2f}x", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
