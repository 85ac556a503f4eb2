#!/usr/bin/env python
"""RELIANT's accuracy–bias trade-off over α on a fairness graph (table, results JSON, PNG).

Per seed: one teacher (supervised, early-stopped on validation accuracy), then from the same initial
weights the student without KD, with plain KD, and with RELIANT for every α of ``--alphas``.  Accuracy,
ΔSP and ΔEO on the test nodes of the seed's NIFTY split.  Writes ``OUT/<name>-<fairness>.json`` (the
``gkdfast distill`` results schema, one row per α named ``reliant(α=...)``) and
``OUT/<name>-<fairness>.png`` (accuracy against the gap, one point per row, error bars over seeds).
Validation accuracy and gaps are recorded too, and one α is picked from them alone (the lowest mean
validation gap among the α whose mean validation accuracy is at most 2 points below KD's;
:func:`gkdfast.distill.fairness.pick_fair_setting_on_validation`): ``OUT/<name>-<fairness>-validation.json``
holds the pick, the validation means and every run's record, so the picked α's test rows are an
estimate not chosen on test nodes.

Usage::

    python scripts/fair_sweep.py --name bail --seeds 5 --alphas 0,10,100,1000,10000 --out docs/results/fair
    python scripts/fair_sweep.py --name credit --fairness eo --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from gkdfast._io import atomic_write  # noqa: E402
from gkdfast.data import default_root, load  # noqa: E402
from gkdfast.distill import recipes  # noqa: E402
from gkdfast.distill.distiller import accuracy, call_model  # noqa: E402
from gkdfast.distill.experiment import inference_ms_per_1k, parse_model, seed_split, summarize_runs  # noqa: E402
from gkdfast.distill.fairness import fairness_gaps, pick_fair_setting_on_validation  # noqa: E402
from gkdfast.distill.results import format_markdown, format_table, save_json  # noqa: E402
from gkdfast.distill.teacher_cache import teacher_outputs  # noqa: E402


#: The target's accuracy budget: at most 2 points lost against plain KD (on validation nodes for the pick).
MAX_ACCURACY_DROP = 0.02


def run(args) -> tuple:
    data = load(args.data, name=args.name)
    if data.sensitive is None:
        raise SystemExit(f"{args.name}: no sensitive attribute")
    dev = torch.device(args.device)
    teacher, student = parse_model(args.teacher), parse_model(args.student)
    alphas = [float(a) for a in args.alphas.split(",")]
    runs = []
    graph = data.graph.to(dev)
    for seed in range(args.seeds):
        d = seed_split(data, seed)

        def record(method, model, logits, secs, infer):
            logits = logits.cpu()
            sp, eo = fairness_gaps(logits, d.y, d.sensitive, d.test_mask)
            val_sp, val_eo = fairness_gaps(logits, d.y, d.sensitive, d.val_mask)
            runs.append({"seed": seed, "method": method, "model": model, "test_acc": accuracy(logits, d.y,
                         d.test_mask), "seconds": secs, "inference_ms_per_1k_nodes": infer,
                         "delta_sp": sp, "delta_eo": eo, "val_acc": accuracy(logits, d.y, d.val_mask),
                         "val_delta_sp": val_sp, "val_delta_eo": val_eo})
            r = runs[-1]
            print(f"seed {seed} {method:<18} acc {r['test_acc']:.4f}  ΔSP {sp:.4f}  ΔEO {eo:.4f}  ({secs:.1f}s)  "
                  f"validation: acc {r['val_acc']:.4f}  ΔSP {val_sp:.4f}  ΔEO {val_eo:.4f}",
                  file=sys.stderr, flush=True)

        torch.manual_seed(seed)
        tmodel = teacher.build(d.x.size(1), d.num_classes)
        tt = recipes.NoKD(epochs=args.epochs).fit(lambda f: tmodel, d, None, seed, device=dev)
        tlogits = call_model(tmodel.eval(), d.x.to(dev), graph, True, False)[0]
        record("teacher", teacher.label, tlogits, tt.seconds, inference_ms_per_1k(tmodel, d.x.to(dev), graph, True))
        tout = teacher_outputs(tmodel, d.x.to(dev), graph, device=dev)
        plan = [("none", recipes.get("none", epochs=args.epochs)), ("kd", recipes.get("kd", epochs=args.epochs))]
        plan += [(f"reliant(α={a:g})", recipes.get("reliant", alpha=a, fairness=args.fairness, epochs=args.epochs))
                 for a in alphas]
        for label, recipe in plan:
            torch.manual_seed(seed)
            tr = recipe.fit(lambda f: student.build(f, d.num_classes), d, tout, seed, device=dev)
            inputs = tr.inputs.to(dev)
            logits = call_model(tr.model.eval(), inputs, graph, tr.uses_graph, False)[0]
            record(label, student.label, logits, tr.seconds,
                   inference_ms_per_1k(tr.model, inputs, graph, tr.uses_graph))
    res = summarize_runs(runs, dataset=f"{data.name} (RELIANT {args.fairness.upper()} sweep)",
                         num_nodes=data.num_nodes, num_edges=data.num_edges)
    return res, validation_pick(runs, [f"reliant(α={a:g})" for a in alphas], args.fairness)


def validation_pick(runs: list, candidates: list, fairness: str) -> dict:
    """The α picked on validation nodes (:func:`pick_fair_setting_on_validation`, KD as the reference, at
    most 2 points of validation accuracy lost), with its rule and every run's record (validation and
    test figures), for ``OUT/<name>-<fairness>-validation.json``."""
    pick = pick_fair_setting_on_validation(runs, candidates, fairness=fairness, max_accuracy_drop=MAX_ACCURACY_DROP)
    rule = (f"lowest mean validation Δ{fairness.upper()} among the RELIANT rows whose mean validation accuracy "
            f"is at most {100 * MAX_ACCURACY_DROP:g} points below KD's")
    return dict(pick, rule=rule, runs=runs)


def plot(res: dict, path: str, fairness: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "delta_sp" if fairness == "sp" else "delta_eo"
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in res["rows"]:
        colour = "#555555" if r["method"] == "teacher" else "#bbbbbb" if r["method"] == "none" else \
            "#3b75af" if r["method"] == "kd" else "#c0504d"
        ax.errorbar(100 * r[key + "_mean"], 100 * r["test_acc_mean"], xerr=100 * r[key + "_std"],
                    yerr=100 * r["test_acc_std"], fmt="o", color=colour, capsize=3)
        ax.annotate(r["method"], (100 * r[key + "_mean"], 100 * r["test_acc_mean"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(("ΔSP" if fairness == "sp" else "ΔEO") + " on test nodes (%, lower is fairer)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(res["dataset"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=default_root(), help="data root or the set's folder")
    p.add_argument("--name", default="bail", help="german, bail, credit, income or nba")
    p.add_argument("--teacher", default="gcn")
    p.add_argument("--student", default="mlp")
    p.add_argument("--fairness", choices=("sp", "eo"), default="sp")
    p.add_argument("--alphas", default="0,10,100,1000,10000")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="fair-sweep")
    args = p.parse_args()
    t0 = time.time()
    res, pick = run(args)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.name}-{args.fairness}")
    save_json(res, stem + ".json")
    text = json.dumps(pick, indent=2, ensure_ascii=False) + "\n"
    atomic_write(stem + "-validation.json", lambda f: f.write(text.encode()))
    plot(res, stem + ".png", args.fairness)
    print(format_table(res))
    print(format_markdown(res, seeds_column=True))
    print(f"picked on validation nodes ({pick['rule']}): {pick['picked']}")
    for name, acc in pick["val_acc"].items():
        gap = 100 * pick["val_gap"][name]
        print(f"  {name:<18} validation acc {100 * acc:.2f}  Δ{args.fairness.upper()} {gap:.2f}")
    print(json.dumps({"wall_seconds": round(time.time() - t0, 1), "device": args.device}))


if __name__ == "__main__":
    main()
