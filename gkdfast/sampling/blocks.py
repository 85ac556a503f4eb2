"""Multi-hop sampled blocks with local relabelling.

A :class:`Block` is one bipartite hop: ``num_dst`` destination rows, edges from ``num_src`` source
nodes, the destinations being the first ``num_dst`` sources (so ``x_src[:num_dst]`` are the
destination features, the self/root terms of SAGE/GCN/GIN).  :func:`sample_blocks` builds the blocks
of one mini-batch: unique nodes ``n_id`` with the seeds first (in their order) and each hop's new
nodes after them (in order of first appearance), in O(sampled) work per batch: a reusable node map
of length ``N`` (:class:`NodeMap`) is written for the batch's nodes only and reset after use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from gkdfast._checks import check_graph
from gkdfast.graph import Graph
from gkdfast.sampling.sampler import sample_neighbors

__all__ = ["Block", "NodeMap", "sample_blocks", "full_in_degree"]


@dataclass
class Block:
    """One sampled hop, in local ids.

    Attributes:
        rowptr: ``[num_dst + 1]`` int64 CSR over the destinations.
        col: ``[nnz]`` local source ids in ``[0, num_src)`` (graph index dtype).
        edge_id: ``[nnz]`` positions of the sampled edges in the full graph's CSR.
        num_dst, num_src: sizes (``num_dst <= num_src``).
        src_degree: ``[num_src]`` float32 full-graph in-degree of each source (sum of in-edge weights
            when the graph is weighted): the GCN normalisation uses the *full* graph's degrees.
        dst_count: ``[num_dst]`` int64 full-graph in-edge count of each destination.
        edge_weight: ``[nnz]`` full-graph weights of the sampled edges, or None.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[1, 2], [0, 0]]))
        >>> n_id, blocks = sample_blocks(g, torch.tensor([0]), [5])
        >>> blocks[0].num_dst, blocks[0].num_src, blocks[0].graph.num_nodes
        (1, 3, 3)
    """

    rowptr: Tensor
    col: Tensor
    edge_id: Tensor
    num_dst: int
    num_src: int
    src_degree: Tensor
    dst_count: Tensor
    edge_weight: Optional[Tensor] = None
    _graph: Optional[Graph] = None

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def graph(self) -> Graph:
        """The block as a :class:`gkdfast.Graph` over ``num_src`` nodes whose rows ``>= num_dst`` are
        empty (so :func:`gkdfast.spmm` runs on it unchanged; slice its output with ``[:num_dst]``)."""
        if self._graph is None:
            pad = self.rowptr.new_full((self.num_src - self.num_dst,), self.num_edges)
            rowptr = torch.cat([self.rowptr, pad]).to(self.col.dtype)
            self._graph = Graph._from_parts(rowptr, self.col, self.num_src)
        return self._graph

    def to(self, device, non_blocking: bool = False) -> "Block":
        """A copy on ``device`` (pinned host memory + ``non_blocking=True`` overlaps the copy).

        Example:
            >>> g = gkdfast.Graph(torch.tensor([[1], [0]]))
            >>> sample_blocks(g, torch.tensor([0]), [1])[1][0].to("cpu").num_src
            2
        """
        def mv(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)
        return Block(mv(self.rowptr), mv(self.col), mv(self.edge_id), self.num_dst, self.num_src,
                     mv(self.src_degree), mv(self.dst_count), mv(self.edge_weight))


class NodeMap:
    """A reusable global -> local id map of length ``N`` (-1 = not in the batch).

    Each batch writes only the entries of its own nodes and :meth:`reset` puts back -1 on exactly
    those, so building a batch costs O(its nodes), never O(N).

    Example:
        >>> m = NodeMap(10)
        >>> int((m.table >= 0).sum())
        0
    """

    def __init__(self, num_nodes: int, device=None):
        dtype = torch.int32 if num_nodes < 2 ** 31 else torch.int64
        self.table = torch.full((num_nodes,), -1, dtype=dtype, device=device)

    def reset(self, nodes: Tensor) -> None:
        self.table[nodes] = -1


def full_in_degree(graph: Graph) -> Tensor:
    """``[N]`` float32 in-degree of every node (sum of in-edge weights when weighted): O(E), once.

    Example:
        >>> full_in_degree(gkdfast.Graph(torch.tensor([[1, 2], [0, 0]]))).tolist()
        [2.0, 0.0, 0.0]
    """
    if graph.edge_weight is None:
        return (graph.rowptr[1:] - graph.rowptr[:-1]).to(torch.float32)
    # A segmented sum per row in float64 (no atomics; a float cumsum on CUDA raises under
    # torch.use_deterministic_algorithms(True) before torch 2.14).
    w = graph.to_csr_order(graph.edge_weight).to(torch.float32)
    rp = graph.rowptr.to(torch.int64)
    return torch.segment_reduce(w.to(torch.float64), "sum", offsets=rp, axis=0, unsafe=True).to(torch.float32)


def _first_occurrences(table: Tensor, cand: Tensor) -> Tensor:
    """Distinct values of ``cand`` (nodes not yet in the batch) in order of first occurrence, in
    O(len(cand)) with no sort: each node's entry of ``table`` temporarily receives the smallest
    position it occurs at (a deterministic scatter-min); the caller then overwrites every entry."""
    if cand.numel() == 0:
        return cand
    pos = torch.arange(cand.numel(), dtype=table.dtype, device=table.device)
    table[cand] = torch.iinfo(table.dtype).max
    table.scatter_reduce_(0, cand.to(torch.int64), pos, reduce="amin")
    return cand[table[cand] == pos]


def sample_blocks(graph: Graph, seeds: Tensor, fanouts: Sequence[int], seed: int = 0,
                  node_map: Optional[NodeMap] = None,
                  degree: Optional[Tensor] = None,
                  csr_weight: Optional[Tensor] = None) -> Tuple[Tensor, List[Block]]:
    """Samples ``len(fanouts)`` hops around ``seeds`` and relabels them locally.

    ``fanouts[h]`` is the fan-out of hop ``h + 1`` away from the seeds (as PyG's ``num_neighbors``):
    at hop ``h`` every node gathered so far is a destination and draws ``fanouts[h]`` neighbours
    keyed by ``(seed, node, h)``.  The returned blocks are in *layer* order: ``blocks[0]`` feeds the
    first layer (its sources are all of ``n_id``), ``blocks[-1]`` has the seeds as destinations.

    Args:
        graph: the full graph.  seeds: ``[S]`` distinct node ids.  fanouts: ints (``-1`` = all).
        seed: sampling seed.  node_map: a :class:`NodeMap` to reuse (else one is made: O(N)).
        degree: ``full_in_degree(graph)`` to reuse (else computed: O(N)).
        csr_weight: ``graph.to_csr_order(graph.edge_weight)`` to reuse (else computed: O(E)).

    Returns:
        ``(n_id, blocks)``: ``n_id`` ``[num_src of blocks[0]]`` global ids (seeds first).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[1, 2, 3], [0, 1, 2]]))
        >>> n_id, blocks = sample_blocks(g, torch.tensor([0]), [1, 1])
        >>> n_id.tolist(), [(b.num_dst, b.num_src) for b in blocks]  # seeds, hop-1 nodes, hop-2 nodes
        ([0, 1, 2], [(2, 3), (1, 2)])
    """
    check_graph(graph, "gkdfast.sampling")
    if isinstance(fanouts, int) or len(fanouts) == 0:
        raise ValueError(f"gkdfast.sampling: fanouts must be a list with one int per hop (e.g. [10, 5]), got "
                         f"{fanouts!r}")
    if (not isinstance(seeds, torch.Tensor) or seeds.dim() != 1 or seeds.is_floating_point()
            or seeds.dtype == torch.bool):
        got = f"{seeds.dtype} {list(seeds.shape)}" if isinstance(seeds, torch.Tensor) else type(seeds).__name__
        raise TypeError(f"gkdfast.sampling: seeds must be a 1-D int tensor of node ids, got {got} (for a bool "
                        "mask pass mask.nonzero().flatten())")
    if node_map is None:
        node_map = NodeMap(graph.num_nodes, graph.device)
    if degree is None:
        degree = full_in_degree(graph)
    if csr_weight is None and graph.edge_weight is not None:
        csr_weight = graph.to_csr_order(graph.edge_weight)
    table = node_map.table
    num_seeds = seeds.numel()
    # Range first: the cast to an int32 graph's index type would wrap an id of 2^31 or more.
    if num_seeds and (int(seeds.min()) < 0 or int(seeds.max()) >= graph.num_nodes):
        raise IndexError(f"gkdfast.sampling: seed nodes must be in [0, {graph.num_nodes})")
    seeds = seeds.to(graph.col.dtype)
    table[seeds] = torch.arange(num_seeds, dtype=table.dtype, device=table.device)
    if num_seeds and not bool((table[seeds] == torch.arange(num_seeds, device=table.device)).all()):
        node_map.reset(seeds)
        raise ValueError("gkdfast.sampling: seeds must be distinct (a node appears twice in the batch)")
    n_id = seeds
    blocks: List[Block] = []
    try:
        for hop, fanout in enumerate(fanouts):
            num_dst = n_id.numel()
            rowptr, nbr, eid = sample_neighbors(graph, n_id, int(fanout), seed, hop)
            local = table[nbr]
            new = _first_occurrences(table, nbr[local < 0])
            if new.numel():
                table[new] = torch.arange(num_dst, num_dst + new.numel(), dtype=table.dtype, device=table.device)
                local = table[nbr]
            n_id = torch.cat([n_id, new])
            dst = n_id[:num_dst]
            blocks.append(Block(
                rowptr=rowptr, col=local.to(graph.col.dtype), edge_id=eid, num_dst=num_dst,
                num_src=n_id.numel(), src_degree=degree[n_id],
                dst_count=(graph.rowptr[dst + 1] - graph.rowptr[dst]).to(torch.int64),
                edge_weight=None if csr_weight is None else csr_weight[eid]))
    finally:
        node_map.reset(n_id)
    blocks.reverse()
    return n_id, blocks
