#!/usr/bin/env python
"""The second quality table: every recipe in its published setting (``--protocol published``), our
accuracy beside the paper's.  Run as ``python scripts/quality.py --protocol published ...`` (or this
file directly, same flags).  Writes docs/results-published-table.md and the same table as the marked
"second table" section of docs/results.md (nothing else of that file changes).

Per dataset: GLNN / NOSMOG on the CPF file and protocol (largest connected component, 20 / 30 per class
per seed; Cora / CiteSeer from ``gnn_benchmark_npz``, the CPF benchmark's files), Graph-MLP and the
GNN-student recipes (KD, LSP, GSP, G-CRD, KD+G-CRD) on the dataset's usual file and split.  Settings:
``gkdfast.distill.protocols`` and docs/protocols.md.

Usage::

    python scripts/quality.py --protocol published --datasets cora,citeseer --seeds 5
    python scripts/quality.py --protocol published --from-json 'runs/*/results.json'   # no training
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gkdfast.data import default_root, load  # noqa: E402
from gkdfast.distill.protocols import DEFAULT_PUBLISHED, dataset_key, published_settings, run_published  # noqa: E402
from gkdfast.distill.results import row_settings as results_row_settings, save_json  # noqa: E402
from gkdfast.distill.teacher_cache import default_cache_dir  # noqa: E402

# name -> (file for the CPF setting, file for the others, name inside the folder); paths under the data root.
DATASETS = {
    "cora": ("gnn_benchmark_npz/cora.npz", "planetoid", "cora"),
    "citeseer": ("gnn_benchmark_npz/citeseer.npz", "planetoid", "citeseer"),
    "cora_ml": ("cora_ml/cora_ml.npz", "cora_ml/cora_ml.npz", None),
    "facebook": ("facebook_page_page", "facebook_page_page", None),
    "blogcatalog": ("blogcatalog/BlogCatalog.mat", "blogcatalog/BlogCatalog.mat", None),
}

# Published test accuracy (%) per (dataset, method, model label).  GLNN / NOSMOG: NOSMOG's Table 1
# (transductive, CPF split; its GLNN column equals GLNN's own transductive figures); the teacher SAGE
# and the plain MLP from the same table.  Graph-MLP: its README (public split; "MLP" = α 0, its own
# encoder).  Joshi et al. publish no Cora / CiteSeer numbers for the GNN-student recipes.
PUBLISHED = {
    ("cora", "cpf", "teacher", "SAGE(128)"): 80.52, ("cora", "cpf", "none", "MLP(128)"): 59.2,
    ("cora", "cpf", "glnn", "MLP(128)"): 80.54, ("cora", "cpf", "nosmog", "MLP(128)"): 83.04,
    ("cora", "graphmlp", "none", "GMLP(256)"): 57.8, ("cora", "graphmlp", "graphmlp", "GMLP(256)"): 79.5,
    ("citeseer", "cpf", "teacher", "SAGE(128)"): 70.33, ("citeseer", "cpf", "none", "MLP(128)"): 59.6,
    ("citeseer", "cpf", "glnn", "MLP(128)"): 71.77, ("citeseer", "cpf", "nosmog", "MLP(128)"): 73.78,
    ("citeseer", "graphmlp", "none", "GMLP(256)"): 54.7, ("citeseer", "graphmlp", "graphmlp", "GMLP(256)"): 73.1,
    # T2-GNN's Table (30 % of features and edges missing, Geom-GCN 60/20/20 splits): GCN and T2-GCN
    ("cora", "t2gnn", "none", "GCN(64)"): 82.77, ("cora", "t2gnn", "t2gnn", "GCN(64)"): 83.84,
    ("citeseer", "t2gnn", "none", "GCN(64)"): 68.84, ("citeseer", "t2gnn", "t2gnn", "GCN(64)"): 72.32,
    # Cold Brew's README, Cora isolation split (accuracy on the isolated nodes outside training): its naive MLP
    # and Cold Brew's MLP.  Its teacher figures (84.15 / 85.10) are on every test node, not comparable here.
    ("cora", "coldbrew", "none", "MLP(256)"): 61.80, ("cora", "coldbrew", "coldbrew", "MLP(256)"): 72.50,
}
# Results written before settings recorded their row counts: the setting from the model label.
SETTING_OF_MODEL = {"SAGE(128)": "cpf", "MLP(128)": "cpf", "GMLP(256)": "graphmlp"}  # the rest: gnn


def row_settings(res) -> list:
    """The setting key of each of ``res["rows"]``, in order: from the settings' ``num_rows`` when every
    setting has one (rows are concatenated setting by setting), else from the model label; results
    merged from several files by :func:`read_results` carry the list, worked out file by file."""
    if "row_settings" in res:
        return res["row_settings"]
    settings = res["protocol"]["settings"]
    if len(settings) == 1 and settings[0].get("num_rows") == len(res["rows"]):
        return [settings[0]["key"]] * len(res["rows"])
    counted = results_row_settings(res)  # several settings with their row counts
    return counted if counted is not None else [SETTING_OF_MODEL.get(r["model"], "gnn") for r in res["rows"]]


def run_dataset(name, args, log):
    """Trains every published setting of ``args.methods`` on ``name``; returns the merged results."""
    cpf_file, other_file, inner = DATASETS[name]
    groups = {s.key: list(s.methods) for s in published_settings(name, args.methods)}
    res = None
    for key, methods in groups.items():
        path = os.path.join(args.data, cpf_file if key == "cpf" else other_file)
        data = load(path, name=None if key == "cpf" else inner, seed=0)
        log(f"== {name} / {key}: {path}")
        part = run_published(data, methods=methods, seeds=args.seed_list, epochs=args.epochs, device=args.device,
                             out=os.path.join(args.work, name), log=log)
        if res is None:
            res = part
        else:
            res["rows"] += part["rows"]
            res["protocol"]["settings"] += part["protocol"]["settings"]
    return res


def read_results(patterns):
    """``{dataset key: merged results}`` from ``results.json`` files of ``--protocol published`` runs."""
    import json

    out = {}
    paths = sorted({p for pat in patterns.split(",") if pat.strip() for p in glob.glob(pat.strip())})
    if not paths:
        raise FileNotFoundError(f"--from-json {patterns}: no file matches")
    for p in paths:
        with open(p) as f:
            res = json.load(f)
        if res.get("protocol", {}).get("name") != "published":
            raise ValueError(f"{p}: not a --protocol published result")
        key = dataset_key(res["dataset"])
        res["row_settings"] = row_settings(res)  # per file: a file without num_rows must not mislabel the others
        if key in out:
            out[key]["rows"] += res["rows"]
            out[key]["row_settings"] += res["row_settings"]
            out[key]["protocol"]["settings"] += res["protocol"]["settings"]
        else:
            out[key] = res
    return out


def markdown(all_results, command):
    """The report: per dataset, one row per (method, model), ours beside the published figure."""
    lines = ["# Every recipe in its published setting", "",
             f"Generated by `{command}`, {time.strftime('%Y-%m-%d %H:%M')}. Settings: `docs/protocols.md`; "
             "discussion and the commands of each run: `docs/results-published.md`. Test accuracy (%) at the "
             "best-validation epoch, mean ± population std over the seeds run.", ""]
    for name, res in all_results.items():
        sizes = ", ".join(f"{s['key']}: {s['num_nodes']} nodes" for s in res["protocol"]["settings"])
        lines += [f"## {name}", "", f"Graphs trained on: {sizes}.", "",
                  "| setting | method | model | ours | seeds | published | ours − published |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r, key in zip(res["rows"], row_settings(res)):
            acc, std = 100 * r["test_acc_mean"], 100 * r["test_acc_std"]
            pub = PUBLISHED.get((name, key, r["method"], r["model"]))
            gap = "" if pub is None else f"{acc - pub:+.2f}"
            lines.append(f"| {key} | {r['method']} | {r['model']} | "
                         f"{acc:.2f} ± {std:.2f} | {len(r['test_acc'])} | {'' if pub is None else f'{pub:.2f}'} | "
                         f"{gap} |")
        lines.append("")
    return "\n".join(lines)


# docs/results.md carries this table too, between these markers: quality_published.py replaces the
# block, quality.py's common report keeps it when it rewrites the rest of the file.
BLOCK_START, BLOCK_END = "<!-- published-table:start -->", "<!-- published-table:end -->"


def published_block(text: str) -> str:
    """The marked block of ``text`` (markers included), or ``""`` when it has none."""
    i, j = text.find(BLOCK_START), text.find(BLOCK_END)
    return text[i:j + len(BLOCK_END)] if 0 <= i < j else ""


def splice_published(path: str, table_md: str) -> None:
    """Writes ``table_md`` (this script's report) into ``path`` as the marked second-table section:
    replacing the block if the file has one, appended otherwise."""
    body = table_md.split("\n", 1)[1] if table_md.startswith("# ") else table_md
    body = "\n".join(("#" + line if line.startswith("## ") else line) for line in body.splitlines())
    block = "\n".join([BLOCK_START, "## Second table: every recipe in its published setting", "",
                       "Regenerated by `python scripts/quality.py --protocol published ...` (the same table as "
                       "`docs/results-published-table.md`; discussion in `docs/results-published.md`).",
                       body.strip(), BLOCK_END])
    text = open(path).read() if os.path.exists(path) else ""
    old = published_block(text)
    text = text.replace(old, block) if old else text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=("published",), default="published")
    p.add_argument("--datasets", default="cora,citeseer", help="comma-separated: " + ", ".join(DATASETS))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    p.add_argument("--seed-list", help="comma-separated seeds instead of --seeds")
    p.add_argument("--methods", default=",".join(DEFAULT_PUBLISHED),
                   help="recipes (default the original eight; freekd, oad, gsdn, sail, t2gnn, ta_ensemble by name)")
    p.add_argument("--epochs", type=int, default=None, help="cap every recipe's epochs (quick checks)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=default_root(), help="data root (default $GKDFAST_DATA or ../shared/data)")
    p.add_argument("--work", default=os.path.join(default_cache_dir(), "quality-published"), help="checkpoints")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results-published-table.md"))
    p.add_argument("--results-md", default=os.path.join(ROOT, "docs", "results.md"),
                   help="the common report, whose second-table section is replaced (appended if it has none)")
    p.add_argument("--from-json", help="train nothing: the table from these results.json files (comma-separated "
                   "paths or glob patterns of --protocol published runs)")
    args, _ = p.parse_known_args(argv)  # quality.py's own flags (e.g. --no-reference-timing) are ignored here
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.seed_list = ([int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds)))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    command = "python scripts/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        all_results = read_results(args.from_json)
    else:
        all_results = {}
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            if name not in DATASETS:
                p.error(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
            all_results[name] = run_dataset(name, args, log)
            save_json(all_results[name], os.path.join(os.path.dirname(args.out), "results", "published",
                                                      f"{name}.json"))
    table = markdown(all_results, command)
    with open(args.out, "w") as f:
        f.write(table)
    splice_published(args.results_md, table)
    log(f"wrote {args.out} and its section in {args.results_md}")


if __name__ == "__main__":
    main()
