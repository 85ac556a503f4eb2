"""Run logs: one JSON line per finished training run, written as runs finish and merged afterwards,
possibly from several processes or machines (``scripts/quality.py --runs-log`` / ``--from-runs``).

A run record is what :func:`gkdfast.distill.experiment.run_experiment` appends to ``details``
(``seed``, ``method``, ``model``, ``test_acc``, ``seconds``, ``epochs``, ``inference_ms_per_1k_nodes``,
``params``: the hyperparameters given to the method, as ``{"sail.inter": "fade"}``, ...) plus the
fields a :class:`RunsLog` adds: ``dataset``, ``backend`` (``"native"`` or ``"reference"``) and where
it ran (``host``, ``device``, ``torch``, ``threads``).

Merging (:func:`merge_runs`): each seed is taken from one source only, the one that finished most
runs of it, so a seed's rows share one teacher; train / inference times come from the source with
the most chosen runs (times from different machines do not average).  docs/data-and-results.md
describes the workflow.
"""
from __future__ import annotations

import glob
import os
import json
import platform
import sys
from collections import Counter
from typing import Iterable, List, NamedTuple, Optional, Sequence

from gkdfast.distill.experiment import summarize_runs

__all__ = ["RunsLog", "where_fields", "read_runs", "run_source", "reference_pair", "merge_runs", "MergedRuns",
           "timing_markdown"]


class RunsLog(list):
    """A list of run records that also appends each record, as one JSON line, to ``path`` (when
    given), with ``fields`` added to every record.  A killed worker keeps every line it finished.

    Example:
        >>> log = RunsLog(None, dataset="cora", backend="native")
        >>> log.append({"seed": 0, "method": "kd"})
        >>> log[0]["dataset"], log[0]["backend"]
        ('cora', 'native')
    """

    def __init__(self, path: Optional[str], **fields):
        super().__init__()
        self.path, self.fields = path, fields

    def append(self, run: dict) -> None:
        run = dict(run, **self.fields)
        super().append(run)
        if self.path:
            with open(self.path, "ab+") as f:
                # a worker killed mid-line left no newline: start on a line of our own, or this record
                # would be glued to the cut one and skipped with it
                end = f.seek(0, os.SEEK_END)
                if end > 0:
                    f.seek(end - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write((json.dumps(run) + "\n").encode())


def where_fields(device) -> dict:
    """Where this process trains, as run records carry it: ``host``, ``device`` (with the GPU's name on
    CUDA), ``torch`` and CPU ``threads``.

    Example:
        >>> sorted(where_fields("cpu"))
        ['device', 'host', 'threads', 'torch']
    """
    import torch

    dev = str(device)
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev = f"{dev} ({torch.cuda.get_device_name(torch.device(dev))})"
    return {"host": platform.node() or "unknown host", "device": dev, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def read_runs(spec: str) -> List[dict]:
    """Run records from comma-separated JSONL paths or glob patterns, in file order.

    A line cut short (a worker killed while writing) is skipped with a note on stderr; a pattern that
    matches no file raises FileNotFoundError naming it.

    Example:
        >>> read_runs("no-such-dir/*.jsonl")
        Traceback (most recent call last):
        ...
        FileNotFoundError: runs log: no file matches 'no-such-dir/*.jsonl'
    """
    runs = []
    for pattern in [p.strip() for p in spec.split(",") if p.strip()]:
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"runs log: no file matches {pattern!r}")
        for path in paths:
            with open(path) as f:
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            runs.append(json.loads(line))
                        except json.JSONDecodeError as exc:  # a worker killed mid-line: skip that line only
                            print(f"{path}:{i}: skipped a partial line ({exc})", file=sys.stderr)
    return runs


def run_source(run: dict) -> str:
    """Where a run ran, as reports name it: device, host, torch, CPU threads.

    Example:
        >>> run_source({"device": "cpu", "host": "h", "torch": "2.5", "threads": 2})
        'cpu on h (torch 2.5, 2 CPU thread(s))'
    """
    return (f"{run.get('device', '?')} on {run.get('host', '?')} (torch {run.get('torch', '?')}, "
            f"{run.get('threads', '?')} CPU thread(s))")


def reference_pair(ref_runs: Sequence[dict], ours_runs: Sequence[dict]) -> Optional[dict]:
    """Reference-backend runs next to ours for one seed (the first reference run's), each
    (method, model) once (a resumed worker may log a run twice): ``{"runs": [...], "ours_runs": [...]}``,
    or ``None`` without reference runs.

    Example:
        >>> r = {"seed": 0, "method": "kd", "model": "MLP(8)"}
        >>> reference_pair([r, r], [dict(r, seed=1), r])
        {'runs': [{'seed': 0, 'method': 'kd', 'model': 'MLP(8)'}], 'ours_runs': [{'seed': 0, 'method': 'kd', 'model': 'MLP(8)'}]}
    """
    if not ref_runs:
        return None
    seed = ref_runs[0]["seed"]

    def once(runs):
        seen = {}
        for r in runs:
            if r["seed"] == seed:
                seen.setdefault((r["method"], r["model"]), r)
        return list(seen.values())

    return {"runs": once(ref_runs), "ours_runs": once(ours_runs)}


class MergedRuns(NamedTuple):
    """What :func:`merge_runs` rebuilds for one dataset."""

    results: dict  # the results.json dictionary (gkdfast.distill.results schema)
    reference: Optional[dict]  # reference_pair(...) for the timing table, or None
    seconds: float  # training seconds of the chosen runs, summed
    timing: str  # one sentence: which machines' runs, and whose times the table shows


def merge_runs(runs: Iterable[dict], dataset: str, seeds: Sequence[int], num_nodes: int = 0,
               num_edges: int = 0, name: Optional[str] = None) -> Optional[MergedRuns]:
    """Merges recorded runs of ``dataset`` (their ``"dataset"`` field) over ``seeds`` into one
    result; ``None`` when no native run of those seeds is recorded.

    Seeds may come from several machines (a GPU lease, then a CPU to finish).  Each seed is taken
    from one source only, the one that finished most runs of it (ties: the first seen), so a seed's
    rows share one teacher; the first record of a (seed, method, model) wins (a resumed worker may
    log a run twice).  A row's accuracy averages over every seed that has it (rows may have different
    seed counts); only ``seeds`` count, so a timing-only run can use a seed of its own.  Runs recorded
    with different ``config`` fields (``scripts/quality.py`` hashes its settings into each) are refused
    (ValueError) rather than merged into one row.  Train /
    inference times come from the source with the most chosen runs, the others only where that source
    has no run of the row.  Reference-backend runs are paired with our runs of the same source.
    ``name`` is the dataset name in the results (default ``dataset``).

    Example:
        >>> run = {"dataset": "g", "seed": 0, "method": "kd", "model": "MLP(8)", "test_acc": 0.5,
        ...        "seconds": 2.0, "epochs": 4, "inference_ms_per_1k_nodes": 0.1, "device": "cpu"}
        >>> merged = merge_runs([run, dict(run, seed=1, test_acc=0.7)], "g", seeds=[0, 1])
        >>> merged.results["rows"][0]["test_acc"], merged.seconds
        ([0.5, 0.7], 4.0)
        >>> merge_runs([run], "g", seeds=[5]) is None
        True
    """
    mine = [r for r in runs if r.get("dataset") == dataset]
    wanted = set(seeds)
    configs = sorted({str(r.get("config")) for r in mine if r.get("backend", "native") == "native"
                      and r["seed"] in wanted})
    if len(configs) > 1:  # e.g. a quick --epochs check logged beside the full run: never one row
        raise ValueError(f"merge_runs: the runs of {dataset} come from {len(configs)} different settings "
                         f"(config {', '.join(configs)}; 'None': logged without one); merge the logs of one "
                         "setting at a time")
    per_seed = {}  # seed -> source -> {(method, model): run}
    for r in mine:
        if r.get("backend", "native") != "native" or r["seed"] not in wanted:
            continue
        per_seed.setdefault(r["seed"], {}).setdefault(run_source(r), {}).setdefault((r["method"], r["model"]), r)
    chosen = []
    for seed in sorted(per_seed):
        sources = per_seed[seed]
        best = max(sources, key=lambda k: len(sources[k]))  # ties: the first source seen
        chosen += list(sources[best].values())
    if not chosen:
        return None  # only timing-only / reference runs, or seeds outside the report's
    res = summarize_runs(chosen, dataset=name or dataset, num_nodes=num_nodes, num_edges=num_edges)
    counts = Counter(run_source(r) for r in chosen)
    primary = counts.most_common(1)[0][0]
    fallback = []
    for row in res["rows"]:
        timed = [r for r in chosen if (r["method"], r["model"]) == (row["method"], row["model"])
                 and run_source(r) == primary]
        if not timed:
            fallback.append(row["method"])
            continue
        t = summarize_runs(timed, dataset="", num_nodes=0, num_edges=0)["rows"][0]
        row["train_seconds"], row["inference_ms_per_1k_nodes"] = t["train_seconds"], t["inference_ms_per_1k_nodes"]
    note = "; ".join(f"{n} runs {src}" for src, n in counts.most_common())
    timing = (f"Runs: {note}. Times (train s, inference) are from the {primary.split(' (')[0]} runs"
              + (f", except {', '.join(fallback)} (no run there: the other machine's)." if fallback
                 else " only." if len(counts) > 1 else "."))
    ref_runs = [r for r in mine if r.get("backend") == "reference"]
    ref = None
    if ref_runs:  # compare with our runs of the same seed on the same machine, wherever the seed was chosen
        src = run_source(ref_runs[0])
        ref = reference_pair([r for r in ref_runs if run_source(r) == src],
                             [r for r in mine if r.get("backend", "native") == "native" and run_source(r) == src])
    return MergedRuns(res, ref, sum(r["seconds"] for r in chosen), timing)


def timing_markdown(ref: Optional[dict]) -> str:
    """Markdown table of ours vs the reference backend per method (one seed).  Early stopping may stop
    the two at different epochs (float differences), so the fair figure is ms per epoch; totals are
    shown too.  ``ref`` is :func:`reference_pair`'s dict, ``None``, or ``{"error": message}``.

    Example:
        >>> run = {"method": "gcrd", "model": "MLP(8)", "seconds": 1.0, "epochs": 10}
        >>> print(timing_markdown({"runs": [dict(run, seconds=3.0)], "ours_runs": [run]}).splitlines()[-1])
        | gcrd | 1.00 (10) | 3.00 (10) | 100.0 | 300.0 | 3.00× |
    """
    if ref is None:
        return "(no reference-backend run recorded for this dataset)"
    if "error" in ref:
        return f"reference backend run failed: {ref['error']}"
    lines = ["| method | ours: s (epochs) | reference: s (epochs) | ours ms / epoch | reference ms / epoch | speed-up |",
             "|---|---:|---:|---:|---:|---:|"]
    ours = {(r["method"], r["model"]): r for r in ref["ours_runs"]}
    for rr in ref["runs"]:
        o = ours.get((rr["method"], rr["model"]))
        if o is None or not o["epochs"] or not rr["epochs"]:
            continue
        po, pr = 1000 * o["seconds"] / o["epochs"], 1000 * rr["seconds"] / rr["epochs"]
        lines.append(f"| {rr['method']} | {o['seconds']:.2f} ({o['epochs']}) | {rr['seconds']:.2f} ({rr['epochs']}) | "
                     f"{po:.1f} | {pr:.1f} | {pr / max(po, 1e-9):.2f}× |")
    return "\n".join(lines)
