"""``NeighborLoader``: mini-batches of seed nodes with their sampled multi-hop blocks."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import torch
from torch import Tensor

from gkdfast._checks import check_graph
from gkdfast.graph import Graph
from gkdfast.sampling.blocks import Block, NodeMap, full_in_degree, sample_blocks
from gkdfast.sampling.sampler import as_int

__all__ = ["Batch", "NeighborLoader", "mix_seed"]

_MASK64 = (1 << 64) - 1


def mix_seed(seed: int, *salt: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``salt`` (splitmix64 finaliser); deterministic.

    Example:
        >>> mix_seed(0, 1) == mix_seed(0, 1) != mix_seed(0, 2)
        True
    """
    # The seed is mixed on its own before any salt is folded in: adding them first would make
    # (seed, epoch) and (seed + 1, epoch - 1) the same stream.
    z = _splitmix(seed & _MASK64)
    for s in salt:
        z = _splitmix(z ^ (s & _MASK64))
    return z & ((1 << 63) - 1)


def _splitmix(z: int) -> int:
    """One step of splitmix64: the golden-ratio increment, then its finaliser (a bijection of 64 bits)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


@dataclass
class Batch:
    """One mini-batch: ``n_id`` ``[num_src]`` global ids (the ``num_seeds`` seeds first), the blocks
    in layer order (``blocks[-1].num_dst == num_seeds``).  Gather features with ``x[n_id]``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[1, 2], [0, 0]]))
        >>> b = next(iter(NeighborLoader(g, torch.tensor([0]), [5], batch_size=1)))
        >>> b.num_seeds, b.n_id.tolist()
        (1, [0, 1, 2])
    """

    n_id: Tensor
    blocks: List[Block]
    num_seeds: int

    @property
    def seeds(self) -> Tensor:
        return self.n_id[:self.num_seeds]

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(self.n_id.to(device, non_blocking=non_blocking),
                     [b.to(device, non_blocking) for b in self.blocks], self.num_seeds)


class NeighborLoader:
    """Iterates mini-batches of ``nodes`` with ``len(fanouts)`` sampled hops (GraphSAGE sampling).

    Args:
        graph: the full :class:`gkdfast.Graph` (int32 or int64 CSR; kept on the CPU for sampling).
        nodes: ``[M]`` seed node ids, or an ``[N]`` bool mask.
        fanouts: per hop away from the seeds (``fanouts[0]`` for the seeds' own neighbours; ``-1``: all).
        batch_size: seeds per batch.  shuffle: a fresh permutation each epoch.
        seed: fixes the shuffles and the samples; epoch ``e`` samples with ``mix_seed(seed, e)``, so
            a node's neighbours differ between epochs but never depend on the batch it lands in.

    Each ``iter()`` is one epoch (the epoch counter then advances; :meth:`set_epoch` sets it).
    The node map and the full-graph degrees are built once (O(N)); each batch costs O(sampled).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[1, 2, 3, 0], [0, 0, 1, 2]]))
        >>> loader = NeighborLoader(g, torch.arange(4), fanouts=[2, 2], batch_size=3, seed=0)
        >>> [b.num_seeds for b in loader], len(loader)
        ([3, 1], 2)
    """

    def __init__(self, graph: Graph, nodes: Tensor, fanouts: Sequence[int], batch_size: int = 1024,
                 shuffle: bool = False, seed: int = 0):
        check_graph(graph, "gkdfast.sampling.NeighborLoader")
        nodes = torch.as_tensor(nodes)
        if nodes.dtype == torch.bool:
            if nodes.numel() != graph.num_nodes:
                raise ValueError(f"gkdfast.sampling.NeighborLoader: a node mask must have {graph.num_nodes} "
                                 f"entries, got {nodes.numel()}")
            nodes = nodes.nonzero().flatten()
        if nodes.dtype not in (torch.int32, torch.int64) or nodes.dim() != 1:
            raise TypeError("gkdfast.sampling.NeighborLoader: nodes must be a 1-D int tensor or a bool mask")
        fanouts = [int(f) for f in fanouts]
        if not fanouts or any(f == 0 or f < -1 for f in fanouts):
            raise ValueError(f"gkdfast.sampling.NeighborLoader: fanouts must be positive ints or -1, got {fanouts}")
        batch_size, seed = as_int(batch_size), as_int(seed)  # (numpy integers too)
        if batch_size is None or batch_size < 1:
            raise ValueError(f"gkdfast.sampling.NeighborLoader: batch_size must be a positive int, got {batch_size!r}")
        if seed is None or seed < 0:
            raise ValueError(f"gkdfast.sampling.NeighborLoader: seed must be a non-negative int, got {seed!r}")
        if nodes.numel() and (int(nodes.min()) < 0 or int(nodes.max()) >= graph.num_nodes):
            raise ValueError(f"gkdfast.sampling.NeighborLoader: nodes must be in [0, {graph.num_nodes})")
        if nodes.unique().numel() != nodes.numel():  # else a batch with both copies fails mid-epoch
            raise ValueError("gkdfast.sampling.NeighborLoader: nodes must be distinct (a node is listed twice)")
        self.graph, self.nodes, self.fanouts = graph, nodes.to(graph.col.dtype), fanouts
        self.batch_size, self.shuffle, self.seed = batch_size, bool(shuffle), seed
        self.epoch = 0
        self._map = NodeMap(graph.num_nodes, graph.device)
        # the node map is one scratch table for every batch: a second thread sampling at once (a
        # prefetching thread beside the training loop) would corrupt the first one's batch
        self._map_lock = threading.Lock()
        self._degree = full_in_degree(graph)
        self._csr_weight = None if graph.edge_weight is None else graph.to_csr_order(graph.edge_weight)

    def __len__(self) -> int:
        return (self.nodes.numel() + self.batch_size - 1) // self.batch_size

    def __getstate__(self):
        # A copy (copy.copy, pickling for a worker process) gets its own lock (a lock does not pickle)
        # and so its own scratch node map: a map shared under two locks corrupted the batches of a
        # loader and its copy sampling in two threads.  (Nor does an N-entry table travel to workers.)
        state = dict(self.__dict__)
        del state["_map_lock"], state["_map"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._map = NodeMap(self.graph.num_nodes, self.graph.device)
        self._map_lock = threading.Lock()

    def set_epoch(self, epoch: int) -> None:
        """The next ``iter()`` runs epoch ``epoch`` (its shuffle and its samples)."""
        self.epoch = int(epoch)

    def sample(self, seeds: Tensor, epoch: Optional[int] = None) -> Batch:
        """The batch of ``seeds`` (distinct node ids) as epoch ``epoch`` (default: current) samples it.

        Example:
            >>> g = gkdfast.Graph(torch.tensor([[1, 2], [0, 0]]))
            >>> NeighborLoader(g, torch.arange(3), [1]).sample(torch.tensor([0])).n_id.numel()
            2
        """
        sample_seed = mix_seed(self.seed, self.epoch if epoch is None else epoch)
        with self._map_lock:
            n_id, blocks = sample_blocks(self.graph, seeds, self.fanouts, sample_seed, self._map, self._degree,
                                         self._csr_weight)
        return Batch(n_id, blocks, int(seeds.numel()))

    def order(self, epoch: int) -> Tensor:
        """The seeds in epoch ``epoch``'s order (a fresh permutation per epoch when shuffling).

        Example:
            >>> g = gkdfast.Graph(torch.tensor([[1], [0]]))
            >>> NeighborLoader(g, torch.arange(2), [1]).order(3).tolist()
            [0, 1]
        """
        if not self.shuffle:
            return self.nodes
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 1))
        return self.nodes[torch.randperm(self.nodes.numel(), generator=gen).to(self.nodes.device)]

    def __iter__(self) -> Iterator[Batch]:
        # The epoch is taken here, at iter(), not at the first next(): a generator function would
        # postpone it, so two iter() calls before any batch ran the same epoch.
        epoch = self.epoch
        self.epoch += 1
        order = self.order(epoch)
        return (self.sample(order[start:start + self.batch_size], epoch)
                for start in range(0, order.numel(), self.batch_size))
