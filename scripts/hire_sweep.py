#!/usr/bin/env python
"""HIRE's relation weight β on one heterogeneous data set: one teacher per seed, then the student
without KD, with logit KD, and with HIRE for every β of ``--betas`` (same initial weights).

Usage::

    python scripts/hire_sweep.py --data ../shared/data/hetero_imdb_magnn --seeds 3 --betas 0.1,1,10,100
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from gkdfast.distill import recipes  # noqa: E402
from gkdfast.distill.distiller import accuracy  # noqa: E402
from gkdfast.distill.experiment import summarize_runs  # noqa: E402
from gkdfast.distill.results import format_markdown  # noqa: E402
from gkdfast.hetero.experiment import _loss, train_hetero  # noqa: E402
from gkdfast.hetero.models import build_hetero_model  # noqa: E402
from gkdfast.hetero.readers import load_hetero  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--teacher", default="rgcn:64")
    p.add_argument("--student", default="rgcn:16")
    p.add_argument("--betas", default="0.1,1,10,100")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args()
    hg = load_hetero(args.data)
    runs = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        teacher = build_hetero_model(args.teacher, hg)
        info = train_hetero(teacher, hg, _loss("none", None, hg, None, None), epochs=args.epochs)
        with torch.no_grad():
            t_logits, t_hidden = teacher(hg, return_hidden=True)
        plan = [("teacher", None, None), ("none", "none", None), ("kd", "kd", None)]
        plan += [(f"hire(β={b:g})", "hire", b) for b in (float(v) for v in args.betas.split(","))]
        for label, method, beta in plan:
            if method is None:
                model = teacher
            else:
                recipe = recipes.get("kd" if method == "none" else method, **({"beta": beta} if beta else {}))
                torch.manual_seed(seed)
                model = build_hetero_model(args.student, hg)
                info = train_hetero(model, hg, _loss(method, recipe, hg, t_logits, t_hidden), epochs=args.epochs)
            with torch.no_grad():
                acc = accuracy(model.eval()(hg), hg.y, hg.test_mask)
            runs.append({"method": label, "model": (args.teacher if method is None else args.student).upper(),
                         "test_acc": acc, "seconds": info["seconds"], "inference_ms_per_1k_nodes": 0.0})
            print(f"seed {seed} {label:<12} {acc:.4f}", file=sys.stderr, flush=True)
    print(format_markdown(summarize_runs(runs, dataset=hg.name, num_nodes=0, num_edges=0), seeds_column=True))


if __name__ == "__main__":
    main()
