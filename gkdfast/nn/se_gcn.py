"""SE-GCN: Cold Brew's teacher, a GCN with a learnable *structural embedding* per node in chosen layers.

Layer ``l`` computes ``Â (X_l W_l + E_l) + b_l`` where ``E_l`` ``[N, d_l]`` is a free table of
per-node vectors (Cold Brew, Zheng et al., ICLR 2022, eq. 2), ``Â`` the GCN-normalised adjacency
with self-loops.  Training adds ``se_reg · Σ_l ‖E_l‖_F`` to the loss (:meth:`SEGCN.regularization`,
which :class:`gkdfast.distill.Distiller` adds by itself).  The tables make the model transductive:
it runs on the ``num_nodes``-node graph it was built for, nothing else.

``forward(..., return_hidden=True)`` returns as "hidden" the **structural embedding** that Cold Brew's
student regresses: the concatenation of every layer's output before its activation
(``[N, hidden·(num_layers-1) + out]``), the public code's ``collect_SE``.

Mostly-zero (bag-of-words) input features are multiplied through their cached sparse copy, the
input dropout applied to its non-zeros, as the other models' first layers do (``gkdfast.nn.sparse_input``).

Choices (the public code, ``GNN_model/GCN.py``): dropout before every layer, the input included;
``E`` initialised from ``N(0, 1)``; ``E`` added after the source-side degree scaling there, before it
here (the paper's formula).  The public teacher also builds per-dataset normalisation layers (NodeNorm
on Cora, GroupNorm on CiteSeer) but never runs them: ``run_norm_if_any`` tests the trick string for
equality with ``"NodeNorm"`` while the best configuration sets it to ``"NoResNodeNorm"``; this model
has none either.  It has no dropout on the logits (the public code drops them out in training).

Example:
    >>> import torch, gkdfast
    >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
    >>> m = SEGCN(8, 16, 3, num_nodes=3, se_reg=0.5)
    >>> logits, se = m(torch.randn(3, 8), g, return_hidden=True)
    >>> logits.shape, se.shape, m.regularization().ndim
    (torch.Size([3, 3]), torch.Size([3, 19]), 0)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.graph import Graph
from gkdfast.nn._utils import check_features, check_model_sizes
from gkdfast.nn.gcn_conv import GCNConv
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.nn.sparse_input import dropped_linear

__all__ = ["SEGCN"]


def _layer_indices(se_layers: Union[str, Sequence[int]], num_layers: int) -> tuple:
    if isinstance(se_layers, str):
        named = {"first": (0,), "last": (num_layers - 1,), "all": tuple(range(num_layers)), "none": ()}
        if se_layers not in named:
            raise ValueError(f"gkdfast.nn.SEGCN: se_layers must be 'first', 'last', 'all', 'none' or layer "
                             f"indices, got {se_layers!r}")
        return named[se_layers]
    out = tuple(sorted({int(i) for i in se_layers}))
    if any(i < 0 or i >= num_layers for i in out):
        raise ValueError(f"gkdfast.nn.SEGCN: se_layers {list(se_layers)} out of range for {num_layers} layers")
    return out


class SEGCN(nn.Module):
    """GCN with learnable per-node structural embeddings (module doc).

    Args:
        in_channels, hidden_channels, out_channels: widths.  num_layers: graph convolutions (>= 1).
        dropout: before every layer, the input included.
        num_nodes: rows of each embedding table (the graph's node count); required.
        se_layers: layers with a table: ``"first"`` (Cold Brew's Cora / CiteSeer teachers, its
            ``--whetherHasSE=100``), ``"last"``, ``"all"``, ``"none"`` or a list of indices.
        se_reg: weight of ``Σ_l ‖E_l‖_F`` in :meth:`regularization` (Cold Brew: 32 on Cora, 0.5 on CiteSeer).

    Shapes: ``x`` ``[N, in]`` → logits ``[N, out]``; with ``return_hidden`` also the structural
    embedding ``[N, hidden·(num_layers-1) + out]``.
    """

    uses_graph = True
    #: :meth:`gkdfast.distill.experiment.ModelSpec.build` passes the graph's node count to such models
    needs_num_nodes = True

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5, num_nodes: Optional[int] = None,
                 se_layers: Union[str, Sequence[int]] = "first", se_reg: float = 0.0):
        super().__init__()
        check_model_sizes("SEGCN", in_channels, hidden_channels, out_channels, num_layers, dropout)
        if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
            raise ValueError("gkdfast.nn.SEGCN: num_nodes (the graph's node count) is required: the model holds a "
                             f"learnable table per node; got {num_nodes!r}")
        if not float(se_reg) >= 0.0:
            raise ValueError(f"gkdfast.nn.SEGCN: se_reg must be >= 0, got {se_reg}")
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.num_layers, self.dropout = num_layers, float(dropout)
        self.num_nodes, self.se_reg = num_nodes, float(se_reg)
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.layers = nn.ModuleList([GCNConv(dims[i], dims[i + 1]) for i in range(num_layers)])
        self.se_layers = _layer_indices(se_layers, num_layers)
        # keyed by layer index; N(0, 1) as the public code initialises them
        self.embeddings = nn.ParameterDict({str(i): nn.Parameter(torch.randn(num_nodes, dims[i + 1]))
                                            for i in self.se_layers})

    def reset_parameters(self) -> None:
        for conv in self.layers:
            conv.reset_parameters()
        for e in self.embeddings.values():
            nn.init.normal_(e)

    def regularization(self) -> Optional[Tensor]:
        """``se_reg · Σ_l ‖E_l‖_F`` (a 0-d tensor), or ``None`` when there is nothing to add."""
        if not self.se_reg or not len(self.embeddings):
            return None
        return self.se_reg * sum(torch.linalg.vector_norm(e) for e in self.embeddings.values())

    def forward(self, x: Tensor, graph: Optional[Graph] = None,
                return_hidden: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        check_features("SEGCN", x, self.in_channels)
        if graph is None:
            raise ValueError("gkdfast.nn.SEGCN: a graph is required (forward(x, graph))")
        if graph.num_nodes != self.num_nodes or x.size(0) != self.num_nodes:
            raise ValueError(f"gkdfast.nn.SEGCN: built for a graph of {self.num_nodes} nodes (one learnable "
                             f"embedding per node), got {graph.num_nodes} nodes and {x.size(0)} feature rows; "
                             "the model is transductive")
        outs = []
        last = self.num_layers - 1
        for i, conv in enumerate(self.layers):
            h = self._first_linear(conv.lin, x) if i == 0 else conv.lin(model_dropout(x, self.dropout, self.training))
            if str(i) in self.embeddings:
                h = h + self.embeddings[str(i)]
            x = conv.propagate(h, graph)
            outs.append(x)
            if i < last:
                x = F.relu(x)
        return (x, torch.cat(outs, dim=1)) if return_hidden else x

    def _first_linear(self, lin: nn.Linear, x: Tensor) -> Tensor:
        """``lin(dropout(x))`` on the model's own input: through the cached sparse copy of mostly-zero
        (bag-of-words) features, the dropout applied to its stored non-zeros (``gkdfast.nn.sparse_input``;
        the same distribution as dropout on the dense ``x``, other random numbers), else dense."""
        drop = (lambda v: model_dropout(v, self.dropout, True)) if self.training and self.dropout else None
        return dropped_linear(lin, x, drop)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, se_layers={list(self.se_layers)}, se_reg={self.se_reg}"
