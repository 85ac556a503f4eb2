"""GCNConv: Kipf & Welling's graph convolution on :func:`gkdfast.spmm` with ``norm="gcn"``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gkdfast.graph import Graph
from gkdfast.nn._utils import check_channels, check_input, weights_like
from gkdfast.nn.sparse_input import sparse_linear
from gkdfast.ops import spmm

__all__ = ["GCNConv"]


class GCNConv(nn.Module):
    r"""``out = D^-1/2 (A + I) D^-1/2 (x W^T) + b`` with ``deg_i = 1 + sum of i's in-edge weights``.

    The normalisation is applied by ``gkdfast.spmm(..., norm="gcn")``: neither the self-loops nor
    per-edge coefficients are materialised.  Same parameters and initialisation as PyG's
    ``GCNConv`` (``lin.weight`` glorot, ``bias`` zeros).

    Args:
        in_channels: input width ``F``.  out_channels: output width ``C``.
        bias: learn an additive bias.
        normalize: if False, ``out = A (x W^T) + b`` (plain weighted sum, no self-loops), as PyG.

    Shapes:
        ``x`` ``[N, F]``, ``graph`` with ``N`` nodes, optional ``edge_weight`` ``[E]`` (in the order of
        ``graph.edge_index``; defaults to ``graph.edge_weight``) -> ``[N, C]``.

    Differences from PyG: self-loops already in the graph are kept and one more is added per node
    (PyG's ``add_remaining_self_loops`` would keep only the existing one); no ``improved`` /
    ``cached`` options (the graph caches what it needs), no ``add_self_loops`` (``normalize=True``
    always adds them, ``normalize=False`` never), no lazy width (``in_channels=-1``).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> conv = gkdfast.nn.GCNConv(8, 4)
        >>> conv(torch.randn(3, 8), g).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, normalize: bool = True):
        super().__init__()
        in_channels, out_channels = check_channels("GCNConv", in_channels=in_channels, out_channels=out_channels)
        self.in_channels, self.out_channels, self.normalize = in_channels, out_channels, normalize
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, graph: Graph, edge_weight: Optional[Tensor] = None,
                sparse_input: bool = False) -> Tensor:
        """``sparse_input=True``: ``x`` is a feature matrix passed again and again (a model's raw
        input), so ``lin`` may multiply through its cached sparse copy when it is mostly zero
        (:func:`gkdfast.nn.sparse_input.sparse_linear`); the result is the same up to rounding."""
        check_input("GCNConv", x, graph, self.in_channels)
        h = sparse_linear(self.lin, x) if sparse_input else self.lin(x)
        return self.propagate(h, graph, edge_weight)

    def propagate(self, h: Tensor, graph: Graph, edge_weight: Optional[Tensor] = None) -> Tensor:
        """The layer after its linear map: ``forward(x) == propagate(lin(x))``, so a model can feed
        ``lin``'s output from a sparse product (``gkdfast.nn.sparse_input``).  ``[N, out] -> [N, out]``.

        Example:
            >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
            >>> conv, x = GCNConv(3, 2), torch.randn(2, 3)
            >>> torch.allclose(conv.propagate(conv.lin(x), g), conv(x, g))
            True
        """
        edge_weight = weights_like(graph, edge_weight, h)
        out = spmm(graph, h, "sum", edge_weight=edge_weight, norm="gcn" if self.normalize else None)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, normalize={self.normalize}"
