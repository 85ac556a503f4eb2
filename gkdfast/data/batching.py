"""Mini-batches of small graphs for graph classification: :class:`GraphBatch`, its collation, a
shuffling loader and stratified k-fold splits.

A batch is one block-diagonal :class:`gkdfast.Graph` whose nodes are stored graph after graph, so
graph ``b`` owns the contiguous node rows ``ptr[b]:ptr[b+1]`` and a model pools them with
:func:`gkdfast.pooling.global_pool` (a segment reduction, no per-graph Python loop).  Selecting a
batch out of a :class:`~gkdfast.data.GraphDataset` is vectorised as well: node and edge ranges of
the chosen graphs are gathered with ``repeat_interleave`` arithmetic on ``ptr`` and the CSR
``rowptr``, which works because the dataset's CSR (by destination) keeps each graph's edges
contiguous.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from gkdfast._segments import concat_ranges, segment_ids
from gkdfast.graph import Graph, check_to_device

__all__ = ["GraphBatch", "collate", "select_graphs", "graph_ids", "GraphLoader", "stratified_kfold"]


@dataclass
class GraphBatch:
    """``B`` graphs stored as one block-diagonal graph.

    Fields:
        graph: :class:`gkdfast.Graph` over all ``N`` nodes of the batch (no edge crosses graphs).
        x: ``[N, F]`` node features, graph after graph.
        ptr: ``[B + 1]`` int64 offsets: graph ``b`` owns nodes ``ptr[b]:ptr[b+1]`` (empty graphs allowed).
        y: ``[B]`` int64 graph labels, or None (generated graphs).
        edge_weight: optional ``[E]`` weights in the order of ``graph.edge_index`` (relaxed edges).

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), 3)
        >>> b = GraphBatch(g, torch.ones(3, 2), torch.tensor([0, 2, 3]), torch.tensor([1, 0]))
        >>> b.num_graphs, b.batch.tolist()
        (2, [0, 0, 1])
    """

    graph: Graph
    x: Tensor
    ptr: Tensor
    y: Optional[Tensor] = None
    edge_weight: Optional[Tensor] = None

    def __post_init__(self):
        if self.ptr.dim() != 1 or self.ptr.numel() < 1 or int(self.ptr[0]) != 0 \
                or int(self.ptr[-1]) != self.graph.num_nodes or bool((self.ptr[1:] < self.ptr[:-1]).any()):
            raise ValueError(f"GraphBatch: ptr must be [B + 1] offsets from 0 to the {self.graph.num_nodes} "
                             "nodes, never decreasing")
        if self.x.dim() != 2 or self.x.size(0) != self.graph.num_nodes:
            raise ValueError(f"GraphBatch: x must be [{self.graph.num_nodes}, F], got {tuple(self.x.shape)}")
        if self.y is not None and self.y.numel() != self.num_graphs:
            raise ValueError(f"GraphBatch: y has {self.y.numel()} labels for {self.num_graphs} graphs")

    @property
    def num_graphs(self) -> int:
        """``B``, the number of graphs in the batch."""
        return int(self.ptr.numel()) - 1

    @property
    def num_nodes(self) -> int:
        """``N``, the nodes of all graphs together."""
        return self.graph.num_nodes

    @property
    def batch(self) -> Tensor:
        """``[N]`` int64 graph id of each node (computed from ``ptr``)."""
        return segment_ids(self.ptr[1:] - self.ptr[:-1], self.num_nodes)

    def to(self, device) -> "GraphBatch":
        """A new GraphBatch with every tensor on ``device`` (tensors already there are shared, as
        ``Tensor.to`` shares them)."""
        check_to_device(device, "GraphBatch")
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return GraphBatch(self.graph.to(device), mv(self.x), mv(self.ptr), mv(self.y), mv(self.edge_weight))


def graph_ids(index, num_graphs: int, where: str = "graph_ids") -> Tensor:
    """``[B]`` int64 graph ids from ids (a tensor, array, list or range; repeats allowed) or from a bool mask
    over the ``num_graphs`` graphs (e.g. a dataset's ``test_mask``), which would otherwise read as ids 0
    and 1.

    Example:
        >>> graph_ids(torch.tensor([False, True, True]), 3).tolist(), graph_ids(range(2), 3).tolist()
        ([1, 2], [0, 1])
    """
    arr = np.asarray(list(index) if isinstance(index, range) else
                     (index.detach().cpu().numpy() if isinstance(index, Tensor) else index))
    if arr.dtype == np.bool_:
        if arr.ndim != 1 or arr.shape[0] != num_graphs:
            raise ValueError(f"{where}: a bool mask must have one entry per graph ({num_graphs}), got shape "
                             f"{tuple(arr.shape)}")
        return torch.from_numpy(np.flatnonzero(arr)).to(torch.int64)
    return torch.as_tensor(arr, dtype=torch.int64).reshape(-1)


def select_graphs(dataset, index) -> GraphBatch:
    """The graphs ``index`` of a :class:`~gkdfast.data.GraphDataset` as one :class:`GraphBatch`, in that order.

    Args:
        dataset: a GraphDataset (block-diagonal graph, ``x``, ``ptr``, ``y``).
        index: ``[B]`` graph ids (a tensor, array or list; repeats allowed).

    Example:
        >>> from gkdfast.data import load_tu
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> b = select_graphs(ds, [3, 0])
        >>> b.num_graphs, b.num_nodes == len(ds[3].x) + len(ds[0].x), b.y.tolist() == [int(ds.y[3]), int(ds.y[0])]
        (2, True, True)
    """
    idx = graph_ids(index, len(dataset), "select_graphs")
    if idx.numel() and (int(idx.min()) < -len(dataset) or int(idx.max()) >= len(dataset)):
        raise IndexError(f"select_graphs: graph ids must be in [0, {len(dataset)}), got {idx.min()}..{idx.max()}")
    idx = idx % max(len(dataset), 1)
    ptr, rowptr, col = dataset.ptr.cpu(), dataset.graph.rowptr.cpu().long(), dataset.graph.col.cpu().long()
    n_lo, n_cnt = ptr[idx], ptr[idx + 1] - ptr[idx]
    nodes = concat_ranges(n_lo.long(), n_cnt.long())
    new_ptr = torch.zeros(idx.numel() + 1, dtype=torch.int64)
    torch.cumsum(n_cnt, 0, out=new_ptr[1:])
    e_lo, e_cnt = rowptr[n_lo], rowptr[ptr[idx + 1]] - rowptr[n_lo]
    edges = concat_ranges(e_lo, e_cnt)
    # An edge of graph g moves its source from block start ptr[g] to the batch's block start new_ptr[b].
    shift = torch.repeat_interleave(new_ptr[:-1] - n_lo, e_cnt)
    new_col = col[edges] + shift
    deg = rowptr[nodes + 1] - rowptr[nodes]
    new_rowptr = torch.zeros(nodes.numel() + 1, dtype=torch.int64)
    torch.cumsum(deg, 0, out=new_rowptr[1:])
    graph = Graph.from_csr(new_rowptr, new_col, int(nodes.numel()))
    dev = dataset.x.device
    return GraphBatch(graph.to(dev), dataset.x[nodes.to(dev)], new_ptr.to(dev), dataset.y[idx.to(dataset.y.device)])


def collate(graphs: Sequence) -> GraphBatch:
    """Stacks single graphs (``(graph, x, y)`` tuples such as :class:`~gkdfast.data.TUGraph`) into a batch.

    Node ids of graph ``b`` are shifted by the nodes before it; ``y`` may be None for every graph.

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), 2)
        >>> b = collate([(g, torch.ones(2, 3), 0), (gkdfast.Graph(torch.zeros(2, 0, dtype=torch.long), 1),
        ...             torch.ones(1, 3), 1)])
        >>> b.ptr.tolist(), b.graph.edge_index.tolist()
        ([0, 2, 3], [[0, 1], [1, 0]])
    """
    if len(graphs) == 0:
        raise ValueError("collate: need at least one graph")
    xs, eis, ys, counts = [], [], [], []
    offset = 0
    for i, (g, x, y) in enumerate(graphs):
        if x.dim() != 2 or x.size(0) != g.num_nodes:
            raise ValueError(f"collate: graph {i} has {g.num_nodes} nodes but x has shape {tuple(x.shape)}")
        xs.append(x)
        eis.append(g.edge_index.long() + offset)
        ys.append(y)
        counts.append(g.num_nodes)
        offset += g.num_nodes
    if len({x.size(1) for x in xs}) != 1:
        raise ValueError(f"collate: graphs have different feature widths {sorted({x.size(1) for x in xs})}")
    ptr = torch.zeros(len(graphs) + 1, dtype=torch.int64)
    torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0, out=ptr[1:])
    has_y = [y is not None for y in ys]
    if any(has_y) and not all(has_y):
        raise ValueError("collate: either every graph has a label or none has")
    y = torch.as_tensor([int(v) for v in ys], dtype=torch.int64) if all(has_y) else None
    return GraphBatch(Graph(torch.cat(eis, 1), offset), torch.cat(xs, 0), ptr, y)


class GraphLoader:
    """Iterates over graphs ``index`` of a dataset in mini-batches of :class:`GraphBatch`.

    Args:
        dataset: a :class:`~gkdfast.data.GraphDataset`.
        index: graph ids to draw from (default: all).  batch_size: graphs per batch (last may be smaller).
        shuffle: new order every pass, from ``seed`` (pass ``e`` uses ``seed + e``: reproducible).
        device: where batches are put.

    Example:
        >>> from gkdfast.data import load_tu
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> loader = GraphLoader(ds, range(100), batch_size=32, shuffle=True, seed=0)
        >>> len(loader), [b.num_graphs for b in loader]
        (4, [32, 32, 32, 4])
    """

    def __init__(self, dataset, index=None, batch_size: int = 32, shuffle: bool = False, seed: int = 0,
                 device=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"GraphLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle, self.seed, self.device = dataset, batch_size, shuffle, seed, device
        self.index = torch.arange(len(dataset)) if index is None else graph_ids(index, len(dataset), "GraphLoader")
        self._epoch = 0
        self._epoch_lock = threading.Lock()

    def __len__(self) -> int:
        return (self.index.numel() + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[GraphBatch]:
        # The epoch is taken when iteration starts, under a lock: two threads starting epochs of one
        # loader got the same shuffle (helper 116).
        with self._epoch_lock:
            epoch, self._epoch = self._epoch, self._epoch + 1
        order = self.index
        if self.shuffle:
            gen = torch.Generator().manual_seed(int(self.seed) + epoch)
            order = order[torch.randperm(order.numel(), generator=gen)]
        return self._batches(order)

    def __getstate__(self):  # (a lock neither pickles nor copies: each copy gets its own)
        state = dict(self.__dict__)
        del state["_epoch_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._epoch_lock = threading.Lock()

    def _batches(self, order: Tensor) -> Iterator[GraphBatch]:
        for s in range(0, order.numel(), self.batch_size):
            b = select_graphs(self.dataset, order[s:s + self.batch_size])
            yield b if self.device is None else b.to(self.device)


def stratified_kfold(y, folds: int = 10, seed: int = 0) -> List[Tuple[Tensor, Tensor]]:
    """``folds`` (train, test) graph-id splits: every graph is tested exactly once, and each class is
    spread over the folds as evenly as possible (scikit-learn's ``StratifiedKFold`` rule, shuffled).

    Example:
        >>> y = torch.tensor([0] * 6 + [1] * 4)
        >>> splits = stratified_kfold(y, folds=2, seed=0)
        >>> [sorted(y[te].tolist()) for _, te in splits]
        [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1]]
    """
    y = torch.as_tensor(np.asarray(y)).reshape(-1).long()
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"stratified_kfold: folds must be an int >= 2, got {folds!r}")
    if folds > y.numel():
        raise ValueError(f"stratified_kfold: {folds} folds for only {y.numel()} graphs")
    gen = torch.Generator().manual_seed(int(seed))
    fold_of = torch.empty(y.numel(), dtype=torch.int64)
    start = 0  # continue the round-robin across classes so fold sizes stay balanced
    for c in torch.unique(y):
        members = torch.nonzero(y == c).reshape(-1)
        members = members[torch.randperm(members.numel(), generator=gen)]
        fold_of[members] = (torch.arange(members.numel()) + start) % folds
        start += members.numel()
    out = []
    for k in range(folds):
        test = torch.nonzero(fold_of == k).reshape(-1)
        train = torch.nonzero(fold_of != k).reshape(-1)
        out.append((train, test))
    return out
