"""``fit_sampled``: trains a gkdfast.nn GNN in place on neighbour-sampled mini-batches.

Only the rows ``x[n_id]`` of each batch are gathered, so ``data.x`` may be a read-only memory-mapped
tensor or numpy array far larger than RAM; the graph stays on the CPU (sampling is CPU work) and
each batch's features and blocks are moved to the model's device.
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast._rows import take_rows
from gkdfast.nn.sparse_input import sparse_rows
from gkdfast.sampling.loader import Batch, NeighborLoader, mix_seed

__all__ = ["fit_sampled", "predict_sampled", "gather_rows", "batch_features", "NeighbourhoodBatch"]


def gather_rows(x, index: Tensor) -> Tensor:
    """``x[index]`` as a fresh tensor, for a tensor or a (memory-mapped) numpy array.

    Example:
        >>> gather_rows(np.arange(6.0).reshape(3, 2), torch.tensor([2, 0])).tolist()
        [[4.0, 5.0], [0.0, 1.0]]
    """
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x[index.cpu().numpy()]))
    return take_rows(x, index.to(x.device))


def _nodes(mask) -> Tensor:
    mask = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
    return mask.nonzero().flatten() if mask.dtype == torch.bool else mask


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def batch_features(model: nn.Module, x, n_id: Tensor) -> Tensor:
    """The batch's input rows ``x[n_id]``: for a gkdfast.nn model on mostly-zero features (bag of
    words; :func:`gkdfast.nn.sparse_input.sparse_operand`) the sparse CSR rows, which its first layer
    multiplies as they are (``nnz`` memory and work instead of a dense ``[len(n_id), F]`` gather),
    else the dense rows (:func:`gather_rows`).

    Example:
        >>> x = torch.zeros(50, 400); x[3, 7] = 1.0
        >>> batch_features(gkdfast.nn.SAGE(400, 8, 2), x, torch.tensor([3, 1])).layout
        torch.sparse_csr
    """
    accepts = getattr(model, "accepts_sparse_input", None)
    if isinstance(x, Tensor) and accepts is not None and accepts():
        rows = sparse_rows(x, n_id)
        if rows is not None:
            return rows
    return gather_rows(x, n_id)


def _input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 for a model without one): a
    float64 model gets float64 features, whatever the stored features' dtype."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _forward(model: nn.Module, x, batch: Batch, device: torch.device, return_hidden: bool = False):
    # Dense rows for a CUDA model under torch.use_deterministic_algorithms(True): the CSR rows' products
    # run through cuSPARSE, which does not promise the same bits twice (gkdfast.nn.sparse_input).
    dense = device.type == "cuda" and torch.are_deterministic_algorithms_enabled()
    rows = gather_rows(x, batch.n_id) if dense else batch_features(model, x, batch.n_id)
    feats = rows.to(device=device, dtype=_input_dtype(model), non_blocking=True)
    if device.type != "cpu":
        batch = batch.to(device, non_blocking=True)
    return model.forward_blocks(feats, batch.blocks, return_hidden=return_hidden)


def _check(model: nn.Module, data, fanouts: Sequence[int], batch_size, epochs, eval_every) -> None:
    if not hasattr(model, "forward_blocks"):
        raise TypeError(f"gkdfast.sampling.fit_sampled: model {type(model).__name__} has no forward_blocks "
                        "(use a gkdfast.nn model: GCN, SAGE, GIN, GAT or MLP)")
    layers = getattr(model, "num_layers", None)
    if layers is not None and len(fanouts) != layers:
        raise ValueError(f"gkdfast.sampling.fit_sampled: {len(fanouts)} fanouts for a {layers}-layer model; "
                         "give one fan-out per layer")
    for what, v in (("batch_size", batch_size), ("epochs", epochs), ("eval_every", eval_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"gkdfast.sampling.fit_sampled: {what} must be a positive int, got {v!r}")
    for field in ("graph", "x", "y", "train_mask", "val_mask"):
        if not hasattr(data, field):
            raise TypeError(f"gkdfast.sampling.fit_sampled: data needs a .{field} (a gkdfast.data.GraphData)")


def predict_sampled(model: nn.Module, data, nodes, *, fanouts: Sequence[int] = (15, 10), batch_size: int = 1024,
                    seed: int = 0, progress: bool = False) -> Tensor:
    """``[len(nodes), C]`` logits of ``nodes`` by sampled inference (model in eval mode).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=60, num_classes=3, feature_dim=8)
        >>> m = gkdfast.nn.SAGE(8, 16, 3)
        >>> predict_sampled(m, d, torch.arange(5), fanouts=(5, 5)).shape
        torch.Size([5, 3])
    """
    nodes = _nodes(nodes)
    uniq, inverse = torch.unique(nodes, return_inverse=True)  # a node asked for twice is predicted once
    loader = NeighborLoader(data.graph, uniq, fanouts, batch_size=batch_size, shuffle=False, seed=seed)
    return _predict(model, data.x, loader, progress)[inverse]


def _predict(model: nn.Module, x, loader: NeighborLoader, progress: bool) -> Tensor:
    was_training = model.training
    model.eval()
    device = _model_device(model)
    loader.set_epoch(0)  # the same samples every time: comparable validation accuracies
    outs = []
    bar = _bar(progress, loader.nodes.numel(), "predict")
    with torch.no_grad():
        for batch in loader:
            out = _forward(model, x, batch, device)  # half precision comes back as float32, float64 stays
            outs.append(out.to(torch.promote_types(out.dtype, torch.float32)).cpu())
            if bar is not None:
                bar.update(batch.num_seeds)
    if bar is not None:
        bar.close()
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, getattr(model, "out_channels", 0))


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from gkdfast._progress import progress_bar

    return progress_bar(total=total, desc=desc, unit="node", unit_scale=True, leave=False)


@dataclass
class NeighbourhoodBatch:
    """A step of ``fit_sampled(batch_edges="neighbours")``: ``batch`` is sampled for the centres (the
    step's seeds, ``num_seeds`` of them, first) followed by every in-neighbour of them, so the student
    computes a hidden row for each; ``graph`` holds the centres' in-edges only, over ``batch``'s seed rows
    (:func:`gkdfast.distill.neighbourhood.neighbourhood_batch`)."""

    batch: Batch
    graph: object
    num_seeds: int


def _sampler(loader: NeighborLoader, batch_edges: str) -> Callable:
    """``sample(seeds, epoch)``: the loader's batch of ``seeds``, or with ``batch_edges="neighbours"`` a
    :class:`NeighbourhoodBatch` around them (distinct seeds, as the sampler takes: a repeated one is
    refused by the sampler in either mode)."""
    if batch_edges != "neighbours":
        return loader.sample
    from gkdfast.distill.neighbourhood import neighbourhood_batch

    def sample(seeds: Tensor, epoch: int) -> NeighbourhoodBatch:
        rows, graph, b = neighbourhood_batch(loader.graph, seeds.long())
        return NeighbourhoodBatch(loader.sample(rows, epoch), graph, b)

    return sample


def _epoch_batches(loader: NeighborLoader, group, sample: Callable):
    """One epoch of ``loader``'s batches (``sample(seeds, epoch)`` of consecutive slices of its order),
    or under ``group`` this rank's share of them: the epoch's single-process seed order padded to a
    multiple of W, positions r, r + W, ..., in steps of ``ceil(batch_size / W)``
    (:func:`gkdfast.distill.ddp.shard_order` / ``local_batches``)."""
    epoch = loader.epoch
    loader.epoch += 1
    order = loader.order(epoch)
    from gkdfast.distill import ddp as _ddp

    if group is None:
        steps = list(order.split(loader.batch_size))
    else:
        steps = _ddp.local_batches(_ddp.shard_order(order, group.world_size, group.rank), loader.batch_size,
                                   group.world_size)
    for seeds in _ddp.join_lone_last(steps):
        yield sample(seeds, epoch)


def _labelled_first_batch(loader: NeighborLoader, train_nodes: Tensor, others: Tensor, draw: int, group,
                          sample: Callable):
    """One epoch of ``batching="labelled_first"``: the training nodes, then ``draw`` other pool nodes
    (a permutation seeded by (loader seed, epoch)); under ``group`` this rank's positions r, r + W, ..."""
    epoch = loader.epoch
    loader.epoch += 1
    gen = torch.Generator().manual_seed(mix_seed(loader.seed, epoch, 5))
    seeds = torch.cat([train_nodes, others[torch.randperm(others.numel(), generator=gen)[:draw]]])
    if group is not None:
        seeds = seeds[group.rank::group.world_size]
    yield sample(seeds, epoch)


def _labels(y, nodes: Tensor) -> Tensor:
    return gather_rows(y, nodes).to(torch.int64)


class _TermsLoss:
    """A step's distillation loss for :func:`fit_sampled` with ``terms``: the terms over the batch's
    seeds, weighted as the Distiller weighs them (an all-pairs term times W under DDP, as each rank
    back-propagates the global batch's loss into its own rows only).  Builds the terms' heads from a
    probe of the widths, on the model's device and float dtype."""

    def __init__(self, model: nn.Module, data, terms, teacher, loader: NeighborLoader, device, group,
                 batch_edges: str = "sampled", seed: int = 0):
        from gkdfast.distill import ddp as _ddp
        from gkdfast.distill.terms import Dims, LossTerm

        terms = list(terms)
        if not terms or not all(isinstance(t, LossTerm) for t in terms):
            raise TypeError("gkdfast.sampling.fit_sampled: terms must be a non-empty sequence of LossTerm")
        self.terms = nn.ModuleList(terms)
        if batch_edges == "neighbours":
            from gkdfast.distill.neighbourhood import refuse_unmasked_terms

            refuse_unmasked_terms(self.terms, "gkdfast.sampling.fit_sampled")
        else:
            bad = [t.name for t in self.terms if t.needs_graph]
            if bad:
                raise ValueError(f"gkdfast.sampling.fit_sampled: term {bad[0]!r} needs the graph around each node, "
                                 "which a sampled batch only holds in part; pass batch_edges='neighbours' (each batch "
                                 "then brings every in-neighbour of its seeds, for LSP) or use per-node and all-pairs "
                                 "terms (KD, CE, GSP, CRD)")
        if teacher is None and any(t.needs_teacher for t in self.terms):
            raise ValueError("gkdfast.sampling.fit_sampled: the terms need teacher= (a TeacherOutputs)")
        if any(t.needs_teacher and t.needs_hidden for t in self.terms) and getattr(teacher, "hidden", None) is None:
            raise ValueError("gkdfast.sampling.fit_sampled: a term needs the teacher's hidden rows, which teacher= lacks")
        self.model, self.data, self.teacher, self.device, self.group = model, data, teacher, device, group
        self.pg = (group.group if group.group is not None else _ddp.default_group()) if group is not None else None
        self.world = group.world_size if group is not None else 1
        was = model.training
        model.eval()
        with torch.no_grad():  # widths for the heads: one seed's forward
            probe = loader.sample(loader.nodes[:1].long(), 0)
            logits, hidden = _forward(model, data.x, probe, device, return_hidden=True)
        model.train(was)
        th = getattr(teacher, "hidden", None)
        dims = Dims(student_hidden=hidden.size(-1), teacher_hidden=th.shape[1] if th is not None else None,
                    num_classes=logits.size(-1))
        # The heads' initial weights come from ``seed`` alone, not from the global generator; a term
        # that never runs (weight 0) builds none, as in the Distiller: its draws would shift the others'.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for t in self.terms:
                if t.weight != 0:
                    t.setup(dims)
        self.terms.to(device, dtype=logits.dtype)

    def __call__(self, item) -> Tensor:
        from gkdfast.distill.neighbourhood import pad_neighbour_rows, refuse_nonfinite_loss
        from gkdfast.distill.terms import StepContext

        # A neighbourhood batch: every row gets logits and hidden, but only the centres (its first
        # num_seeds rows) are observed / labelled; the neighbour rows serve LSP's centres alone.
        centred = isinstance(item, NeighbourhoodBatch)
        batch = item.batch if centred else item
        logits, hidden = _forward(self.model, self.data.x, batch, self.device, return_hidden=True)
        seeds = batch.seeds.long()
        dev = logits.device
        t = self.teacher
        rows = (lambda m, ids=seeds: None if m is None else gather_rows(m, ids).to(dev))
        observed = torch.ones(seeds.numel(), dtype=torch.bool, device=dev)
        if centred:
            observed[item.num_seeds:] = False
        labelled = gather_rows(self.data.train_mask, seeds).to(dev).bool() & observed
        # (the teacher's logits serve the observed rows only: on a neighbourhood batch, its centres)
        tl = getattr(t, "logits", None)
        teacher_logits = (pad_neighbour_rows(rows(tl, seeds[:item.num_seeds]), seeds.numel())
                          if centred and tl is not None else rows(tl))
        ctx = StepContext(nodes=seeds.to(dev), logits=logits, hidden=hidden,
                          teacher_logits=teacher_logits, teacher_hidden=rows(getattr(t, "hidden", None)),
                          y=_labels(self.data.y, seeds).to(dev), labelled=labelled,
                          observed=observed, inputs=None, forward=None, full_graph=None,
                          full_batch=False, process_group=self.pg, neighbourhood=centred,
                          _graph=item.graph.to(dev) if centred else None)
        loss, self.reported = 0.0, 0.0
        for term in self.terms:
            if term.weight:
                v = term(ctx)
                loss = loss + term.weight * (self.world if self.pg is not None and term.all_pairs_loss else 1) * v
                self.reported += term.weight * float(v.detach())
        if not torch.is_tensor(loss):
            raise ValueError("gkdfast.sampling.fit_sampled: every term has weight 0")
        if centred and self.pg is None:  # (under DDP one rank raising would hang the others)
            refuse_nonfinite_loss(self.reported, "gkdfast.sampling.fit_sampled")
        return loss


def _run_fingerprint(model: nn.Module, heads: nn.Module, data, pool: Tensor, teacher, world: int, **settings) -> str:
    """What a checkpoint of :func:`fit_sampled` must agree on (as the Distiller's fingerprint): the
    model's and the heads' structure and settings (not their weight values, which a resume overwrites),
    the loop's settings, the data (features, labels, masks, graph, seed pool), the teacher outputs and
    the process count."""
    from gkdfast.distill.checkpoint_file import hash_module_settings
    from gkdfast.distill.teacher_cache import hash_dropout_implementation, hash_edge_weights, hash_tensor

    h = hashlib.sha256()
    hash_module_settings(h, model, heads)
    h.update(repr((sorted(settings.items()), world)).encode())
    hash_dropout_implementation(h)
    for t in (data.x, data.y, data.train_mask, data.val_mask, data.graph.rowptr, data.graph.col, pool):
        hash_tensor(h, t)  # (a memory-mapped NumPy array too)
    hash_edge_weights(h, data.graph)
    if teacher is not None:
        key = getattr(teacher, "key", None)
        if key is not None:  # the cache key already hashes the teacher's weights and inputs
            h.update(key.encode())
        else:
            hash_tensor(h, teacher.logits)
    return h.hexdigest()


def _resume_state(path: str, fp: str, world: int, device) -> Optional[dict]:
    from gkdfast.distill.checkpoint_file import read_checkpoint, warn_thread_change

    state = read_checkpoint(path, "gkdfast.sampling.fit_sampled", world)
    if state is not None and state.get("fingerprint") != fp:
        raise ValueError(f"gkdfast.sampling.fit_sampled: {path} belongs to a different run (model, settings or data "
                         "differ, or an older gkdfast wrote it); pass another checkpoint or delete it")
    if state is not None:
        warn_thread_change(state, path, "gkdfast.sampling.fit_sampled", device)
    return state


def fit_sampled(model: nn.Module, data, *, fanouts: Sequence[int] = (15, 10), batch_size: int = 1024,
                epochs: int = 3, lr: float = 0.01, weight_decay: float = 0.0, seed: int = 0,
                progress: bool = True, eval_every: int = 1, distributed="auto",
                process_group=None, terms: Optional[Sequence] = None, teacher=None, nodes=None,
                patience: Optional[int] = None, batching: str = "partition",
                batch_edges: str = "sampled", checkpoint: Optional[str] = None,
                checkpoint_overhead: float = 0.05) -> Dict[str, object]:
    """Trains ``model`` in place (Adam, cross-entropy on ``data.train_mask``) on sampled mini-batches,
    or, with ``terms``, distils it: a GNN student on sampled batches of every node.

    Every ``eval_every`` epochs (and after the last) the validation accuracy is measured by sampled
    inference on ``data.val_mask``; the weights of the best validation epoch (highest accuracy, ties
    broken by the lower validation cross-entropy) are loaded back at the end.

    With ``terms`` (:class:`gkdfast.distill.terms.LossTerm`, e.g. a recipe's ``terms()``) each step's
    loss is theirs over the batch's seeds, as the :class:`~gkdfast.distill.Distiller` forms it: the
    seeds' logits and last hidden rows from :meth:`forward_blocks`, the teacher's rows of those seeds
    (``teacher``: a :class:`~gkdfast.distill.TeacherOutputs`, e.g. the memory-mapped cache), labels on
    the seeds among ``data.train_mask``.  Per-node terms (CE, KD) and all-pairs terms (GSP, CRD: across
    the ranks under DDP) are supported everywhere; a term that needs each node's whole neighbourhood
    (LSP) with ``batch_edges="neighbours"``.

    Args:
        model: a gkdfast.nn model with ``num_layers == len(fanouts)``.
        data: a :class:`gkdfast.data.GraphData` (``x``/``y`` may be memory-mapped; only ``x[n_id]`` is read).
        fanouts: neighbours per hop, ``fanouts[0]`` for the seeds' own.  batch_size: seeds per step.
        epochs, lr, weight_decay: the optimisation.  seed: fixes shuffles, samples and dropout.
        progress: tqdm bars (nodes/s).  eval_every: validation period in epochs.
        terms, teacher: distillation (above); ``None``: plain cross-entropy, no teacher.
        nodes: the seed pool of a distillation (mask or ids; default every node); plain training's
            seeds are the training nodes.
        patience: stop after this many evaluations without a better validation accuracy (``None``: never).
        batching: ``"partition"`` (default): each epoch splits a shuffled pool into batches.
            ``"labelled_first"``: one step per epoch on ``batch_size`` distinct seeds, every training
            node first, the rest drawn without replacement from the other pool nodes (the sampler takes
            distinct seeds; the Distiller's version draws with replacement); under DDP rank r takes
            positions r, r + W, ... of it.  Needs more seeds than training nodes.
        batch_edges: ``"sampled"`` (default): the terms read the seeds' rows.  ``"neighbours"`` (with
            ``terms``): each step's seeds are the centres of a neighbourhood batch
            (:class:`NeighbourhoodBatch`): the student runs, on sampled blocks as usual, over the
            centres and every in-neighbour of them, and LSP compares each centre with its whole
            neighbourhood, its per-centre term the full-graph one on the student's sampled hidden
            rows; the other terms read the centres alone.  A step then costs the sampled blocks of
            ``batch_size · (1 + mean in-degree)`` seeds: take a smaller ``batch_size``.  Under DDP
            each rank expands its own centres; a centre the epoch's padding puts on two ranks counts
            twice in LSP's mean, as padded rows do in every row-mean term.
        checkpoint: a file to checkpoint the training into after an epoch (model, heads, optimiser,
            best epoch, every rank's RNG states; written while cheap, then no more than
            ``checkpoint_overhead`` of the time, as the Distiller's): a rerun with the same file resumes
            and ends where an uninterrupted run would (bit for bit in one process or two).  A file of
            another run (another model structure or module settings, loop settings, data, teacher outputs
            or process count) is refused; ``None``: no checkpoint.  The check hashes the data once per
            call (on rank 0 under DDP).
        distributed / process_group: as in :class:`gkdfast.distill.Distiller` (``"auto"``: data-parallel
            when a process group of several ranks is initialised).  Then every rank calls with the
            same arguments; each epoch's seed order is the single-process one, padded to a multiple
            of W, and rank r takes its positions r, r + W, ... in steps of ``ceil(batch_size / W)``
            seeds (``batch_size`` is the global batch); a node's sampled neighbourhood depends only
            on (seed, epoch, node), so the union of the ranks' k-th batches is the single-process
            k-th batch when the seed count and the batch are multiples of W.  Gradients are averaged
            by DDP, validation counts summed over the ranks (each samples every W-th validation
            node), so every rank keeps the same best epoch and ends with the same weights.

    Returns:
        ``{"epochs", "seconds", "best_val_acc", "best_epoch", "nodes_per_s", "history",
        "resumed_after_epoch"}`` (the last: the checkpoint's epoch this call resumed after, 0 when it
        started afresh);
        ``nodes_per_s`` counts training seeds (the centres on neighbourhood batches) per second of
        training (validation excluded),
        ``best_val_acc`` is NaN when there are no validation nodes (the last weights are kept).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=100, num_classes=3, feature_dim=8)
        >>> stats = fit_sampled(gkdfast.nn.SAGE(8, 16, 3), d, fanouts=(5, 5), epochs=1, progress=False)
        >>> sorted(k for k in stats if k != "history")
        ['best_epoch', 'best_val_acc', 'epochs', 'nodes_per_s', 'resumed_after_epoch', 'seconds']
    """
    from gkdfast.distill import ddp as _ddp
    from gkdfast.distill.checkpoint_cadence import CheckpointCadence
    from gkdfast.distill.checkpoint_file import checkpoint_due, resume_rng_states, rng_states, write_checkpoint

    fanouts = tuple(int(f) for f in fanouts)
    _check(model, data, fanouts, batch_size, epochs, eval_every)
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ValueError(f"gkdfast.sampling.fit_sampled: patience must be a positive int or None, got {patience!r}")
    train_nodes, val_nodes = _nodes(data.train_mask), _nodes(data.val_mask)
    if train_nodes.numel() == 0:
        raise ValueError("gkdfast.sampling.fit_sampled: data.train_mask selects no node")
    if terms is None and (nodes is not None or batching != "partition"):
        raise ValueError("gkdfast.sampling.fit_sampled: plain training takes its seeds and labels from the training "
                         "nodes; nodes= and batching='labelled_first' (seeds beyond them) need terms=")
    if batch_edges not in ("sampled", "neighbours"):
        raise ValueError(f"gkdfast.sampling.fit_sampled: batch_edges must be 'sampled' or 'neighbours', "
                         f"got {batch_edges!r}")
    if terms is None and batch_edges != "sampled":
        raise ValueError("gkdfast.sampling.fit_sampled: batch_edges='neighbours' serves distillation terms (LSP); "
                         "plain training takes terms=None with the default batch_edges='sampled'")
    pool = train_nodes if terms is None else torch.arange(data.graph.num_nodes) if nodes is None else _nodes(nodes)
    if batching not in ("partition", "labelled_first"):
        raise ValueError(f"gkdfast.sampling.fit_sampled: batching must be 'partition' or 'labelled_first', got {batching!r}")
    if batching == "labelled_first":
        if batch_size <= train_nodes.numel():
            raise ValueError(f"gkdfast.sampling.fit_sampled: batching='labelled_first' puts the {train_nodes.numel()} "
                             f"training nodes first in every batch, so batch_size must be larger (got {batch_size})")
        others = pool[~torch.isin(pool, train_nodes)]
        draw = min(batch_size - train_nodes.numel(), others.numel())
    device = _model_device(model)
    group = _ddp.resolve(distributed, process_group)
    rank, world = (group.rank, group.world_size) if group is not None else (0, 1)
    progress = progress and rank == 0
    loader = NeighborLoader(data.graph, pool, fanouts, batch_size=batch_size, shuffle=True, seed=seed)
    val_loader = NeighborLoader(data.graph, val_nodes[rank::world], fanouts, batch_size=batch_size, shuffle=False,
                                seed=mix_seed(seed, 2)) if val_nodes.numel() else None
    loss_of = (_TermsLoss(model, data, terms, teacher, loader, device, group, batch_edges, seed=mix_seed(seed, 4))
               if terms is not None else None)
    sample = _sampler(loader, batch_edges)
    heads = loss_of.terms if loss_of is not None else nn.ModuleList()
    step = _ddp.wrap(model, heads, device) if group is not None else None  # rank 0's weights broadcast
    optimizer = torch.optim.Adam(list(model.parameters()) + list(heads.parameters()), lr=lr,
                                 weight_decay=weight_decay)
    best_acc, best_loss, best_epoch, best_state = -math.inf, math.inf, 0, None
    history, train_seconds, seen, bad, epoch, done, before = [], 0.0, 0, 0, 0, False, 0.0
    t_start = time.perf_counter()
    fp = None
    if checkpoint and (group is None or group.is_main):  # (it reads all the data: rank 0 alone, then sent)
        fp = _run_fingerprint(model, heads, data, pool, teacher if terms is not None else None, world,
                              fanouts=fanouts, batch_size=batch_size, epochs=epochs, lr=lr, weight_decay=weight_decay,
                              seed=seed, eval_every=eval_every, patience=patience, batching=batching,
                              batch_edges=batch_edges)
    if checkpoint and group is not None:
        fp = group.broadcast_object(fp)
    state = _resume_state(checkpoint, fp, world, device) if checkpoint else None
    cadence = CheckpointCadence(checkpoint_overhead if checkpoint and not _ddp.checkpoint_every_epoch_for_test()
                                else None)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(mix_seed(seed, 3) if rank == 0 else mix_seed(seed, 3, rank))  # dropout: own masks per rank
        start = 0
        resumed = state["epoch"] if state is not None else 0
        if state is not None:
            model.load_state_dict(state["model"])
            heads.load_state_dict(state["heads"])
            optimizer.load_state_dict(state["optim"])
            resume_rng_states(state, group, device)
            start, loader.epoch, done = state["epoch"], state["loader_epoch"], state["done"]
            best_acc, best_loss, best_epoch, best_state = (state["best_acc"], state["best_loss"], state["best_epoch"],
                                                           state["best_state"])
            history, train_seconds, seen, bad, before = (state["history"], state["train_seconds"], state["seen"],
                                                         state["bad"], state["seconds"])
            epoch = start
        for epoch in range(start + 1, epochs + 1):
            if done:
                epoch -= 1
                break
            model.train()
            heads.train()
            bar = _bar(progress, pool.numel() if batching == "partition" else train_nodes.numel() + draw,
                       f"epoch {epoch}/{epochs}")
            t0, total_loss, local_seeds = time.perf_counter(), 0.0, 0
            for batch in (_epoch_batches(loader, group, sample) if batching == "partition" else
                          _labelled_first_batch(loader, train_nodes, others, draw, group, sample)):
                if loss_of is not None:
                    loss = loss_of(batch) if step is None else step(loss_of, batch)
                elif step is None:
                    out = _forward(model, data.x, batch, device)
                else:  # inside DDP's forward, so the backward averages the gradients over the ranks
                    out = step(_forward, model, data.x, batch, device)
                if loss_of is None:
                    loss = F.cross_entropy(out, _labels(data.y, batch.seeds).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                # (the reported loss leaves out the W factor of all-pairs terms under DDP, as the Distiller's)
                total_loss += (loss_of.reported if loss_of is not None else float(loss.detach())) * batch.num_seeds
                local_seeds += batch.num_seeds
                if bar is not None:
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)  # (drawn by the update)
                    bar.update(batch.num_seeds * world)
            if bar is not None:
                bar.close()
            train_seconds += time.perf_counter() - t0
            seen += pool.numel() if batching == "partition" else train_nodes.numel() + draw
            if group is not None:
                total_loss, local_seeds = group.all_reduce_sum(torch.tensor([total_loss, local_seeds])).tolist()
                # DDP copies rank 0's buffers only at the start of a forward: after the epoch's last step
                # each rank's BatchNorm statistics come from its own rows, so validation and the kept
                # weights would differ between ranks without this.
                group.broadcast_buffers(model, heads)
            record = {"epoch": epoch, "loss": total_loss / local_seeds}
            if val_loader is not None and (epoch % eval_every == 0 or epoch == epochs):
                logits = _predict(model, data.x, val_loader, progress)
                y_val = _labels(data.y, val_loader.nodes.long())
                counts = torch.tensor([float((logits.argmax(1) == y_val).sum()),
                                       float(F.cross_entropy(logits, y_val, reduction="sum")) if y_val.numel() else 0.0,
                                       float(y_val.numel())])
                if group is not None:  # every rank its share of the validation nodes: sum the counts
                    counts = group.all_reduce_sum(counts)
                correct, loss_sum, total = counts.tolist()
                acc, val_loss = correct / total, loss_sum / total
                record["val_acc"], record["val_loss"] = acc, val_loss
                # Ties on accuracy (common once validation is saturated) go to the lower validation
                # loss: the better-calibrated, more trained model, not the first epoch that got there
                # (a teacher's soft labels from an early epoch are nearly flat).
                if acc > best_acc or (acc == best_acc and val_loss < best_loss):
                    best_acc, best_loss, best_epoch, bad = acc, val_loss, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
            history.append(record)
            done = epoch == epochs or (patience is not None and bad >= patience)
            if checkpoint and (done or checkpoint_due(cadence, group, True)):
                rng = rng_states(device)
                with cadence.timed():
                    write_checkpoint(checkpoint, {
                        "fingerprint": fp, "epoch": epoch, "loader_epoch": loader.epoch, "done": done,
                        "model": model.state_dict(), "heads": heads.state_dict(), "optim": optimizer.state_dict(),
                        "best_acc": best_acc, "best_loss": best_loss, "best_epoch": best_epoch,
                        "best_state": best_state, "history": history, "train_seconds": train_seconds, "seen": seen,
                        "bad": bad, "seconds": before + time.perf_counter() - t_start,
                        "rng_torch": rng["torch"], "rng_cuda": rng["cuda"]}, group)
                if group is not None:
                    _ddp.fail_once_for_test(group, epoch, os.path.dirname(os.path.abspath(checkpoint)))
            if done:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
    return {"epochs": epoch, "seconds": before + time.perf_counter() - t_start,
            "best_val_acc": best_acc if best_state is not None else float("nan"), "best_epoch": best_epoch,
            "nodes_per_s": seen / max(train_seconds, 1e-9), "history": history, "resumed_after_epoch": resumed}
