"""One ``gkdfast condense`` run: per seed, condense, save the bundle, train a GCN on the condensed graph and one
on the whole graph, test both on the real test nodes; rows for ``results.json``."""
from __future__ import annotations

import os
import resource
import statistics
import sys
from typing import Callable, List, Optional

from gkdfast._io import file_stem
from gkdfast.condense.condenser import CondenseConfig, condense, prepare_features, sparse_if_mostly_zero
from gkdfast.condense.evaluate import EvalResult, check_split, train_and_test

__all__ = ["run_condense"]


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # bytes on macOS, KiB on Linux


def _row(method: str, results: List[EvalResult], num_nodes: int, num_edges: int, hidden: int, **extra) -> dict:
    accs = [r.test_acc for r in results]
    row = {"method": method, "model": f"GCN({hidden})", "test_acc_mean": statistics.fmean(accs),
           "test_acc_std": statistics.pstdev(accs) if len(accs) > 1 else 0.0, "test_acc": accs,
           "train_seconds": statistics.fmean(r.train_seconds for r in results),
           "inference_ms_per_1k_nodes": statistics.fmean(r.inference_ms_per_1k_nodes for r in results),
           "num_nodes": num_nodes, "num_edges": num_edges}
    row.update(extra)
    return row


def _mean_result(results: List[EvalResult]) -> EvalResult:
    return EvalResult(*(statistics.fmean(getattr(r, k) for r in results) for k in EvalResult.__dataclass_fields__))


def run_condense(data, ratio: float, seeds: List[int], config: CondenseConfig, out: Optional[str] = None,
                 eval_epochs: int = 600, eval_runs: int = 3, progress: bool = False,
                 log: Callable[[str], None] = lambda s: None) -> dict:
    """Runs the comparison and returns ``{"dataset", "num_nodes", "num_edges", "ratio", "config", "rows"}``;
    rows ``whole graph`` and ``gcond`` (``doscond`` in one-step mode), each with ``test_acc_mean``,
    ``test_acc_std``, per-seed ``test_acc``, ``num_nodes``, ``num_edges`` and seconds (the condensed row also
    ``condense_seconds`` per seed and the process's ``peak_rss_mb``).  With ``out``, each seed's condensed graph
    is saved as ``OUT/<name>-<method>-r<ratio>-seed<s>.npz``.  Each condensed graph is scored by the mean of
    ``eval_runs`` GCNs (GCond averages 3); the whole-graph row trains one GCN per seed.

    Example:
        >>> from gkdfast.data import csbm
        >>> from gkdfast.condense import published_config
        >>> res = run_condense(csbm(num_nodes=300, num_classes=3, feature_dim=8), 0.05, [0],
        ...                    published_config(epochs=2, outer=2, inner=1), eval_epochs=10, eval_runs=1)
        >>> [(r["method"], r["num_nodes"]) for r in res["rows"]]
        [('whole graph', 300), ('gcond', 15)]
    """
    if eval_runs < 1:
        raise ValueError(f"eval_runs must be >= 1, got {eval_runs}")
    check_split(data, "gkdfast.condense.run_condense")
    method = "doscond" if config.one_step else "gcond"
    x = sparse_if_mostly_zero(prepare_features(data.x))  # the real graph's GCN forward: O(nnz) first layer
    train_idx = data.train_mask.nonzero().flatten()
    whole, cond, seconds, sizes = [], [], [], []
    for seed in seeds:
        log(f"seed {seed}: GCN on the whole graph ({data.num_nodes} nodes)")
        whole.append(train_and_test(x, data.graph, data.y, train_idx, data, x, seed=seed, hidden=256,
                                    epochs=eval_epochs))
        log(f"seed {seed}: condensing to ratio {ratio} ({config.epochs} epochs, {method})")
        g = condense(data, ratio, seed=seed, config=config, progress=progress)
        seconds.append(g.seconds)
        gd = g.to_graphdata()
        sizes.append((gd.num_nodes, gd.num_edges))
        if out:
            path = os.path.join(out, f"{file_stem(data.name)}-{method}-r{ratio:g}-seed{seed}.npz")
            g.save(path)
            log(f"seed {seed}: wrote {path}")
        cond.append(_mean_result([train_and_test(gd.x, gd.graph, gd.y, gd.train_mask.nonzero().flatten(), data, x,
                                                 seed=seed * 100 + r, hidden=256, epochs=eval_epochs)
                                  for r in range(eval_runs)]))
        log(f"seed {seed}: whole graph {100 * whole[-1].test_acc:.2f}%, {method} {100 * cond[-1].test_acc:.2f}% "
            f"({g.num_nodes} nodes, condensed in {g.seconds:.1f} s)")
    rows = [_row("whole graph", whole, data.num_nodes, data.num_edges, 256),
            # Edges whose learned weight underflows to 0 are dropped, so the count can differ per seed.
            _row(method, cond, sizes[0][0], round(statistics.fmean(e for _, e in sizes)), 256,
                 num_edges_per_seed=[e for _, e in sizes], condense_seconds=seconds,
                 condense_seconds_mean=statistics.fmean(seconds), peak_rss_mb=_peak_rss_mb())]
    cfg = {k: getattr(config, k) for k in config.__dataclass_fields__}
    return {"dataset": data.name, "num_nodes": data.num_nodes, "num_edges": data.num_edges, "ratio": ratio,
            "seeds": list(seeds), "eval_epochs": eval_epochs, "eval_runs": eval_runs, "config": cfg, "rows": rows}
