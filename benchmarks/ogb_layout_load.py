"""Loading a graph from the OGB node-property layout at ogbn-products' size: time and peak memory.

    python benchmarks/ogb_layout_load.py write DIR [--nodes 2.45e6]   # a products-shaped OGB folder
    python benchmarks/ogb_layout_load.py load DIR                      # one load, this process: seconds, peak RSS

``write`` draws ``gkdfast.data.dcsbm(num_nodes=N)`` (products' shape: 47 classes, 100 features,
average degree 51) and writes it as OGB ships ogbn-products: ``raw/edge.csv.gz`` with each undirected
pair once (``src,dst`` lines), ``raw/node-feat.csv.gz`` (100 comma-separated floats per row, 6
decimals), ``raw/node-label.csv.gz``, ``raw/num-node-list.csv.gz``, ``raw/num-edge-list.csv.gz`` and
``split/sales_ranking/{train,valid,test}.csv.gz`` (the graph's split).  The text is formatted by the
vectorised formatters of ``benchmarks/bench_text_tables.py``; gzip level 1 (the load's cost is the
parse, not the write).  ``load`` runs ``gkdfast.data.load(DIR)`` once and prints one JSON line:
seconds, peak RSS (``ru_maxrss``) and the loaded sizes, so a run in a fresh process per reader (this
checkout, another one) compares readers.  docs/data-and-results.md has the figures.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _gz(path: str, chunks) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        for chunk in chunks:
            f.write(chunk)


def write(out: str, nodes: int, seed: int = 0) -> None:
    import torch

    from bench_text_tables import format_fixed, format_ints
    from gkdfast.data import dcsbm

    d = dcsbm(num_nodes=nodes, seed=seed, progress=True)
    raw = os.path.join(out, "raw")
    split = os.path.join(out, "split", "sales_ranking")
    os.makedirs(raw, exist_ok=True)
    os.makedirs(split, exist_ok=True)
    rowptr = d.graph.rowptr.long()
    col = d.graph.col.long()
    dst = torch.repeat_interleave(torch.arange(nodes), rowptr[1:] - rowptr[:-1])
    keep = col < dst  # each undirected pair once, as ogbn-products ships it
    src_once, dst_once = col[keep].numpy(), dst[keep].numpy()
    m = src_once.size

    def edge_chunks(step=1 << 22):
        for a in range(0, m, step):
            pairs = np.stack([src_once[a:a + step], dst_once[a:a + step]], 1).reshape(-1)
            seps = np.tile(np.array([ord(","), ord("\n")], dtype=np.uint8), pairs.size // 2)
            yield format_ints(pairs, seps)

    def feature_chunks(rows=1 << 15):
        x = d.x.numpy()
        f = x.shape[1]
        for a in range(0, nodes, rows):
            block = x[a:a + rows].reshape(-1).astype(np.float64)
            seps = np.full(block.size, ord(","), dtype=np.uint8)
            seps[f - 1::f] = ord("\n")
            yield format_fixed(block, seps)

    def lines(values):
        v = np.asarray(values, dtype=np.int64)
        yield format_ints(v, np.full(v.size, ord("\n"), dtype=np.uint8)) if v.size else b""

    _gz(os.path.join(raw, "edge.csv.gz"), edge_chunks())
    _gz(os.path.join(raw, "node-feat.csv.gz"), feature_chunks())
    _gz(os.path.join(raw, "node-label.csv.gz"), lines(d.y.numpy()))
    _gz(os.path.join(raw, "num-node-list.csv.gz"), lines([nodes]))
    _gz(os.path.join(raw, "num-edge-list.csv.gz"), lines([m]))
    for part, mask in (("train", d.train_mask), ("valid", d.val_mask), ("test", d.test_mask)):
        _gz(os.path.join(split, f"{part}.csv.gz"), lines(mask.nonzero().view(-1).numpy()))
    sizes = {name: os.path.getsize(os.path.join(raw, name)) for name in sorted(os.listdir(raw))}
    print(json.dumps({"nodes": nodes, "undirected_pairs": int(m), "bytes": sizes}))


def load(path: str) -> None:
    from gkdfast.data import load as load_data

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    d = load_data(path)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": round(secs, 2), "peak_rss_gib": round(peak / 2**20, 3),
                      "rss_before_gib": round(base / 2**20, 3), "nodes": d.num_nodes,
                      "directed_edges": int(d.graph.num_edges), "features": list(d.x.shape)}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a products-shaped OGB folder")
    w.add_argument("dir")
    w.add_argument("--nodes", type=float, default=2.45e6)
    w.add_argument("--seed", type=int, default=0)
    ld = sub.add_parser("load", help="load it once; print seconds and peak RSS as JSON")
    ld.add_argument("dir")
    args = p.parse_args(argv)
    if args.cmd == "write":
        write(args.dir, int(args.nodes), args.seed)
    else:
        load(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
