"""SAGEConv: GraphSAGE's ``lin_l(aggregate of neighbours) + lin_r(x)`` on :func:`gkdfast.spmm`."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from gkdfast.graph import Graph
from gkdfast.nn._utils import check_channels, check_input, check_sparse_input, csr_view
from gkdfast.nn.sparse_input import has_forward_hooks, input_product, wants_sparse
from gkdfast.ops import spmm

__all__ = ["SAGEConv"]

_AGGRS = ("mean", "sum", "max", "min", "gcn")


class SAGEConv(nn.Module):
    r"""``out_i = lin_l(aggr_{j -> i} x_j) + lin_r(x_i)`` (PyG's ``SAGEConv``; ``lin_l`` has the bias).

    For ``sum``/``mean``/``gcn`` with ``out_channels < in_channels`` the linear map is applied before
    the aggregation (it commutes with them), so the message passing runs at the smaller width; with
    ``sparse_input=True`` on mostly-zero features it is applied first as a sparse product.

    Args:
        in_channels: ``F``.  out_channels: ``C``.
        aggr: ``"mean"`` (default), ``"sum"``, ``"max"`` or ``"min"``; nodes without in-edges
            aggregate to 0 (so they get ``lin_l``'s bias), as in PyG.  ``"gcn"``: DGL's GCN aggregator,
            ``lin_l(mean of x over the in-neighbours and the node itself)``, no ``lin_r`` (the SAGE
            teacher of GLNN / NOSMOG).
        root_weight: add ``lin_r(x)``.  bias: bias of ``lin_l``.

    Shapes:
        ``x`` ``[N, F]``, ``graph`` with ``N`` nodes -> ``[N, C]``.

    Edge weights (``graph.edge_weight``) are ignored, as PyG's ``SAGEConv`` ignores them.  Not
    supported: PyG's ``normalize``, ``project``, ``size`` (forward's third argument is ``sparse_input``
    here), bipartite ``(F_src, F_dst)`` or lazy (``-1``) widths; PyG's ``aggr="add"`` is ``"sum"``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.SAGEConv(8, 4)(torch.randn(3, 8), g).shape
        torch.Size([3, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, aggr: str = "mean", root_weight: bool = True,
                 bias: bool = True):
        super().__init__()
        in_channels, out_channels = check_channels("SAGEConv", in_channels=in_channels, out_channels=out_channels)
        if aggr not in _AGGRS:
            hint = " (PyG's 'add' is 'sum' here)" if aggr == "add" else ""
            raise ValueError(f"gkdfast.nn.SAGEConv: unknown aggr {aggr!r}; expected one of {', '.join(_AGGRS)}{hint}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.aggr, self.root_weight = aggr, root_weight
        self.lin_l = nn.Linear(in_channels, out_channels, bias=bias)
        self.root_weight = root_weight = root_weight and aggr != "gcn"  # "gcn" has the node in its mean instead
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False) if root_weight else None

    def reset_parameters(self) -> None:
        self.lin_l.reset_parameters()
        if self.lin_r is not None:
            self.lin_r.reset_parameters()

    def forward(self, x: Tensor, graph: Graph, sparse_input: bool = False) -> Tensor:
        """``sparse_input=True``: ``x`` is a feature matrix passed again and again (a model's raw
        input).  When it is mostly zero (:func:`gkdfast.nn.sparse_input.sparse_operand`), both linear
        maps multiply its cached sparse copy and the aggregation runs on their output, at width ``C``
        (not for ``max`` / ``min``, which aggregate the features themselves).  The result is the same
        up to rounding."""
        check_sparse_input("SAGEConv", sparse_input, "size")
        check_input("SAGEConv", x, graph, self.in_channels)
        g = csr_view(graph) if graph.edge_weight is not None else graph  # drop weights, as PyG
        sparse = wants_sparse(x, sparse_input)
        return self.combine(x, lambda t, reduce: spmm(g, t, reduce), lambda t: t,
                            lambda: graph.in_degree(x.dtype).to(x.device), sparse=sparse)

    def combine(self, x: Tensor, aggregate: Callable[[Tensor, str], Tensor], dst: Callable[[Tensor], Tensor],
                degree: Callable[[], Tensor], pre: Optional[Tensor] = None, sparse: bool = False) -> Tensor:
        """The layer given how to aggregate: shared by :meth:`forward`, the sampled-block forward and
        layer-wise inference, which differ only in which edges and rows they see.

        Args:
            x: ``[S, F]`` source features (dense, or sparse CSR when ``sparse``).
            aggregate: ``aggregate(t, reduce)`` -> ``[D, width]``, ``reduce`` over each destination's
                in-edges of the rows of ``t`` (``[S, width]``; "sum", "mean", "max" or "min").
            dst: ``dst(t)`` -> ``t``'s ``[D, width]`` rows of the destinations.
            degree: ``degree()`` -> ``[D]`` in-edge counts of the destinations (``"gcn"`` only).
            pre: ``x @ lin_l.weightᵀ`` when the caller computed it already.
            sparse: ``x`` takes the sparse product (:func:`gkdfast.nn.sparse_input.input_product`).

        Returns: ``[D, out_channels]``.
        """
        if has_forward_hooks(self.lin_l) or (self.lin_r is not None and has_forward_hooks(self.lin_r)):
            # reading their weights directly (a reordered or sparse product, or a caller's `pre`) would skip
            # the hooks (pruning, weight norm, ...): the modules' own calls run them, on dense input
            pre, sparse, reorder = None, False, False
        else:
            reorder = self.out_channels < self.in_channels
        # The linear map commutes with sum / mean / "gcn" aggregation: apply it first when that makes
        # the message passing narrower (C < F) or the product sparse.  The bias goes on afterwards.
        first = pre is not None or sparse or reorder
        if x.layout == torch.sparse_csr and not first:
            x = x.to_dense()
        if self.aggr == "gcn":  # DGL's "gcn" aggregator: mean over the neighbours and the node itself
            deg = degree().to(self.lin_l.weight.dtype).unsqueeze(1) + 1.0
            if first:
                h = pre if pre is not None else input_product(x, self.lin_l.weight, sparse)
                return self._bias((aggregate(h, "sum") + dst(h)) / deg)
            return self.lin_l((aggregate(x, "sum") + dst(x)) / deg)
        if self.aggr in ("mean", "sum") and first:
            h = pre if pre is not None else input_product(x, self.lin_l.weight, sparse)
            out = self._bias(aggregate(h, self.aggr))
        else:
            out = self.lin_l(aggregate(x.to_dense() if x.layout == torch.sparse_csr else x, self.aggr))
        if self.lin_r is not None:
            if x.layout == torch.sparse_csr:  # CSR rows cannot be sliced: map them all, keep the destinations
                out = out + dst(input_product(x, self.lin_r.weight, True))
            else:
                root = dst(x)
                out = out + (input_product(root, self.lin_r.weight, True) if sparse else self.lin_r(root))
        return out

    def _bias(self, out: Tensor) -> Tensor:
        return out + self.lin_l.bias if self.lin_l.bias is not None else out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, aggr={self.aggr!r}, root_weight={self.root_weight}"
