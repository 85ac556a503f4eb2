"""The comparison's outputs: a printed table, ``results.json`` and a PNG bar chart.

``results.json`` schema (fractions in [0, 1]; one row for the teacher, one per student for the
student without KD, one per (student, recipe))::

    {"dataset": str, "num_nodes": int, "num_edges": int,
     "stages": [{"stage": str, "seconds": float, ...}, ...],      # optional: the out-of-core pipeline's
     "protocol": {"name": "published", "settings": [...]},        # optional: gkdfast.distill.protocols
     "teacher_selection": [{"model": str, "val_acc": float, "seconds": float}, ...],  # optional: --teacher auto
     "teacher_selection_per_seed": {"<seed>": [...], ...},  # optional: --teacher auto on splits re-drawn per seed
     "autocast": "bfloat16" | "float16",                      # optional: mixed-precision training (--autocast)
     "rows": [{"method": str, "model": str, "test_acc_mean": float, "test_acc_std": float,
               "test_acc": [float, ...], "train_seconds": float, "inference_ms_per_1k_nodes": float,
               # only when the data has a sensitive attribute (gkdfast.distill.fairness), every row:
               "delta_sp_mean": float, "delta_sp_std": float, "delta_sp": [float, ...],
               "delta_eo_mean": float, "delta_eo_std": float, "delta_eo": [float, ...]}]}
"""
from __future__ import annotations

import json
import math
from typing import List, Optional

from gkdfast._io import atomic_write

__all__ = ["format_table", "format_markdown", "validate", "save_json", "save_png", "ROW_KEYS", "FAIR_KEYS",
           "has_fairness", "row_settings"]

ROW_KEYS = ("method", "model", "test_acc_mean", "test_acc_std", "test_acc", "train_seconds",
            "inference_ms_per_1k_nodes")
#: Keys every row has, or none has: group-fairness gaps (fractions) when a sensitive attribute exists.
FAIR_KEYS = ("delta_sp_mean", "delta_sp_std", "delta_sp", "delta_eo_mean", "delta_eo_std", "delta_eo")
OPTIONAL_KEYS = ("stages", "protocol", "teacher_selection", "teacher_selection_per_seed", "autocast")


def has_fairness(results: dict) -> bool:
    """Whether the rows carry ΔSP / ΔEO (data with a sensitive attribute).

    Example:
        >>> has_fairness({"rows": [{"method": "kd"}]})
        False
    """
    rows = results.get("rows") or []
    return bool(rows) and all("delta_sp_mean" in r for r in rows)


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
    if not isinstance(results, dict) or set(results) - set(OPTIONAL_KEYS) != {"dataset", "num_nodes", "num_edges", "rows"}:
        raise ValueError("results: expected keys dataset, num_nodes, num_edges, rows (and optionally "
                         f"{', '.join(OPTIONAL_KEYS)})")
    def is_selection(t) -> bool:  # the candidates' table of one --teacher auto pick
        return isinstance(t, list) and all(isinstance(r, dict) and {"model", "val_acc"} <= set(r) for r in t)

    if "teacher_selection" in results and not is_selection(results["teacher_selection"]):
        raise ValueError("results: teacher_selection must be a list of dicts with 'model' and 'val_acc'")
    per_seed = results.get("teacher_selection_per_seed", {})
    if not (isinstance(per_seed, dict) and all(is_selection(t) for t in per_seed.values())):
        raise ValueError("results: teacher_selection_per_seed must map seeds to lists of dicts with 'model' and "
                         "'val_acc'")
    if results.get("autocast", "bfloat16") not in ("bfloat16", "float16"):
        raise ValueError("results: autocast must be 'bfloat16' or 'float16'")
    if "protocol" in results and not (isinstance(results["protocol"], dict) and "name" in results["protocol"]):
        raise ValueError("results: protocol must be a dict with a 'name'")
    if "stages" in results and not (isinstance(results["stages"], list)
                                    and all(isinstance(s, dict) and "stage" in s for s in results["stages"])):
        raise ValueError("results: stages must be a list of dicts with a 'stage' name")
    if not isinstance(results["dataset"], str) or not isinstance(results["num_nodes"], int) \
            or not isinstance(results["num_edges"], int) or not isinstance(results["rows"], list):
        raise ValueError("results: dataset must be str, num_nodes/num_edges int, rows a list")
    fair = any("delta_sp_mean" in r for r in results["rows"])
    keys = set(ROW_KEYS) | (set(FAIR_KEYS) if fair else set())
    for row in results["rows"]:
        if set(row) != keys:
            raise ValueError(f"results: row keys must be {ROW_KEYS}{' + ' + str(FAIR_KEYS) if fair else ''}, "
                             f"got {sorted(row)}")
        for k in (("delta_sp", "delta_eo") if fair else ()):
            vals = row[k]
            if len(vals) != len(row["test_acc"]) or not all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in vals):
                raise ValueError(f"results: {k} of {row['method']} must be one fraction in [0, 1] per seed")
            for stat in (k + "_mean", k + "_std"):
                if not isinstance(row[stat], float) or not 0.0 <= row[stat] <= 1.0:
                    raise ValueError(f"results: {stat} of {row['method']} must be a fraction in [0, 1]")
        accs = row["test_acc"]
        if not accs or not all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in accs):
            raise ValueError(f"results: test_acc of {row['method']} must be fractions in [0, 1]")
        for k in ("test_acc_mean", "test_acc_std", "train_seconds", "inference_ms_per_1k_nodes"):
            if not isinstance(row[k], float) or not math.isfinite(row[k]) or row[k] < 0:
                raise ValueError(f"results: {k} of {row['method']} must be a finite float >= 0")


def _pct(row, key: str = "test_acc") -> str:
    return f"{100 * row[key + '_mean']:6.2f} ± {100 * row[key + '_std']:5.2f}"


def row_settings(results: dict) -> Optional[List[str]]:
    """The published setting each row came from, in row order, when the results hold rows of more than
    one setting (``protocol.settings`` with their ``num_rows``: rows are concatenated setting by
    setting); ``None`` otherwise (one setting, the common protocol, or counts that do not add up).

    Two settings can share a (method, model) pair, e.g. the CPF and TA settings' ``teacher SAGE(128)``:
    the table and the plot then name the setting beside it.

    Example:
        >>> row_settings({"rows": [{}, {}, {}], "protocol": {"name": "published", "settings": [
        ...     {"key": "cpf", "num_rows": 2}, {"key": "ta", "num_rows": 1}]}})
        ['cpf', 'cpf', 'ta']
    """
    settings = (results.get("protocol") or {}).get("settings") or []
    if len(settings) < 2 or not all(isinstance(s.get("num_rows"), int) for s in settings) or \
            sum(s["num_rows"] for s in settings) != len(results["rows"]):
        return None
    return [s["key"] for s in settings for _ in range(s["num_rows"])]


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
    if has_fairness(results):
        cols += ("ΔSP (%)", "ΔEO (%)")
        body = [b + (_pct(r, "delta_sp"), _pct(r, "delta_eo")) for b, r in zip(body, rows)]
    settings = row_settings(results)
    text_cols = 2 + (settings is not None)  # left-aligned; the numbers right-aligned
    if settings is not None:
        cols, body = ("setting",) + cols, [(k,) + b for k, b in zip(settings, body)]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
    out: List[str] = [head, line, "-" * len(line)]
    for b in body:
        out.append("  ".join(v.ljust(w) if i < text_cols else v.rjust(w) for i, (v, w) in enumerate(zip(b, widths))))
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
    fair = has_fairness(results)
    fair_head, fair_rule = (" ΔSP (%) | ΔEO (%) |", "---:|---:|") if fair else ("", "")
    lines = ["| method | model | test acc (%) |" + seeds_head + " train s / seed | inference ms / 1k nodes |"
             + fair_head, "|---|---|---:|" + seeds_rule + "---:|---:|" + fair_rule]
    for r in results["rows"]:
        seeds = f" {len(r['test_acc'])} |" if seeds_column else ""
        gaps = "".join(f" {100 * r[k + '_mean']:.2f} ± {100 * r[k + '_std']:.2f} |"
                       for k in ("delta_sp", "delta_eo")) if fair else ""
        lines.append(f"| {r['method']} | {r['model']} | {100 * r['test_acc_mean']:.2f} ± "
                     f"{100 * r['test_acc_std']:.2f} |{seeds} {r['train_seconds']:.2f} | "
                     f"{r['inference_ms_per_1k_nodes']:.3f} |{gaps}")
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
    settings = row_settings(results) or [None] * len(rows)
    labels = [f"{r['method']}\n{r['model']}" + (f"\n[{k}]" if k else "") for r, k in zip(rows, settings)]
    means = [100 * r["test_acc_mean"] for r in rows]
    stds = [100 * r["test_acc_std"] for r in rows]
    colors = ["#555555" if r["method"] == "teacher" else "#bbbbbb" if r["method"] == "none" else "#3b75af"
              for r in rows]
    fair = has_fairness(results)
    width = max(6.0, 0.8 * len(rows) + 2)
    if fair:  # a second panel: the two bias gaps per row
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(2 * width, 4.2))
        pos = list(range(len(rows)))
        for off, key, col in ((-0.2, "delta_sp", "#c0504d"), (0.2, "delta_eo", "#9bbb59")):
            ax2.bar([p + off for p in pos], [100 * r[key + "_mean"] for r in rows], width=0.4,
                    yerr=[100 * r[key + "_std"] for r in rows], color=col, capsize=2,
                    label="ΔSP" if key == "delta_sp" else "ΔEO")
        ax2.set_xticks(pos)
        ax2.set_xticklabels(labels, fontsize=8)
        ax2.set_ylabel("bias gap on test nodes (%, lower is fairer)")
        ax2.legend(fontsize=8)
        ax2.set_title("group fairness")
    else:
        fig, ax = plt.subplots(figsize=(width, 4.2))
    ax.bar(range(len(rows)), means, yerr=stds, color=colors, capsize=3)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=8)
    lo = min(means) - max(stds + [0]) - 5 if means else 0
    # (mean + population std can pass 100: the top leaves room for the bar and its label)
    hi = max([100.0] + [m + s + 4 for m, s in zip(means, stds)])
    ax.set_ylim(max(0.0, lo), hi)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{results['dataset']}: teacher, no-KD student and distilled students")
    for i, (m, s) in enumerate(zip(means, stds)):  # above the error bar, not struck through by it
        ax.text(i, m + s + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    from gkdfast._io import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))  # a kill leaves no truncated PNG
    plt.close(fig)
