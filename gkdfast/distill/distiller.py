"""The Distiller: trains a student from a teacher with a weighted list of loss terms.

One loop serves every recipe (and plain supervised training, which is the same loop with one
cross-entropy term):

* full-batch, or node mini-batches (``batch_size``) over the rows the terms use: the training nodes
  when every term is label-only, else every observed node.  A graph-free student (an MLP) sees only
  its batch rows; a GNN student runs on the whole graph and the terms read the batch rows;
* teacher outputs (logits + hidden embedding) computed once and memory-mapped from an on-disk cache
  (:mod:`gkdfast.distill.teacher_cache`);
* a checkpoint after every epoch (student + heads + optimiser + epoch + RNG states + best-so-far), spaced
  out when one save is slow enough to cost more than 5 % of the time, so a killed run started again
  with the same ``checkpoint_dir`` continues from the last one written and ends exactly where an
  uninterrupted run would;
* early stopping on validation accuracy, restoring the best epoch's weights at the end;
* a tqdm progress bar;
* the same loop across processes (``torch.distributed``, ``distributed="auto"``): the student and the
  trainable heads in DistributedDataParallel, each rank on its shard of every epoch's rows, validation
  accuracy summed over ranks (one early-stopping decision), checkpoints written by rank 0 and resumed
  by all, identical final weights on every rank (:mod:`gkdfast.distill.ddp`, ``docs/distributed.md``).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from gkdfast._autocast import autocast_dtype
from gkdfast._checks import check_node_mask
from gkdfast._rows import take_rows
from gkdfast.distill.checkpoint_cadence import CheckpointCadence
from gkdfast.distill.checkpoint_file import (checkpoint_due, hash_module_settings, read_checkpoint,
                                             resume_rng_states, rng_states, warn_thread_change,
                                             write_checkpoint)
from gkdfast.distill.neighbourhood import (neighbourhood_batch, pad_neighbour_rows, refuse_nonfinite_loss,
                                          refuse_unmasked_terms)
from gkdfast.distill import ddp as _ddp
from gkdfast.distill.teacher_cache import (TeacherOutputs, hash_dropout_implementation, hash_edge_weights,
                                           hash_tensor, teacher_outputs)
from gkdfast.distill.terms import Dims, LossTerm, StepContext

__all__ = ["Distiller", "FitResult", "StopTraining", "accuracy", "uses_graph", "call_model", "eval_logits"]

# Largest validation feature block a fit keeps for its whole run (Distiller.fit, val_kept).
_VAL_ROWS_KEPT_BYTES = 64 << 20


class StopTraining(Exception):
    """Raise from a callback to stop ``fit`` early (the last checkpoint is kept, so ``fit`` resumes)."""


@dataclass
class FitResult:
    """What :meth:`Distiller.fit` returns.

    Attributes:
        student: the trained student, holding the best-validation weights.
        best_val_acc: best validation accuracy (fraction).  best_epoch: epoch it was reached (1-based).
        epochs: epochs run in total (including those before a resume).
        seconds: training wall time in seconds, summed over resumes.
        history: one dict per epoch: ``loss``, each term's unweighted value, ``val_acc``.
        teacher: the :class:`TeacherOutputs` used (``None`` without teacher).
    """

    student: nn.Module
    best_val_acc: float
    best_epoch: int
    epochs: int
    seconds: float
    history: List[Dict[str, float]] = field(default_factory=list)
    teacher: Optional[TeacherOutputs] = None


def uses_graph(model: nn.Module) -> bool:
    """Whether ``model`` needs the graph in ``forward``: its ``uses_graph`` attribute if it has one,
    ``False`` for MLP-like classes (name starting with "MLP"), else ``True``.

    Example:
        >>> from gkdfast.nn import MLP, SAGE
        >>> uses_graph(MLP(4, 8, 2)), uses_graph(SAGE(4, 8, 2))
        (False, True)
    """
    flag = getattr(model, "uses_graph", None)
    if flag is not None:
        return bool(flag)
    return not type(model).__name__.upper().startswith("MLP")


def call_model(model: nn.Module, x: Tensor, graph, with_graph: bool, want_hidden: bool):
    """Calls ``model`` the gkdfast way (``model(x, graph, return_hidden=True)``) and falls back to
    ``model(x, graph)`` / ``model(x)`` for user modules.  Returns ``(logits, hidden_or_None)``.

    Example:
        >>> logits, hidden = call_model(torch.nn.Linear(4, 2), torch.randn(3, 4), None, False, False)
        >>> logits.shape, hidden
        (torch.Size([3, 2]), None)
    """
    args = (x, graph) if with_graph else (x,)
    if want_hidden:
        out = model(*args, return_hidden=True)
    else:
        out = model(*args)
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


@torch.no_grad()
def eval_logits(model: nn.Module, inputs: Tensor, graph, with_graph: bool, chunk: int = 65536) -> Tensor:
    """Eval-mode logits ``[N, C]`` of every node, without autograd; a graph-free model (an MLP) runs
    over ``chunk`` rows at a time, so its activations never take N rows at once (a 256-wide MLP over
    a million nodes would otherwise hold gigabytes).  Leaves ``model`` in eval mode.

    Example:
        >>> eval_logits(torch.nn.Linear(4, 2), torch.randn(5, 4), None, False, chunk=2).shape
        torch.Size([5, 2])
    """
    model.eval()
    if with_graph or inputs.size(0) <= chunk:
        return call_model(model, inputs, graph, with_graph, False)[0]
    return torch.cat([call_model(model, inputs[i:i + chunk], None, False, False)[0]
                      for i in range(0, inputs.size(0), chunk)])


def _snapshot(dst: Optional[dict], src: dict) -> dict:
    """A copy of state dict ``src``, written into ``dst``'s tensors when it has the same keys, shapes
    and dtypes.  The best epoch's weights are re-copied at every improvement: a fresh deep copy
    allocates (and page-faults) the whole model each time, 1.4 s for a 254 MB parameter on one core,
    against 0.05 s to copy into the previous snapshot."""
    if dst is None or dst.keys() != src.keys() or any(
            not (isinstance(v, Tensor) and isinstance(dst[k], Tensor) and v.shape == dst[k].shape
                 and v.dtype == dst[k].dtype and v.device == dst[k].device) for k, v in src.items()):
        return copy.deepcopy(src)
    with torch.no_grad():
        for k, v in src.items():
            dst[k].copy_(v)
    return dst


def accuracy(logits: Tensor, y: Tensor, mask: Optional[Tensor] = None) -> float:
    """Fraction of rows (within ``mask``) whose argmax equals ``y``; 0.0 for an empty mask.

    Example:
        >>> accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1]))
        0.6666666865348816
    """
    if logits.dim() != 2 or y.dim() != 1 or logits.size(0) != y.size(0):
        raise ValueError(f"accuracy: logits must be [N, C] and y [N], got {list(logits.shape)} and {list(y.shape)}")
    if mask is not None:
        check_node_mask(mask, y.size(0), "accuracy", "mask")
        logits, y = logits[mask], y[mask]
    if y.numel() == 0:
        return 0.0
    return float((logits.argmax(-1) == y).float().mean())


def _whole_number(value) -> bool:
    """An int, or a float with an integral value (``200.0``, ``2e2`` from ``--set``), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or (math.isfinite(value) and float(value).is_integer())


def _check_data(data) -> None:
    for attr in ("graph", "x", "y", "train_mask", "val_mask"):
        if not hasattr(data, attr):
            raise TypeError(f"Distiller.fit: data must be a gkdfast.data.GraphData (missing .{attr})")
    n = data.x.size(0)
    y = data.y
    if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.uint8):  # (cross-entropy's)
        raise TypeError("Distiller.fit: y must be an int64 [N] tensor of class ids (-1: unlabelled), got "
                        + (f"{y.dtype} {list(y.shape)}" if isinstance(y, Tensor) else type(y).__name__))
    if data.y.size(0) != n:
        raise ValueError(f"Distiller.fit: y has {data.y.size(0)} rows but x has {n}")
    for name in ("train_mask", "val_mask", "test_mask"):
        if name != "test_mask" or getattr(data, name, None) is not None:
            check_node_mask(getattr(data, name), n, "Distiller.fit", f"data.{name}")
    if data.graph is not None and data.graph.num_nodes != n:
        raise ValueError(f"Distiller.fit: graph has {data.graph.num_nodes} nodes but x has {n} rows")
    if int(data.train_mask.sum()) == 0:
        raise ValueError("Distiller.fit: the training mask selects no node")


def _reference_batches(rows: Tensor, batch_size: Optional[int], gen: torch.Generator) -> List[Tensor]:
    """One pass of GLNN's ``train_mini_batch``: ``max(1, n // batch_size)`` batches of a random order,
    each ``batch_size`` rows (all ``n`` when fewer), the remainder dropped; every row when full-batch."""
    n = rows.numel()
    if batch_size is None or batch_size >= n:
        return [rows]  # one batch of every row: its order changes nothing, so no draw
    count = n // batch_size
    order = rows[torch.randperm(n, generator=gen).to(rows.device)]
    return list(order[: count * batch_size].split(batch_size))


def _term_option_groups(terms: nn.Module, weight_decay: float) -> List[dict]:
    """Adam groups of the term modules that ask for their own options (``optimizer_options(weight_decay)``
    -> dict, e.g. GSDN's rescaled layers, whose decay must follow their scale); their own parameters only."""
    groups = []
    for module in terms.modules():
        options = getattr(module, "optimizer_options", None)
        params = list(module.parameters(recurse=False))
        if callable(options) and params:
            groups.append(dict(options(weight_decay), params=params))
    return groups


class Distiller:
    """Trains ``student`` with ``Σ weight·term`` over the given terms, from an optional teacher.

    Args:
        student: the model to train (a :mod:`gkdfast.nn` model or any module; see :func:`call_model`).
        terms: :class:`~gkdfast.distill.terms.LossTerm` list (e.g. ``[CrossEntropy(0.1), LogitKD(0.9)]``).
        teacher: a trained ``nn.Module`` (its outputs are computed once and cached), precomputed
            :class:`TeacherOutputs`, or ``None`` (label-only training).
        lr, weight_decay: Adam settings.  epochs: maximum epochs.  patience: stop after this many epochs
            without a better validation accuracy (``None``: never).  A student with a ``regularization()`` method
            (e.g. :class:`gkdfast.nn.SEGCN`) has what it returns added to every step's loss.  A student
            with ``optimizer_groups(weight_decay)`` (e.g. :class:`gkdfast.nn.GCNII`, whose convolutions take
            their own weight decay) gives its own Adam parameter groups; the terms' parameters join with
            ``weight_decay``.
        ties: which epoch is "best" when the validation accuracy repeats its best: ``"first"`` (default)
            keeps the earliest; ``"last"`` keeps the latest and restarts the patience count, as GLNN's
            and NOSMOG's reference code does (``score_val >= best``).  With 20 labels per class an
            early epoch often ties the best while its outputs are still near uniform, and soft labels
            from such a teacher carry almost no signal.
        batch_size: node mini-batch size (``None``: full batch).
        passes: ``"joint"`` (default): every term in one loss, one optimiser step per batch of the
            pool.  ``"separate"``: GLNN's and NOSMOG's reference schedule, two passes per epoch, each
            with its own optimiser steps: first the label terms (``nodes == "train"``, e.g.
            :class:`~gkdfast.distill.terms.CrossEntropy`) over batches of the training nodes, then the
            other terms over batches of the pool; each pass draws ``max(1, n // batch_size)`` full
            batches and drops the remainder.  A label term of weight 0 still takes its steps (a zero
            loss: Adam then moves on its momentum and weight decay alone), as the reference's
            ``loss *= lamb`` does.  Under DDP each rank takes every W-th row of each global batch.
        batching: ``"partition"`` (default): each epoch splits a random order of the pool into
            batches of ``batch_size``.  ``"labelled_first"``: Graph-MLP's reference batches, one step
            per epoch on ``batch_size`` rows, the training nodes first, then nodes drawn uniformly
            *with replacement* from the pool; the label terms read only those first rows (a training
            node drawn again is not labelled twice, as the reference's ``output[idx_train]``).  Needs
            ``batch_size`` larger than the training set.  Under DDP ``batch_size`` is the global batch
            and rank r takes its positions r, r + W, ... (equal shares of the labelled rows).
        batch_edges: ``"induced"`` (default): a graph-free student's batch graph holds the edges among
            the batch nodes.  ``"neighbours"``: each batch (of either ``batching``) is followed by every
            in-neighbour of its nodes, with their in-edges as the batch graph
            (:func:`gkdfast.distill.neighbourhood.neighbourhood_batch`), so LSP compares each batch
            node's whole neighbourhood, as on the full graph, where a random batch of a large graph
            holds almost no edges; the other terms still read only the batch nodes' rows.  The
            student runs on the neighbour rows too (a step costs ``B · (1 + mean degree)`` rows).
            Graph-free students, ``passes="joint"``, a ``batch_size``.
        device: where to train (default: the student's device).
        checkpoint_dir: folder for ``checkpoint.pt``; an existing checkpoint there is resumed.  It is
            refused when the data, teacher, terms, optimiser settings, seed or the student's parameter
            shapes differ, but not for other *initial values* of the same student: a resumed
            multi-stage recipe builds its later models from another random state (the earlier stages
            are loaded, not trained), and must find their checkpoints.  Give each run its own folder.
        checkpoint_overhead: the largest share of wall time spent writing checkpoints (default 0.05):
            every epoch while a save takes under 0.25 s, spaced out when it takes longer
            (:class:`~gkdfast.distill.checkpoint_cadence.CheckpointCadence`); the last epoch and an
            epoch a callback stops are always written; under DDP rank 0, which writes, decides for every
            rank.  ``None``: every epoch.
        cache_dir: teacher-output cache (see :func:`teacher_outputs`); ``None`` computes in memory.
        progress: show a tqdm bar.  desc: its label.
        seed: seeds the mini-batch order (the student's own init/dropout use torch's global RNG).
        observed: optional bool ``[N]`` of nodes the teacher may be matched on (inductive settings);
            default every node.
        distributed: ``"auto"`` (default): data-parallel over the ranks of ``process_group`` when
            torch.distributed is initialised with more than one rank, plain training otherwise;
            ``True``: always DDP (error without a process group); ``False``: never (every rank trains
            alone).  Under DDP ``batch_size`` is the global batch (``ceil(batch_size / W)`` rows per
            rank and step), every rank must pass the same data, and all-pairs terms (GSP, CRD,
            NContrast) need a loss that accepts ``process_group=``.
        process_group: the group to train over (default: the default group).
        autocast: mixed precision, ``None`` (default: every step in the parameters' dtype),
            ``torch.bfloat16`` or ``torch.float16`` (or ``"bf16"`` / ``"fp16"``): the student's forward
            and the loss terms run in a ``torch.autocast`` region of the training device, for the
            training steps and the validation / :meth:`predict` forwards.  The weights stay float32
            (a student with other floating-point weights is refused); gkdfast's losses compute in
            float32 inside the region, and every term reads the student's rows widened to float32.
            float16 scales the loss with a ``torch.amp.GradScaler`` (steps with an inf / NaN gradient
            are skipped and the scale lowered), whose state is checkpointed with the optimiser's; a
            forward that overflows float16 on every step thus skips every step (the loss history shows
            it), and with ``batch_edges="neighbours"`` raises as a non-finite loss.
            Worth it where half-precision matrix products are fast (GPUs; bfloat16 on CPUs with bfloat16
            instructions); float16 on a CPU is usually much slower than float32 (README, Mixed precision).

    Example:
        >>> import gkdfast
        >>> from gkdfast.distill import Distiller, terms
        >>> data = gkdfast.data.csbm(num_nodes=300, seed=0)
        >>> gnn = gkdfast.nn.SAGE(data.num_features, 32, data.num_classes)
        >>> _ = Distiller(gnn, [terms.CrossEntropy(1.0)], epochs=20).fit(data)    # the teacher
        >>> mlp = gkdfast.nn.MLP(data.num_features, 32, data.num_classes)
        >>> result = Distiller(mlp, [terms.CrossEntropy(0.0), terms.LogitKD(1.0)], teacher=gnn, epochs=5).fit(data)
        >>> 0.0 <= result.best_val_acc <= 1.0
        True
    """

    def __init__(self, student: nn.Module, terms: Sequence[LossTerm],
                 teacher: Union[nn.Module, TeacherOutputs, None] = None, *, lr: float = 0.01,
                 weight_decay: float = 5e-4, epochs: int = 200, patience: Optional[int] = 50,
                 batch_size: Optional[int] = None, device=None, checkpoint_dir: Optional[str] = None,
                 cache_dir: Optional[str] = None, progress: bool = False, desc: str = "train", seed: int = 0,
                 observed: Optional[Tensor] = None, distributed: Union[str, bool] = "auto", process_group=None,
                 checkpoint_overhead: Optional[float] = 0.05, ties: str = "first", passes: str = "joint",
                 batching: str = "partition", batch_edges: str = "induced", autocast=None):
        if not isinstance(student, nn.Module):
            raise TypeError(f"Distiller: student must be a torch.nn.Module, got {type(student).__name__}")
        if isinstance(terms, LossTerm):  # one term given on its own
            terms = [terms]
        if isinstance(terms, (str, bytes)) or not hasattr(terms, "__iter__"):
            raise TypeError(f"Distiller: terms must be a list of LossTerm instances, got {type(terms).__name__}")
        terms = list(terms)
        if not terms:
            raise ValueError("Distiller: give at least one loss term")
        for t in terms:
            if not isinstance(t, LossTerm):
                raise TypeError(f"Distiller: terms must be LossTerm instances, got {type(t).__name__}")
        if teacher is not None and not isinstance(teacher, (nn.Module, TeacherOutputs)):
            raise TypeError("Distiller: teacher must be an nn.Module, TeacherOutputs or None")
        if not _whole_number(epochs) or epochs < 0:
            raise ValueError(f"Distiller: epochs must be an int >= 0, got {epochs!r}")  # (1.5 ran 1 epoch)
        epochs = int(epochs)
        for key, v in (("lr", lr), ("weight_decay", weight_decay)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueError(f"Distiller: {key} must be a finite number >= 0, got {v!r}")
        if batch_size is not None and (not _whole_number(batch_size) or batch_size < 1):
            raise ValueError(f"Distiller: batch_size must be None or an int >= 1, got {batch_size!r}")
        batch_size = None if batch_size is None else int(batch_size)
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, (int, float))
                                     or not math.isfinite(patience) or int(patience) != patience or patience < 1):
            raise ValueError(f"Distiller: patience must be None or an integer >= 1, got {patience!r}")
        if ties not in ("first", "last"):
            raise ValueError(f"Distiller: ties must be 'first' or 'last', got {ties!r}")
        if passes not in ("joint", "separate"):
            raise ValueError(f"Distiller: passes must be 'joint' or 'separate', got {passes!r}")
        if batching not in ("partition", "labelled_first"):
            raise ValueError(f"Distiller: batching must be 'partition' or 'labelled_first', got {batching!r}")
        if batching == "labelled_first" and (batch_size is None or passes != "joint"):
            raise ValueError("Distiller: batching='labelled_first' (Graph-MLP's batches) needs a batch_size and "
                             "passes='joint'")
        if batch_edges not in ("induced", "neighbours"):
            raise ValueError(f"Distiller: batch_edges must be 'induced' or 'neighbours', got {batch_edges!r}")
        if batch_edges == "neighbours" and (batch_size is None or passes != "joint" or uses_graph(student)):
            raise ValueError("Distiller: batch_edges='neighbours' adds each batch node's in-neighbours to the "
                             "batch of a graph-free student; it needs a batch_size, passes='joint' and a "
                             f"graph-free student (got batch_size={batch_size}, passes={passes!r}, "
                             f"{type(student).__name__})")
        if batch_edges == "neighbours":
            refuse_unmasked_terms(terms, "Distiller")
        self.ties, self.passes, self.batching, self.batch_edges = ties, passes, batching, batch_edges
        self.student = student
        self.terms = nn.ModuleList(terms)
        if isinstance(teacher, TeacherOutputs) and (teacher.logits.requires_grad or (
                teacher.hidden is not None and teacher.hidden.requires_grad)):
            # computed with autograd on: constants here (else epoch 1 backpropagated into the teacher and
            # epoch 2 failed with "backward through the graph a second time")
            teacher = dataclasses.replace(teacher, logits=teacher.logits.detach(),
                                          hidden=None if teacher.hidden is None else teacher.hidden.detach())
        self.teacher = teacher
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.epochs, self.patience, self.batch_size = int(epochs), patience, batch_size
        self.device = torch.device(device) if device is not None else next(
            (p.device for p in student.parameters()), torch.device("cpu"))
        self.checkpoint_dir, self.cache_dir = checkpoint_dir, cache_dir
        CheckpointCadence(checkpoint_overhead)  # validates it here, not at the first epoch
        self.checkpoint_overhead = checkpoint_overhead
        self.progress, self.desc, self.seed = progress, desc, int(seed)
        self.observed = observed
        if distributed not in ("auto", True, False):
            raise ValueError(f"Distiller: distributed must be 'auto', True or False, got {distributed!r}")
        self.distributed, self.process_group = distributed, process_group
        self.uses_graph = uses_graph(student)
        self._hidden_ok = True
        self._param_dtype: Optional[torch.dtype] = None  # set by fit
        self.autocast = autocast_dtype(autocast, "Distiller")

    # -- forward helpers ------------------------------------------------------------------------
    def _region(self):
        """The ``torch.autocast`` region of ``autocast=`` on the training device (nothing when off)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def _forward(self, inputs: Tensor, graph, nodes: Optional[Tensor], want_hidden: bool):
        """Student logits/hidden for rows ``nodes`` (all rows when ``None``).  ``inputs`` are the batch
        rows for a graph-free student and the full matrix for a GNN."""
        want_hidden = want_hidden and self._hidden_ok
        logits, hidden = call_model(self.student, inputs, graph, self.uses_graph, want_hidden)
        # A forward run under autocast returns half rows while the weights, and so the terms' heads, stay
        # float32: every term sees the rows in the parameters' dtype (a float32 head refused bfloat16 rows)
        wide = self._param_dtype
        if wide is not None:
            logits, hidden = (v.to(wide) if v is not None and v.is_floating_point() and v.dtype.itemsize
                              < wide.itemsize else v for v in (logits, hidden))
        if self.uses_graph and nodes is not None:
            logits = take_rows(logits, nodes)
            hidden = take_rows(hidden, nodes) if hidden is not None else None
        return logits, hidden

    @torch.no_grad()
    def predict(self, inputs: Tensor, graph=None, chunk: int = 65536) -> Tensor:
        """Eval-mode logits ``[N, C]`` for every node (graph-free students run in chunks)."""
        was = self.student.training
        try:
            with self._region():
                logits = eval_logits(self.student, inputs, graph, self.uses_graph, chunk)
            # (under autocast: the rows in float32, the weights' dtype, as the terms read them)
            return logits.float() if self.autocast is not None and logits.dtype == self.autocast else logits
        finally:
            self.student.train(was)

    def _val_accuracy(self, inputs: Tensor, graph, y: Tensor, val_mask: Tensor, val_idx: Optional[Tensor],
                      val_kept: Optional[tuple] = None) -> float:
        """Validation accuracy; a graph-free student reads only the validation rows of ``inputs``
        (on a large, memory-mapped feature matrix this is a gather, not a pass over every node), or
        ``val_kept``, those rows and their labels gathered once by the caller."""
        if val_idx is None:
            logits, y, mask = self.predict(inputs, graph), y, val_mask
        elif val_kept is not None:
            logits, y, mask = self.predict(val_kept[0]), val_kept[1], None
        else:
            logits, y, mask = self.predict(take_rows(inputs, val_idx)), take_rows(y, val_idx), None
        # A student made of members (gkdfast.distill.recipes.peers.PeerGroup) may score the members
        # itself: model selection then follows the member the recipe returns, not their ensemble.
        member = getattr(self.student, "member_accuracy", None)
        score = member(y, mask, logits.size(0)) if member is not None else None
        return accuracy(logits, y, mask) if score is None else score

    def evaluate(self, data, inputs: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> float:
        """Accuracy (fraction) of the student on ``mask`` (default ``data.test_mask``)."""
        inputs = data.x if inputs is None else inputs
        logits = self.predict(inputs.to(self.device), data.graph.to(self.device) if self.uses_graph else None)
        mask = data.test_mask if mask is None else mask
        return accuracy(logits.cpu(), data.y.cpu(), mask.cpu())

    # -- checkpoints ----------------------------------------------------------------------------
    def _fingerprint(self, inputs: Tensor, y: Tensor, masks: Sequence[Tensor], graph, teacher,
                     select_best: bool, world_size: Optional[int] = None) -> str:
        """SHA-256 of everything a checkpoint's numbers depend on: the student (architecture, dropout,
        parameter shapes), every term's settings and heads, the optimiser and loop settings, the data
        (inputs, labels, masks, graph) and the teacher outputs.  A checkpoint resumes only a run whose
        fingerprint matches: after changing any of these, reusing the folder is refused with a clear
        error instead of silently continuing (or reporting) the old run.  ``world_size``: the number of
        DDP ranks (``None`` for single-process runs, whose fingerprints it leaves unchanged)."""
        h = hashlib.sha256()
        hash_module_settings(h, self.student, self.terms)
        h.update(f"{self.lr},{self.weight_decay},{self.batch_size},{self.seed},{self.epochs},{self.patience},"
                 f"{bool(select_best)}".encode())
        if self.ties != "first":  # (left out for the default, so existing checkpoints keep their key)
            h.update(f"ties={self.ties}".encode())
        if self.passes != "joint":
            h.update(f"passes={self.passes}".encode())
        if self.batching != "partition":
            h.update(f"batching={self.batching}".encode())
        if self.batch_edges != "induced":
            h.update(f"batch_edges={self.batch_edges}".encode())
        if world_size is not None:
            h.update(f"ddp{int(world_size)}".encode())
        if self.autocast is not None:
            h.update(f"autocast={self.autocast}".encode())
        hash_dropout_implementation(h)
        for tensor in (inputs, y, *masks):
            hash_tensor(h, tensor)
        if graph is not None:
            h.update(str(graph.num_nodes).encode())
            hash_tensor(h, graph.rowptr)
            hash_tensor(h, graph.col)
            hash_edge_weights(h, graph)  # (nothing for an unweighted graph: its fingerprints are unchanged)
        if teacher is not None:
            if teacher.key is not None:  # the cache key already hashes the teacher's weights and inputs
                h.update(teacher.key.encode())
            else:
                hash_tensor(h, teacher.logits)
        return h.hexdigest()

    def _param_groups(self) -> List[dict]:
        """Adam's parameter groups: the student's own (``optimizer_groups``) where it has them, else one
        group of its parameters; then the terms' parameters (projection heads) with ``weight_decay``."""
        own = getattr(self.student, "optimizer_groups", None)
        special = _term_option_groups(self.terms, self.weight_decay)
        kept = {id(p) for g in special for p in g["params"]}
        term_params = [p for p in self.terms.parameters() if id(p) not in kept]
        if not callable(own):  # one group, as before models could bring their own (checkpoints stay loadable)
            return [{"params": list(self.student.parameters()) + term_params}] + special
        groups = []
        for g in own(self.weight_decay):
            g = dict(g)  # params as torch accepts them (a tensor, a list, a generator), made a list once
            g["params"] = [g["params"]] if torch.is_tensor(g["params"]) else list(g["params"])
            groups.append(g)
        grouped = {id(p) for g in groups for p in g["params"]}
        missing = [n for n, p in self.student.named_parameters() if id(p) not in grouped]
        if missing:  # a parameter left out would silently never train
            raise ValueError(f"Distiller: {type(self.student).__name__}.optimizer_groups() leaves out "
                             f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        return groups + ([{"params": term_params}] if term_params else []) + special

    def _ckpt_path(self) -> Optional[str]:
        return os.path.join(self.checkpoint_dir, "checkpoint.pt") if self.checkpoint_dir else None

    def _save(self, state: dict, ddp: Optional[_ddp.Dist] = None) -> None:
        """Writes the checkpoint (:func:`gkdfast.distill.checkpoint_file.write_checkpoint`: atomically;
        under DDP with every rank's RNG states, rank 0 writing, all ranks waiting)."""
        path = self._ckpt_path()
        if path is not None:
            write_checkpoint(path, state, ddp)

    def _load(self, fp: str, world_size: int = 1) -> Optional[dict]:
        path = self._ckpt_path()
        state = read_checkpoint(path, "Distiller", world_size) if path is not None else None
        if state is not None and state.get("fingerprint") != fp:
            raise ValueError(f"Distiller: {path} belongs to a different run (model, terms or settings differ); "
                             "use another checkpoint_dir (gkdfast distill: another --out) or delete it")
        if state is not None:
            warn_thread_change(state, path, "Distiller", self.device)
        return state

    # -- training -------------------------------------------------------------------------------
    def fit(self, data, inputs: Optional[Tensor] = None,
            callbacks: Sequence[Callable[[int, dict], None]] = (), select_best: bool = True) -> FitResult:
        """Trains the student on ``data`` (a :class:`gkdfast.data.GraphData`).

        Args:
            data: graph, features, labels and masks.  inputs: the student's input features ``[N, F']``
                (default ``data.x``; recipes pass e.g. features with position encodings appended).
            callbacks: ``fn(epoch, info)`` called after each epoch (and its checkpoint, when one is
                due); raise :class:`StopTraining` to stop: that epoch is then written, so the run
                resumes after it (under DDP a stop on any rank stops every rank).
            select_best: keep the weights of the best validation epoch (default); ``False`` keeps the
                last epoch's (for terms with no accuracy to watch, e.g. embedding regression), and the
                result's ``best_epoch`` / ``best_val_acc`` are that epoch's; ``patience`` still counts
                epochs since the best validation accuracy.

        Returns:
            :class:`FitResult` (the same on every rank under DDP, except ``seconds``).
        """
        _check_data(data)
        ddp = _ddp.resolve(self.distributed, self.process_group)
        dev = self.device
        inputs = (data.x if inputs is None else inputs).to(dev)
        if inputs.dim() != 2 or inputs.size(0) != data.x.size(0):
            raise ValueError(f"Distiller.fit: inputs must be [N={data.x.size(0)}, F], got {list(inputs.shape)}")
        n = inputs.size(0)
        graph = data.graph.to(dev) if data.graph is not None else None
        y = data.y.to(dev)
        train_mask, val_mask = data.train_mask.to(dev), data.val_mask.to(dev)
        observed = (self.observed.to(dev) if self.observed is not None
                    else torch.ones(n, dtype=torch.bool, device=dev))
        if observed.dtype != torch.bool or observed.shape != (n,):
            raise ValueError(f"Distiller: observed must be a bool mask of the N={n} nodes, got "
                             f"{observed.dtype} of shape {list(observed.shape)}")
        joinable = None if bool(observed.all()) else observed  # who may join a neighbourhood batch
        if not bool(val_mask.any()) and (select_best or self.patience is not None):
            # every epoch would score 0 on no node: the first epoch would be kept as the best and the
            # patience would stop the run after it
            raise ValueError("Distiller.fit: the validation mask selects no node, so there is no validation "
                             "accuracy to keep the best epoch by or stop on; give validation nodes, or pass "
                             "select_best=False and patience=None to train every epoch and keep the last")

        teacher = self.teacher
        if isinstance(teacher, nn.Module):
            teacher = teacher_outputs(teacher, data.x.to(dev), graph, cache_dir=self.cache_dir,
                                      distributed=self.distributed if ddp is not None else False,
                                      process_group=self.process_group)
        if teacher is not None:
            teacher = teacher.to(dev)
            for what, t in (("logits", teacher.logits), ("hidden embedding", teacher.hidden)):
                if t is not None and (t.dim() != 2 or t.size(0) != n):
                    raise ValueError(f"Distiller.fit: the teacher's {what} is {list(t.shape)}, data has {n} rows")
        for t in self.terms:
            if t.needs_teacher and teacher is None:
                raise ValueError(f"Distiller: term {t.name!r} needs a teacher")
            if t.needs_hidden and t.needs_teacher and teacher.hidden is None:
                raise ValueError(f"Distiller: term {t.name!r} needs the teacher's hidden embedding "
                                 "(a teacher whose forward accepts return_hidden=True)")
            if t.needs_graph and graph is None:
                raise ValueError(f"Distiller: term {t.name!r} needs a graph")
            if ddp is not None and t.weight != 0 and not t.supports_process_group():
                raise ValueError(f"Distiller: term {t.name!r} compares all pairs of nodes and its loss does not "
                                 "accept process_group= yet, so it cannot run across processes; train it in one "
                                 "process (distributed=False, or without --distributed)")

        # Probe the student once: can it return a hidden embedding, and how wide is it?
        self.student.to(dev)
        # the dtype of its floating-point weights (None: it has none), which _forward widens rows to
        self._param_dtype = next((p.dtype for p in self.student.parameters() if p.is_floating_point()), None)
        if self.autocast is not None:
            odd = sorted({str(p.dtype) for p in self.student.parameters() if p.is_floating_point()
                          and p.dtype != torch.float32})
            if odd:
                raise ValueError(f"Distiller: autocast={self.autocast} trains float32 weights in a mixed-precision "
                                 f"region; the student has {', '.join(odd)} weights (convert it with .float())")
        probe_rows = torch.arange(min(n, 8), device=dev)
        with torch.no_grad():
            was = self.student.training
            self.student.eval()
            try:
                probe = self._forward(inputs if self.uses_graph else inputs[probe_rows], graph, probe_rows, True)
            except TypeError:
                self._hidden_ok = False
                probe = self._forward(inputs if self.uses_graph else inputs[probe_rows], graph, probe_rows, False)
            self.student.train(was)
        if probe[1] is None and any(t.needs_hidden for t in self.terms):
            raise ValueError("Distiller: a term needs the student's hidden embedding, but the student's forward "
                             "does not accept return_hidden=True")
        dims = Dims(student_hidden=probe[1].size(-1) if probe[1] is not None else None,
                    teacher_hidden=teacher.hidden.size(-1) if teacher is not None and teacher.hidden is not None
                    else None, num_classes=probe[0].size(-1))
        for t in self.terms:
            # A term that never runs builds no heads: their initialisation would shift every later random
            # draw (dropout masks, batches), so a weight-0 term would change the training it takes no part in.
            if t.weight != 0 or (self.passes == "separate" and t.nodes == "train"):
                t.setup(dims)
        # heads the terms built (projections, RSD's map) take the student's device and float dtype: its
        # parameters' (under autocast its outputs are bfloat16 while it trains float32 weights, and so
        # must the heads), else its output's
        out_dtype = self._param_dtype or (probe[1] if probe[1] is not None else probe[0]).dtype
        self.terms.to(dev, dtype=out_dtype if out_dtype.is_floating_point else None)

        optim = torch.optim.Adam(self._param_groups(), lr=self.lr, weight_decay=self.weight_decay)
        # float16's narrow range: the loss is scaled so small gradients do not flush to zero
        scaler = torch.amp.GradScaler(dev.type) if self.autocast == torch.float16 else None
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        val_idx = None if self.uses_graph else val_mask.nonzero().flatten()
        # A graph-free student's validation rows, gathered once for the whole fit when they are small
        # (then the same tensor every epoch, so a sparse first layer converts it once, too); a large
        # validation set of memory-mapped features is gathered again each epoch instead of held.  (Under
        # DDP each rank validates its own share, in _ddp_epoch_stats.)
        val_kept = (None if val_idx is None or ddp is not None
                    or val_idx.numel() * inputs[:1].nelement() * inputs.element_size() > _VAL_ROWS_KEPT_BYTES
                    else (take_rows(inputs, val_idx), take_rows(y, val_idx)))
        # (joint steps skip weight-0 terms, so they do not widen the batches to unlabelled rows either)
        label_only = all(t.nodes == "train" for t in self.terms if t.weight != 0)
        pool = (train_mask if label_only else observed).nonzero().flatten()
        if self.batching == "labelled_first":
            train_rows = train_mask.nonzero().flatten()
            if self.batch_size <= train_rows.numel():
                raise ValueError(f"Distiller: batching='labelled_first' puts the {train_rows.numel()} training nodes "
                                 f"first in every batch, so batch_size must be larger (got {self.batch_size})")
            first_labelled = torch.zeros(self.batch_size, dtype=torch.bool, device=dev)
            first_labelled[: train_rows.numel()] = True
        if self.passes == "separate":
            label_terms = [t for t in self.terms if t.nodes == "train"]
            # (weight-0 label terms keep their zero-loss steps, as the reference's schedule; other weight-0
            # terms never run, as in joint steps)
            other_terms = [t for t in self.terms if t.nodes != "train" and t.weight != 0]
            # (nodes the pass draws its batches from, its terms); a pass without terms is left out
            schedule = [(rows, ts) for rows, ts in ((train_mask.nonzero().flatten(), label_terms),
                                                     (observed.nonzero().flatten(), other_terms)) if ts]

        fp = (self._fingerprint(inputs, y, (train_mask, val_mask, observed), graph, teacher, select_best,
                                ddp.world_size if ddp is not None else None)
              if self.checkpoint_dir else None)
        if ddp is not None and fp is not None:
            odd = [r for r, f in enumerate(ddp.all_gather_object(fp)) if f != fp]
            if odd:
                raise ValueError(f"Distiller: rank(s) {odd} train on other data, inputs, teacher or settings than "
                                 f"rank {ddp.rank}; every rank must call fit with the same arguments")
        state = self._load(fp, ddp.world_size if ddp is not None else 1) if fp is not None else None
        start, best_val, best_epoch, bad, seconds, history = 0, -1.0, 0, 0, 0.0, []
        best_seen = best_val  # the best validation so far: patience counts from it even with select_best=False
        best_student = best_terms = None
        done = False
        cadence = CheckpointCadence(self.checkpoint_overhead if self.checkpoint_dir
                                    and not _ddp.checkpoint_every_epoch_for_test() else None)
        if state is not None:
            try:
                self.student.load_state_dict(state["student"])
                self.terms.load_state_dict(state["terms"])
                optim.load_state_dict(state["optim"])
                if scaler is not None:
                    scaler.load_state_dict(state["scaler"])
                # (read inside the try: a missing key named neither the file nor the fix, helper 118)
                start, best_val, best_epoch, bad = state["epoch"], state["best_val"], state["best_epoch"], state["bad"]
                best_seen = state.get("best_seen", best_val)
                seconds, history = state["seconds"], state["history"]
                best_student, best_terms, done = state["best_student"], state["best_terms"], state["done"]
                rng_gen = state["rng_gen"]
            except (RuntimeError, ValueError, KeyError) as exc:  # e.g. a checkpoint of an older layout
                raise ValueError(f"Distiller: {self._ckpt_path()} does not fit this run's model, heads or optimiser "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:100]}); it was probably "
                                 "written by an older gkdfast: delete it to start over") from None
            resume_rng_states(state, ddp, dev)
            gen.set_state(rng_gen)
        # Under DDP one module holds the student and the heads, so gradients of both are averaged.
        step = _ddp.wrap(self.student, self.terms, dev) if ddp is not None and not done else None
        val_rows = val_mask.nonzero().flatten()
        if ddp is not None:
            val_rows = val_rows[ddp.rank::ddp.world_size]

        # A student may carry its own penalty (``regularization()`` -> 0-d tensor or None), e.g. the
        # norm of SE-GCN's per-node tables; it is added to every step's loss.
        regularization = getattr(self.student, "regularization", None)
        if not callable(regularization):
            regularization = None
        elif ddp is not None:
            raise ValueError(f"Distiller: {type(self.student).__name__} adds its own regularization() to the loss, "
                             "which data-parallel training does not support; train it in one process")

        def batch_loss(nodes: Tensor, subset: Optional[Sequence[LossTerm]] = None,
                       labelled: Optional[Tensor] = None):
            # subset: the terms of one pass of passes="separate", kept at weight 0 too (a zero loss
            # still takes its optimiser step there); None: every term of non-zero weight.
            # labelled: which rows the label terms read (default: the training nodes among them).
            # A batch of n distinct rows is the pool itself, i.e. arange(n): skip the gathers
            # (labelled_first batches may repeat nodes, so they always gather).
            full = nodes.numel() == n and labelled is None and self.batch_edges == "induced"
            is_centre, batch_graph = None, None
            if self.batch_edges == "neighbours":  # the batch nodes, then their in-neighbours (neighbourhood.py)
                labelled = take_rows(train_mask, nodes) if labelled is None else labelled
                nodes, batch_graph, b = neighbourhood_batch(graph, nodes, joinable)
                is_centre = torch.zeros(nodes.numel(), dtype=torch.bool, device=dev)
                is_centre[:b] = True
                labelled = torch.cat([labelled, torch.zeros(nodes.numel() - b, dtype=torch.bool, device=dev)])
            x_b = inputs if (self.uses_graph or full) else take_rows(inputs, nodes)
            sel = None if full else nodes
            # a GNN student runs over the whole graph: keep its hidden layer for every node (a term that
            # needs rows outside the batch, LSP under DDP, reads it), then select the batch rows
            logits, hidden = self._forward(x_b, graph, None, True)
            all_hidden = hidden if self.uses_graph else None
            if self.uses_graph and sel is not None:
                logits, hidden = take_rows(logits, sel), take_rows(hidden, sel) if hidden is not None else None
            ctx = StepContext(
                nodes=nodes, logits=logits, hidden=hidden, all_hidden=all_hidden,
                all_teacher_hidden=teacher.hidden if teacher is not None else None,
                # (the logits serve the observed rows only: on a neighbourhood batch, its centres)
                teacher_logits=(None if teacher is None else take_rows(teacher.logits, nodes) if batch_graph is None
                                else pad_neighbour_rows(take_rows(teacher.logits, nodes[:b]), nodes.numel())),
                teacher_hidden=take_rows(teacher.hidden, nodes) if teacher is not None and teacher.hidden is not None
                else None,
                y=take_rows(y, nodes), labelled=take_rows(train_mask, nodes) if labelled is None else labelled,
                # neighbour rows serve LSP's centres only: the other terms read the batch nodes alone
                observed=(take_rows(observed, nodes) if is_centre is None else take_rows(observed, nodes) & is_centre), inputs=x_b,
                forward=lambda xx, _sel=sel: self._forward(xx, graph, _sel, True),
                full_graph=graph, full_batch=full,
                process_group=(ddp.group if ddp.group is not None else _ddp.default_group()) if ddp else None,
                student=self.student, neighbourhood=batch_graph is not None, _graph=batch_graph)
            loss, reported, values = 0.0, 0.0, {}
            for t in (self.terms if subset is None else subset):
                if t.weight == 0 and subset is None:
                    continue
                v = t(ctx)
                values[t.name] = float(v.detach())
                for key, stat in t.step_stats().items():  # diagnostics: into the history, not the loss
                    values[f"{t.name}.{key}"] = float(stat)
                # Under DDP an all-pairs term is the *global* batch's loss on every rank, and each rank
                # back-propagates it into its own rows only: the ranks' gradients sum to its gradient,
                # and DDP averages them, so scale it by W.  (A row-mean term scales its own share,
                # terms._rows_mean; a term every rank computes whole, LSP on a GNN, needs nothing.)
                loss = loss + t.weight * (ddp.world_size if ddp is not None and t.all_pairs_loss else 1) * v
                reported += t.weight * values[t.name]
            if not torch.is_tensor(loss):
                raise ValueError("Distiller: every term has weight 0")
            reg = regularization() if regularization is not None else None
            if reg is not None:  # the model's own penalty (SE-GCN's se_reg * sum of embedding norms)
                values["regularization"] = float(reg.detach())
                loss = loss + reg
                reported += values["regularization"]
            values["loss"] = reported
            if batch_graph is not None and ddp is None:  # (under DDP one rank raising would hang the others)
                refuse_nonfinite_loss(reported, "Distiller")
            return loss, values

        bar = None
        if self.progress and not done and (ddp is None or ddp.is_main):
            from gkdfast._progress import progress_bar

            bar = progress_bar(total=self.epochs, initial=start, desc=self.desc, leave=False, dynamic_ncols=True)
        try:
            epoch = start
            while not done and epoch < self.epochs:
                t0 = time.perf_counter()
                self.student.train()
                self.terms.train()
                if self.batching == "labelled_first":
                    drawn = pool[torch.randint(pool.numel(), (self.batch_size - train_rows.numel(),),
                                               generator=gen).to(dev)]
                    rows, labelled = torch.cat([train_rows, drawn]), first_labelled
                    if ddp is not None:  # rank r takes positions r, r + W, ...: equal shares of the labelled rows
                        rows, labelled = rows[ddp.rank::ddp.world_size], labelled[ddp.rank::ddp.world_size]
                    batches = [(rows, None, labelled)]
                elif self.passes == "separate":
                    # Under DDP every rank draws the same global batches (same generator) and takes
                    # positions r, r + W, ...; the terms average over (or pair across) the global batch.
                    batches = [(nodes if ddp is None else nodes[ddp.rank::ddp.world_size], ts, None)
                               for rows, ts in schedule for nodes in _reference_batches(rows, self.batch_size, gen)]
                else:
                    whole = self.batch_size is None or self.batch_size >= pool.numel()
                    order = pool if whole else pool[torch.randperm(pool.numel(), generator=gen).to(dev)]
                    if ddp is None:
                        batches = [pool] if whole else list(order.split(self.batch_size))
                    else:
                        batches = _ddp.local_batches(_ddp.shard_order(order, ddp.world_size, ddp.rank),
                                                     None if whole else self.batch_size, ddp.world_size)
                    batches = [(nodes, None, None) for nodes in _ddp.join_lone_last(batches)]
                sums: Dict[str, float] = {}
                counts: Dict[str, int] = {}
                for nodes, subset, labelled in batches:
                    with self._region():
                        loss, values = (step(batch_loss, nodes, subset, labelled) if step is not None
                                        else batch_loss(nodes, subset, labelled))
                    for k, v in values.items():  # "loss" among them: the step's loss as one process has it
                        sums[k] = sums.get(k, 0.0) + v
                        counts[k] = counts.get(k, 0) + 1
                    optim.zero_grad(set_to_none=True)
                    if scaler is None:
                        loss.backward()
                        optim.step()
                    else:  # (a step whose scaled gradient overflowed is skipped, the scale lowered)
                        scaler.scale(loss).backward()
                        scaler.step(optim)
                        scaler.update()
                # each value's mean over the steps that computed it (with passes="separate" a term
                # appears in its own pass only)
                sums = {k: v / counts[k] for k, v in sums.items()}
                epoch += 1
                if ddp is None:
                    val = self._val_accuracy(inputs, graph, y, val_mask, val_idx, val_kept)
                else:  # this rank's share of the validation rows; counts summed over ranks
                    ddp.broadcast_buffers(self.student, self.terms)
                    val, sums = self._ddp_epoch_stats(ddp, inputs, graph, y, val_rows, sums)
                seconds += time.perf_counter() - t0
                sums["val_acc"] = val
                history.append(sums)
                improved = val > best_seen or (self.ties == "last" and val == best_seen)
                best_seen, bad = (val, 0) if improved else (best_seen, bad + 1)
                if improved or not select_best:  # (select_best=False keeps, and reports, the last epoch)
                    best_val, best_epoch = val, epoch
                    best_student = _snapshot(best_student, self.student.state_dict())
                    best_terms = _snapshot(best_terms, self.terms.state_dict())
                done = epoch >= self.epochs or (self.patience is not None and bad >= self.patience)
                rng = rng_states(dev)
                # references to the live tensors, taken now: a save after the callbacks writes this epoch
                ckpt_state = {
                    "fingerprint": fp, "epoch": epoch, "student": self.student.state_dict(),
                    "terms": self.terms.state_dict(), "optim": optim.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng_torch": rng["torch"], "rng_cuda": rng["cuda"],
                    "rng_gen": gen.get_state(), "best_val": best_val, "best_epoch": best_epoch, "bad": bad,
                    "best_seen": best_seen,
                    "seconds": seconds, "history": history, "best_student": best_student,
                    "best_terms": best_terms, "done": done}
                saved = done or checkpoint_due(cadence, ddp, bool(self.checkpoint_dir))
                if saved:
                    with cadence.timed():
                        self._save(ckpt_state, ddp)
                if ddp is not None and self.checkpoint_dir:
                    _ddp.fail_once_for_test(ddp, epoch, self.checkpoint_dir)
                if bar is not None:  # (the postfix first: the update draws it, at tqdm's pace)
                    bar.set_postfix(loss=f"{sums['loss']:.4f}", val=f"{val:.3f}", best=f"{best_val:.3f}",
                                    refresh=False)
                    bar.update(1)
                stop = False
                # callbacks run on their own copy of the random streams: draws of theirs would shift the
                # training's, which a resumed run (its streams restored from the checkpoint, taken above)
                # would not see
                with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                    for cb in callbacks:
                        try:
                            cb(epoch, sums)
                        except StopTraining:
                            stop = True
                if ddp is not None:  # one rank's stop stops them all, so no rank waits in a collective
                    stop = bool(ddp.all_reduce_sum(torch.tensor([float(stop)]))[0] > 0)
                if stop:
                    if not saved:  # "the last checkpoint is kept": a stopped run resumes after this epoch
                        self._save(ckpt_state, ddp)
                    break
        finally:
            if bar is not None:
                bar.close()
        if best_student is not None:
            self.student.load_state_dict(best_student)
            self.terms.load_state_dict(best_terms)
        self.student.eval()
        return FitResult(self.student, max(best_val, 0.0), best_epoch, len(history), seconds, history, teacher)

    def _ddp_epoch_stats(self, ddp, inputs, graph, y, val_rows, sums):
        """Validation accuracy over every rank's share of the validation rows, and the epoch's loss
        values averaged over ranks (so each rank records the same history and stops at the same epoch)."""
        if self.uses_graph:
            full = self.predict(inputs, graph)
            logits, rows = full[val_rows], full.size(0)
        else:
            logits = self.predict(take_rows(inputs, val_rows)) if val_rows.numel() else inputs.new_zeros(0, 1)
            rows = val_rows.numel()
        # A student made of members scores its best member, as in one process (_val_accuracy): each
        # member's correct count is summed over the ranks before the best is taken.  The member count is
        # fixed by the model, so every rank sends as many numbers; where a rank's last forward does not
        # cover its rows (chunked), the ensemble's accuracy is used, as in one process.
        k = len(getattr(self.student, "peers", ())) if hasattr(self.student, "member_logits") else 0
        y_rows = take_rows(y, val_rows)
        has_rows = val_rows.numel() > 0
        ensemble = float((logits.argmax(-1) == y_rows).sum()) if has_rows else 0.0
        members = self.student.member_logits(rows) if k and has_rows else None
        member_counts = ([float((z[val_rows] if self.uses_graph else z).argmax(-1).eq(y_rows).sum()) for z in members]
                         if members is not None else [0.0] * k)
        scored = 1.0 if k and (members is not None or not has_rows) else 0.0
        keys = sorted(sums)
        total = ddp.all_reduce_sum(torch.tensor([ensemble] + member_counts + [scored, float(val_rows.numel())] +
                                                [sums[key] for key in keys], dtype=torch.float64))
        count = total[k + 2].item()
        wins = total[1:k + 1].tolist() if k and total[k + 1].item() == ddp.world_size else [total[0].item()]
        # float32 division, as accuracy() does, so 1 and W processes see the same numbers
        val = max(float(torch.tensor(c, dtype=torch.float32) / torch.tensor(count, dtype=torch.float32))
                  for c in wins) if count > 0 else 0.0
        return val, {key: float(total[k + 3 + i]) / ddp.world_size for i, key in enumerate(keys)}


