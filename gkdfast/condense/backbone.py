"""The network whose gradients GCond matches: SGC (one linear map, K propagations) or a GCN, as plain
parameter lists so one set of weights runs on the dense synthetic graph and on the sparse real one.

Real graph: ``gkdfast.spmm(..., norm="gcn")``, never a dense N×N matrix.  Synthetic graph: a dense
``D^-1/2 (A' + I) D^-1/2`` (:func:`dense_gcn_norm`), differentiable in ``A'``.
Weights are ``[out, in]``, so row ``i`` of a weight's gradient belongs to output neuron ``i``.
"""
from __future__ import annotations

import math
from typing import List, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast.graph import Graph
from gkdfast.ops import spmm

__all__ = ["Backbone", "dense_gcn_norm", "propagate_features", "BACKBONES"]

BACKBONES = ("sgc", "gcn")


def dense_gcn_norm(adj: Tensor) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` of a dense weighted adjacency, ``deg_i = 1 + sum_j A_ij``.

    Shapes: ``[n, n]`` -> ``[n, n]``.

    Example:
        >>> dense_gcn_norm(torch.zeros(2, 2))
        tensor([[1., 0.],
                [0., 1.]])
    """
    a = adj + torch.eye(adj.size(0), dtype=adj.dtype, device=adj.device)
    dinv = a.sum(1).pow(-0.5)
    return dinv.unsqueeze(1) * a * dinv.unsqueeze(0)


def _matmul(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T``; ``x`` may be a sparse COO matrix (bag-of-words features: ~1 % non-zeros)."""
    return torch.sparse.mm(x, w.t()) if x.is_sparse else x @ w.t()


class Backbone:
    """Freshly initialised SGC or GCN weights with a dense (synthetic) and a sparse (real) forward.

    ``sgc``: ``logits = Â^K (x W^T) + b`` (GCond's condensation model, K = ``num_layers``, one weight).
    ``gcn``: ``num_layers`` graph convolutions of width ``hidden`` with ReLU in between, no dropout
    (GCond's GCN option and DosCond's default).  Weights and biases start uniform in ``±1/sqrt(in)``.

    Shapes: ``x`` ``[n, d]`` -> logits ``[n, C]``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> net = Backbone("gcn", 4, 3, hidden=8, generator=torch.Generator().manual_seed(0))
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(net.real(x, g), net.dense(x, dense_gcn_norm(torch.tensor([[0., 1.], [1., 0.]]))))
        True
    """

    def __init__(self, kind: str, in_dim: int, num_classes: int, hidden: int = 256, num_layers: int = 2,
                 generator: Union[torch.Generator, None] = None):
        if kind not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {kind!r}")
        if num_layers < 1:
            raise ValueError(f"backbone num_layers must be >= 1, got {num_layers}")
        self.kind, self.num_layers = kind, num_layers
        dims = [in_dim, num_classes] if kind == "sgc" else [in_dim] + [hidden] * (num_layers - 1) + [num_classes]
        self.params: List[Tensor] = []
        for i in range(len(dims) - 1):
            bound = 1.0 / math.sqrt(dims[i])
            w = (torch.rand(dims[i + 1], dims[i], generator=generator) * 2 - 1) * bound
            b = (torch.rand(dims[i + 1], generator=generator) * 2 - 1) * bound
            self.params += [w.requires_grad_(), b.requires_grad_()]

    def _run(self, x: Tensor, propagate) -> Tensor:
        if self.kind == "sgc":
            w, b = self.params
            h = _matmul(x, w)
            for _ in range(self.num_layers):
                h = propagate(h)
            return h + b
        h = x
        pairs = list(zip(self.params[0::2], self.params[1::2]))
        for i, (w, b) in enumerate(pairs):
            h = propagate(_matmul(h, w)) + b
            if i < len(pairs) - 1:
                h = F.relu(h)
        return h

    def dense(self, x: Tensor, adj_norm: Tensor) -> Tensor:
        """Logits on the synthetic graph: ``x`` ``[n, d]``, normalised dense ``adj_norm`` ``[n, n]`` -> ``[n, C]``."""
        return self._run(x, lambda h: adj_norm @ h)

    def real(self, x: Tensor, graph: Graph) -> Tensor:
        """Logits on the real graph with sparse GCN propagation: ``x`` ``[N, d]`` (dense or sparse COO) -> ``[N, C]``."""
        return self._run(x, lambda h: spmm(graph, h, "sum", norm="gcn"))


def propagate_features(x: Tensor, graph: Graph, k: int) -> Tensor:
    """``Â^k x`` on the real graph (sparse).  SGC's real-graph logits are then ``rows @ W^T + b`` for any
    weights, so the condenser propagates once instead of every step.

    Shapes: ``x`` ``[N, d]`` -> ``[N, d]``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
        >>> propagate_features(torch.tensor([[1.], [0.]]), g, 1)
        tensor([[0.5000],
                [0.5000]])
    """
    x = x.to_dense() if x.is_sparse else x
    for _ in range(k):
        x = spmm(graph, x, "sum", norm="gcn")
    return x
