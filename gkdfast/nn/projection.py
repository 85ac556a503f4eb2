"""ProjectionHead: the MLP that maps embeddings into a contrastive space (G-CRD style)."""
from __future__ import annotations

from torch import Tensor, nn

from gkdfast.nn._utils import check_features

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """``Linear(in, hidden) -> BatchNorm1d(hidden) -> ReLU -> Linear(hidden, out)``.

    Used to project student and teacher embeddings (whose widths may differ) into one space
    before a contrastive loss such as :func:`gkdfast.losses.crd`.

    Shapes: ``[N, in_channels]`` -> ``[N, out_channels]`` (BatchNorm needs ``N > 1`` in training).

    Example:
        >>> head = gkdfast.nn.ProjectionHead(64, 128, 32)
        >>> head(torch.randn(10, 64)).shape
        torch.Size([10, 32])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.net = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.BatchNorm1d(hidden_channels),
                                 nn.ReLU(), nn.Linear(hidden_channels, out_channels))

    def reset_parameters(self) -> None:
        for m in self.net:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        check_features("ProjectionHead", x, self.in_channels)
        return self.net(x)
