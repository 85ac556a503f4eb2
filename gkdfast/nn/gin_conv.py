"""GINConv: ``nn((1 + eps) x_i + sum_{j -> i} x_j)`` on :func:`gkdfast.spmm`."""
from __future__ import annotations

import numbers
from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from gkdfast.graph import Graph
from gkdfast.nn._utils import check_channels, check_input, reset_children, weights_like
from gkdfast.nn.sparse_input import has_forward_hooks, input_product, wants_sparse
from gkdfast.ops import spmm

__all__ = ["GINConv"]


class GINConv(nn.Module):
    r"""Graph Isomorphism Network layer: ``out_i = nn((1 + eps) x_i + sum_{j -> i} w_ji x_j)``.

    Args:
        nn_or_in: a ``torch.nn.Module`` mapping ``[N, F] -> [N, C]`` (as in PyG), or the input width
            ``F`` (an int), in which case ``out`` must be given and the layer builds
            ``Linear(F, C) -> ReLU -> Linear(C, C)``.
        out: output width ``C`` when ``nn_or_in`` is an int.
        eps: initial ``eps``.  train_eps: make ``eps`` a learnable parameter.

    Shapes:
        ``x`` ``[N, F]``, ``graph`` with ``N`` nodes, optional ``edge_weight`` ``[E]`` (order of
        ``graph.edge_index``) -> ``[N, C]``.

    Difference from PyG: edge weights (the argument, else ``graph.edge_weight``) scale the
    messages, while PyG's ``GINConv`` has no edge weights; unweighted graphs give PyG's result.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.GINConv(8, 4)(torch.randn(3, 8), g).shape
        torch.Size([3, 4])
        >>> mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> gkdfast.nn.GINConv(mlp, train_eps=True)(torch.randn(3, 8), g).shape
        torch.Size([3, 4])
    """

    def __init__(self, nn_or_in: Union[nn.Module, int], out: Optional[int] = None, eps: float = 0.0,
                 train_eps: bool = False):
        super().__init__()
        if isinstance(nn_or_in, nn.Module):
            if out is not None:
                raise ValueError("gkdfast.nn.GINConv: pass either a module or (in_channels, out_channels), not both")
            self.nn = nn_or_in
            self.in_channels = _infer_in(nn_or_in)
        elif isinstance(nn_or_in, numbers.Integral) and not isinstance(nn_or_in, bool):
            if out is None:
                raise ValueError("gkdfast.nn.GINConv: with an int in_channels, out_channels must be given")
            nn_or_in, out = check_channels("GINConv", in_channels=nn_or_in, out_channels=out)
            self.nn = nn.Sequential(nn.Linear(nn_or_in, out), nn.ReLU(), nn.Linear(out, out))
            self.in_channels = nn_or_in
        else:
            raise TypeError(f"gkdfast.nn.GINConv: nn_or_in must be a torch.nn.Module or an int, "
                            f"got {type(nn_or_in).__name__}")
        self.initial_eps = float(eps)
        if train_eps:
            self.eps = nn.Parameter(torch.tensor([float(eps)]))
        else:
            self.register_buffer("eps", torch.tensor([float(eps)]))

    def reset_parameters(self) -> None:
        # (the wrapped module itself may be the one with reset_parameters, e.g. a lone nn.Linear)
        if hasattr(self.nn, "reset_parameters"):
            self.nn.reset_parameters()
        else:
            reset_children(self.nn)
        self.eps.data.fill_(self.initial_eps)

    def forward(self, x: Tensor, graph: Graph, edge_weight: Optional[Tensor] = None,
                sparse_input: bool = False) -> Tensor:
        """``sparse_input=True``: ``x`` is a feature matrix passed again and again (a model's raw
        input); when it is mostly zero (:func:`gkdfast.nn.sparse_input.sparse_operand`) the first
        ``Linear`` of ``nn`` multiplies its cached sparse copy before the aggregation.  The result
        is the same up to rounding."""
        check_input("GINConv", x, graph, self.in_channels)
        sparse = wants_sparse(x, sparse_input)
        edge_weight = weights_like(graph, edge_weight, x)
        return self.combine(x, lambda t: spmm(graph, t, "sum", edge_weight=edge_weight), lambda t: t, sparse=sparse)

    def combine(self, x: Tensor, aggregate: Callable[[Tensor], Tensor], dst: Callable[[Tensor], Tensor],
                pre: Optional[Tensor] = None, sparse: bool = False) -> Tensor:
        """The layer given how to aggregate: shared by :meth:`forward`, the sampled-block forward and
        layer-wise inference.

        Args:
            x: ``[S, F]`` source features (dense, or sparse CSR when ``sparse``).
            aggregate: ``aggregate(t)`` -> ``[D, width]``, the (weighted) sum over each destination's
                in-edges of the rows of ``t`` (``[S, width]``).
            dst: ``dst(t)`` -> ``t``'s ``[D, width]`` rows of the destinations.
            pre: ``x @ W₀ᵀ`` (``W₀``: ``nn``'s first Linear) when the caller computed it already.
            sparse: ``x`` takes the sparse product (:func:`gkdfast.nn.sparse_input.input_product`).

        Returns: ``[D, out]``.
        """
        first = self.leading_linear()
        # nn's first Linear commutes with the (weighted) sum and the (1 + eps) self term: apply it
        # before the aggregation when that makes the message passing narrower or the product sparse.
        if first is not None and (pre is not None or sparse or first.out_features < first.in_features):
            h = pre if pre is not None else input_product(x, first.weight, sparse)
            agg = aggregate(h) + (1 + self.eps.to(h.dtype)) * dst(h)
            return self.nn[1:](agg + first.bias if first.bias is not None else agg)
        if x.layout == torch.sparse_csr:
            x = x.to_dense()
        return self.nn(aggregate(x) + (1 + self.eps.to(x.dtype)) * dst(x))

    def leading_linear(self) -> Optional[nn.Linear]:
        """``nn``'s first module when ``nn`` is a ``Sequential`` starting with a plain ``nn.Linear``
        that has no hooks (which applying its weight directly would skip); else ``None``."""
        if not isinstance(self.nn, nn.Sequential) or len(self.nn) < 1 or has_forward_hooks(self.nn):
            return None
        first = self.nn[0]
        return None if type(first) is not nn.Linear or has_forward_hooks(first) else first


# Modules that keep their input's width: the width check looks through them to the first one that states it.
_SAME_WIDTH = (nn.Dropout, nn.AlphaDropout, nn.Identity, nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU,
               nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Mish, nn.Hardswish)


def _infer_in(module: nn.Module) -> Optional[int]:
    """The input width ``module`` surely takes, or None (the layer's width check is then skipped).

    Read from what ``module`` applies first for certain: itself, or the first element of nested
    ``Sequential``s, passing over modules that keep the width (dropout, activations, Identity).  Known
    when that is a ``Linear`` (``in_features``), a ``BatchNorm1d`` / ``LayerNorm`` (its feature count) or
    a module stating a positive int ``in_channels`` (PyG's ``MLP``); a lazy width (``LazyLinear``'s 0,
    PyG's -1) or any other module (which may change the width) leaves it unknown."""
    stack = [module]
    while stack:
        m = stack.pop(0)
        if isinstance(m, nn.Sequential):
            stack = list(m) + stack
            continue
        if isinstance(m, _SAME_WIDTH):
            continue
        if isinstance(m, nn.Linear):
            width = m.in_features
        elif isinstance(m, nn.BatchNorm1d):
            width = m.num_features
        elif isinstance(m, nn.LayerNorm):
            width = m.normalized_shape[-1] if len(m.normalized_shape) == 1 else None
        else:
            width = getattr(m, "in_channels", None)
        return width if isinstance(width, int) and not isinstance(width, bool) and width > 0 else None
    return None
