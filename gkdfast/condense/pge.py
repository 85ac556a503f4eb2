"""PGE: the synthetic graph's adjacency as a symmetric MLP over pairs of synthetic node features.

``A'[i, j] = sigmoid((MLP([x_i ; x_j]) + MLP([x_j ; x_i])) / 2)`` with a zero diagonal (GCond's
parametrised graph generator).  N' is tiny (tens to a few thousand nodes), so the N'×N' matrix is dense.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PGE"]


class PGE(nn.Module):
    """Pair MLP giving a dense symmetric adjacency in (0, 1) with a zero diagonal.

    Layers: ``Linear(2d, hidden) -> BatchNorm -> ReLU`` (``num_layers - 2`` more ``Linear(hidden, hidden)
    -> BatchNorm -> ReLU``), then ``Linear(hidden, 1)``; GCond's defaults are hidden 128, 3 layers.
    The first layer on the concatenation ``[x_i ; x_j]`` equals ``U x_i + V x_j + b``, so it is computed
    as two ``[N', hidden]`` products broadcast to ``[N', N', hidden]`` instead of a ``[N'^2, 2d]`` matmul:
    the same function, N' times fewer multiplications.  Batch norm uses the statistics of the N'^2 pairs
    always (no running statistics), as the published code, which never switches the module to eval.

    Shapes: ``x`` ``[N', d]`` -> ``[N', N']``.

    Example:
        >>> pge = PGE(feature_dim=8)
        >>> adj = pge(torch.randn(5, 8))
        >>> adj.shape, bool((adj == adj.T).all()), float(adj.diagonal().abs().max())
        (torch.Size([5, 5]), True, 0.0)
    """

    def __init__(self, feature_dim: int, hidden: int = 128, num_layers: int = 3):
        super().__init__()
        if feature_dim < 1 or hidden < 1 or num_layers < 2:
            raise ValueError(f"PGE: need feature_dim >= 1, hidden >= 1, num_layers >= 2; got {feature_dim}, "
                             f"{hidden}, {num_layers}")
        self.feature_dim = feature_dim
        self.first = nn.Linear(2 * feature_dim, hidden)
        self.hidden_layers = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(num_layers - 2)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(hidden, track_running_stats=False)
                                    for _ in range(num_layers - 1)])
        self.last = nn.Linear(hidden, 1)

    def logits(self, x: Tensor) -> Tensor:
        """Unsymmetrised pair scores ``MLP([x_i ; x_j])``: ``[N', d]`` -> ``[N', N']``.

        Example:
            >>> PGE(feature_dim=4).logits(torch.randn(3, 4)).shape
            torch.Size([3, 3])
        """
        if x.dim() != 2 or x.size(1) != self.feature_dim:
            raise ValueError(f"PGE: x must be [N', {self.feature_dim}], got {list(x.shape)}")
        n, d = x.shape
        w = self.first.weight  # [hidden, 2d]: left half multiplies x_i, right half x_j
        left, right = x @ w[:, :d].t(), x @ w[:, d:].t()
        h = (left.unsqueeze(1) + right.unsqueeze(0) + self.first.bias).reshape(n * n, -1)
        h = F.relu(self.norms[0](h))
        for layer, norm in zip(self.hidden_layers, self.norms[1:]):
            h = F.relu(norm(layer(h)))
        return self.last(h).reshape(n, n)

    def forward(self, x: Tensor) -> Tensor:
        s = self.logits(x)
        # Mirror the strict upper triangle: exactly symmetric (an elementwise sigmoid may round equal
        # inputs differently in its vector body and scalar tail) and no self-loops (GCN adds them).
        upper = torch.sigmoid((s + s.t()) / 2).triu(1)
        return upper + upper.t()
