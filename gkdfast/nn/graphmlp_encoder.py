"""Graph-MLP's student (Hu et al., arXiv 2106.04051): a graph-free encoder whose output feeds both the
classifier and the neighbour contrastive loss.

Example:
    >>> m = GraphMLPEncoder(8, 16, 3)
    >>> [type(l).__name__ for l in m.encoder]
    ['Linear', 'GELU', 'LayerNorm', 'Dropout', 'Linear']
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor, nn

from gkdfast.nn.philox_dropout import Dropout

from gkdfast.nn._utils import check_features

__all__ = ["GraphMLPEncoder"]


class GraphMLPEncoder(nn.Module):
    """``z = Linear → GELU → LayerNorm → Dropout → Linear (x)`` (width ``hidden_channels``), then
    ``logits = Linear(z)``.  ``return_hidden`` gives ``z``: the embedding Graph-MLP's contrastive loss
    reads (so the recipe needs no projection head, ``GraphMLP(proj_dim=None)``).  The graph is ignored.

    Args:
        in_channels, hidden_channels, out_channels: widths (Graph-MLP: hidden 256).
        num_layers: must be 2 (the encoder's two Linears; the classifier is extra), accepted so
            :func:`gkdfast.nn.build_model` can pass it.
        dropout: between LayerNorm and the second Linear (Graph-MLP: 0.6).

    Shapes: ``x`` ``[N, in]`` → logits ``[N, out]`` (and ``z`` ``[N, hidden]`` with ``return_hidden``).

    Example:
        >>> import torch
        >>> logits, z = GraphMLPEncoder(8, 16, 3)(torch.randn(5, 8), return_hidden=True)
        >>> tuple(logits.shape), tuple(z.shape)
        ((5, 3), (5, 16))
    """

    uses_graph = False  # the distiller calls it without the graph

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.6):
        super().__init__()
        for what, v in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                        ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"gkdfast.nn.GraphMLPEncoder: {what} must be a positive int, got {v!r}")
        if num_layers != 2:
            raise ValueError(f"gkdfast.nn.GraphMLPEncoder: num_layers must be 2 (its fixed encoder), got {num_layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"gkdfast.nn.GraphMLPEncoder: dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.encoder = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.GELU(), nn.LayerNorm(hidden_channels),
                                     Dropout(float(dropout)), nn.Linear(hidden_channels, hidden_channels))
        self.classifier = nn.Linear(hidden_channels, out_channels)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: Tensor, graph: Optional[object] = None,
                return_hidden: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        check_features("GraphMLPEncoder", x, self.in_channels)
        z = self.encoder(x)
        logits = self.classifier(z)
        return (logits, z) if return_hidden else logits
