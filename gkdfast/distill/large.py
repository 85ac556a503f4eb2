"""Distillation on graphs too big for full-batch training: the out-of-core pipeline (GLNN, KD, NOSMOG,
and the representation recipes LSP, GSP, G-CRD and KD + G-CRD, whose terms need only batch rows and,
for LSP, the batch nodes' in-neighbours).

Stages (each one first checks its memory estimate against ``MemAvailable``, then records wall time,
throughput and its own peak RSS in the ``stages`` table):

1. ``teacher``: a GNN trained on neighbour-sampled mini-batches (:func:`gkdfast.sampling.fit_sampled`);
   skipped when a trained teacher module is passed.
2. ``inference``: the teacher over every node by :func:`gkdfast.nn.layerwise_inference`, written
   straight into the memory-mapped teacher cache (:mod:`gkdfast.distill.teacher_cache`).
3. ``positions`` (NOSMOG only): DeepWalk position features by the streaming native op, joined to
   ``x`` in one memory-mapped file (:mod:`gkdfast.distill.large_positions`): NOSMOG's student input.
4. ``student``: an MLP trained in node mini-batches by each recipe (GLNN: CE on the training nodes +
   KL to the teacher on every node; GSP / G-CRD: CE + the all-pairs term between the batch's student
   and teacher hidden rows) reading the mapped teacher outputs and only the batch rows of ``x``; with
   several methods, one stage per method (``student:<method>``).  LSP's batches bring every in-neighbour
   of their nodes (:mod:`gkdfast.distill.neighbourhood`): its loss per node is then the full-graph one.
   Schedules (:func:`student_schedule`):
   LSP's, GSP's and G-CRD's only label signal is the CE on the training rows, which a partition batch of a
   graph with few labels rarely holds, so while the training nodes fill at most half a batch they
   train on Graph-MLP's ``labelled_first`` batches (every training node plus drawn nodes, one step per
   epoch); ``docs/scale.md`` measures this against partition batches and ``passes="separate"`` at
   2·10⁵ and 2.45·10⁶ nodes.  Every student's budget is at least ``student_min_steps`` optimiser steps
   and its patience at least ``min_patience_steps`` steps, however few steps an epoch holds (early
   stopping may still end it sooner), and at most ``max_patience_steps`` steps (rounded up to whole
   epochs; the floor wins where the two meet), however many an epoch holds: at 10⁷ nodes a GLNN epoch
   is 2,442 steps, and five epochs of patience after the best one were five sixths of its stage.  With
   ``student="sage"`` (``gcn``, ``gin``, ``gat``) the student is a GNN trained on neighbour-sampled
   batches with the same terms over each batch's seeds (:mod:`gkdfast.distill.large_gnn`).
5. ``baseline``: the same MLP trained on labels alone (the "no KD" row), on the same step budget.
6. ``evaluate``: test accuracy of teacher (from its cached logits), student and baseline, in batches.

Nothing holds a second full copy of ``x`` or of the teacher outputs: ``x`` may be a read-only memory
map (:func:`gkdfast.data.load_mmap`), the students gather batch rows from it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from typing import Callable, Dict, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from gkdfast._rows import take_rows
from gkdfast._io import atomic_write
from gkdfast.distill import recipes as _recipes
from gkdfast.distill.large_gnn import GNN_STUDENTS, estimate_gnn_student, fit_gnn_student, gnn_accuracy
from gkdfast.distill.memory import InsufficientMemory, StageTimer, check_memory, format_bytes
from gkdfast.distill.teacher_cache import TeacherOutputs, teacher_outputs

__all__ = ["distill_large", "student_schedule", "format_stages", "estimate_teacher", "estimate_inference",
           "estimate_student", "estimate_evaluate", "LARGE_METHODS", "LABELLED_FIRST_METHODS", "NEIGHBOURHOOD_METHODS",
           "POSITION_METHODS"]

# Recipes a graph-free student can train on batches: per-node terms (GLNN, KD), all-pairs terms within
# the batch (GSP, G-CRD) and LSP on neighbourhood batches, so a student step reads only its batch rows
# (and LSP's neighbours) of x and of the mapped teacher outputs.
LARGE_METHODS = ("glnn", "kd", "nosmog", "lsp", "gsp", "gcrd", "kd_gcrd")
# Recipes whose only label signal is the CE on the training rows (no soft labels on every node): on
# a graph with few labels they train on batches that carry every training node (student_schedule).
LABELLED_FIRST_METHODS = ("lsp", "gsp", "gcrd")
# Recipes whose term compares each node with its in-neighbours (LSP): their batches bring every
# in-neighbour of the batch nodes (Distiller(batch_edges="neighbours")), as a random batch of a large
# graph holds almost no edges.
NEIGHBOURHOOD_METHODS = ("lsp",)
# Recipes whose MLP student reads [x ; DeepWalk positions] (NOSMOG): the ``positions`` stage computes
# them once by streaming DeepWalk (O(N·dim) memory); a ``pos_method`` that stores the walks' pairs is
# refused.
POSITION_METHODS = ("nosmog",)
_F32 = 4


def _params_bytes(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters()) * _F32


def estimate_teacher(n: int, f: int, hidden: int, c: int, fanouts: Sequence[int], batch_size: int,
                     model: nn.Module) -> Dict[str, float]:
    """Bytes the sampled teacher training needs beyond the loaded graph and features: weights with
    gradients and Adam state (4 copies), and one mini-batch: the sampled nodes' gathered features and
    activations (forward + backward) and the sampled edges.

    Example:
        >>> from gkdfast.nn import SAGE
        >>> parts = estimate_teacher(10**6, 100, 256, 47, (15, 10), 1024, SAGE(100, 256, 47))
        >>> sorted(parts)
        ['activations', 'gathered features', 'sampled edges', 'weights+grad+adam']
    """
    # Hop h: every node gathered so far draws fanouts[h] neighbours (gkdfast.sampling.sample_blocks), so
    # the nodes grow by a factor (1 + k) per hop; an upper bound (no shared neighbours).
    nodes, edges = batch_size, 0
    for k in fanouts:
        edges += nodes * k
        nodes += nodes * k
    nodes = min(nodes, n)
    parts = {"weights+grad+adam": 4 * _params_bytes(model), "gathered features": 2 * nodes * f * _F32,
             "activations": 4 * nodes * (hidden + c) * _F32, "sampled edges": 3 * edges * 8}
    heads = int(getattr(getattr(model, "layers", [None])[0], "heads", 0) or 0)
    if heads:  # attention: per edge and head ~8 floats forward, kept for backward, plus index arrays
        parts["attention (per edge)"] = edges * (heads * 8 * _F32 * 2 + 24)
    return parts


def estimate_inference(n: int, avg_degree: float, f: int, hidden: int, c: int, chunk_rows: int,
                       num_layers: int = 2, heads: int = 1, attention: bool = False,
                       max_block_edges: Optional[int] = None) -> Dict[str, float]:
    """Bytes of :func:`gkdfast.nn.layerwise_inference` at its worst layer: that layer's input and
    output matrices and its transform buffer (``h W^T`` when the output is narrower than the input,
    always for GAT), all ``[N, width]`` float32 memory-mapped into the cache folder, the degree vector,
    and one block's workspace (its CSR slice, per-edge values and attention, its rows in and out).
    ``max_block_edges``: the in-edges of the fullest block of ``chunk_rows`` rows (hubs gathered in one
    block, as after a degree reordering, take several times the average); default the average.

    Example:
        >>> parts = estimate_inference(10**6, 50, 100, 256, 47, 65536)
        >>> format_bytes(sum(parts.values()))
        '1.87 GiB'
    """
    widths = [f] + [hidden] * (num_layers - 1) + [c]
    worst = 0
    for i in range(num_layers):
        w_in, w_out = widths[i], widths[i + 1]
        pre = w_out if (attention or w_out < w_in) else 0
        worst = max(worst, (w_in if i > 0 else 0) + w_out + pre)  # x itself is already loaded
    chunk = min(chunk_rows, n)
    block_edges = max(chunk * max(avg_degree, 1.0), max_block_edges or 0)
    # GAT per edge and head: scores, their softmax and the intermediates of both (~8 floats), the
    # messages, and the int64 index arrays the block builds (a count of the arrays, not a measurement)
    per_edge = 8 + 8 + _F32 + (_F32 * (8 * heads + 2 * max(hidden // heads, c)) + 24 if attention else 0)
    return {"layer matrices (mapped)": n * worst * _F32, "degree vector": n * _F32,
            "block workspace": block_edges * per_edge + 4 * chunk * (max(f, hidden) + hidden) * _F32}


def _max_block_edges(graph, chunk_rows: int) -> int:
    """In-edges of the fullest block of ``chunk_rows`` consecutive rows (O(N / chunk_rows) reads of rowptr)."""
    n = graph.num_nodes
    if n == 0:
        return 0
    chunk = max(1, min(int(chunk_rows), n))
    rp = graph.rowptr
    starts = torch.arange(0, n, chunk, device=rp.device)
    ends = (starts + chunk).clamp(max=n)
    return int((rp[ends].long() - rp[starts].long()).max())


def estimate_student(n: int, f: int, hidden: int, c: int, batch_size: int, num_val: int,
                     model: nn.Module, teacher_hidden: int = 0, pair_width: int = 0,
                     neighbours: float = 0.0) -> Dict[str, float]:
    """Bytes of mini-batch MLP training: weights with gradients and Adam state, the batch order over
    every node (int64 permutation and its batches), the teacher's logits paged in from the cache
    over an epoch, one batch's gathered rows and activations, and the per-epoch validation pass.
    A representation recipe (LSP, GSP, G-CRD) also pages in the teacher's ``[n, teacher_hidden]`` hidden
    matrix and gathers the batch's rows of it; an all-pairs one (GSP, G-CRD: ``pair_width > 0``) keeps
    its projection heads and the batch's projected rows (``pair_width`` wide); its pair losses run in
    tiles of a fixed workspace, never ``batch x batch``.  ``neighbours``: the mean
    in-degree when each batch brings its nodes' in-neighbours (LSP's neighbourhood batches): the rows
    and activations grow to ``batch · (1 + neighbours)``, plus the batch graph's index tensors.

    Example:
        >>> from gkdfast.nn import MLP
        >>> parts = estimate_student(10**6, 100, 256, 47, 4096, 10**4, MLP(100, 256, 47))
        >>> format_bytes(parts["batch order"])
        '23.8 MiB'
    """
    b = min(batch_size, n)
    edges = b * neighbours
    b = min(int(b + edges), n)  # rows the student runs on
    parts = {"weights+grad+adam": 4 * _params_bytes(model), "batch order": 3 * n * 8 + n,
             "teacher logits (mapped, read)": n * c * _F32,
             "batch rows": 6 * b * (f + hidden + 2 * c) * _F32,
             "validation pass": num_val * (f * _F32 + 8) + min(num_val, 65536) * (hidden + c) * _F32}
    if teacher_hidden:
        parts["teacher hidden (mapped, read)"] = n * teacher_hidden * _F32
        parts["teacher hidden rows"] = 2 * b * teacher_hidden * _F32
    if pair_width:
        p = pair_width
        parts["pair term (heads, projected rows)"] = (4 * (hidden + teacher_hidden + 2 * p) * p
                                                     + 6 * b * 2 * p) * _F32
    if neighbours:
        parts["batch graph (neighbourhoods)"] = 12 * edges * 8  # gathers, sort/unique and CSR of the in-edges
    return parts


def estimate_evaluate(n: int, f: int, hidden: int, c: int, batch_size: int) -> Dict[str, float]:
    """Bytes of the batched evaluation: one batch's rows, activations and logits, and the index lists.

    Example:
        >>> sorted(estimate_evaluate(1000, 8, 16, 3, 256))
        ['batch rows', 'index lists']
    """
    return {"batch rows": 2 * min(batch_size, n) * (f + hidden + c) * _F32, "index lists": 3 * n * 8}


@torch.no_grad()
def _batched_accuracy(model: nn.Module, x: Tensor, y: Tensor, idx: Tensor, batch: int, group=None):
    """(accuracy, seconds) of a graph-free ``model`` on rows ``idx``, gathering ``batch`` rows at a time;
    under ``group`` (a :class:`gkdfast.distill.ddp.Dist`) each rank every W-th row, counts summed
    (the seconds are this rank's, for its share)."""
    model.eval()
    mine = idx if group is None else idx[group.rank::group.world_size]
    correct, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for part in mine.split(batch):
            correct += int((model(take_rows(x, part)).argmax(-1) == take_rows(y, part)).sum())
    seconds = time.perf_counter() - t0
    if group is not None:
        correct = int(group.all_reduce_sum(torch.tensor([float(correct)]))[0])
    return (correct / idx.numel() if idx.numel() else 0.0), seconds


def _method_overrides(methods: Sequence[str], overrides: Optional[dict]) -> Dict[str, dict]:
    """``overrides`` per method: keys ``"method.param"`` (e.g. ``"glnn.lamb"``), or plain ``"param"``
    when one method runs.  Each method's set is checked by building its recipe (an unknown key fails
    here, before any work)."""
    per: Dict[str, dict] = {m: {} for m in methods}
    for key, value in (overrides or {}).items():
        m, dot, param = str(key).partition(".")
        if not dot:
            if len(methods) != 1:
                raise ValueError(f"distill_large: override {key!r} names no method; with several methods "
                                 "write 'method.param' (e.g. 'glnn.lamb')")
            m, param = methods[0], key
        m = _recipes.get(m).name
        if m not in per:
            raise ValueError(f"distill_large: override {key!r} is for {m!r}, which is not among the methods "
                             f"{methods}")
        per[m][param] = value
    for m, kw in per.items():
        _recipes.get(m, **kw)
    return per


def student_schedule(method: str, params: dict, *, num_train: int, num_pool: int, batch_size: int, epochs: int,
                     patience: Optional[int], min_steps: int = 0, min_patience_steps: int = 0,
                     max_patience_steps: Optional[int] = None, passes: str = "joint") -> dict:
    """The pipeline's training schedule of one student: ``batching``, ``batch_edges``, ``epochs`` and
    ``patience``.

    An epoch holds ``steps`` optimiser steps: one on ``labelled_first`` batches, ``ceil(pool /
    batch_size)`` on partition batches (the pool: the training nodes for ``"none"``, every node for the
    others), the two passes' full batches with ``passes="separate"``.  ``epochs`` and ``patience`` are
    raised so the student's budget is at least ``min_steps`` steps and its patience at least
    ``min_patience_steps`` steps (early stopping may still end it sooner):
    with 235 labelled nodes among 2.45·10⁶, 20 epochs of the label-only baseline would be 20 steps.
    ``patience`` is then lowered to at most ``ceil(max_patience_steps / steps)`` epochs (at least one,
    and never below the ``min_patience_steps`` floor): early stopping counts epochs, and on a huge pool an
    epoch of patience is thousands of steps.
    Methods in :data:`LABELLED_FIRST_METHODS` take ``batching="labelled_first"`` while the training nodes
    fill at most half a batch (with ``passes="joint"``); those in :data:`NEIGHBOURHOOD_METHODS` ``batch_edges="neighbours"``.  What
    ``params`` (the method's overrides) sets is kept as given.

    Args:
        method: a recipe name or ``"none"``.  params: its overrides (``epochs``, ``patience``,
            ``batching`` and ``batch_edges`` are read).  num_train / num_pool: training nodes / all nodes.
        batch_size, epochs, patience: the pipeline's settings.  min_steps, min_patience_steps: floors.
        max_patience_steps: the ceiling on patience, in steps (None: none); the floor wins over it.
        passes: the recipe's ``passes`` (``"joint"`` or ``"separate"``).

    Returns:
        ``{"batching", "batch_edges", "epochs", "patience", "steps_per_epoch"}``.

    Example:
        >>> s = student_schedule("gsp", {}, num_train=235, num_pool=2_450_000, batch_size=4096, epochs=20,
        ...                      patience=5, min_steps=600, min_patience_steps=100)
        >>> s["batching"], s["epochs"], s["patience"], s["steps_per_epoch"]
        ('labelled_first', 600, 100, 1)
        >>> s = student_schedule("glnn", {}, num_train=10**5, num_pool=10**7, batch_size=4096, epochs=20,
        ...                      patience=5, max_patience_steps=3000)
        >>> s["steps_per_epoch"], s["patience"]
        (2442, 2)
    """
    batching = params.get("batching")
    if batching is None:
        batching = ("labelled_first" if method in LABELLED_FIRST_METHODS and 2 * num_train <= batch_size
                    and passes == "joint" else "partition")  # (separate passes have a label pass of their own)
    if batching == "labelled_first":
        steps = 1
    elif passes == "separate":
        steps = max(1, num_train // batch_size) + max(1, num_pool // batch_size)
    else:
        steps = -(-(num_train if method == "none" else num_pool) // batch_size)
    out = {"batching": batching, "steps_per_epoch": steps,
           "batch_edges": params.get("batch_edges", "neighbours" if method in NEIGHBOURHOOD_METHODS else "induced"),
           "epochs": max(epochs, -(-min_steps // steps)), "patience": patience}
    if patience is not None:  # the ceiling first, so that the floor wins where the two meet
        if max_patience_steps is not None:
            patience = min(patience, max(1, -(-max_patience_steps // steps)))
        out["patience"] = max(patience, -(-min_patience_steps // steps))
    out.update({k: params[k] for k in ("epochs", "patience") if k in params})
    return out


def _row(method: str, model: str, acc: float, seconds: float, ms_per_1k: float) -> dict:
    return {"method": method, "model": model, "test_acc_mean": float(acc), "test_acc_std": 0.0,
            "test_acc": [float(acc)], "train_seconds": float(seconds), "inference_ms_per_1k_nodes": float(ms_per_1k)}


def _plain_numbers(values: dict, keep_all: bool = False) -> dict:
    """``values`` for JSON: NaN (e.g. a validation score without validation nodes) becomes ``None``;
    unless ``keep_all``, only the numbers and flags are kept.

    Example:
        >>> _plain_numbers({"a": float("nan"), "b": 2, "c": "x"})
        {'a': None, 'b': 2}
    """
    return {k: None if isinstance(v, float) and v != v else v for k, v in values.items()
            if keep_all or isinstance(v, (int, float, bool))}


def _remove_other_partials(weights: str, keep: str) -> None:
    """Deletes the partial training checkpoints of this teacher file made for other keys (other data or
    settings: never resumed)."""
    folder, stem = os.path.split(weights[:-3])
    for name in os.listdir(folder or "."):
        path = os.path.join(folder, name)
        if name.startswith(stem + ".") and name.endswith(".partial.pt") and path != keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _read_record(path: str) -> dict:
    """The teacher's training record, or ``{}`` when it is missing or damaged (then it trains again)."""
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _read_weights(path: str):
    """``(state_dict, None)``, or ``(None, why)`` when the file cannot be read (then it trains again)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), None
    except Exception as exc:  # truncated, damaged or not a state dict: torch raises several types
        return None, f"cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"


def _teacher_key(data, label: str, num_layers: int, fanouts, epochs: int, batch_size: int, lr: float,
                 min_steps: int, validations: int, seed: int) -> str:
    """32 hex digits of a hash of the sampled teacher's training: its settings, the features, the graph,
    the labels and the split (every byte: a few seconds at 10^7 nodes, against minutes of training)."""
    from gkdfast.distill.teacher_cache import hash_dropout_implementation, hash_edge_weights, hash_tensor

    h = hashlib.sha256()
    hash_dropout_implementation(h)  # (the teacher's dropout masks)
    h.update(f"teacher1;{label};{num_layers};{tuple(fanouts)};{epochs};{batch_size};{lr!r};{min_steps};"
             f"{validations};{seed}".encode())
    for t in (data.x, data.graph.rowptr, data.graph.col, data.y, data.train_mask, data.val_mask):
        hash_tensor(h, t)
    hash_edge_weights(h, data.graph)  # in CSR order: which edge carries which weight
    return h.hexdigest()[:32]


def distill_large(data, *, teacher: Union[str, nn.Module] = "sage", hidden: int = 256, num_layers: int = 2,
                  fanouts: Sequence[int] = (15, 10), teacher_epochs: int = 3, teacher_batch_size: int = 1024,
                  teacher_lr: float = 0.003, teacher_min_steps: int = 200, teacher_validations: int = 20,
                  batch_size: int = 4096, chunk_rows: int = 65536,
                  student: str = "mlp", student_hidden: Optional[int] = None,
                  method: Union[str, Sequence[str]] = "glnn",
                  student_epochs: int = 20, student_dropout: float = 0.5, patience: Optional[int] = 5,
                  student_min_steps: int = 600, min_patience_steps: int = 100,
                  max_patience_steps: Optional[int] = 3000, eval_batch_size: int = 65536,
                  seed: int = 0, out_dir: str = "gkdfast-large", cache_dir: Optional[str] = None,
                  progress: bool = True, check_memory_first: bool = True, overrides: Optional[dict] = None,
                  log: Callable[[str], None] = lambda s: None, distributed="auto", process_group=None) -> dict:
    """Runs the out-of-core pipeline (module docstring) and returns ``results.json``'s dictionary.

    Args:
        data: a :class:`gkdfast.data.GraphData` (``x`` may be memory-mapped, read-only).
        teacher: model name (``sage``, ``gcn``, ``gin``, ``gat``) trained by neighbour sampling, or a
            trained :mod:`gkdfast.nn` model (stage ``teacher`` is then skipped).
        hidden, num_layers: teacher width and depth.  fanouts: neighbours sampled per layer.
        teacher_epochs, teacher_batch_size, teacher_lr: sampled training settings.
        teacher_min_steps: the teacher gets at least this many optimiser steps: with few labelled
            nodes (one batch per epoch) ``teacher_epochs`` is raised to ``ceil(steps / batches)``.
        teacher_validations: how many times, about, the sampled teacher is validated (every
            ``ceil(epochs / teacher_validations)`` epochs, and after the last; the best validated
            weights are kept).  With one batch per epoch, validating every epoch cost twice the
            training steps (10⁶ nodes: 49.5 of 72.6 s).
        batch_size: the students' node mini-batch.  chunk_rows: rows per block of layer-wise inference.
        student: ``"mlp"`` (a graph-free student in node batches), or ``"sage"``, ``"gcn"``, ``"gin"``,
            ``"gat"``: a GNN student with ``len(fanouts)`` layers trained on neighbour-sampled batches
            of ``batch_size`` seeds with the recipe's terms over the seeds
            (:mod:`gkdfast.distill.large_gnn`; LSP's steps take neighbourhood batches of sampled
            blocks), evaluated by exact layer-wise inference.
            student_hidden: its width (default ``hidden``).  method: one of :data:`LARGE_METHODS` (``"glnn"``, ``"kd"``,
            ``"nosmog"``, ``"lsp"``, ``"gsp"``, ``"gcrd"``, ``"kd_gcrd"``) or a list of them, each trained
            from the same initial weights on the same cached teacher outputs (NOSMOG's student, whose
            input is ``[x ; positions]``, from its own).
        student_epochs, patience: student training length and early stopping, in epochs.
        student_min_steps, min_patience_steps: each student's (the baseline's too) budget of optimiser
            steps and its patience, in steps, are at least these (early stopping may end it sooner); with few labelled nodes an epoch of the baseline is
            one step (:func:`student_schedule`, which also picks GSP's and G-CRD's batches; a method's
            own ``epochs`` / ``patience`` / ``batching`` in ``overrides`` are used as given).
        max_patience_steps: and their patience at most this many steps, rounded up to whole epochs
            (None: no ceiling; ``min_patience_steps`` wins where the two meet).  The default, 3,000
            steps (12 M rows without a better validation accuracy at batches of 4,096), cuts the
            default 5 epochs of patience only where an epoch holds 750 steps or more: MLP students
            on graphs above 3.07·10⁶ nodes at ``batch_size`` 4,096, GNN students (1,024 seeds per
            batch in docs/scale.md) above 7.7·10⁵.  The stage records carry the patience used.
        student_dropout: MLP dropout.
        eval_batch_size: rows per evaluation batch.
        seed: weights, batch order and sampling.  out_dir: checkpoints, teacher weights and results.
        cache_dir: teacher-output cache (default ``out_dir/cache``).
        progress: tqdm bars.  check_memory_first: stop a stage whose estimate exceeds the free memory.
        overrides: recipe hyperparameters, ``{"glnn.lamb": 0.5}`` (or ``{"lamb": 0.5}`` when one
            method runs; GLNN's default ``lamb=0`` trains on the teacher's soft labels alone).
        log: called with one line per finished stage.
        distributed / process_group: as in :class:`~gkdfast.distill.Distiller` (``"auto"``: data-parallel
            when a process group of several ranks is initialised, e.g. under ``torchrun``).  Every rank
            calls with the same arguments and an ``out_dir`` they all see; the sampled teacher trains
            data-parallel (:func:`gkdfast.sampling.fit_sampled`), the layer-wise inference shares its row
            blocks (:func:`gkdfast.distill.teacher_outputs`), the students train data-parallel, and a
            stage's memory check stops every rank when one of them would not fit.  Each rank gets
            the same results; the ``stages`` table records this rank's peak RSS.

    Returns:
        ``{"dataset", "num_nodes", "num_edges", "rows", "stages"}``: rows as in
        :mod:`gkdfast.distill.results` (teacher, ``none``, each method; one seed), ``stages`` one dict
        per stage: ``stage``, ``seconds``, ``estimate_bytes``, ``peak_rss_bytes``, ``peak_rss_scope``,
        ``throughput`` and ``throughput_unit``.

    Raises:
        gkdfast.distill.memory.InsufficientMemory: a stage would not fit (the message names the flag).

    Example:
        >>> import tempfile
        >>> from gkdfast.data import csbm
        >>> data = csbm(num_nodes=600, num_classes=3, feature_dim=16, seed=0)
        >>> teacher = gkdfast.nn.SAGE(16, 32, 3)     # a trained teacher in practice
        >>> res = distill_large(data, teacher=teacher, hidden=32, batch_size=128, student_epochs=2,
        ...                     out_dir=tempfile.mkdtemp(), progress=False)
        >>> [r["method"] for r in res["rows"]], [s["stage"] for s in res["stages"]]
        (['teacher', 'none', 'glnn'], ['inference', 'student', 'baseline', 'evaluate'])
    """
    from gkdfast.distill import ddp as _ddp
    from gkdfast.nn import build_model

    group = _ddp.resolve(distributed, process_group)
    ddp_kw = dict(distributed=distributed, process_group=process_group)
    methods = [_recipes.get(m).name for m in ([method] if isinstance(method, str) else method)]
    odd = [m for m in methods if m not in LARGE_METHODS]
    if odd or not methods or len(set(methods)) != len(methods):
        raise ValueError(f"distill_large: method {method!r} is not supported at scale; give one or more distinct "
                         f"methods among {', '.join(LARGE_METHODS)} (their terms read a batch's rows, LSP's also "
                         "their in-neighbours, so an MLP student trains in batches)")
    per_method = _method_overrides(methods, overrides)
    stage_of = {name: "student" if len(methods) == 1 else f"student:{name}" for name in methods}
    width = max([9] + [len(v) for v in stage_of.values()])  # of the stage column in the log lines
    s_name = str(student).lower()
    if s_name in GNN_STUDENTS and any(m in POSITION_METHODS for m in methods):
        raise ValueError(f"distill_large: {', '.join(m for m in methods if m in POSITION_METHODS)} trains a "
                         "graph-free (MLP) student on [x ; positions]; use student='mlp'")
    for m in methods:
        if m in POSITION_METHODS and per_method[m].get("pos_method", "stream") != "stream":
            raise ValueError(f"distill_large: {m}.pos_method={per_method[m]['pos_method']!r}: at scale the "
                             "positions come from streaming DeepWalk (pos_method='stream'); the others store every "
                             "walk's pairs")
    for m in methods:  # (refused here, before the teacher stages, not at the student's first step)
        if (s_name in GNN_STUDENTS and m in NEIGHBOURHOOD_METHODS
                and per_method[m].get("batch_edges", "neighbours") != "neighbours"):
            raise ValueError(f"distill_large: {m} with a GNN student compares each node with all its in-neighbours, "
                             f"which a sampled batch holds only in part; drop --set {m}.batch_edges="
                             f"{per_method[m]['batch_edges']} (its steps take neighbourhood batches)")
    if s_name != "mlp" and s_name not in GNN_STUDENTS:
        raise ValueError(f"distill_large: student must be 'mlp' or one of {', '.join(GNN_STUDENTS)} (a GNN trained "
                         f"on neighbour-sampled batches), got {student!r}")
    for what, v in (("hidden", hidden), ("batch_size", batch_size), ("chunk_rows", chunk_rows),
                    ("teacher_epochs", teacher_epochs), ("student_epochs", student_epochs),
                    ("teacher_min_steps", teacher_min_steps), ("teacher_validations", teacher_validations),
                    ("eval_batch_size", eval_batch_size), ("teacher_batch_size", teacher_batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"distill_large: {what} must be a positive int, got {v!r}")
    for what, v in (("student_min_steps", student_min_steps), ("min_patience_steps", min_patience_steps)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"distill_large: {what} must be an int >= 0, got {v!r}")
    if max_patience_steps is not None and (not isinstance(max_patience_steps, int)
                                           or isinstance(max_patience_steps, bool) or max_patience_steps < 1):
        raise ValueError(f"distill_large: max_patience_steps must be None or a positive int, got {max_patience_steps!r}")
    fanouts = tuple(int(k) for k in fanouts)
    if len(fanouts) != num_layers or any(k < 1 for k in fanouts):
        raise ValueError(f"distill_large: fanouts must be {num_layers} positive ints (one per layer), got {fanouts}")
    if int(data.train_mask.sum()) == 0 or int(data.test_mask.sum()) == 0:
        raise ValueError("distill_large: the split has no training or no test node")
    if int(data.val_mask.sum()) == 0:  # found here, not after the teacher and inference stages
        raise ValueError("distill_large: the split has no validation node: the students keep their best "
                         "validation epoch and stop on it; give the data a split with validation nodes")
    n, f, c, e = data.num_nodes, data.num_features, data.num_classes, data.graph.num_edges
    s_hidden = student_hidden or hidden
    s_label = f"{s_name.upper()}({s_hidden})"
    os.makedirs(out_dir, exist_ok=True)
    cache_dir = cache_dir or os.path.join(out_dir, "cache")
    stages: list = []
    num_val = int(data.val_mask.sum())
    num_train = int(data.train_mask.sum())

    def plan(stage: str, parts: Dict[str, float], hint: str) -> int:
        if not check_memory_first:
            return int(sum(parts.values()))
        if group is None:
            return check_memory(stage, parts, hint)
        try:  # one decision for every rank: a rank stopping alone would leave the others in a collective
            total, error = check_memory(stage, parts, hint), None
        except InsufficientMemory as exc:
            total, error = None, f"rank {group.rank}: {exc}"
        errors = [e for e in group.all_gather_object(error) if e]
        if errors:
            raise InsufficientMemory(errors[0])
        return total

    def done(timer: StageTimer, amount: float, unit: str, rate: Optional[float] = None, **extra) -> None:
        rec = timer.record
        rec["throughput"] = float(rate) if rate is not None else (amount / rec["seconds"] if rec["seconds"] > 0 else 0.0)
        rec["throughput_unit"] = unit
        rec.update(_plain_numbers(extra, keep_all=True))
        stages.append(rec)
        log(f"stage {rec['stage']:<{width}} {rec['seconds']:8.1f} s  {rec['throughput']:12.0f} {unit:<12} "
            f"peak RSS {format_bytes(rec['peak_rss_bytes'])} (estimate {format_bytes(rec['estimate_bytes'])})")

    # 1. teacher -------------------------------------------------------------------------------------
    teacher_seconds = 0.0
    if isinstance(teacher, nn.Module):
        tmodel = teacher
        tlabel = f"{type(teacher).__name__.upper()}({getattr(teacher, 'hidden_channels', '?')})"
    else:
        torch.manual_seed(seed)
        tmodel = build_model(str(teacher), f, hidden, c, num_layers=num_layers, dropout=0.5)
        tlabel = f"{str(teacher).upper()}({hidden})"
        weights = os.path.join(out_dir, f"teacher-{tlabel}-seed{seed}.pt")
        # Beside the weights, a record of the training: a key of what the teacher trained on and how (a
        # rerun with other data, split or teacher settings trains again instead of loading weights made
        # for something else) and its statistics (a resumed run reports them).  Weights without a
        # readable record (an older gkdfast's, or placed by hand) or that cannot be read train again:
        # loading them could distil from a teacher of another graph.  A trained module can be passed
        # as `teacher` instead.
        key = _teacher_key(data, tlabel, num_layers, fanouts, teacher_epochs, teacher_batch_size, teacher_lr,
                           teacher_min_steps, teacher_validations, seed)
        record_file = weights + ".json"
        record, state = {}, None
        if os.path.exists(weights):
            record, why = _read_record(record_file), "was trained on other data or settings"
            if not record:
                why = "has no readable record of what it was trained on (" + os.path.basename(record_file) + ")"
            elif record.get("key") == key:
                state, why = _read_weights(weights)
            if state is None:
                # kept aside, not overwritten: they may be weights a user placed there
                if (group is None or group.is_main) and not record:
                    aside, k = f"{weights[:-3]}.unverified.pt", 1
                    while os.path.exists(aside):  # an earlier move's file is kept too
                        aside, k = f"{weights[:-3]}.unverified-{k}.pt", k + 1
                    try:
                        os.rename(weights, aside)
                        why += f"; moved to {os.path.basename(aside)}"
                    except OSError as exc:  # (the other ranks wait for rank 0's decision below)
                        why += f"; could not move it aside ({exc}), so it is overwritten"
                log(f"teacher: {os.path.basename(weights)} {why}; training again")
        have = state is not None
        if group is not None:  # rank 0 decides for every rank
            have = group.broadcast_object(have)
        # a rerun that loads the weights allocates nothing to plan for
        est = plan("teacher", {} if have else estimate_teacher(n, f, hidden, c, fanouts, teacher_batch_size, tmodel),
                   f"lower --teacher-batch-size (now {teacher_batch_size}), --fanouts (now "
                   f"{','.join(map(str, fanouts))}) or the hidden width (now {hidden})")
        with StageTimer("teacher", est) as timer:
            if have:  # a rerun resumes after the teacher, reporting the training it did then
                tmodel.load_state_dict(state if state is not None else torch.load(weights, map_location="cpu",
                                                                                  weights_only=True))
                stats = {"seconds": 0.0, "nodes_per_s": 0.0, **record.get("stats", {}), "resumed": True}
            else:
                try:
                    from gkdfast.sampling import fit_sampled  # the neighbour sampler
                except ImportError as exc:
                    raise NotImplementedError(
                        f"the sampled teacher needs gkdfast.sampling.fit_sampled, which this installation lacks "
                        f"({exc}); pass a trained teacher module instead") from None

                # Few labelled nodes mean one batch per epoch: a few epochs would be a few steps.
                batches = -(-int(data.train_mask.sum()) // teacher_batch_size)
                epochs = max(teacher_epochs, -(-teacher_min_steps // batches))
                eval_every = -(-epochs // teacher_validations)
                # A kill during the training resumes from its last epoch: the partial checkpoint is named
                # after the key (another run's is not resumed) and goes once the weights are saved.
                partial = f"{weights[:-3]}.{key[:16]}.partial.pt"
                if group is None or group.is_main:
                    _remove_other_partials(weights, partial)
                stats = fit_sampled(tmodel, data, fanouts=fanouts, batch_size=teacher_batch_size,
                                    epochs=epochs, lr=teacher_lr, weight_decay=0.0, seed=seed,
                                    progress=progress, eval_every=eval_every, checkpoint=partial, **ddp_kw)
                stats["eval_every"] = eval_every
                state = tmodel.state_dict()
                if group is None or group.is_main:  # the ranks hold the same weights
                    # old weights out, the record, then the weights: a kill at any point leaves either
                    # no weights (trained again) or weights with their own record, never new weights
                    # without one (those would be loaded unchecked) or old weights under a new record
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(weights)
                    saved = json.dumps({"key": key, "stats": _plain_numbers(stats)}).encode()
                    atomic_write(record_file, lambda f: f.write(saved))
                    atomic_write(weights, lambda f: torch.save(state, f))
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(partial)
                if group is not None:
                    group.barrier()
        teacher_seconds = float(stats.get("seconds", timer.record["seconds"]))
        done(timer, 0.0, "nodes/s", rate=float(stats.get("nodes_per_s", 0.0)),
             **{k: v for k, v in stats.items() if isinstance(v, (int, float, bool))})
    tmodel = tmodel.cpu().eval()

    # 2. layer-wise inference into the cache -----------------------------------------------------------
    from gkdfast.distill.teacher_cache import entry_folder, fingerprint
    from gkdfast.nn import GAT

    t_hidden = int(getattr(tmodel, "hidden_channels", hidden))
    t_key = fingerprint(tmodel, data.x, data.graph)
    in_cache = os.path.exists(os.path.join(entry_folder(cache_dir, t_key), "meta.json"))
    # a rerun only maps the cached outputs: nothing to plan for
    est = plan("inference", {} if in_cache else
               estimate_inference(n, e / max(n, 1), f, t_hidden, c, chunk_rows, len(tmodel.layers),
                                  getattr(tmodel.layers[0], "heads", 1), isinstance(tmodel, GAT),
                                  max_block_edges=_max_block_edges(data.graph, chunk_rows)),
               f"lower --chunk-rows (now {chunk_rows}) or the teacher's hidden width (now {t_hidden})")
    with StageTimer("inference", est) as timer:
        tout = teacher_outputs(tmodel, data.x, data.graph, cache_dir=cache_dir, chunk_rows=chunk_rows,
                               progress=progress, key=t_key, **ddp_kw)
    # The inference time is kept beside the cached outputs: a rerun that only maps them reports the
    # time of the inference that made them, not of opening the files.
    timing = os.path.join(entry_folder(cache_dir, t_key), "inference-seconds.json")
    infer_seconds = timer.record["seconds"]
    if tout.cached and os.path.exists(timing):
        with open(timing) as fh:
            infer_seconds = float(json.load(fh)["seconds"])
    elif not tout.cached and (group is None or group.is_main):
        atomic_write(timing, lambda fh: fh.write(json.dumps({"seconds": infer_seconds}).encode()))
    done(timer, n * len(tmodel.layers), "rows/s", rate=n * len(tmodel.layers) / max(infer_seconds, 1e-9),
         cached=bool(tout.cached), edges_per_s=e * len(tmodel.layers) / max(infer_seconds, 1e-9),
         inference_seconds=infer_seconds)
    teacher_ms_per_1k = infer_seconds * 1000.0 * 1000.0 / max(n, 1)

    # 3. position features (NOSMOG) ------------------------------------------------------------------
    inputs_of: Dict[str, Tensor] = {}
    pos_methods = [m for m in methods if m in POSITION_METHODS]
    if pos_methods:
        from gkdfast.distill.large_positions import (estimate_positions, position_inputs, position_settings,
                                                     positions_path, positions_ready)

        pos = position_settings(pos_methods, per_method, seed)
        path = positions_path(data, cache_dir, pos)
        if group is not None and len(set(group.all_gather_object(path))) != 1:
            raise ValueError("distill_large: the ranks disagree on the position features' file (different data or "
                             "settings on some rank)")
        ready = positions_ready(path, n, f + pos["dim"])
        if group is not None:
            ready = group.broadcast_object(ready)
        # a rerun only maps the file: nothing to plan for
        est = plan("positions", {} if ready else estimate_positions(n, f, pos["dim"], pos["walks_per_node"]),
                   f"lower {pos_methods[0]}.pos_dim (now {pos['dim']})")
        with StageTimer("positions", est) as timer:
            joined, computed = position_inputs(data, path, pos, group=group, log=log)
        done(timer, n * pos["walks_per_node"], "walks/s", rate=None if computed else 0.0, dim=pos["dim"],
             walks_per_node=pos["walks_per_node"], lr=pos["lr"], cached=not computed)
        for m in pos_methods:
            inputs_of[m] = joined

    # 4./5. students ---------------------------------------------------------------------------------
    trained = {}
    for stage, name in [(stage_of[m], m) for m in methods] + [("baseline", "none")]:
        torch.manual_seed(seed)  # the same initial weights for every student (of the same input width)
        x_in = inputs_of.get(name, data.x)
        smodel = build_model(s_name, x_in.size(1), s_hidden, c, num_layers=2 if s_name == "mlp" else len(fanouts),
                             dropout=student_dropout)
        params = per_method.get(name, {})
        kw = {"batch_size": batch_size, **params}
        sched = student_schedule(name, params, num_train=num_train, num_pool=n, batch_size=kw["batch_size"],
                                 epochs=student_epochs, patience=patience, min_steps=student_min_steps,
                                 min_patience_steps=min_patience_steps, max_patience_steps=max_patience_steps,
                                 passes=_recipes.get(name, **kw).passes)
        kw.update(batching=sched["batching"], batch_edges=sched["batch_edges"], epochs=sched["epochs"],
                  patience=sched["patience"])
        recipe = _recipes.get(name, **kw)
        # GLNN/KD match logits only: without the hidden matrix the Distiller gathers no hidden rows,
        # so the mapped hidden file is never paged in by their stages.
        wants_hidden = tout.hidden is not None and any(t.needs_teacher and t.needs_hidden for t in recipe.terms())
        t_width = tout.hidden.size(1) if wants_hidden else 0
        pair_width = (int(getattr(recipe, "proj_dim", None) or s_hidden)
                      if any(t.all_pairs_loss for t in recipe.terms()) else 0)
        hint = f"lower --batch-size (now {kw['batch_size']}) or the student's hidden width (now {s_hidden})"
        teacher_rows = tout if wants_hidden else TeacherOutputs(tout.logits, None, tout.key, tout.cached)
        rows_per_epoch = (kw["batch_size"] if recipe.batching == "labelled_first"
                          else num_train if name == "none" else n)
        # Per teacher (its outputs' key) and per student settings (model, recipe, schedule, input
        # width): a rerun with other settings starts afresh beside the old checkpoint instead of
        # refusing it; the same command resumes.
        extra = repr(pos) if name in inputs_of else ""  # NOSMOG's position settings change its inputs
        settings = hashlib.sha256(f"{smodel!r};{recipe!r};{student_dropout!r};{x_in.size(1)};{extra}".encode()
                                  ).hexdigest()[:8]
        ckpt_dir = os.path.join(out_dir, "checkpoints", f"{name}-seed{seed}" + (f"-{tout.key[:12]}" if tout.key else "")
                                + f"-{settings}")
        if s_name != "mlp":  # sampled GNN student (large_gnn.py)
            est = plan(stage, estimate_gnn_student(n, f, s_hidden, c, fanouts, kw["batch_size"], smodel, num_val,
                                                   t_width, pair_width,
                                                   neighbours=e / max(n, 1) if recipe.batch_edges == "neighbours"
                                                   else 0.0), hint + " or --fanouts")
            with StageTimer(stage, est) as timer:
                stats = fit_gnn_student(smodel, data, recipe, teacher_rows, fanouts=fanouts, schedule=sched,
                                        seed=seed, progress=progress, checkpoint=os.path.join(ckpt_dir, "sampled.pt"),
                                        **ddp_kw)
            done(timer, rows_per_epoch * stats["epochs"], "nodes/s", epochs=stats["epochs"], patience=sched["patience"],
                 best_epoch=stats["best_epoch"], best_val_acc=stats["best_val_acc"], passes=recipe.passes,
                 batching=recipe.batching, batch_edges="neighbours" if recipe.batch_edges == "neighbours" else
                 "sampled", steps=stats["epochs"] * sched["steps_per_epoch"])
            trained[name] = (smodel, stats["seconds"])
            continue
        est = plan(stage, estimate_student(n, x_in.size(1), s_hidden, c, kw["batch_size"], num_val, smodel,
                                           teacher_hidden=t_width, pair_width=pair_width,
                                           neighbours=e / max(n, 1) if recipe.batch_edges == "neighbours" else 0.0),
                   hint)
        distiller = recipe.distiller(smodel, teacher_rows, progress=progress, seed=seed,
                                     desc=f"{stage}: {name} -> MLP", checkpoint_dir=ckpt_dir, **ddp_kw)
        with StageTimer(stage, est) as timer:
            fit = distiller.fit(data, inputs=x_in if name in inputs_of else None)
        done(timer, rows_per_epoch * fit.epochs, "nodes/s", epochs=fit.epochs, patience=sched["patience"],
             best_epoch=fit.best_epoch,
             best_val_acc=fit.best_val_acc, passes=recipe.passes, batching=recipe.batching,
             batch_edges=recipe.batch_edges,
             steps=fit.epochs * sched["steps_per_epoch"])
        trained[name] = (fit.student, fit.seconds)

    # 5. evaluation ----------------------------------------------------------------------------------
    test_idx = data.test_mask.nonzero().flatten()
    parts = estimate_evaluate(n, max(x.size(1) for x in [data.x, *inputs_of.values()]), s_hidden, c,
                              eval_batch_size)
    if s_name != "mlp":  # a GNN student's layer-wise inference, one student at a time
        student0 = trained["none"][0]
        parts.update({f"student inference: {k}": v for k, v in estimate_inference(
            n, e / max(n, 1), f, s_hidden, c, chunk_rows, len(student0.layers),
            getattr(student0.layers[0], "heads", 1), isinstance(student0, GAT)).items()})
    est = plan("evaluate", parts, f"lower eval_batch_size (now {eval_batch_size} rows per evaluation batch)"
               + (f" or --chunk-rows (now {chunk_rows})" if s_name != "mlp" else ""))
    rows = []
    with StageTimer("evaluate", est) as timer:
        y_test = data.y[test_idx]
        t_acc = float((tout.logits[test_idx].argmax(-1) == y_test).float().mean())
        rows.append(_row("teacher", tlabel, t_acc, teacher_seconds, teacher_ms_per_1k))
        for name in ["none"] + methods:
            model, secs = trained[name]
            if s_name != "mlp":  # exact layer-wise inference over every node; ms per 1k nodes of the graph
                acc, infer = gnn_accuracy(model, data, test_idx, os.path.join(out_dir, f"student-{name}-inference"),
                                          chunk_rows, group)
                rows.append(_row(name, s_label, acc, secs, infer * 1e6 / max(n, 1)))
                continue
            acc, infer = _batched_accuracy(model, inputs_of.get(name, data.x), data.y, test_idx, eval_batch_size,
                                           group)
            share = test_idx.numel() if group is None else test_idx[group.rank::group.world_size].numel()
            rows.append(_row(name, s_label, acc, secs, infer * 1e6 / max(share, 1)))
    done(timer, 2 * test_idx.numel(), "nodes/s")
    for r in rows:
        log(f"{r['method']:<8} {r['model']:<10} test acc {r['test_acc_mean']:.4f}")
    return {"dataset": str(getattr(data, "name", "graph")), "num_nodes": int(n), "num_edges": int(e),
            "rows": rows, "stages": stages}


def format_stages(stages: Sequence[dict], markdown: bool = False) -> str:
    """The ``stages`` table: stage, seconds, throughput, peak RSS and the memory estimate.

    Example:
        >>> print(format_stages([{"stage": "inference", "seconds": 2.0, "throughput": 1e6,
        ...                       "throughput_unit": "rows/s", "peak_rss_bytes": 2**30, "estimate_bytes": 2**29}]))
        stage      seconds      throughput  peak RSS   estimate
        inference     2.00  1000000 rows/s  1.00 GiB  512.0 MiB
    """
    head = ("stage", "seconds", "throughput", "peak RSS", "estimate")
    body = [(s["stage"], f"{s['seconds']:.2f}", f"{s.get('throughput', 0.0):.0f} {s.get('throughput_unit', '')}",
             format_bytes(s["peak_rss_bytes"]), format_bytes(s.get("estimate_bytes", 0))) for s in stages]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|"]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
                     for r in [head] + body)
