"""One layer on one sampled bipartite block (mini-batch training, see :mod:`gkdfast.sampling`).

A block has ``num_dst`` destination rows and ``num_src`` sources, the destinations being the first
``num_dst`` sources.  The message passing runs :func:`gkdfast.spmm` on ``block.graph`` (a Graph over
the ``num_src`` nodes whose rows ``>= num_dst`` are empty; its output is sliced to ``[:num_dst]``):
spmm has no rectangular mode, and the padding only costs writing ``num_src - num_dst`` zero rows,
less than the gather of the ``nnz >= num_src - num_dst`` sampled messages it accompanies.  Dense
per-node work that only the destinations need (SAGE's root term, GIN's MLP, the output Linear after
an aggregation) runs on ``x[:num_dst]`` only.

GCN on a sampled block uses the *full graph's* degrees (``deg_i = 1 + in-degree``, carried by the
block), and scales destination ``i``'s sampled messages by ``in_count_i / sampled_i`` (Horvitz-
Thompson: each in-edge is kept with probability ``sampled_i / in_count_i``), so the aggregation is an
unbiased estimate of the full-graph GCN's and equals it exactly when the fan-out covers the degree.
(PyG instead normalises by the sampled subgraph's degrees, which differs even at full fan-out.)
SAGE-mean averages the sampled neighbours (unbiased too); GIN sums them as sampled (as PyG);
GAT's softmax runs over the sampled neighbours plus the self-loop.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gkdfast._segments import segment_ids
from gkdfast.nn.gat_conv import GATConv
from gkdfast.nn.gcn_conv import GCNConv
from gkdfast.nn.gin_conv import GINConv
from gkdfast.nn.sage_conv import SAGEConv
from gkdfast.nn.sparse_input import csr_head, input_product, sparse_linear
from gkdfast.ops import spmm

__all__ = ["layer_on_block", "gcn_block_weights"]


def _check(layer: str, x: Tensor, block) -> None:
    if x.dim() != 2 or x.size(0) != block.num_src:
        raise ValueError(f"gkdfast.nn.{layer}: x has shape {list(x.shape)} but the block has {block.num_src} "
                         "source nodes (x must be [num_src, F], destinations first)")


def gcn_block_weights(block, dtype=torch.float32) -> Tensor:
    """``[nnz]`` GCN coefficients of a block's sampled edges (full-graph degrees, unbiased scaling).

    Example:
        >>> from gkdfast.sampling import sample_blocks
        >>> g = gkdfast.Graph(torch.tensor([[1, 2], [0, 0]]))
        >>> gcn_block_weights(sample_blocks(g, torch.tensor([0]), [5])[1][0]).shape
        torch.Size([2])
    """
    dinv = (block.src_degree.to(torch.float64) + 1.0).rsqrt()
    sampled = block.rowptr[1:] - block.rowptr[:-1]
    scale = block.dst_count.to(torch.float64) / sampled.clamp(min=1).to(torch.float64)
    row = segment_ids(sampled, block.num_edges)
    w = dinv[row] * dinv[block.col.long()] * scale[row]
    if block.edge_weight is not None:
        w = w * block.edge_weight.to(torch.float64)
    return w.to(dtype)


def _gcn(layer: GCNConv, x: Tensor, block) -> Tensor:
    h = layer.lin(x) if x.layout == torch.strided else input_product(x, layer.lin.weight, False)
    nd = block.num_dst
    if layer.normalize:
        w = gcn_block_weights(block, h.dtype)
        self_w = (block.src_degree[:nd].to(h.dtype) + 1.0).reciprocal().unsqueeze(1)
        out = spmm(block.graph, h, "sum", edge_weight=w)[:nd] + h[:nd] * self_w
    else:
        w = None if block.edge_weight is None else block.edge_weight.to(h.dtype)
        out = spmm(block.graph, h, "sum", edge_weight=w)[:nd]
    if layer.bias is not None:
        out = out + layer.bias
    return out


def _sage(layer: SAGEConv, x: Tensor, block) -> Tensor:
    nd = block.num_dst
    g = block.graph  # no edge weights on the block graph: SAGE ignores them, as PyG
    # "gcn" averages over the *sampled* neighbours and the node, as "mean" does over the sampled ones
    return layer.combine(x, lambda t, reduce: spmm(g, t, reduce)[:nd], lambda t: t[:nd],
                         lambda: g.in_degree()[:nd], sparse=x.layout == torch.sparse_csr)


def _gin(layer: GINConv, x: Tensor, block) -> Tensor:
    nd = block.num_dst
    w: Optional[Tensor] = None if block.edge_weight is None else block.edge_weight.to(x.dtype)
    return layer.combine(x, lambda t: spmm(block.graph, t, "sum", edge_weight=w)[:nd], lambda t: t[:nd],
                         sparse=x.layout == torch.sparse_csr)


def layer_on_block(layer: nn.Module, x: Tensor, block) -> Tensor:
    """Runs a gkdfast.nn conv (GCNConv, SAGEConv, GINConv, GATConv) or a Linear on one block.

    Shapes: ``x`` ``[num_src, F]`` (destinations first; dense, or sparse CSR rows of bag-of-words
    features, :func:`gkdfast.nn.sparse_input.sparse_rows`, for a model's first layer) -> ``[num_dst, C]``.

    Example:
        >>> from gkdfast.sampling import sample_blocks
        >>> g = gkdfast.Graph(torch.tensor([[1, 2], [0, 0]]))
        >>> n_id, blocks = sample_blocks(g, torch.tensor([0]), [5])
        >>> layer_on_block(gkdfast.nn.SAGEConv(4, 2), torch.randn(3, 4), blocks[0]).shape
        torch.Size([1, 2])
    """
    name = type(layer).__name__
    _check(name, x, block)
    if isinstance(layer, SAGEConv):
        return _sage(layer, x, block)
    if isinstance(layer, GCNConv):
        return _gcn(layer, x, block)
    if isinstance(layer, GINConv):
        return _gin(layer, x, block)
    if isinstance(layer, GATConv):  # needs every source's projection anyway; softmax per dst row
        return layer(x, block.graph, sparse_input=x.layout == torch.sparse_csr)[:block.num_dst]
    if isinstance(layer, nn.Linear):
        return layer(x[:block.num_dst]) if x.layout == torch.strided else sparse_linear(layer, csr_head(x, block.num_dst))
    raise TypeError(f"gkdfast.nn: no block-wise forward for {name}; supported: SAGEConv, GCNConv, GINConv, "
                    "GATConv, Linear")
