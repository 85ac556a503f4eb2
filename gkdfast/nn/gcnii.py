"""GCNII: a deep GCN with initial residual and identity mapping (Chen et al., ICML 2020).

Layer ``l = 1..L`` on ``h_0 = ReLU(x W_in + b_in)``::

    s_l = (1 - α) Â h_{l-1} + α h_0                      (initial residual)
    h_l = ReLU((1 - β_l) s_l + β_l s_l W_l),  β_l = log(λ / l + 1)   (identity mapping)

and the logits are ``h_L W_out + b_out`` (``Â`` = GCN-normalised adjacency with self-loops, applied by
``gkdfast.spmm(..., norm="gcn")`` without materialising it).  Dropout comes before the input layer,
before every convolution and before the output layer.  The paper's semi-supervised setting (Cora,
CiteSeer, PubMed public splits): 64 layers of width 64, α = 0.1, λ = 0.5, dropout 0.6, Adam lr 0.01,
weight decay 0.01 on the convolutions and 5e-4 on the two dense layers.  That split of weight decay
is what :meth:`GCNII.optimizer_groups` gives the :class:`gkdfast.distill.Distiller`.

It is here as a *deep GCN teacher*: on those splits it leads a 2-layer GCN by several points, and the
representation-distillation terms (LSP, GSP, G-CRD) need a teacher that is ahead of its student.

Example:
    >>> import torch, gkdfast
    >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
    >>> m = GCNII(8, 16, 3, num_layers=4)
    >>> logits, h = m(torch.randn(3, 8), g, return_hidden=True)
    >>> logits.shape, h.shape
    (torch.Size([3, 3]), torch.Size([3, 16]))
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.graph import Graph
from gkdfast.nn._utils import check_features, check_model_sizes, weights_like
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.nn.sparse_input import dropped_linear
from gkdfast.ops import spmm

__all__ = ["GCNII"]


class GCNII(nn.Module):
    """Deep GCN with initial residual and identity mapping (module doc).

    Args:
        in_channels, hidden_channels, out_channels: widths (every convolution is ``hidden × hidden``).
        num_layers: graph convolutions ``L`` (the paper: 64 on Cora, 32 on CiteSeer, 16 on PubMed).
        dropout: before the input layer, every convolution and the output layer (paper: 0.6).
        alpha: initial-residual weight α.  theta: λ in ``β_l = log(λ / l + 1)``.
        conv_weight_decay: weight decay of the convolutions' weights in :meth:`optimizer_groups`
            (paper: 0.01; the dense layers take the optimiser's own).

    Shapes: ``x`` ``[N, in]`` → logits ``[N, out]``; with ``return_hidden`` also ``h_L`` ``[N, hidden]``
    (after the last activation, before dropout: what the distillation losses compare).

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.GCNII(8, 16, 3, num_layers=8, alpha=0.1, theta=0.5)(torch.randn(3, 8), g).shape
        torch.Size([3, 3])
    """

    uses_graph = True

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 64,
                 dropout: float = 0.6, alpha: float = 0.1, theta: float = 0.5, conv_weight_decay: float = 0.01):
        super().__init__()
        check_model_sizes("GCNII", in_channels, hidden_channels, out_channels, num_layers, dropout)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"gkdfast.nn.GCNII: alpha must be in [0, 1], got {alpha}")
        if not float(theta) > 0.0:
            raise ValueError(f"gkdfast.nn.GCNII: theta must be > 0, got {theta}")
        if not float(conv_weight_decay) >= 0.0:
            raise ValueError(f"gkdfast.nn.GCNII: conv_weight_decay must be >= 0, got {conv_weight_decay}")
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.num_layers, self.dropout = num_layers, float(dropout)
        self.alpha, self.theta, self.conv_weight_decay = float(alpha), float(theta), float(conv_weight_decay)
        self.lin_in = nn.Linear(in_channels, hidden_channels)
        self.lin_out = nn.Linear(hidden_channels, out_channels)
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(hidden_channels, hidden_channels))
                                         for _ in range(num_layers)])
        self.reset_parameters()

    def betas(self) -> List[float]:
        """``β_l = log(λ / l + 1)`` for ``l = 1..L``: how much of layer ``l`` is its weight matrix.

        Example:
            >>> [round(b, 4) for b in GCNII(4, 8, 2, num_layers=2, theta=0.5).betas()]
            [0.4055, 0.2231]
        """
        return [math.log(self.theta / (i + 1) + 1.0) for i in range(self.num_layers)]

    def reset_parameters(self) -> None:
        """Dense layers as ``nn.Linear``; each convolution weight uniform in ``±1/sqrt(hidden)`` (the
        reference's initialisation)."""
        self.lin_in.reset_parameters()
        self.lin_out.reset_parameters()
        bound = 1.0 / math.sqrt(self.hidden_channels)
        for w in self.weights:
            nn.init.uniform_(w, -bound, bound)

    def optimizer_groups(self, weight_decay: float) -> List[dict]:
        """Adam parameter groups: the convolutions with ``conv_weight_decay``, the dense layers with
        ``weight_decay`` (GCNII's two decays).  :class:`gkdfast.distill.Distiller` uses them.

        Example:
            >>> [g["weight_decay"] for g in GCNII(4, 8, 2, num_layers=2).optimizer_groups(5e-4)]
            [0.01, 0.0005]
        """
        dense = list(self.lin_in.parameters()) + list(self.lin_out.parameters())
        return [{"params": list(self.weights), "weight_decay": self.conv_weight_decay},
                {"params": dense, "weight_decay": float(weight_decay)}]

    def _input_layer(self, x: Tensor) -> Tensor:
        drop = (lambda v: model_dropout(v, self.dropout, True)) if self.training and self.dropout else None
        return dropped_linear(self.lin_in, x, drop)  # bag-of-words input: dropout and product at nnz cost

    def forward(self, x: Tensor, graph: Optional[Graph] = None,
                return_hidden: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        check_features("GCNII", x, self.in_channels)
        if graph is None:
            raise ValueError("gkdfast.nn.GCNII: a graph is required (forward(x, graph))")
        h0 = F.relu(self._input_layer(x))
        h = h0
        edge_weight = weights_like(graph, None, h0)
        for w, beta in zip(self.weights, self.betas()):
            h = model_dropout(h, self.dropout, self.training)
            s = (1.0 - self.alpha) * spmm(graph, h, "sum", edge_weight=edge_weight, norm="gcn") + self.alpha * h0
            h = F.relu(torch.addmm(s, s, w, beta=1.0 - beta, alpha=beta))
        out = self.lin_out(model_dropout(h, self.dropout, self.training))
        return (out, h) if return_hidden else out
