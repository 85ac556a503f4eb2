"""A/B timing of two gkdfast checkouts (each with its native extension built in place), case by case.

The "no regression" check for changes that touch hot paths (input validation, NaN handling, new
dispatch): the same public calls on the same inputs, timed in fresh processes that alternate
between the builds round after round (A, B, A, B, ...), so machine load hits both alike.  Per case
the best of the rounds' medians is kept; ``ratio = B / A`` (> 1: B is slower).

    python benchmarks/ab_builds.py --a ../gkdfast-base --b . --out ab-out [--rounds 3] [--threads 2]
    GKDFAST_BENCH_SMALL=1 python benchmarks/ab_builds.py --a . --b . --out /tmp/ab   # smoke

Inputs are generated with plain torch from fixed seeds (never with gkdfast's own generators, which
may differ between the builds).  Writes ``ab.json`` (rows + machine info), ``ab.md`` and ``ab.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = os.environ.get("GKDFAST_BENCH_SMALL", "") not in ("", "0")
# (nodes, edges, features) of the graph cases and N, d of the all-pairs cases
GRAPH = (2_000, 20_000, 32) if SMALL else (200_000, 4_000_000, 128)
PAIRS = (500, 32) if SMALL else (8_000, 64)
CASES = ("spmm_sum_fwd", "spmm_sum_fwdbwd", "spmm_max_fwdbwd", "spmm_mean_fwd", "sddmm_fwd", "edge_softmax_fwd",
         "lsp_rbf_fwdbwd", "gsp_linear_mse_fwdbwd", "gsp_rbf_kl_fwdbwd", "crd_alln_fwdbwd", "nt_xent_fwdbwd")


def _graph_inputs(torch, gkdfast):
    n, e, d = GRAPH
    g = torch.Generator().manual_seed(0)
    # heavy-tailed in-degrees (a power law over destinations), uniform sources
    weights = torch.arange(1, n + 1, dtype=torch.float64).pow(-0.8)
    dst = torch.multinomial(weights, e, replacement=True, generator=g)
    src = torch.randint(0, n, (e,), generator=g)
    graph = gkdfast.Graph(torch.stack([src, dst]), num_nodes=n)
    x = torch.randn(n, d, generator=g)
    return graph, x


def _case(name: str) -> Callable[[], object]:
    """The closure timed for ``name``, inputs built (and any cached transposes warmed) once."""
    import torch

    import gkdfast
    from gkdfast import losses

    if name.startswith(("spmm", "sddmm", "edge_softmax", "lsp")):
        graph, x = _graph_inputs(torch, gkdfast)
        if name.startswith("spmm"):
            reduce = name.split("_")[1]
            if name.endswith("fwd"):
                return lambda: gkdfast.spmm(graph, x, reduce)
            xg = x.clone().requires_grad_(True)
            return lambda: gkdfast.spmm(graph, xg, reduce).sum().backward()
        if name == "sddmm_fwd":
            return lambda: gkdfast.sddmm(graph, x, x)
        if name == "edge_softmax_fwd":
            scores = gkdfast.sddmm(graph, x, x) / x.size(1)
            return lambda: gkdfast.edge_softmax(graph, scores)
        s = x[:, :32].clone().requires_grad_(True)
        t = x[:, 32:96].contiguous() if x.size(1) >= 96 else x.clone()
        return lambda: losses.lsp(graph, s, t, kernel="rbf").backward()
    n, d = PAIRS
    g = torch.Generator().manual_seed(1)
    s = torch.randn(n, d, generator=g).requires_grad_(True)
    t = torch.randn(n, 2 * d, generator=g)
    if name == "gsp_linear_mse_fwdbwd":
        return lambda: losses.gsp(s, t, kernel="linear", loss="mse").backward()
    if name == "gsp_rbf_kl_fwdbwd":
        return lambda: losses.gsp(s, t, kernel="rbf", loss="kl").backward()
    t2 = torch.randn(n, d, generator=g)
    if name == "crd_alln_fwdbwd":
        return lambda: losses.crd(s, t2).backward()
    if name == "nt_xent_fwdbwd":
        return lambda: losses.nt_xent(s, t2).backward()
    raise ValueError(f"unknown case {name!r}; known: {', '.join(CASES)}")


def _worker(case: str, repeats: int) -> None:
    sys.path.insert(0, HERE)
    from _report import time_fn

    import gkdfast

    fn = _case(case)
    ms = time_fn(fn, repeats=repeats, warmup=1, max_seconds=60.0)
    print(json.dumps({"case": case, "ms": ms, "gkdfast": os.path.dirname(gkdfast.__file__),
                      "native": gkdfast._backend.native_loaded()}))


def _run(build: str, case: str, repeats: int, threads: int) -> Dict[str, object]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(build), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", case, "--repeats", str(repeats)],
                         env=env, capture_output=True, text=True, check=False, cwd=os.path.abspath(build))
    if out.returncode != 0:
        raise RuntimeError(f"{case} on {build} failed:\n{out.stderr[-2000:]}")
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    want = os.path.join(os.path.abspath(build), "gkdfast")
    if os.path.realpath(rec["gkdfast"]) != os.path.realpath(want) or not rec["native"]:
        raise RuntimeError(f"{build}: imported {rec['gkdfast']} (native={rec['native']}), expected {want} with _C")
    return rec


def compare(a: str, b: str, cases=CASES, rounds: int = 3, repeats: int = 5, threads: int = 2,
            progress: bool = True) -> List[dict]:
    """Rows ``{case, a_ms, b_ms, ratio, a_runs, b_runs}``: best-of-``rounds`` medians per build."""
    from tqdm import tqdm

    rows = []
    bar = tqdm(total=len(cases) * rounds * 2, disable=not progress, desc="A/B")
    for case in cases:
        runs = {"a": [], "b": []}
        for _ in range(rounds):
            for side, build in (("a", a), ("b", b)):
                runs[side].append(_run(build, case, repeats, threads)["ms"])
                bar.update(1)
        a_ms, b_ms = min(runs["a"]), min(runs["b"])
        rows.append({"case": case, "a_ms": a_ms, "b_ms": b_ms, "ratio": b_ms / a_ms,
                     "a_runs": runs["a"], "b_runs": runs["b"]})
    bar.close()
    return rows


def markdown(rows: List[dict], a: str, b: str) -> str:
    lines = [f"A = `{a}`, B = `{b}`; best of the rounds' medians; ratio = B / A (> 1: B slower)", "",
             "| case | A ms | B ms | B / A | A runs | B runs |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        fmt = lambda v: ", ".join(f"{x:.1f}" for x in v)  # noqa: E731
        lines.append(f"| {r['case']} | {r['a_ms']:.1f} | {r['b_ms']:.1f} | {r['ratio']:.2f} | {fmt(r['a_runs'])} | "
                     f"{fmt(r['b_runs'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", help="baseline checkout (its gkdfast/_C*.so built in place)")
    p.add_argument("--b", help="candidate checkout")
    p.add_argument("--out", default="ab-out")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.repeats)
        return 0
    if not args.a or not args.b:
        p.error("--a and --b are required")
    sys.path.insert(0, HERE)
    from _report import machine_info

    rows = compare(args.a, args.b, args.cases, args.rounds, args.repeats, args.threads)
    os.makedirs(args.out, exist_ok=True)
    table = markdown(rows, args.a, args.b)
    print(table)
    with open(os.path.join(args.out, "ab.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "ab.json"), "w") as f:
        json.dump({"a": args.a, "b": args.b, "graph": GRAPH, "pairs": PAIRS, "threads": args.threads,
                   "machine": machine_info(), "rows": rows}, f, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
        ax.barh([r["case"] for r in rows], [r["ratio"] for r in rows], color="tab:blue")
        ax.axvline(1.0, color="k", lw=1)
        ax.set_xlabel("B / A time (> 1: B slower)")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "ab.png"), dpi=110)
    except ImportError:
        print("matplotlib not installed: no ab.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
