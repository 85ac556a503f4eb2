"""Old vs new CUDA kernels against their peers, in one run: the numbers issue 13 asks for.

Runner (on a GPU machine; scripts/device_check.sh calls it)::

    python benchmarks/gpu_compare.py --device cuda --out OUT
    python benchmarks/gpu_compare.py --device cpu --small --out OUT   # smoke run of the script itself

For every case, gkdfast's new implementation ("fast": tensor-core tiles with fused epilogues,
cuSPARSE spmm, staged LSP) and the previous one (``GKDFAST_CUDA_IMPL=legacy``) are timed next to
the peer a user would otherwise run, forward + backward unless the case says fwd, float32, with
``torch.backends.cuda.matmul.allow_tf32`` off and (for the GEMM-based cases) on, the same setting on
both sides.  Cases and sizes (``--small`` shrinks them for a CPU smoke run):

=====================  ============================================  ===============================
case                   size                                           peer
=====================  ============================================  ===============================
spmm_sum_fwd           power-law 200k nodes / 4M edges, d = 128       torch CSR (cuSPARSE)
spmm_sum_fwdbwd        same                                           torch CSR autograd
spmm_mean_fwdbwd       same                                           PyG-style gather-scatter
spmm_max_fwdbwd        same                                           PyG-style gather-scatter
lsp_rbf_4M             200k nodes / 4M edges, d = 128 / 256           gather version (E x d rows)
gsp_rbf_kl_10k         N = 10k, d = 128                               dense N x N
gsp_rbf_kl_100k        N = 100k, d = 128                              none (dense needs ~240 GB)
crd_alln_32k           N = 32k, d = 128                               logits matrix + cross-entropy
ncontrast_gram_32k     N = 32k, d = 128 (gram_lse, exclude self)      dense masked logsumexp
matmul                 [N x d] @ [d x N], N = 10k                     (throughput reference)
=====================  ============================================  ===============================

Writes ``compare.json`` (every measurement) and ``summary.json`` under --out: a list of
``{case, gkdfast_ms, peer, peer_ms, ratio, tf32, legacy_ms, legacy_ratio, peak_mib, peer_peak_mib}``
with ``ratio = peer_ms / gkdfast_ms`` (> 1: gkdfast faster) and ``legacy_ratio = legacy_ms /
gkdfast_ms`` (> 1: the new kernel beats the old), and prints the table last.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers  # noqa: E402
import _report  # noqa: E402

import gkdfast  # noqa: E402
from gkdfast.reference import structure as ref_structure  # noqa: E402
from gkdfast.settings import cuda_impl  # noqa: E402  (GKDFAST_CUDA_IMPL for a block)

IMPLS = ("fast", "legacy")


@contextlib.contextmanager
def tf32(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def sizes(small: bool) -> Dict[str, tuple]:
    if small:
        return dict(spmm=(2_000, 20_000, 16), lsp=(2_000, 20_000, 16), gsp=(300, 700), gsp_d=16, crd=500, gram=500,
                    dim=16, matmul=512)
    return dict(spmm=(200_000, 4_000_000, 128), lsp=(200_000, 4_000_000, 128), gsp=(10_000, 100_000), gsp_d=128,
                crd=32_768, gram=32_768, dim=128, matmul=10_000)


class Runner:
    def __init__(self, device: torch.device, repeats: int, max_seconds: float, log=print):
        self.device, self.repeats, self.max_seconds, self.log = device, repeats, max_seconds, log
        self.rows: List[dict] = []

    def measure(self, case: str, impl: str, step: Callable[[], object], tf32_on: bool, memory: bool = False,
                note: Optional[str] = None) -> Optional[float]:
        """Times step() (median ms); records a row.  Out-of-memory and other runtime errors become a
        row with ms None and the first line of the error as its note."""
        def run():
            step()
            _report.sync(self.device)

        ms = mib = None
        try:
            ms = _report.time_fn(run, repeats=self.repeats, warmup=1, max_seconds=self.max_seconds)
            if memory:
                _report.drop_grads()  # (the last timed run's gradients out of the starting value)
                with _report.PeakMemory(self.device) as pm:
                    run()
                mib = pm.peak_bytes / 2**20
        except Exception as exc:  # any one case failing must not lose the others' rows
            note = f"{type(exc).__name__}: " + (str(exc).splitlines() or [""])[0][:160]
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.rows.append(dict(case=case, impl=impl, ms=ms, peak_mib=mib, tf32=tf32_on, note=note))
        shown = "-" if ms is None else f"{ms:.3f} ms"
        self.log(f"  {case:<20} {impl:<28} tf32={'on ' if tf32_on else 'off'} {shown}"
                 + (f", peak {mib:.1f} MiB" if mib is not None else "") + (f"  ({note})" if note else ""))
        return ms

    def ours(self, case: str, step: Callable[[], object], tf32_on: bool, memory: bool = False,
             impls=IMPLS) -> None:
        for impl in impls:
            with cuda_impl(impl):
                self.measure(case, "gkdfast-" + impl, step, tf32_on, memory)


def grads(*leaves):
    for x in leaves:
        x.grad = None


# ------------------------------------------------------------------------------------------ cases
def spmm_cases(r: Runner, sz) -> None:
    n, e, d = sz["spmm"]
    ctx = _peers.SpmmInputs.build(_peers.power_law(n, e, seed=0), d).to(r.device)
    x = ctx.features().requires_grad_()
    g = torch.randn_like(x)
    r.log(f"spmm: {n} nodes, {ctx.num_edges} edges, d = {d}")
    with torch.no_grad():
        r.ours("spmm_sum_fwd", lambda: gkdfast.spmm(ctx.graph, x, "sum"), False)
        r.measure("spmm_sum_fwd", "torch CSR (cuSPARSE)", lambda: torch.sparse.mm(ctx.csr, x), False)

    def ours_fb(reduce):
        return lambda: (grads(x), gkdfast.spmm(ctx.graph, x, reduce).backward(g))

    r.ours("spmm_sum_fwdbwd", ours_fb("sum"), False)
    r.measure("spmm_sum_fwdbwd", "torch CSR autograd", lambda: (grads(x), torch.sparse.mm(ctx.csr, x).backward(g)),
              False)
    for reduce in ("mean", "max"):
        case = f"spmm_{reduce}_fwdbwd"
        r.ours(case, ours_fb(reduce), False)
        peer = _peers.make("pyg_gather_scatter", ctx, reduce)
        r.measure(case, "PyG gather-scatter", lambda: (grads(x), peer(x).backward(g)), False)


def lsp_case(r: Runner, sz) -> None:
    from gkdfast.data import power_law_graph

    n, e, d = sz["lsp"]
    graph = power_law_graph(n, e, seed=0, directed=True).to(r.device)
    graph.transpose_csr()
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(n, d, generator=gen).to(r.device).requires_grad_()
    t = torch.randn(n, 2 * d, generator=gen).to(r.device)
    r.log(f"lsp: {n} nodes, {graph.num_edges} edges, d = {d} / {2 * d}")
    r.ours("lsp_rbf_4M", lambda: (grads(s), gkdfast.losses.lsp(graph, s, t, kernel="rbf", gamma=0.01).backward()),
           False, memory=True)
    r.measure("lsp_rbf_4M", "gather version",
              lambda: (grads(s), ref_structure.lsp(graph, s, t, "rbf", 0.01, 1.0, "mean").backward()), False,
              memory=True)


def gsp_cases(r: Runner, sz, tf32_on: bool) -> None:
    d = sz["gsp_d"]
    for n, case in zip(sz["gsp"], ("gsp_rbf_kl_10k", "gsp_rbf_kl_100k")):
        gen = torch.Generator().manual_seed(n)
        s = torch.randn(n, d, generator=gen).mul_(0.1).to(r.device).requires_grad_()
        t = torch.randn(n, d, generator=gen).mul_(0.1).to(r.device)
        step = lambda: (grads(s), gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.5).backward())  # noqa
        big = case.endswith("100k") and sz is not SMALL_SIZES
        # The legacy kernel needs ~100x the 10k time at 100k (minutes): measured at 10k only.
        r.ours(case, step, tf32_on, memory=True, impls=("fast",) if big else IMPLS)
        with torch.no_grad():
            with cuda_impl("fast"):
                fwd_ms = r.measure(case + "_fwd", "gkdfast-fast",
                                   lambda: gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.5), tf32_on)
        if fwd_ms:
            tflops = 2.0 * n * n * 2 * d / (fwd_ms * 1e-3) / 1e12  # the two dot GEMMs of the forward
            r.rows[-1]["tile_tflops"] = tflops
        if not big:
            r.measure(case, "dense N x N", lambda: (grads(s), ref_structure.gsp(s, t, "rbf", "kl", 1.0, 0.5).backward()),
                      tf32_on, memory=True)


def crd_case(r: Runner, sz, tf32_on: bool) -> None:
    n, d = sz["crd"], sz["dim"]
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(n, d, generator=gen).to(r.device).requires_grad_()
    t = torch.randn(n, d, generator=gen).to(r.device).requires_grad_()
    target = torch.arange(n, device=r.device)

    def naive():
        grads(s, t)
        logits = F.normalize(s, dim=1) @ F.normalize(t, dim=1).t() / 0.075
        F.cross_entropy(logits, target).backward()

    r.ours("crd_alln_32k", lambda: (grads(s, t), gkdfast.losses.crd(s, t, tau=0.075).backward()), tf32_on,
           memory=True)
    r.measure("crd_alln_32k", "logits matrix", naive, tf32_on, memory=True)


def gram_case(r: Runner, sz, tf32_on: bool) -> None:
    n, d = sz["gram"], sz["dim"]
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(2)).to(r.device).requires_grad_()
    eye = torch.eye(n, dtype=torch.bool, device=r.device)

    def ours():
        grads(z)
        torch.ops.gkdfast.gram_lse(F.normalize(z, dim=1), 2.0, True).mean().backward()

    def dense():
        grads(z)
        zn = F.normalize(z, dim=1)
        torch.logsumexp((zn @ zn.t() * 2.0).masked_fill(eye, float("-inf")), 1).mean().backward()

    r.ours("ncontrast_gram_32k", ours, tf32_on, memory=True)
    r.measure("ncontrast_gram_32k", "dense masked logsumexp", dense, tf32_on, memory=True)


def matmul_case(r: Runner, sz, tf32_on: bool) -> None:
    n, d = sz["matmul"], sz["gsp_d"]
    a = torch.randn(n, d, device=r.device)
    b = torch.randn(n, d, device=r.device)
    ms = r.measure("matmul", "torch.matmul", lambda: torch.mm(a, b.t()), tf32_on)
    if ms:
        r.rows[-1]["tflops"] = 2.0 * n * n * d / (ms * 1e-3) / 1e12


SMALL_SIZES = sizes(True)


# ---------------------------------------------------------------------------------------- summary
PEERS = {
    "spmm_sum_fwd": "torch CSR (cuSPARSE)", "spmm_sum_fwdbwd": "torch CSR autograd",
    "spmm_mean_fwdbwd": "PyG gather-scatter", "spmm_max_fwdbwd": "PyG gather-scatter",
    "lsp_rbf_4M": "gather version", "gsp_rbf_kl_10k": "dense N x N", "gsp_rbf_kl_100k": None,
    "crd_alln_32k": "logits matrix", "ncontrast_gram_32k": "dense masked logsumexp",
}


def summarize(rows: List[dict]) -> List[dict]:
    """One entry per (case, tf32) with the fast kernel, its peer and the legacy kernel side by side."""
    def find(case, impl, tf32_on):
        for r in rows:
            if r["case"] == case and r["impl"] == impl and r["tf32"] == tf32_on:
                return r
        return None

    out = []
    for case, peer in PEERS.items():
        for tf32_on in (False, True):
            ours = find(case, "gkdfast-fast", tf32_on)
            if ours is None:
                continue
            legacy = find(case, "gkdfast-legacy", tf32_on)
            other = find(case, peer, tf32_on) if peer else None
            ms = ours["ms"]
            entry = dict(case=case, gkdfast_ms=ms, peer=peer, peer_ms=other["ms"] if other else None,
                         ratio=None, tf32=tf32_on, legacy_ms=legacy["ms"] if legacy else None, legacy_ratio=None,
                         peak_mib=ours.get("peak_mib"), peer_peak_mib=other.get("peak_mib") if other else None)
            if ms and entry["peer_ms"]:
                entry["ratio"] = entry["peer_ms"] / ms
            if ms and entry["legacy_ms"]:
                entry["legacy_ratio"] = entry["legacy_ms"] / ms
            fwd = find(case + "_fwd", "gkdfast-fast", tf32_on)
            mm = find("matmul", "torch.matmul", tf32_on)
            if fwd and fwd.get("tile_tflops") and mm and mm.get("tflops"):
                entry["tile_tflops"] = fwd["tile_tflops"]
                entry["tile_fraction_of_matmul"] = fwd["tile_tflops"] / mm["tflops"]
            out.append(entry)
    return out


def format_summary(summary: List[dict]) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"{'case':<20} {'tf32':<4} {'gkdfast ms':>11} {'legacy ms':>10} {'old/new':>8} "
             f"{'peer':<24} {'peer ms':>9} {'ratio':>7} {'MiB':>9} {'peer MiB':>9}"]
    for e in summary:
        lines.append(f"{e['case']:<20} {'on' if e['tf32'] else 'off':<4} {f(e['gkdfast_ms'], '11.3f')} "
                     f"{f(e['legacy_ms'], '10.3f')} {f(e['legacy_ratio'], '7.2f')}x {str(e['peer']):<24} "
                     f"{f(e['peer_ms'], '9.3f')} {f(e['ratio'], '6.2f')}x {f(e['peak_mib'], '9.1f')} "
                     f"{f(e['peer_peak_mib'], '9.1f')}"
                     + (f"  tiles {100 * e['tile_fraction_of_matmul']:.0f}% of matmul"
                        if e.get("tile_fraction_of_matmul") else ""))
    return "\n".join(lines)


PARTS = ("spmm", "lsp", "gsp", "crd", "gram")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="out/gpu_compare")
    p.add_argument("--small", action="store_true", help="tiny sizes (smoke run of the script)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-seconds", type=float, default=4.0, help="per case and implementation")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    sz = SMALL_SIZES if args.small else sizes(False)
    r = Runner(device, args.repeats, args.max_seconds)
    tf32_settings = (False, True) if device.type == "cuda" else (False,)
    os.makedirs(args.out, exist_ok=True)

    def save() -> dict:
        """Both JSON files as they stand: written after every part, so a run stopped by its time
        limit still leaves what it measured."""
        run = {"device": str(device), "small": bool(args.small), "repeats": args.repeats,
               "max_seconds": args.max_seconds}  # a --small smoke run is told apart from a measurement
        _report.write_json(r.rows, os.path.join(args.out, "compare.json"), **run)
        summary = summarize(r.rows)
        from gkdfast._io import atomic_write

        atomic_write(os.path.join(args.out, "summary.json"), lambda f: f.write(json.dumps(summary, indent=1).encode()))
        return summary

    if "spmm" in args.parts:
        spmm_cases(r, sz)
        save()
    if "lsp" in args.parts:
        lsp_case(r, sz)
        save()
    for tf32_on in tf32_settings:
        with tf32(tf32_on):
            matmul_case(r, sz, tf32_on)
            for part, run in (("gsp", gsp_cases), ("crd", crd_case), ("gram", gram_case)):
                if part in args.parts:
                    run(r, sz, tf32_on)
                    save()
    print("\n" + format_summary(save()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
