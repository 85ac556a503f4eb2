"""Training seconds per epoch and peak memory of each distillation recipe, one fresh process per
recipe and backend (so ``ru_maxrss`` is that run's own peak), on a real graph.

    OMP_NUM_THREADS=1 python scripts/recipe_costs.py --data ../shared/data/planetoid --name cora \
        --methods none,kd,gsdn,ta_ensemble,oad,freekd,t2gnn,sail --epochs 10

    # the structure recipes in their published setting (GAT teacher, GCN(64) student), ours vs the
    # pure-PyTorch reference backend (GKDFAST_BACKEND=reference) side by side
    OMP_NUM_THREADS=1 python scripts/recipe_costs.py --data ../shared/data/planetoid --name cora \
        --protocol published --methods none,kd,lsp,gsp,gcrd,kd_gcrd --backends native,reference --epochs 20

Prints one markdown row per recipe: the student, epochs run, seconds per epoch of the recipe's
(last) training stage, total seconds including teachers/assistants/warm-up, and the peak RSS of
the process (MiB; the loaded dataset and the PyTorch runtime included: compare rows, not absolutes);
with two backends, both columns and the reference/ours ratio.  ``--json FILE`` keeps every number.
Under ``--protocol published`` the teacher, student (``--student gcn|sage`` picks one of the
setting's), data preparation and hyperparameters are the published setting's
(``gkdfast.distill.protocols``); the teacher trains ``--epochs`` epochs and is not timed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

STUDENT = {"gsdn": "mlp:128", "ta_ensemble": "mlp:128", "kd": "mlp:128", "none": "gcn:16", "oad": "gcn:16",
           "freekd": "gcn:16", "t2gnn": "gcn:64", "sail": "gcn:128"}


def _common_setting(args, data):
    from gkdfast.distill.experiment import parse_model

    spec = parse_model(args.student or STUDENT.get(args.method, "mlp:128"))
    return data, spec, parse_model("sage"), {}, {}


def _published_setting(args, data):
    from gkdfast.distill.protocols import prepare, published_settings

    method = "kd" if args.method == "none" else args.method  # the no-KD row of the method's setting
    s = published_settings(data.name, [method])[0]
    students = [x for x in s.students if x.name == (args.student or s.students[0].name)]
    if not students:
        raise SystemExit(f"--student {args.student}: the {s.key} setting's students are "
                         f"{', '.join(x.name for x in s.students)}")
    return prepare(data, s), students[0], s.teacher, dict(s.overrides.get(args.method, {})), dict(s.teacher_params)


def one(args) -> dict:
    import torch

    from gkdfast.data import load, mask_missing
    from gkdfast.distill import recipes, teacher_outputs
    from gkdfast.distill.experiment import seed_split

    data = load(args.data, name=args.name)
    if args.method == "t2gnn":
        data = mask_missing(data, 0.3, seed=0)
    setting = _published_setting if args.protocol == "published" else _common_setting
    data, spec, teacher, kw, teacher_kw = setting(args, data)
    data = seed_split(data, 0)
    kw.update(epochs=args.epochs, patience=None)
    kw.update({field: args.epochs for field in recipes.get(args.method).stage_epochs})  # earlier stages too
    recipe = recipes.get(args.method, **kw)
    tout = None
    if recipe.needs_teacher:
        torch.manual_seed(0)
        t = teacher.build(data.num_features, data.num_classes)
        teacher_kw.update(epochs=args.epochs, patience=None)
        recipes.NoKD(**teacher_kw).fit(lambda f: t, data)
        tout = teacher_outputs(t.eval(), data.x, data.graph)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    trained = recipe.fit(lambda f: spec.build(f, data.num_classes), data, tout, seed=0)
    total = time.perf_counter() - t0
    return {"method": args.method, "student": spec.label, "teacher": None if tout is None else teacher.label,
            "backend": os.environ.get("GKDFAST_BACKEND", "native"), "epochs": trained.fit.epochs,
            "sec_per_epoch": trained.fit.seconds / max(1, trained.fit.epochs), "total_seconds": total,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(args, method: str, backend: str) -> dict:
    cmd = [sys.executable, __file__, "--data", args.data, "--epochs", str(args.epochs), "--method", method,
           "--protocol", args.protocol]
    for flag in ("name", "student"):
        if getattr(args, flag):
            cmd += [f"--{flag}", getattr(args, flag)]
    env = dict(os.environ)
    if backend == "reference":
        env["GKDFAST_BACKEND"] = "reference"
    else:
        env.pop("GKDFAST_BACKEND", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:  # the reference backend may run out of memory where ours does not: say so
        return {"method": method, "backend": backend, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(rs) -> str:
    first = next((r for r in rs if "error" not in r), rs[0])
    cells = [first["method"], first.get("student", "?"), str(first.get("epochs", "?"))]
    for r in rs:
        cells += ([f"{r['sec_per_epoch']:.3f}", f"{r['peak_rss_mib']:.0f}"] if "error" not in r
                  else [f"failed: {r['error'][:60]}", "-"])
    if len(rs) == 2 and all("error" not in r for r in rs):
        cells.append(f"{rs[1]['sec_per_epoch'] / rs[0]['sec_per_epoch']:.2f}x")
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--name")
    p.add_argument("--methods", default="none,kd,gsdn,ta_ensemble,oad,freekd,t2gnn,sail")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--protocol", choices=("common", "published"), default="common")
    p.add_argument("--student", help="common: a model spec for every recipe (e.g. gcn:64); published: gcn or sage")
    p.add_argument("--backends", default="native", help="native, reference or native,reference")
    p.add_argument("--json", help="also write every measured number to this file")
    p.add_argument("--method", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.method:
        print(json.dumps(one(args)))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in ("native", "reference") for b in backends):
        p.error(f"--backends: native and/or reference, got {args.backends!r}")
    head = ["method", "student", "epochs"]
    for b in backends:
        head += [f"{b} s / epoch", f"{b} peak RSS (MiB)"]
    if len(backends) == 2:
        head.append(f"{backends[1]} / {backends[0]}")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head), flush=True)
    out = []
    for m in args.methods.split(","):
        rs = [_child(args, m, b) for b in backends]
        out += rs
        print(_row(rs), flush=True)
    if args.json:
        from gkdfast._io import atomic_write

        doc = {"data": os.path.basename(args.data.rstrip("/")), "name": args.name, "epochs": args.epochs,
               "protocol": args.protocol, "rows": out}
        atomic_write(args.json, lambda f: f.write(json.dumps(doc, indent=1).encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
