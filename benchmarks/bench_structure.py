"""Structure-loss benchmarks: fused LSP vs gather-based LSP, tiled GSP vs dense GSP, Gram-path RSD.

Runner:  ``python benchmarks/bench_structure.py [--out DIR] [--parts lsp gsp gram]``
pytest:  ``pytest benchmarks/bench_structure.py --benchmark-only``
``GKDFAST_BENCH_SMALL=1`` switches every part to tiny sizes (smoke runs).

What is measured (forward + backward, float32, CPU unless CUDA is available and --device cuda):

* LSP on a power-law graph (default E = 4M, d = 128): gkdfast.losses.lsp vs the reference
  implementation, which gathers per-edge rows (E x d) as the public repositories do.
  Time and peak memory (RSS delta on CPU, ``max_memory_allocated`` on CUDA).  Targets: >= 3x
  faster, >= 10x less peak memory.
* GSP rbf/kl for N = 4k ... 100k, d = 128: tiled kernel vs the dense N x N reference where it fits.
  Tile throughput = 2 N^2 (d_s + d_t) flop (the dot tiles, forward) / forward time, reported as a
  fraction of torch.matmul's GFLOP/s measured in the same run.
* RSD (gsp linear/mse, Gram path) at N = 1e6, d = 128.

Prints a table; writes structure.json and structure.png under --out.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")

LSP_SIZE = (2_000, 20_000, 32) if SMALL else (200_000, 4_000_000, 128)  # nodes, edges, d
GSP_NS = [500, 1_000] if SMALL else [4_000, 10_000, 20_000, 50_000, 100_000]
GSP_D = 16 if SMALL else 128
NAIVE_MAX_N = 1_000 if SMALL else 10_000  # dense reference: ~6 N x N float32 matrices + autograd
GRAM_N = 10_000 if SMALL else 1_000_000


# ------------------------------------------------------------------------------------- memory
measure = _report.measure_step  # (median ms, peak extra MiB) of fn()


def fwd_bwd(loss_fn, *leaves):
    def run():
        for x in leaves:
            x.grad = None
        loss_fn().backward()
    return run


# ------------------------------------------------------------------------------------- parts
def lsp_inputs(device):
    from gkdfast.data import power_law_graph

    n, e, d = LSP_SIZE
    g = power_law_graph(n, e, seed=0, directed=True).to(device)
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(n, d, generator=gen).to(device).requires_grad_()
    t = torch.randn(n, 2 * d, generator=gen).to(device)
    g.transpose_csr()  # built once and cached by the Graph in real training too
    return g, s, t


def bench_lsp(device, repeats, max_seconds, log=print):
    import gkdfast
    from gkdfast.reference import structure as ref

    g, s, t = lsp_inputs(device)
    size = f"N={g.num_nodes} E={g.num_edges} d={s.size(1)}"
    rows = []
    for impl, fn in (("gkdfast", lambda: gkdfast.losses.lsp(g, s, t, kernel="rbf", gamma=0.01)),
                     ("gather (public-code style)", lambda: ref.lsp(g, s, t, "rbf", 0.01, 1.0, "mean"))):
        try:
            ms, mib = measure(fwd_bwd(fn, s), device, repeats, max_seconds)
        except RuntimeError as exc:  # out of memory
            ms, mib = None, None
            log(f"  {impl}: failed ({str(exc).splitlines()[0]})")
        rows.append(dict(size=size, case="lsp rbf fwd+bwd", impl=impl, ms=ms, peak_mib=mib))
        log(f"  lsp {impl}: {ms} ms, peak {mib} MiB")
    return rows


GEMM_N = 1024 if SMALL else 4096


def matmul_gflops(device, d=GSP_D, n=GEMM_N):
    a = torch.randn(n, d, device=device)
    b = torch.randn(n, d, device=device)

    def run():
        torch.mm(a, b.t())
        if device.type == "cuda":
            torch.cuda.synchronize()

    ms = _report.time_fn(run, repeats=5, warmup=1)
    return 2.0 * n * n * d / (ms * 1e-3) / 1e9


def bench_gsp(device, repeats, max_seconds, log=print):
    import gkdfast
    from gkdfast.reference import structure as ref

    gemm = matmul_gflops(device)
    log(f"  torch.matmul [{GEMM_N} x {GSP_D}] @ [{GSP_D} x {GEMM_N}]: {gemm:.1f} GFLOP/s")
    rows = []
    for n in GSP_NS:
        gen = torch.Generator().manual_seed(n)
        s = torch.randn(n, GSP_D, generator=gen).mul_(0.1).to(device).requires_grad_()
        t = torch.randn(n, GSP_D, generator=gen).mul_(0.1).to(device)
        size = f"N={n} d={GSP_D}"
        flop = 2.0 * n * n * (s.size(1) + t.size(1))
        fwd = lambda: gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.5)  # noqa: E731
        with torch.no_grad():  # warm: a cold first call (lazy kernel loading, cuBLAS set-up) is not the tiles' speed
            fwd_ms = _report.time_fn(fwd, repeats=max(3, repeats), warmup=1, max_seconds=max_seconds)
        tile_gflops = flop / (fwd_ms * 1e-3) / 1e9
        ms, mib = measure(fwd_bwd(fwd, s), device, repeats, max_seconds)
        rows.append(dict(size=size, case="gsp rbf/kl fwd+bwd", impl="gkdfast", ms=ms, peak_mib=mib,
                         fwd_ms=fwd_ms, tile_gflops=tile_gflops, gemm_gflops=gemm,
                         tile_frac=tile_gflops / gemm))
        log(f"  gsp N={n}: fwd {fwd_ms:.1f} ms ({tile_gflops:.1f} GFLOP/s = {100 * tile_gflops / gemm:.0f}% of "
            f"matmul), fwd+bwd {ms:.1f} ms, peak {mib:.1f} MiB")
        if n <= NAIVE_MAX_N:
            naive = lambda: ref.gsp(s, t, "rbf", "kl", 1.0, 0.5)  # noqa: E731
            try:
                nms, nmib = measure(fwd_bwd(naive, s), device, repeats, max_seconds)
            except RuntimeError as exc:
                nms = nmib = None
                log(f"  naive N={n}: failed ({str(exc).splitlines()[0]})")
        else:
            nms = nmib = None
        rows.append(dict(size=size, case="gsp rbf/kl fwd+bwd", impl="dense N x N", ms=nms, peak_mib=nmib,
                         note=None if n <= NAIVE_MAX_N else f"skipped (needs ~{6 * 4 * n * n / 2**30:.0f} GiB)"))
    return rows


def bench_gram(device, repeats, max_seconds, log=print):
    import gkdfast

    n, d = GRAM_N, 128 if not SMALL else 32
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(n, d, generator=gen).to(device).requires_grad_()
    t = torch.randn(n, 2 * d, generator=gen).to(device)
    ms, mib = measure(fwd_bwd(lambda: gkdfast.losses.rsd(s, t), s), device, max(1, repeats // 2), max_seconds)
    log(f"  rsd (gram path) N={n}: {ms:.1f} ms, peak {mib:.1f} MiB")
    return [dict(size=f"N={n} d={d}/{2 * d}", case="rsd linear/mse fwd+bwd", impl="gkdfast", ms=ms, peak_mib=mib)]


PARTS = {"lsp": bench_lsp, "gsp": bench_gsp, "gram": bench_gram}


def check_targets(rows):
    out = []
    by = {(r["size"], r["case"], r["impl"]): r for r in rows}
    for r in rows:
        if r["impl"] != "gkdfast" or not r.get("ms"):
            continue
        if r["case"].startswith("lsp"):
            peer = by.get((r["size"], r["case"], "gather (public-code style)"))
            if peer and peer.get("ms"):
                out.append(dict(what=f"lsp speedup {r['size']}", value=peer["ms"] / r["ms"], target=3.0))
                if r.get("peak_mib") and peer.get("peak_mib"):
                    out.append(dict(what=f"lsp memory ratio {r['size']}",
                                    value=peer["peak_mib"] / max(r["peak_mib"], 1e-3), target=10.0))
        if r["case"].startswith("gsp"):
            peer = by.get((r["size"], r["case"], "dense N x N"))
            if peer and peer.get("ms"):
                out.append(dict(what=f"gsp speedup vs dense {r['size']}", value=peer["ms"] / r["ms"], target=2.0))
            out.append(dict(what=f"gsp tile throughput / matmul {r['size']}", value=r["tile_frac"], target=0.5))
    for t in out:
        t["met"] = bool(t["value"] >= t["target"])
    return out


# ------------------------------------------------------------------------------------- pytest-benchmark
try:
    import pytest

    @pytest.mark.parametrize("impl", ["gkdfast", "gather"])
    def test_lsp(benchmark, impl):
        import gkdfast
        from gkdfast.reference import structure as ref

        g, s, t = lsp_inputs(torch.device("cpu"))
        fn = (lambda: gkdfast.losses.lsp(g, s, t, kernel="rbf", gamma=0.01)) if impl == "gkdfast" else \
            (lambda: ref.lsp(g, s, t, "rbf", 0.01, 1.0, "mean"))
        benchmark.pedantic(fwd_bwd(fn, s), rounds=3, warmup_rounds=1, iterations=1)

    @pytest.mark.parametrize("n", GSP_NS[:2])
    def test_gsp_rbf_kl(benchmark, n):
        import gkdfast

        s = torch.randn(n, GSP_D).mul_(0.1).requires_grad_()
        t = torch.randn(n, GSP_D).mul_(0.1)
        benchmark.pedantic(fwd_bwd(lambda: gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.5), s),
                           rounds=2, warmup_rounds=0, iterations=1)
except ImportError:  # pragma: no cover
    pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench-out", help="directory for structure.json and structure.png")
    p.add_argument("--parts", nargs="*", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2 if SMALL else 3)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    import gkdfast

    print(f"backends: lsp={gkdfast.explain('lsp', device, torch.float32)['chosen']} "
          f"gsp_tiled={gkdfast.explain('gsp_tiled', device, torch.float32)['chosen']}   "
          f"threads: {torch.get_num_threads()}   small: {SMALL}")
    rows = []
    for part in args.parts:
        print(f"[{part}]")
        rows += PARTS[part](device, args.repeats, args.max_seconds)
    _report.add_ratios(rows)
    print(_report.format_table(rows, extra_cols=("peak_mib", "tile_gflops", "gemm_gflops"),
                               title="\nratio = impl time / gkdfast time (>1: gkdfast faster); peak_mib: extra memory"))
    targets = check_targets(rows)
    if targets:
        print("\ntargets:")
        for t in targets:
            print(f"  {t['what']:<52} {t['value']:.2f} (target >= {t['target']}) {'ok' if t['met'] else 'MISSED'}")
    os.makedirs(args.out, exist_ok=True)
    js = _report.write_json(rows, os.path.join(args.out, "structure.json"), benchmark="structure", small=SMALL,
                            device=str(device), targets=targets)
    png = _report.bar_chart(rows, os.path.join(args.out, "structure.png"), title="structure losses (median ms)")
    print(f"\nwrote {js}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
