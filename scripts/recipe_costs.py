"""Training seconds per epoch and peak memory of each distillation recipe, one fresh process per
recipe (so ``ru_maxrss`` is that recipe's own peak), on a real graph.

    OMP_NUM_THREADS=1 python scripts/recipe_costs.py --data ../shared/data/planetoid --name cora \
        --methods none,kd,gsdn,ta_ensemble,oad,freekd,t2gnn,sail --epochs 10

Prints one markdown row per recipe: the student, epochs run, seconds per epoch of the recipe's
(last) training stage, total seconds including teachers/assistants/warm-up, and the peak RSS of
the process (MiB; the loaded dataset and the PyTorch runtime included: compare rows, not absolutes).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

STUDENT = {"gsdn": "mlp:128", "ta_ensemble": "mlp:128", "kd": "mlp:128", "none": "gcn:16", "oad": "gcn:16",
           "freekd": "gcn:16", "t2gnn": "gcn:64", "sail": "gcn:128"}


def one(args) -> dict:
    import torch

    from gkdfast.data import load, mask_missing
    from gkdfast.distill import recipes, teacher_outputs
    from gkdfast.distill.experiment import parse_model

    data = load(args.data, name=args.name)
    if args.method == "t2gnn":
        data = mask_missing(data, 0.3, seed=0)
    spec = parse_model(STUDENT.get(args.method, "mlp:128"))
    tout = None
    recipe = recipes.get(args.method, epochs=args.epochs, patience=None,
                         **({"teacher_epochs": args.epochs} if args.method == "t2gnn" else {}),
                         **({"warmup_epochs": args.epochs} if args.method == "oad" else {}),
                         **({"assistant_epochs": args.epochs} if args.method == "ta_ensemble" else {}))
    if recipe.needs_teacher:
        torch.manual_seed(0)
        t = parse_model("sage").build(data.num_features, data.num_classes)
        recipes.NoKD(epochs=args.epochs, patience=None).fit(lambda f: t, data)
        tout = teacher_outputs(t.eval(), data.x, data.graph)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    trained = recipe.fit(lambda f: spec.build(f, data.num_classes), data, tout, seed=0)
    total = time.perf_counter() - t0
    return {"method": args.method, "student": spec.label, "epochs": trained.fit.epochs,
            "sec_per_epoch": trained.fit.seconds / max(1, trained.fit.epochs), "total_seconds": total,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--name")
    p.add_argument("--methods", default="none,kd,gsdn,ta_ensemble,oad,freekd,t2gnn,sail")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--method", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args()
    if args.method:
        print(json.dumps(one(args)))
        return 0
    print("| method | student | epochs | s / epoch | total s | peak RSS (MiB) |\n|---|---|---|---|---|---|")
    for m in args.methods.split(","):
        cmd = [sys.executable, __file__, "--data", args.data, "--epochs", str(args.epochs), "--method", m]
        if args.name:
            cmd += ["--name", args.name]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"| {r['method']} | {r['student']} | {r['epochs']} | {r['sec_per_epoch']:.3f} | {r['total_seconds']:.1f} "
              f"| {r['peak_rss_mib']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
