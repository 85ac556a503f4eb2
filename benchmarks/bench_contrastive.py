"""Contrastive-loss benchmarks: exact all-N G-CRD vs the naive logits matrix, sampled-negative G-CRD at
N = 1e6, and Graph-MLP's ncontrast (sparse Â^hops, tiled / sampled denominator) vs the dense formulation.

Runner:  ``python benchmarks/bench_contrastive.py [--out DIR] [--parts crd sampled ncontrast] [--device cuda]``
pytest:  ``pytest benchmarks/bench_contrastive.py --benchmark-only``
``GKDFAST_BENCH_SMALL=1`` switches every part to tiny sizes (smoke runs).

What is measured (forward + backward w.r.t. every embedding, float32):

* crd all-N, N = 16k ... 100k, d = 256, τ = 0.075: ``gkdfast.losses.crd`` vs the naive version that
  G-CRD's public code uses (``F.cross_entropy(ẑS ẑTᵀ / τ, arange(N))``, an N x N logit matrix plus its
  softmax gradient), where it fits (N <= 32k by default).  Time and peak extra memory (CUDA allocator
  peak, or sampled process RSS on CPU).  Targets: N = 100k with < 2 GiB extra; at N = 16k at least as
  fast as naive.
* crd sampled, K = 1024 negatives per row, N = 1e6, d = 256: target "seconds per step".
* ncontrast, τ = 1, hops = 2, d = 128 on the Facebook page-page graph (22,470 nodes, read from
  ``$GKDFAST_DATA/facebook_page_page`` or ``../shared/data``) and on a 1M-node power-law graph: exact
  all-N and sampled (K = 1024) denominators vs the dense Graph-MLP formulation (dense Â^hops computed
  once, outside the timed step, as Graph-MLP's ``get_A_r`` does; N x N cosine matrix per step) where
  it fits (N <= 12k by default).  Also the exact denominator alone, the symmetric ``gram_lse`` op
  (upper tiles: half the GEMMs) vs ``infonce(z, z)`` (every tile), on the same inputs.
* batch (Graph-MLP's training batches): ``ncontrast(graph, z_B, hops=2, nodes=batch)`` for B = 2,000
  nodes drawn per step (d = 256, Graph-MLP's width), the positives being the whole graph's Â² restricted
  to the batch, joined from the graph's CSR per step (never Â² or even Â), vs Graph-MLP's own batch step (dense
  Â² computed once, ``adj[batch][:, batch]`` and a dense B x B loss per step) where the dense Â²
  fits (N <= 12k), on a 10k-node power-law graph, Facebook, and power-law graphs of 1M and 2.45M
  nodes (ogbn-products' size: 61.9M undirected edges).  The per-step time includes building the
  batch's positives.  ``sum_deg2`` is Σ deg², the number of 2-paths, an upper bound on nnz(Â²) that
  says how large the whole Â² would be.

Prints a table; writes contrastive.json and contrastive.png under --out.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

import gkdfast  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")

CRD_NS = [1_000, 2_000] if SMALL else [16_384, 32_768, 65_536, 100_000]
CRD_D = 32 if SMALL else 256
NAIVE_MAX_N = 2_000 if SMALL else 32_768
SAMPLED = (20_000, 64) if SMALL else (1_000_000, 1024)  # N, K
NC_D = 16 if SMALL else 128
NC_K = 64 if SMALL else 1024
NC_HOPS = 2
SYNTH = (3_000, 15_000) if SMALL else (1_000_000, 10_000_000)  # nodes, undirected edges
DENSE_MAX_N = 3_000 if SMALL else 12_000
FACEBOOK_SMALL_N = 2_000  # smoke runs use the induced subgraph on the first nodes
BATCH_B, BATCH_D = (300, 16) if SMALL else (2_000, 256)
BATCH_GRAPHS = [(2_000, 10_000)] if SMALL else [(10_000, 50_000), (1_000_000, 10_000_000), (2_450_000, 61_900_000)]


# ------------------------------------------------------------------------------------- memory
measure = _report.measure_step  # (median ms, peak extra MiB of one step)


def _row(size, case, impl, ms=None, mib=None, note=None):
    return {"size": size, "case": case, "impl": impl, "ms": ms, "peak_mib": None if mib is None else round(mib, 1),
            "note": note}


# ------------------------------------------------------------------------------------- steps
def crd_step(s, t, **kw):
    def step():
        s.grad = t.grad = None
        gkdfast.losses.crd(s, t, **kw).backward()
    return step


def naive_crd_step(s, t, tau=0.075):
    target = torch.arange(s.size(0), device=s.device)

    def step():
        s.grad = t.grad = None
        logits = F.normalize(s, dim=1) @ F.normalize(t, dim=1).t() / tau
        F.cross_entropy(logits, target).backward()
    return step


def ncontrast_step(graph, z, **kw):
    def step():
        z.grad = None
        gkdfast.losses.ncontrast(graph, z, **kw).backward()
    return step


def batch_step(graph, z, hops=2, seed=0, dense_w=None, tau=1.0):
    """One Graph-MLP training batch: B nodes drawn uniformly with replacement (a new draw per step),
    z their embeddings.  gkdfast: ncontrast(nodes=batch), positives expanded from the sparse Â per
    step.  dense_w: Graph-MLP's own step instead, the dense Â^hops indexed by the batch."""
    gen = torch.Generator().manual_seed(seed)
    n, b = graph.num_nodes, z.size(0)
    eye = torch.eye(b, dtype=torch.bool, device=z.device)

    def step():
        z.grad = None
        nodes = torch.randint(n, (b,), generator=gen).to(z.device)
        if dense_w is None:
            gkdfast.losses.ncontrast(graph, z, tau=tau, hops=hops, nodes=nodes).backward()
            return
        w = dense_w[nodes][:, nodes].masked_fill(eye, 0)
        has = (w > 0).any(1)
        zn = F.normalize(z, dim=1)
        e = torch.exp(zn @ zn.t() / tau).masked_fill(eye, 0)
        (-torch.log((w * e).sum(1)[has] / e.sum(1)[has]).mean()).backward()
    return step


def denominator_step(z, symmetric, tau=1.0):
    """The exact all-N denominator alone, lse_i over j != i of cos(z_i, z_j) / tau: the symmetric
    gram_lse op (upper tiles only) vs infonce(z, z), which visits every tile."""
    def step():
        z.grad = None
        zn = F.normalize(z, dim=1)
        lse = (torch.ops.gkdfast.gram_lse(zn, 1.0 / tau, True) if symmetric
               else torch.ops.gkdfast.infonce(zn, zn, 1.0 / tau, -1, True, 0, 0)[1])
        lse.mean().backward()
    return step


def dense_graph_mlp_step(w_dense, z, tau=1.0):
    """Graph-MLP's formulation with our definition (j != i): dense W, N x N cosine matrix per step."""
    n = z.size(0)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    w = w_dense.masked_fill(eye, 0)
    has = (w > 0).any(1)

    def step():
        z.grad = None
        zn = F.normalize(z, dim=1)
        e = torch.exp(zn @ zn.t() / tau).masked_fill(eye, 0)
        ratio = (w * e).sum(1)[has] / e.sum(1)[has]
        (-torch.log(ratio).mean()).backward()
    return step


def dense_w(edge_index, n, hops, device):
    from gkdfast.reference.contrastive import gcn_adjacency_power_dense

    return gcn_adjacency_power_dense(edge_index.to(device), n, hops, dtype=torch.float32)


# ------------------------------------------------------------------------------------- data
def facebook_edges():
    from gkdfast.data import default_root

    path = os.path.join(default_root(), "facebook_page_page", "facebook_edges.csv")
    if not os.path.exists(path):
        return None, 0
    import numpy as np

    e = torch.from_numpy(np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64)).t()
    n = int(e.max()) + 1
    if SMALL:
        keep = (e < FACEBOOK_SMALL_N).all(0)
        e, n = e[:, keep], FACEBOOK_SMALL_N
    return torch.cat([e, e.flip(0)], 1), n


def synthetic_graph(n, m):
    try:
        from gkdfast.data import power_law_graph

        g = power_law_graph(n, 2 * m, seed=0)
        return g.edge_index, n
    except Exception:  # the data helper may be missing in a partial checkout
        gen = torch.Generator().manual_seed(0)
        e = torch.randint(0, n, (2, m), generator=gen)
        return torch.cat([e, e.flip(0)], 1), n


# ------------------------------------------------------------------------------------- parts
def part_crd(device, repeats, max_seconds):
    rows = []
    for n in CRD_NS:
        gen = torch.Generator().manual_seed(0)
        s = torch.randn(n, CRD_D, generator=gen).to(device).requires_grad_()
        t = torch.randn(n, CRD_D, generator=gen).to(device).requires_grad_()
        size = f"N={n}, d={CRD_D}"
        ms, mib = measure(crd_step(s, t), device, repeats, max_seconds)
        rows.append(_row(size, "crd all-N fwd+bwd", "gkdfast", ms, mib))
        if n <= NAIVE_MAX_N:
            ms, mib = measure(naive_crd_step(s, t), device, repeats, max_seconds)
            rows.append(_row(size, "crd all-N fwd+bwd", "naive_logits", ms, mib))
        else:
            rows.append(_row(size, "crd all-N fwd+bwd", "naive_logits", note=f"N x N logits skipped (N > {NAIVE_MAX_N})"))
        del s, t
    return rows


def part_sampled(device, repeats, max_seconds):
    n, k = SAMPLED
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(n, CRD_D, generator=gen).to(device).requires_grad_()
    t = torch.randn(n, CRD_D, generator=gen).to(device).requires_grad_()
    size = f"N={n}, d={CRD_D}"
    ms, mib = measure(crd_step(s, t, num_negatives=k, seed=0), device, repeats, max_seconds)
    rows = [_row(size, f"crd K={k} fwd+bwd", "gkdfast", ms, mib)]
    if device.type == "cuda":  # the deterministic mode's chunked backward instead of the atomicAdd kernel
        before = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            ms, mib = measure(crd_step(s, t, num_negatives=k, seed=0), device, repeats, max_seconds)
        finally:
            torch.use_deterministic_algorithms(before)
        rows.append(_row(size, f"crd K={k} fwd+bwd", "gkdfast, deterministic mode", ms, mib))
    return rows


def part_ncontrast(device, repeats, max_seconds):
    rows = []
    graphs = []
    fb, n_fb = facebook_edges()
    if fb is not None:
        graphs.append(("facebook", fb, n_fb))
    ei, n = synthetic_graph(*SYNTH)
    graphs.append(("power-law", ei, n))
    for name, ei, n in graphs:
        g = gkdfast.Graph(ei, num_nodes=n).to(device)
        z = torch.randn(n, NC_D, generator=torch.Generator().manual_seed(1)).to(device).requires_grad_()
        size = f"{name} N={n}, E={ei.size(1)}, d={NC_D}"
        hops = NC_HOPS
        t0 = time.perf_counter()
        try:
            gkdfast.losses.adjacency_power(g, hops)  # cached: built once, like Graph-MLP's get_A_r
        except ValueError as exc:  # power-law hubs can make Â^2 too dense for the default max_nnz
            rows.append(_row(size, f"ncontrast hops={hops}", "gkdfast", note=str(exc)[:90]))
            hops = 1
            t0 = time.perf_counter()
            gkdfast.losses.adjacency_power(g, hops)
        setup_ms = 1e3 * (time.perf_counter() - t0)
        case = f"ncontrast hops={hops}"
        if n <= 150_000 or SMALL or device.type == "cuda":
            ms, mib = measure(ncontrast_step(g, z, hops=hops), device, repeats, max_seconds)
            rows.append(_row(size, case + " all-N", "gkdfast", ms, mib, note=f"Â^{hops} build {setup_ms:.0f} ms"))
            for impl, sym in (("gkdfast", True), ("infonce(z,z)", False)):  # gkdfast = gram_lse
                ms, mib = measure(denominator_step(z, sym), device, repeats, max_seconds)
                rows.append(_row(size, "all-N denominator only", impl, ms, mib))
        if n <= DENSE_MAX_N:
            w = dense_w(ei, n, hops, device)
            ms, mib = measure(dense_graph_mlp_step(w, z), device, repeats, max_seconds)
            rows.append(_row(size, case + " all-N", "dense_graph_mlp", ms, mib))
            del w
        else:
            rows.append(_row(size, case + " all-N", "dense_graph_mlp", note=f"dense N x N skipped (N > {DENSE_MAX_N})"))
        ms, mib = measure(ncontrast_step(g, z, hops=hops, num_negatives=NC_K, seed=0), device, repeats,
                          max_seconds)
        rows.append(_row(size, case + f" K={NC_K}", "gkdfast", ms, mib))
    return rows


def part_batch(device, repeats, max_seconds):
    rows = []
    graphs = [("power-law", *synthetic_graph(*BATCH_GRAPHS[0]))]
    fb, n_fb = facebook_edges()
    if fb is not None:
        graphs.append(("facebook", fb, n_fb))
    graphs += [("power-law", *synthetic_graph(n, m)) for n, m in BATCH_GRAPHS[1:]]
    for name, ei, n in graphs:
        g = gkdfast.Graph(ei, num_nodes=n).to(device)
        del ei
        deg = (g.rowptr[1:] - g.rowptr[:-1]).double() + 1  # with the self-loop
        size = f"{name} N={n}, E={g.num_edges}, B={BATCH_B}, d={BATCH_D}"
        t0 = time.perf_counter()
        g.transpose_csr()  # the CSR by source, once per graph (cached; spmm's backward uses it too)
        note = f"transpose {1e3 * (time.perf_counter() - t0):.0f} ms; sum_deg2 {float((deg * deg).sum()):.3g}"
        z = torch.randn(BATCH_B, BATCH_D, generator=torch.Generator().manual_seed(1)).to(device).requires_grad_()
        ms, mib = measure(batch_step(g, z), device, repeats, max_seconds)
        rows.append(_row(size, "graph-mlp batch hops=2 fwd+bwd", "gkdfast", ms, mib, note=note))
        if n <= DENSE_MAX_N:
            w = dense_w(g.edge_index, n, 2, device)
            ms, mib = measure(batch_step(g, z, dense_w=w), device, repeats, max_seconds)
            rows.append(_row(size, "graph-mlp batch hops=2 fwd+bwd", "dense_graph_mlp", ms, mib,
                             note=f"dense Â² {n * n * 4 / 2**20:.0f} MiB, built once"))
            del w
        else:
            rows.append(_row(size, "graph-mlp batch hops=2 fwd+bwd", "dense_graph_mlp",
                             note=f"dense Â² would take {n * n * 4 / 2**30:.0f} GiB"))
        del g
    return rows


PARTS = {"crd": part_crd, "sampled": part_sampled, "ncontrast": part_ncontrast, "batch": part_batch}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=1 if SMALL else 3)
    ap.add_argument("--max-seconds", type=float, default=5.0 if SMALL else 120.0)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for p in args.parts:
        rows += PARTS[p](device, args.repeats, args.max_seconds)
    _report.add_ratios(rows, baseline="gkdfast")
    print(_report.format_table(rows, extra_cols=("peak_mib",),
                               title=f"contrastive losses on {device} (float32, fwd+bwd; ratio = impl / gkdfast)"))
    js = _report.write_json(rows, os.path.join(args.out, "contrastive.json"), device=str(device), small=SMALL)
    png = _report.bar_chart([r for r in rows if r.get("ms")], os.path.join(args.out, "contrastive.png"),
                            title="contrastive losses, fwd+bwd")
    print(f"wrote {js}" + (f" and {png}" if png else ""))
    return rows


# ------------------------------------------------------------------------------------- pytest-benchmark
def _bench_inputs(n, d):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=gen).requires_grad_(), torch.randn(n, d, generator=gen).requires_grad_()


def test_bench_crd_all_n(benchmark):
    s, t = _bench_inputs(CRD_NS[0], CRD_D)
    benchmark(crd_step(s, t))


def test_bench_crd_naive(benchmark):
    s, t = _bench_inputs(CRD_NS[0], CRD_D)
    benchmark(naive_crd_step(s, t))


def test_bench_crd_sampled(benchmark):
    s, t = _bench_inputs(SAMPLED[0] if SMALL else 100_000, CRD_D)
    benchmark(crd_step(s, t, num_negatives=SAMPLED[1], seed=0))


def _facebook_or_skip():
    """(edge_index, N) of Facebook; a skip locally, a failure under CI, when the data is missing."""
    ei, n = facebook_edges()
    if ei is None:
        if os.environ.get("CI") == "true":
            raise FileNotFoundError("facebook_page_page data not found (set GKDFAST_DATA)")
        import pytest

        pytest.skip("facebook_page_page data not found")
    return ei, n


def test_bench_ncontrast_facebook(benchmark):
    ei, n = _facebook_or_skip()
    g = gkdfast.Graph(ei, num_nodes=n)
    z = torch.randn(n, NC_D).requires_grad_()
    benchmark(ncontrast_step(g, z, hops=NC_HOPS, num_negatives=NC_K, seed=0))


def test_bench_graph_mlp_batch(benchmark):
    ei, n = synthetic_graph(*BATCH_GRAPHS[0])
    g = gkdfast.Graph(ei, num_nodes=n)
    benchmark(batch_step(g, torch.randn(BATCH_B, BATCH_D).requires_grad_()))


def test_bench_graph_mlp_batch_dense(benchmark):
    ei, n = synthetic_graph(*BATCH_GRAPHS[0])
    g = gkdfast.Graph(ei, num_nodes=n)
    benchmark(batch_step(g, torch.randn(BATCH_B, BATCH_D).requires_grad_(), dense_w=dense_w(ei, n, 2, "cpu")))


def _facebook_z():
    n = _facebook_or_skip()[1]
    return torch.randn(n, NC_D, generator=torch.Generator().manual_seed(1)).requires_grad_()


def test_bench_denominator_gram_lse(benchmark):
    benchmark(denominator_step(_facebook_z(), symmetric=True))


def test_bench_denominator_infonce(benchmark):
    benchmark(denominator_step(_facebook_z(), symmetric=False))


if __name__ == "__main__":
    main()
