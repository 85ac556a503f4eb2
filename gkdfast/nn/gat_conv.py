"""GATConv: graph attention on per-edge scores + :func:`gkdfast.edge_softmax` + :func:`gkdfast.spmm`."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.graph import Graph
from gkdfast.nn._utils import check_channels, check_input, check_sparse_input, csr_view, edge_sum, with_self_loops_csr
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.nn.sparse_input import sparse_linear
from gkdfast.ops import edge_softmax, spmm

__all__ = ["GATConv"]


class GATConv(nn.Module):
    r"""Graph attention (Velickovic et al.; PyG's ``GATConv`` parameterisation).

    ``h = x W^T`` viewed as ``[N, H, C]``; per edge ``e = (j -> i)`` and head ``k``:
    ``s_ek = leaky_relu(<h_jk, att_src_k> + <h_ik, att_dst_k>)``, ``alpha = edge_softmax(s)`` over i's
    in-edges, then ``out_ik = sum_j alpha_ek h_jk`` by one :func:`gkdfast.spmm` per head (the
    attention weights are the edge weights).  Only ``O(E * H)`` scalars are stored per layer, never an
    ``E x C`` message tensor.  Heads are concatenated (``[N, H*C]``) or averaged (``[N, C]``), then
    the bias is added.

    Args:
        in_channels: ``F``.  out_channels: ``C`` per head.  heads: ``H``.
        concat: concatenate heads (else average them).
        negative_slope: of the leaky ReLU.  dropout: dropout on the attention weights (training only).
        add_self_loops: as PyG, remove existing self-loops and add one per node (the derived graph
            is built once per input graph and cached).
        bias: learn an additive bias.

    Shapes:
        ``x`` ``[N, F]``, ``graph`` with ``N`` nodes -> ``[N, H*C]`` (concat) or ``[N, C]``.

    Edge weights are ignored (PyG's ``GATConv`` has no edge weights).  Not supported: PyG's
    ``edge_dim`` / ``edge_attr`` (forward's third argument is ``sparse_input`` here), ``fill_value``,
    ``residual``, ``return_attention_weights``, bipartite or lazy (``-1``) widths.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.GATConv(8, 4, heads=2)(torch.randn(3, 8), g).shape
        torch.Size([3, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0, add_self_loops: bool = True,
                 bias: bool = True):
        super().__init__()
        in_channels, out_channels = check_channels("GATConv", in_channels=in_channels, out_channels=out_channels)
        if heads < 1:
            raise ValueError(f"gkdfast.nn.GATConv: heads must be >= 1, got {heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"gkdfast.nn.GATConv: dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.out_channels, self.heads, self.concat = in_channels, out_channels, heads, concat
        self.negative_slope, self.dropout, self.add_self_loops = negative_slope, dropout, add_self_loops
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
        self.bias = nn.Parameter(torch.empty(heads * out_channels if concat else out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.lin.weight)
        # PyG's glorot on the [1, H, C] attention vectors: bound sqrt(6 / (H + C)) from the last two
        # sizes (xavier_uniform_ reads [1, H, C] as fan_in H*C, fan_out C, a bound up to 2x smaller).
        bound = math.sqrt(6.0 / (self.heads + self.out_channels))
        nn.init.uniform_(self.att_src, -bound, bound)
        nn.init.uniform_(self.att_dst, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, graph: Graph, sparse_input: bool = False) -> Tensor:
        """``sparse_input=True``: as :meth:`GCNConv.forward` (``lin`` through ``x``'s cached sparse
        copy when ``x`` is a mostly-zero feature matrix)."""
        check_sparse_input("GATConv", sparse_input, "edge_attr")
        check_input("GATConv", x, graph, self.in_channels)
        return self.propagate(sparse_linear(self.lin, x) if sparse_input else self.lin(x), graph)

    def propagate(self, h: Tensor, graph: Graph) -> Tensor:
        """The layer after its linear map: ``forward(x) == propagate(lin(x))`` (``h`` ``[N, H*C]``),
        so a model can feed ``lin``'s output from a sparse product (``gkdfast.nn.sparse_input``).

        Example:
            >>> g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
            >>> conv, x = GATConv(3, 2, heads=2), torch.randn(2, 3)
            >>> torch.allclose(conv.propagate(conv.lin(x), g), conv(x, g))
            True
        """
        n, heads, c = h.size(0), self.heads, self.out_channels
        h = h.view(n, heads, c)
        a_src = (h * self.att_src).sum(-1)  # [N, H]
        a_dst = (h * self.att_dst).sum(-1)
        # A graph whose edge order is its CSR order: per-edge tensors built from col/dst go straight in.
        g = with_self_loops_csr(graph) if self.add_self_loops else csr_view(graph)
        scores = F.leaky_relu(edge_sum(g, a_src, a_dst), self.negative_slope)  # [E, H]
        alpha = edge_softmax(g, scores)
        alpha = model_dropout(alpha, self.dropout, self.training)
        if heads == 1:
            out = spmm(g, h.view(n, c), "sum", edge_weight=alpha.view(-1)).unsqueeze(1)
        else:
            # unbind: one [E, H] / [N, H, C] gradient in backward (a select per head allocates a full
            # zero tensor per head)
            out = torch.stack([spmm(g, hk.contiguous(), "sum", edge_weight=ak.contiguous())
                               for hk, ak in zip(h.unbind(1), alpha.unbind(1))], dim=1)
        out = out.reshape(n, heads * c) if self.concat else out.mean(dim=1)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, heads={self.heads}, concat={self.concat}"
