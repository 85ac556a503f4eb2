"""GNN students in the out-of-core pipeline (:func:`gkdfast.distill.large.distill_large` with
``student="sage"``, ``"gcn"``, ``"gin"`` or ``"gat"``): the published setting of LSP / GSP / G-CRD
style distillation (a big GNN into a small GNN) at a size where neither can train full-batch.

A GNN student trains like the sampled teacher (:func:`gkdfast.sampling.fit_sampled`: neighbour-sampled
blocks, only ``x[n_id]`` gathered), with the recipe's terms over each batch's seeds, whose teacher rows
come from the memory-mapped cache (LSP: each step's seeds are centres whose in-neighbours join the
sampled batch, ``fit_sampled(batch_edges="neighbours")``, so its term per centre is the full-graph
one); its test accuracy comes from exact layer-wise inference over the
whole graph (:func:`gkdfast.nn.layerwise_inference`), written to a scratch folder and deleted after.
"""
from __future__ import annotations

import shutil
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["GNN_STUDENTS", "estimate_gnn_student", "fit_gnn_student", "gnn_accuracy"]

GNN_STUDENTS = ("sage", "gcn", "gin", "gat")
_F32 = 4


def estimate_gnn_student(n: int, f: int, hidden: int, c: int, fanouts: Sequence[int], batch_size: int,
                         model: nn.Module, num_val: int, teacher_hidden: int = 0, pair_width: int = 0,
                         neighbours: float = 0.0) -> Dict[str, float]:
    """Bytes of a sampled GNN student's stage: the sampled batch (as the teacher's,
    :func:`~gkdfast.distill.large.estimate_teacher`), the seed order, the teacher logits paged in from
    the cache, and for representation recipes the mapped teacher hidden matrix and the pair term's heads
    and projected seed rows.  ``neighbours``: the mean in-degree when each step's seeds bring their
    in-neighbours (LSP's neighbourhood batches): the sampled batch then grows from ``batch_size`` to
    ``batch_size · (1 + neighbours)`` seeds (at most ``n``), plus the batch graph's index tensors and
    the LSP kernel's per-edge rows.

    Example:
        >>> from gkdfast.nn import SAGE
        >>> parts = estimate_gnn_student(10**6, 100, 64, 47, (15, 10), 1024, SAGE(100, 64, 47), 1000)
        >>> "teacher logits (mapped, read)" in parts
        True
    """
    from gkdfast.distill.large import estimate_teacher

    rows = min(n, int(batch_size * (1 + neighbours)))
    parts = estimate_teacher(n, f, hidden, c, fanouts, rows, model)
    if neighbours:
        edges = batch_size * neighbours
        parts["batch graph (neighbourhoods)"] = 12 * edges * 8  # gathers, sort/unique and CSR of the in-edges
        parts["teacher rows of the neighbourhoods"] = rows * (c + teacher_hidden) * _F32
    parts["seed order"] = 3 * n * 8
    parts["teacher logits (mapped, read)"] = n * c * _F32
    parts["validation pass"] = 2 * min(num_val, batch_size) * (f + hidden + c) * _F32 * max(fanouts)
    if teacher_hidden:
        parts["teacher hidden (mapped, read)"] = n * teacher_hidden * _F32
    if pair_width:
        parts["pair term (heads, projected rows)"] = (4 * (hidden + teacher_hidden + 2 * pair_width) * pair_width
                                                     + 12 * batch_size * pair_width) * _F32
    return parts


def fit_gnn_student(model: nn.Module, data, recipe, teacher, *, fanouts: Sequence[int], schedule: dict,
                    seed: int, progress: bool, distributed="auto", process_group=None,
                    checkpoint: Optional[str] = None) -> dict:
    """Trains ``model`` in place by ``recipe`` on sampled batches; returns :func:`fit_sampled`'s stats.
    ``recipe.name == "none"``: cross-entropy on the training nodes alone (the baseline).  ``schedule``:
    :func:`~gkdfast.distill.large.student_schedule`'s (``epochs``, ``patience``, ``batching``).
    ``checkpoint``: :func:`fit_sampled`'s (a rerun resumes, or returns a finished training at once).
    ``teacher``: a :class:`~gkdfast.distill.TeacherOutputs` (``logits`` ``[N, C]``, ``hidden`` ``[N, H]`` or None).

    Example:
        >>> from gkdfast.data import csbm
        >>> from gkdfast.distill import TeacherOutputs, recipes
        >>> d = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
        >>> teacher = TeacherOutputs(4.0 * torch.nn.functional.one_hot(d.y, 3).float())  # [N, C] logits
        >>> stats = fit_gnn_student(gkdfast.nn.SAGE(8, 16, 3), d, recipes.get("glnn", batch_size=64), teacher,
        ...                         fanouts=(5, 5), schedule={"epochs": 1, "patience": None, "batching": "partition"},
        ...                         seed=0, progress=False)
        >>> stats["epochs"], sorted(k for k in stats if k != "history")
        (1, ['best_epoch', 'best_val_acc', 'epochs', 'nodes_per_s', 'resumed_after_epoch', 'seconds'])
    """
    from gkdfast.sampling import fit_sampled

    if recipe.passes != "joint":
        raise ValueError(f"distill_large: {recipe.name} with passes={recipe.passes!r} and a GNN student: sampled "
                         "students train joint passes only")
    terms = None if recipe.name == "none" else recipe.terms()
    # (the recipe's "neighbours" batches, LSP's, become neighbourhood batches of sampled blocks)
    edges = "neighbours" if terms is not None and schedule.get("batch_edges") == "neighbours" else "sampled"
    return fit_sampled(model, data, fanouts=fanouts, batch_size=recipe.batch_size, epochs=schedule["epochs"],
                       lr=recipe.lr, weight_decay=recipe.weight_decay, seed=seed, progress=progress,
                       terms=terms, teacher=teacher if terms is not None else None,
                       patience=schedule["patience"], batching=schedule["batching"], batch_edges=edges,
                       distributed=distributed, process_group=process_group, checkpoint=checkpoint)


def gnn_accuracy(model: nn.Module, data, test_idx: Tensor, folder: str, chunk_rows: int,
                 group=None) -> Tuple[float, float]:
    """``(test accuracy, seconds)`` of a GNN by exact layer-wise inference over every node (the rows of
    ``test_idx`` (``[T]`` node ids) read from the result), its layer files in ``folder``, deleted afterwards.

    Example:
        >>> import os, tempfile
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=200, num_classes=3, feature_dim=8, seed=0)
        >>> folder = os.path.join(tempfile.mkdtemp(), "inference")
        >>> acc, seconds = gnn_accuracy(gkdfast.nn.SAGE(8, 16, 3), d, d.test_mask.nonzero().view(-1), folder, 64)
        >>> 0.0 <= acc <= 1.0, os.path.exists(folder)  # the layer files are gone
        (True, False)
    """
    from gkdfast.nn import layerwise

    t0 = time.perf_counter()
    try:
        logits, _ = layerwise.layerwise_inference(model.eval(), data.x, data.graph, chunk_rows=chunk_rows,
                                                  out_dir=folder, progress=False, group=group)
        seconds = time.perf_counter() - t0
        pred = logits[test_idx].argmax(-1)
        acc = float((pred == torch.as_tensor(data.y[test_idx]).to(pred.device)).float().mean())
        del logits, _
        if group is not None:
            group.barrier()  # every rank has dropped its maps
    finally:  # the layer files go on an error or an interrupt too (N x width each)
        if group is None or group.is_main:
            shutil.rmtree(folder, ignore_errors=True)
    return acc, seconds
