"""``fit_sampled``: trains a gkdfast.nn GNN in place on neighbour-sampled mini-batches.

Only the rows ``x[n_id]`` of each batch are gathered, so ``data.x`` may be a read-only memory-mapped
tensor or numpy array far larger than RAM; the graph stays on the CPU (sampling is CPU work) and
each batch's features and blocks are moved to the model's device.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.nn.sparse_input import sparse_rows
from gkdfast.sampling.loader import Batch, NeighborLoader, mix_seed

__all__ = ["fit_sampled", "predict_sampled", "gather_rows", "batch_features"]


def gather_rows(x, index: Tensor) -> Tensor:
    """``x[index]`` as a fresh tensor, for a tensor or a (memory-mapped) numpy array.

    Example:
        >>> gather_rows(np.arange(6.0).reshape(3, 2), torch.tensor([2, 0])).tolist()
        [[4.0, 5.0], [0.0, 1.0]]
    """
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x[index.cpu().numpy()]))
    return x[index.to(x.device)]


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


def _forward(model: nn.Module, x, batch: Batch, device: torch.device) -> Tensor:
    feats = batch_features(model, x, batch.n_id).to(device=device, dtype=torch.float32, non_blocking=True)
    if device.type != "cpu":
        batch = batch.to(device, non_blocking=True)
    return model.forward_blocks(feats, batch.blocks)


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
    loader = NeighborLoader(data.graph, nodes, fanouts, batch_size=batch_size, shuffle=False, seed=seed)
    return _predict(model, data.x, loader, progress)


def _predict(model: nn.Module, x, loader: NeighborLoader, progress: bool) -> Tensor:
    was_training = model.training
    model.eval()
    device = _model_device(model)
    loader.set_epoch(0)  # the same samples every time: comparable validation accuracies
    outs = []
    bar = _bar(progress, loader.nodes.numel(), "predict")
    with torch.no_grad():
        for batch in loader:
            outs.append(_forward(model, x, batch, device).float().cpu())
            if bar is not None:
                bar.update(batch.num_seeds)
    if bar is not None:
        bar.close()
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, getattr(model, "out_channels", 0))


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="node", unit_scale=True, leave=False)


def _epoch_batches(loader: NeighborLoader, group):
    """One epoch of ``loader``'s batches, or under ``group`` this rank's share of them: the epoch's
    single-process seed order padded to a multiple of W, positions r, r + W, ..., in steps of
    ``ceil(batch_size / W)`` (:func:`gkdfast.distill.ddp.shard_order` / ``local_batches``)."""
    if group is None:
        yield from loader
        return
    from gkdfast.distill import ddp as _ddp

    epoch = loader.epoch
    loader.epoch += 1
    for seeds in _ddp.local_batches(_ddp.shard_order(loader.order(epoch), group.world_size, group.rank),
                                    loader.batch_size, group.world_size):
        yield loader.sample(seeds, epoch)


def _labels(y, nodes: Tensor) -> Tensor:
    return gather_rows(y, nodes).to(torch.int64)


def fit_sampled(model: nn.Module, data, *, fanouts: Sequence[int] = (15, 10), batch_size: int = 1024,
                epochs: int = 3, lr: float = 0.01, weight_decay: float = 0.0, seed: int = 0,
                progress: bool = True, eval_every: int = 1, distributed="auto",
                process_group=None) -> Dict[str, object]:
    """Trains ``model`` in place (Adam, cross-entropy on ``data.train_mask``) on sampled mini-batches.

    Every ``eval_every`` epochs (and after the last) the validation accuracy is measured by sampled
    inference on ``data.val_mask``; the weights of the best validation epoch (highest accuracy, ties
    broken by the lower validation cross-entropy) are loaded back at the end.

    Args:
        model: a gkdfast.nn model with ``num_layers == len(fanouts)``.
        data: a :class:`gkdfast.data.GraphData` (``x``/``y`` may be memory-mapped; only ``x[n_id]`` is read).
        fanouts: neighbours per hop, ``fanouts[0]`` for the seeds' own.  batch_size: seeds per step.
        epochs, lr, weight_decay: the optimisation.  seed: fixes shuffles, samples and dropout.
        progress: tqdm bars (nodes/s).  eval_every: validation period in epochs.
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
        ``{"epochs", "seconds", "best_val_acc", "best_epoch", "nodes_per_s", "history"}``;
        ``nodes_per_s`` counts training seeds per second of training (validation excluded),
        ``best_val_acc`` is NaN when there are no validation nodes (the last weights are kept).

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=100, num_classes=3, feature_dim=8)
        >>> stats = fit_sampled(gkdfast.nn.SAGE(8, 16, 3), d, fanouts=(5, 5), epochs=1, progress=False)
        >>> sorted(k for k in stats if k != "history")
        ['best_epoch', 'best_val_acc', 'epochs', 'nodes_per_s', 'seconds']
    """
    from gkdfast.distill import ddp as _ddp

    fanouts = tuple(int(f) for f in fanouts)
    _check(model, data, fanouts, batch_size, epochs, eval_every)
    train_nodes, val_nodes = _nodes(data.train_mask), _nodes(data.val_mask)
    if train_nodes.numel() == 0:
        raise ValueError("gkdfast.sampling.fit_sampled: data.train_mask selects no node")
    device = _model_device(model)
    group = _ddp.resolve(distributed, process_group)
    rank, world = (group.rank, group.world_size) if group is not None else (0, 1)
    progress = progress and rank == 0
    loader = NeighborLoader(data.graph, train_nodes, fanouts, batch_size=batch_size, shuffle=True, seed=seed)
    val_loader = NeighborLoader(data.graph, val_nodes[rank::world], fanouts, batch_size=batch_size, shuffle=False,
                                seed=mix_seed(seed, 2)) if val_nodes.numel() else None
    step = _ddp.wrap(model, nn.ModuleList(), device) if group is not None else None  # rank 0's weights broadcast
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_acc, best_loss, best_epoch, best_state = -math.inf, math.inf, 0, None
    history, train_seconds, seen = [], 0.0, 0
    t_start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(mix_seed(seed, 3) if rank == 0 else mix_seed(seed, 3, rank))  # dropout: own masks per rank
        for epoch in range(1, epochs + 1):
            model.train()
            bar = _bar(progress, train_nodes.numel(), f"epoch {epoch}/{epochs}")
            t0, total_loss, local_seeds = time.perf_counter(), 0.0, 0
            for batch in _epoch_batches(loader, group):
                if step is None:
                    out = _forward(model, data.x, batch, device)
                else:  # inside DDP's forward, so the backward averages the gradients over the ranks
                    out = step(_forward, model, data.x, batch, device)
                loss = F.cross_entropy(out, _labels(data.y, batch.seeds).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach()) * batch.num_seeds
                local_seeds += batch.num_seeds
                if bar is not None:
                    bar.update(batch.num_seeds * world)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if bar is not None:
                bar.close()
            train_seconds += time.perf_counter() - t0
            seen += train_nodes.numel()
            if group is not None:
                total_loss, local_seeds = group.all_reduce_sum(torch.tensor([total_loss, local_seeds])).tolist()
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
                    best_acc, best_loss, best_epoch = acc, val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
            history.append(record)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epochs
    return {"epochs": epochs, "seconds": time.perf_counter() - t_start,
            "best_val_acc": best_acc if best_state is not None else float("nan"), "best_epoch": best_epoch,
            "nodes_per_s": seen / max(train_seconds, 1e-9), "history": history}
