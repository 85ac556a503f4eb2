"""The comparison's outputs: a printed table, ``results.json`` and a PNG bar chart.

``results.json`` schema (fractions in [0, 1]; one row for the teacher, one per student for the
student without KD, one per (student, recipe))::

    {"dataset": str, "num_nodes": int, "num_edges": int,
     "stages": [{"stage": str, "seconds": float, ...}, ...],      # optional: the out-of-core pipeline's
     "rows": [{"method": str, "model": str, "test_acc_mean": float, "test_acc_std": float,
               "test_acc": [float, ...], "train_seconds": float, "inference_ms_per_1k_nodes": float}]}
"""
from __future__ import annotations

import json
import math
import os
from typing import List

from gkdfast._io import atomic_write

__all__ = ["format_table", "format_markdown", "validate", "save_json", "save_png", "ROW_KEYS"]

ROW_KEYS = ("method", "model", "test_acc_mean", "test_acc_std", "test_acc", "train_seconds",
            "inference_ms_per_1k_nodes")


def validate(results: dict) -> None:
    """Raises ValueError unless ``results`` follows the schema above exactly.

    Example:
        >>> row = {"method": "none", "model": "MLP(8)", "test_acc_mean": 0.5, "test_acc_std": 0.0,
        ...        "test_acc": [0.5], "train_seconds": 1.0, "inference_ms_per_1k_nodes": 0.1}
        >>> validate({"dataset": "g", "num_nodes": 3, "num_edges": 4, "rows": [row]})   # passes
        >>> validate({"dataset": "g", "num_nodes": 3, "num_edges": 4, "rows": [dict(row, test_acc=[50.0])]})
        Traceback (most recent call last):
        ...
        ValueError: results: test_acc of none must be fractions in [0, 1]
    """
    if not isinstance(results, dict) or set(results) - {"stages"} != {"dataset", "num_nodes", "num_edges", "rows"}:
        raise ValueError("results: expected keys dataset, num_nodes, num_edges, rows (and optionally stages)")
    if "stages" in results and not (isinstance(results["stages"], list)
                                    and all(isinstance(s, dict) and "stage" in s for s in results["stages"])):
        raise ValueError("results: stages must be a list of dicts with a 'stage' name")
    if not isinstance(results["dataset"], str) or not isinstance(results["num_nodes"], int) \
            or not isinstance(results["num_edges"], int) or not isinstance(results["rows"], list):
        raise ValueError("results: dataset must be str, num_nodes/num_edges int, rows a list")
    for row in results["rows"]:
        if set(row) != set(ROW_KEYS):
            raise ValueError(f"results: row keys must be {ROW_KEYS}, got {sorted(row)}")
        accs = row["test_acc"]
        if not accs or not all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in accs):
            raise ValueError(f"results: test_acc of {row['method']} must be fractions in [0, 1]")
        for k in ("test_acc_mean", "test_acc_std", "train_seconds", "inference_ms_per_1k_nodes"):
            if not isinstance(row[k], float) or not math.isfinite(row[k]) or row[k] < 0:
                raise ValueError(f"results: {k} of {row['method']} must be a finite float >= 0")


def _pct(row) -> str:
    return f"{100 * row['test_acc_mean']:6.2f} ± {100 * row['test_acc_std']:5.2f}"


def format_table(results: dict) -> str:
    """Plain-text table: method, model, test accuracy (% mean ± std), train s/seed, inference ms/1k nodes.

    Example:
        >>> res = {"dataset": "g", "num_nodes": 3, "num_edges": 4, "rows": [
        ...     {"method": "teacher", "model": "SAGE(8)", "test_acc_mean": 0.75, "test_acc_std": 0.05,
        ...      "test_acc": [0.7, 0.8], "train_seconds": 2.0, "inference_ms_per_1k_nodes": 0.25}]}
        >>> print(format_table(res))
        g: 3 nodes, 4 edges (directed), 2 seed(s)
        method   model    test acc (%)    train s  infer ms/1k
        ------------------------------------------------------
        teacher  SAGE(8)   75.00 ±  5.00     2.00        0.250
    """
    rows = results["rows"]
    n_seeds = max((len(r["test_acc"]) for r in rows), default=0)
    head = (f"{results['dataset']}: {results['num_nodes']} nodes, {results['num_edges']} edges "
            f"(directed), {n_seeds} seed(s)")
    cols = ("method", "model", "test acc (%)", "train s", "infer ms/1k")
    body = [(r["method"], r["model"], _pct(r), f"{r['train_seconds']:.2f}", f"{r['inference_ms_per_1k_nodes']:.3f}")
            for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out: List[str] = [head, line, "-" * len(line)]
    for b in body:
        out.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(b, widths))))
    return "\n".join(out)


def format_markdown(results: dict, seeds_column: bool = False) -> str:
    """The same table in Markdown; ``seeds_column`` adds each row's number of seeds.

    Example:
        >>> res = {"dataset": "g", "num_nodes": 3, "num_edges": 4, "rows": [
        ...     {"method": "kd", "model": "MLP(8)", "test_acc_mean": 0.8, "test_acc_std": 0.0,
        ...      "test_acc": [0.8], "train_seconds": 1.5, "inference_ms_per_1k_nodes": 0.125}]}
        >>> print(format_markdown(res, seeds_column=True).splitlines()[-1])
        | kd | MLP(8) | 80.00 ± 0.00 | 1 | 1.50 | 0.125 |
    """
    seeds_head, seeds_rule = (" seeds |", "---:|") if seeds_column else ("", "")
    lines = ["| method | model | test acc (%) |" + seeds_head + " train s / seed | inference ms / 1k nodes |",
             "|---|---|---:|" + seeds_rule + "---:|---:|"]
    for r in results["rows"]:
        seeds = f" {len(r['test_acc'])} |" if seeds_column else ""
        lines.append(f"| {r['method']} | {r['model']} | {100 * r['test_acc_mean']:.2f} ± "
                     f"{100 * r['test_acc_std']:.2f} |{seeds} {r['train_seconds']:.2f} | "
                     f"{r['inference_ms_per_1k_nodes']:.3f} |")
    return "\n".join(lines)


def save_json(results: dict, path: str) -> None:
    """Writes ``results`` (validated) as indented JSON, atomically (a unique temporary file, fsync, rename).

    Example:
        >>> save_json(results, "out/results.json")        # doctest: +SKIP
    """
    validate(results)
    text = json.dumps(results, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def save_png(results: dict, path: str) -> None:
    """Bar chart of mean test accuracy (± std) per row, grouped by student model (needs matplotlib).

    Example:
        >>> save_png(results, "out/results.png")          # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed (servers, CI)
    import matplotlib.pyplot as plt

    rows = results["rows"]
    labels = [f"{r['method']}\n{r['model']}" for r in rows]
    means = [100 * r["test_acc_mean"] for r in rows]
    stds = [100 * r["test_acc_std"] for r in rows]
    colors = ["#555555" if r["method"] == "teacher" else "#bbbbbb" if r["method"] == "none" else "#3b75af"
              for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2), 4.2))
    ax.bar(range(len(rows)), means, yerr=stds, color=colors, capsize=3)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=8)
    lo = min(means) - max(stds + [0]) - 5 if means else 0
    ax.set_ylim(max(0.0, lo), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{results['dataset']}: teacher, no-KD student and distilled students")
    for i, m in enumerate(means):
        ax.text(i, m + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
