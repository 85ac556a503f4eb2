"""Graph-classification models: message-passing layers, then one pooled row per graph, then an MLP head.

``forward(batch)`` takes a :class:`gkdfast.data.batching.GraphBatch` (block-diagonal graph, ``x``,
``ptr``, optional relaxed ``edge_weight``) and returns ``[B, classes]`` logits.  Pooling is
:func:`gkdfast.pooling.global_pool` over ``ptr``: the forward has no per-graph Python loop.

GIN and GCN layers scale messages by ``edge_weight``, so a generator's relaxed (0/1 straight-through)
edges reach them with gradients; SAGE and GAT ignore edge weights (as PyG does) and are for real graphs.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import nn

from gkdfast.nn._utils import check_model_sizes, reset_children
from gkdfast.nn.gat_conv import GATConv
from gkdfast.nn.gcn_conv import GCNConv
from gkdfast.nn.gin_conv import GINConv
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.nn.sage_conv import SAGEConv
from gkdfast.pooling import global_pool

__all__ = ["GraphClassifier", "graph_model_names", "WEIGHTED_CONVS"]

_CONVS = ("gin", "gcn", "sage", "gat")
WEIGHTED_CONVS = ("gin", "gcn")  # layers whose aggregation uses edge weights (generated graphs)
_DEFAULT_POOL = {"gin": "sum", "gcn": "mean", "sage": "mean", "gat": "mean"}
NORMS = ("batch", "layer", "none")  # the normalisation after each conv (and inside GIN's MLP)


def _norm_layer(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


def graph_model_names() -> list:
    """Convolutions :class:`GraphClassifier` accepts.

    Example:
        >>> graph_model_names()
        ['gin', 'gcn', 'sage', 'gat']
    """
    return list(_CONVS)


class GraphClassifier(nn.Module):
    """``num_layers`` x (conv -> norm -> ReLU), ``global_pool``, then Linear -> ReLU -> dropout -> Linear.

    Args:
        conv: ``"gin"`` (GIN-0: ``Linear -> BN -> ReLU -> Linear`` per layer), ``"gcn"``, ``"sage"`` or ``"gat"``.
        in_channels, hidden_channels, num_classes: widths.  num_layers: message-passing layers.
        pool: ``"sum"``, ``"mean"`` or ``"max"`` (default: sum for GIN, as in the GIN paper; mean otherwise).
        dropout: before the last Linear.
        norm: ``"batch"`` (BatchNorm, the GIN paper's; default), ``"layer"`` (LayerNorm per node) or
            ``"none"``.  LayerNorm keeps no running statistics, so a model trained on one input
            distribution (a data-free student on generated graphs) normalises real graphs with their
            own statistics: the measured fix of DFAD's GCN student (``docs/graph-classification.md``).

    Shapes: ``batch.x`` ``[N, in]``, ``batch.ptr`` ``[B + 1]`` -> ``[B, num_classes]``; with
    ``return_hidden`` also the pooled ``[B, hidden]`` graph embedding.

    Example:
        >>> import torch, gkdfast
        >>> from gkdfast.data.batching import collate
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), 2)
        >>> batch = collate([(g, torch.ones(2, 7), 0), (g, torch.zeros(2, 7), 1)])
        >>> GraphClassifier("gin", 7, 32, 2, num_layers=3)(batch).shape
        torch.Size([2, 2])
    """

    def __init__(self, conv: str, in_channels: int, hidden_channels: int, num_classes: int, num_layers: int = 5,
                 pool: Optional[str] = None, dropout: float = 0.5, norm: str = "batch"):
        super().__init__()
        conv = str(conv).lower()
        if conv not in _CONVS:
            raise ValueError(f"GraphClassifier: unknown conv {conv!r}; expected one of {', '.join(_CONVS)}")
        check_model_sizes("GraphClassifier", in_channels, hidden_channels, num_classes, num_layers, dropout,
                          out_name="num_classes")
        if norm not in NORMS:
            raise ValueError(f"GraphClassifier: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        self.conv, self.pool = conv, pool or _DEFAULT_POOL[conv]
        if self.pool not in ("sum", "mean", "max"):
            raise ValueError(f"GraphClassifier: pool must be sum, mean or max, got {self.pool!r}")
        self.in_channels, self.hidden_channels, self.num_classes = in_channels, hidden_channels, num_classes
        self.num_layers, self.dropout = num_layers, float(dropout)
        dims = [in_channels] + [hidden_channels] * num_layers
        self.convs = nn.ModuleList([self._make_conv(dims[i], dims[i + 1]) for i in range(num_layers)])
        self.norms = nn.ModuleList([_norm_layer(norm, hidden_channels) for _ in range(num_layers)])
        self.head1 = nn.Linear(hidden_channels, hidden_channels)
        self.head2 = nn.Linear(hidden_channels, num_classes)

    def reset_parameters(self) -> None:
        """Re-initialises every convolution, norm and head layer as at construction."""
        reset_children(self)

    @property
    def label(self) -> str:
        """Short name for tables, e.g. ``GIN(5x128)`` (``GIN(5x128,layer)`` with a non-default norm)."""
        suffix = "" if self.norm == "batch" else f",{self.norm}"
        return f"{self.conv.upper()}({self.num_layers}x{self.hidden_channels}{suffix})"

    def _make_conv(self, i: int, o: int) -> nn.Module:
        if self.conv == "gin":
            return GINConv(nn.Sequential(nn.Linear(i, o), _norm_layer(self.norm, o), nn.ReLU(), nn.Linear(o, o)))
        if self.conv == "gcn":
            return GCNConv(i, o)
        if self.conv == "sage":
            return SAGEConv(i, o)
        heads = 4 if o % 4 == 0 else 1
        return GATConv(i, o // heads, heads=heads, concat=True)

    def forward(self, batch, return_hidden: bool = False):
        h = batch.x
        w = batch.edge_weight
        if w is not None and self.conv not in WEIGHTED_CONVS:
            raise ValueError(f"GraphClassifier({self.conv}): this layer ignores edge weights, so it cannot read "
                             f"relaxed (weighted) edges; use one of {', '.join(WEIGHTED_CONVS)}")
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h, batch.graph, edge_weight=w) if w is not None else conv(h, batch.graph)
            h = F.relu(norm(h))
        pooled = global_pool(h, batch.ptr, self.pool)
        out = F.relu(self.head1(pooled))
        out = self.head2(model_dropout(out, self.dropout, self.training))
        return (out, pooled) if return_hidden else out
