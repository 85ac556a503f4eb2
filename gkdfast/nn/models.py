"""Node-classification models (GCN, SAGE, GAT, GIN, MLP) with access to the last hidden embedding.

Every model has ``forward(x, graph=None, return_hidden=False)``: ``[N, out_channels]`` logits, or
``(logits, hidden)`` where ``hidden`` ``[N, hidden_channels]`` is the input of the final layer
*before* dropout (after the activation), which is what the distillation losses compare.
Layer ``l < num_layers`` is ``conv -> [BatchNorm1d] -> ReLU -> dropout``; the last layer is a bare conv.
With ``num_layers=1`` there is no hidden layer and ``hidden`` is ``x`` itself.
"""
from __future__ import annotations

from typing import List, Literal, Optional, Sequence, Tuple, Union, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast._autocast import autocast_on
from gkdfast.graph import Graph
from gkdfast.nn._utils import check_features, check_model_sizes, reset_children
from gkdfast.nn.block_forward import layer_on_block
from gkdfast.nn.gat_conv import GATConv
from gkdfast.nn.gcn_conv import GCNConv
from gkdfast.nn.gcnii import GCNII
from gkdfast.nn.gin_conv import GINConv
from gkdfast.nn.graphmlp_encoder import GraphMLPEncoder
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.nn.sage_conv import SAGEConv
from gkdfast.nn.se_gcn import SEGCN
from gkdfast.nn.sparse_input import SparseInputLinear, csr_head, dropout_sparse_input

__all__ = ["GCN", "SAGE", "GAT", "GIN", "MLP", "build_model"]

Output = Union[Tensor, Tuple[Tensor, Tensor]]


class _Stack(nn.Module):
    """Shared body: ``layers[:-1]`` are hidden layers followed by [BN] -> ReLU -> dropout; with
    ``input_dropout`` > 0 the input features are dropped out first (GAT's and Kipf & Welling's GCN's
    published Cora setting drops the input too)."""

    uses_graph = True

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int,
                 dropout: float, batch_norm: bool, input_dropout: float = 0.0):
        super().__init__()
        check_model_sizes(type(self).__name__, in_channels, hidden_channels, out_channels, num_layers, dropout)
        if not 0.0 <= float(input_dropout) < 1.0:
            raise ValueError(f"gkdfast.nn.{type(self).__name__}: input_dropout must be in [0, 1), got {input_dropout}")
        self.input_dropout = float(input_dropout)
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.num_layers, self.dropout = num_layers, float(dropout)
        dims = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.layers = nn.ModuleList([self._make_layer(dims[i], dims[i + 1], i == num_layers - 1)
                                     for i in range(num_layers)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(hidden_channels) for _ in range(num_layers - 1)]) \
            if batch_norm else None

    def _make_layer(self, in_ch: int, out_ch: int, last: bool) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    # Layer types whose forward takes ``sparse_input=True`` (a linear map first); every stack but the base sets it.
    _SPARSE_FIRST: Tuple[type, ...] = ()

    def _run_layer(self, layer: nn.Module, x: Tensor, graph: Optional[Graph], **kw) -> Tensor:
        return layer(x, graph, **kw)

    def _run_first_layer(self, layer: nn.Module, x: Tensor, graph: Optional[Graph]) -> Tensor:
        """Layer 0 on the model's own input: a layer of ``_SPARSE_FIRST`` is called with
        ``sparse_input=True``, so it multiplies through ``x``'s cached sparse copy when ``x`` is mostly
        zero (bag-of-words features; ``gkdfast.nn.sparse_input``).  The layer is still called as a
        module (hooks run); a layer of another type (swapped in by a caller) is called plainly."""
        if self.accepts_sparse_input():
            return self._run_layer(layer, x, graph, sparse_input=True)
        return self._run_layer(layer, x, graph)

    def accepts_sparse_input(self) -> bool:
        """Whether layer 0 multiplies a sparse CSR input as it is (its type is in ``_SPARSE_FIRST``;
        a layer swapped in by a caller, e.g. T2-GNN's imputing one, may not).

        Example:
            >>> gkdfast.nn.SAGE(8, 16, 3).accepts_sparse_input()
            True
        """
        return isinstance(self.layers[0], self._SPARSE_FIRST)

    def _dropped_input(self, x: Tensor) -> Tensor:
        """Input dropout; on mostly-zero features (or sparse rows) it drops the stored non-zeros of
        their sparse copy (same distribution, ``nnz`` cost) so the first layer keeps its sparse product."""
        p = self.input_dropout
        if x.layout == torch.sparse_csr or self.accepts_sparse_input():
            dropped = dropout_sparse_input(x, lambda v: model_dropout(v, p, True))
            if dropped is not None:
                return dropped
        return model_dropout(x, p, True)

    def reset_parameters(self) -> None:
        """Re-initialises every layer as at construction: a module with its own ``reset_parameters``
        resets itself and its children (GCNConv / GATConv: glorot), which are then left alone (a
        second reset of the inner ``nn.Linear`` would overwrite glorot with its kaiming default)."""
        reset_children(self)

    # (the overloads tell a type checker that return_hidden=True gives a pair and the default one tensor)
    @overload
    def forward(self, x: Tensor, graph: Optional[Graph] = None, return_hidden: Literal[False] = False) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, graph: Optional[Graph] = None, *,
                return_hidden: Literal[True]) -> Tuple[Tensor, Tensor]: ...

    @overload
    def forward(self, x: Tensor, graph: Optional[Graph], return_hidden: Literal[True]) -> Tuple[Tensor, Tensor]: ...

    def forward(self, x: Tensor, graph: Optional[Graph] = None, return_hidden: bool = False) -> Output:
        name = type(self).__name__
        check_features(name, x, self.in_channels)
        weight = next(self.parameters(), None)
        if weight is not None and x.dtype != weight.dtype and not autocast_on(x.device.type):
            # (else torch's "mat1 and mat2 must have the same dtype" from inside a layer)
            raise TypeError(f"gkdfast.nn.{name}: x is {x.dtype} but the model's weights are {weight.dtype}; "
                            f"pass x.to({weight.dtype}) or convert the model (model.to({x.dtype}))")
        if self.uses_graph and graph is None:
            raise ValueError(f"gkdfast.nn.{name}: a graph is required (forward(x, graph))")
        hidden = x
        if self.input_dropout and self.training:
            x = self._dropped_input(x)
            # a sparse result is built for this call only: the first layer multiplies it as it is
            return self._run_layers(x, graph, return_hidden, hidden, skip_first=False,
                                    raw_input=x.layout == torch.sparse_csr)
        return self._run_layers(x, graph, return_hidden, hidden, skip_first=False, raw_input=True)

    def forward_from_first(self, h: Tensor, graph: Optional[Graph] = None, return_hidden: bool = False) -> Output:
        """The rest of :meth:`forward` given ``h`` = the first layer's output (before its norm and
        activation): ``forward(x) == forward_from_first(layers[0](x))`` when ``input_dropout`` is 0.
        Lets a caller whose inputs are linear mixtures of node features apply the first (linear)
        layer to the nodes once and mix its outputs instead (GSDN).

        Shapes: ``h`` ``[B, hidden]`` -> logits ``[B, out]`` (and the hidden ``[B, hidden]``).

        Example:
            >>> m = gkdfast.nn.MLP(8, 16, 3).eval()
            >>> x = torch.randn(5, 8)
            >>> torch.allclose(m.forward_from_first(m.layers[0](x)), m(x))
            True
        """
        if self.num_layers < 2:
            raise ValueError(f"gkdfast.nn.{type(self).__name__}.forward_from_first: needs >= 2 layers")
        return self._run_layers(h, graph, return_hidden, None, skip_first=True)

    def _run_layers(self, x: Tensor, graph, return_hidden: bool, hidden, skip_first: bool,
                    raw_input: bool = False) -> Output:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i == 0 and raw_input:
                x = self._run_first_layer(layer, x, graph)
            elif not (skip_first and i == 0):
                x = self._run_layer(layer, x, graph)
            if i == last:
                break
            if self.norms is not None:
                x = self.norms[i](x)
            x = F.relu(x)
            hidden = x
            x = model_dropout(x, self.dropout, self.training)
        return (x, hidden) if return_hidden else x

    def forward_blocks(self, x_src: Tensor, blocks: Sequence, return_hidden: bool = False) -> Output:
        """Mini-batch forward on sampled blocks (:func:`gkdfast.sampling.sample_blocks`): layer ``l``
        runs on ``blocks[l]``, whose destinations are the first ``num_dst`` of its sources.

        Shapes: ``x_src`` ``[blocks[0].num_src, in]`` (features of the batch's ``n_id``; dense, or the
        sparse CSR rows :func:`gkdfast.nn.sparse_input.sparse_rows` slices from bag-of-words features,
        which the first layer multiplies as they are) -> logits
        ``[blocks[-1].num_dst, out]`` (the seeds), and hidden ``[blocks[-1].num_dst, hidden]``.
        With fan-outs covering every degree it equals :meth:`forward` on those rows.

        Example:
            >>> from gkdfast.sampling import sample_blocks
            >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
            >>> n_id, blocks = sample_blocks(g, torch.tensor([0, 2]), [5, 5])
            >>> gkdfast.nn.SAGE(8, 16, 3)(torch.randn(3, 8), g).shape
            torch.Size([3, 3])
            >>> gkdfast.nn.SAGE(8, 16, 3).forward_blocks(torch.randn(len(n_id), 8), blocks).shape
            torch.Size([2, 3])
        """
        name = type(self).__name__
        check_features(name, x_src, self.in_channels)
        if len(blocks) != self.num_layers:
            raise ValueError(f"gkdfast.nn.{name}.forward_blocks: got {len(blocks)} blocks for {self.num_layers} "
                             "layers (sample one hop per layer: len(fanouts) == num_layers)")
        x, hidden = x_src, None
        if self.input_dropout and self.training:
            # dense rows are a fresh gather each batch: plain dropout, no sparse copy of them
            x = self._dropped_input(x) if x.layout == torch.sparse_csr else model_dropout(x, self.input_dropout, True)
        for i, layer in enumerate(self.layers[:-1]):
            x = self._run_block(layer, x, blocks[i])
            if self.norms is not None:
                x = self.norms[i](x)
            x = F.relu(x)
            hidden = x
            x = model_dropout(x, self.dropout, self.training)
        out = self._run_block(self.layers[-1], x, blocks[-1])
        if hidden is None:  # one layer: the hidden embedding is the input of the seeds
            hidden = csr_head(x_src, blocks[-1].num_dst)
            hidden = hidden.to_dense() if hidden.layout == torch.sparse_csr else hidden
        elif hidden.size(0) != out.size(0):
            hidden = hidden[:out.size(0)]
        return (out, hidden) if return_hidden else out

    def _run_block(self, layer: nn.Module, x: Tensor, block) -> Tensor:
        return layer_on_block(layer, x, block)


class GCN(_Stack):
    """Stack of :class:`GCNConv` layers.

    Args:
        in_channels, hidden_channels, out_channels: widths.  num_layers: number of convolutions.
        dropout: after each hidden activation.  batch_norm: BatchNorm1d after each hidden conv.
        normalize: ``D^-1/2 (A + I) D^-1/2`` in every layer (default; ``False``: plain sum aggregation, as
            :class:`GCNConv`'s ``normalize``).
        input_dropout: dropout on the input features (default 0: none).

    Shapes: ``x`` ``[N, in]`` -> logits ``[N, out]`` (and hidden ``[N, hidden]`` with ``return_hidden``).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> logits, h = gkdfast.nn.GCN(8, 16, 3)(torch.randn(3, 8), g, return_hidden=True)
        >>> logits.shape, h.shape
        (torch.Size([3, 3]), torch.Size([3, 16]))
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5, batch_norm: bool = False, normalize: bool = True,
                 input_dropout: float = 0.0):
        self._normalize = normalize
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, dropout, batch_norm, input_dropout)

    def _make_layer(self, in_ch, out_ch, last):
        return GCNConv(in_ch, out_ch, normalize=self._normalize)

    _SPARSE_FIRST = (GCNConv,)


class SAGE(_Stack):
    """Stack of :class:`SAGEConv` layers (``aggr`` as in SAGEConv, default mean).

    Args:
        aggr: the layers' neighbour aggregation (``"mean"``, ``"max"``, ``"gcn"``, ... as :class:`SAGEConv`).
        Other args as :class:`GCN`.

    Shapes: ``x`` ``[N, in]`` -> logits ``[N, out]`` (and hidden ``[N, hidden]``).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.SAGE(8, 16, 3, num_layers=3)(torch.randn(3, 8), g).shape
        torch.Size([3, 3])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5, batch_norm: bool = False, aggr: str = "mean",
                 input_dropout: float = 0.0):
        self._aggr = aggr
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, dropout, batch_norm, input_dropout)

    def _make_layer(self, in_ch, out_ch, last):
        return SAGEConv(in_ch, out_ch, aggr=self._aggr)

    _SPARSE_FIRST = (SAGEConv,)


class GAT(_Stack):
    """Stack of :class:`GATConv` layers.

    Hidden layers use ``heads`` heads of width ``hidden_channels // heads``, concatenated (so the
    hidden embedding is ``[N, hidden_channels]``; ``hidden_channels`` must be divisible by ``heads``);
    the last layer has ``out_heads`` heads of width ``out_channels``, averaged.

    Args:
        heads: hidden-layer heads (default 4).  out_heads: output-layer heads (default 1).
        attn_dropout: dropout on attention weights.  negative_slope: the attention's LeakyReLU slope
        (default 0.2, as :class:`GATConv`).  Other args as :class:`GCN`.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.GAT(8, 16, 3, heads=4)(torch.randn(3, 8), g).shape
        torch.Size([3, 3])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5, batch_norm: bool = False, heads: int = 4, out_heads: int = 1,
                 attn_dropout: float = 0.0, negative_slope: float = 0.2, input_dropout: float = 0.0):
        if not isinstance(heads, int) or heads < 1 or not isinstance(out_heads, int) or out_heads < 1:
            raise ValueError(f"gkdfast.nn.GAT: heads and out_heads must be positive ints, got {heads}, {out_heads}")
        if num_layers > 1 and isinstance(hidden_channels, int) and hidden_channels % heads != 0:
            raise ValueError(f"gkdfast.nn.GAT: hidden_channels ({hidden_channels}) must be divisible by "
                             f"heads ({heads})")
        self._heads, self._out_heads = heads, out_heads
        self._attn_dropout, self._slope = attn_dropout, negative_slope
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, dropout, batch_norm, input_dropout)

    def _make_layer(self, in_ch, out_ch, last):
        if last:
            return GATConv(in_ch, out_ch, heads=self._out_heads, concat=False,
                           negative_slope=self._slope, dropout=self._attn_dropout)
        return GATConv(in_ch, out_ch // self._heads, heads=self._heads, concat=True,
                       negative_slope=self._slope, dropout=self._attn_dropout)

    _SPARSE_FIRST = (GATConv,)


class GIN(_Stack):
    """Stack of :class:`GINConv` layers; each wraps ``Linear -> ReLU -> Linear`` (the last one
    ``Linear(hidden, hidden) -> ReLU -> Linear(hidden, out)``).

    Args:
        eps, train_eps: as :class:`GINConv`.  Other args as :class:`GCN`.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> gkdfast.nn.GIN(8, 16, 3)(torch.randn(3, 8), g).shape
        torch.Size([3, 3])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5, batch_norm: bool = False, eps: float = 0.0, train_eps: bool = False,
                 input_dropout: float = 0.0):
        self._eps, self._train_eps = eps, train_eps
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, dropout, batch_norm, input_dropout)

    def _make_layer(self, in_ch, out_ch, last):
        mid = self.hidden_channels if last else out_ch
        mlp = nn.Sequential(nn.Linear(in_ch, mid), nn.ReLU(), nn.Linear(mid, out_ch))
        return GINConv(mlp, eps=self._eps, train_eps=self._train_eps)

    _SPARSE_FIRST = (GINConv,)


class MLP(_Stack):
    """Graph-free multi-layer perceptron (the usual distillation student); ``graph`` is ignored.

    Args:
        batch_norm: BatchNorm1d after each hidden Linear.  Other args as :class:`GCN`.

    Example:
        >>> logits, h = gkdfast.nn.MLP(8, 16, 3)(torch.randn(5, 8), return_hidden=True)
        >>> h.shape
        torch.Size([5, 16])
    """

    uses_graph = False

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5, batch_norm: bool = False, input_dropout: float = 0.0):
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, dropout, batch_norm, input_dropout)

    def _make_layer(self, in_ch, out_ch, last):
        return SparseInputLinear(in_ch, out_ch)

    _SPARSE_FIRST = (SparseInputLinear,)  # not T2-GNN's imputing first layer, which replaces it

    def _run_layer(self, layer, x, graph, **kw):
        return layer(x, **kw)


_MODELS = {"gcn": GCN, "sage": SAGE, "graphsage": SAGE, "gat": GAT, "gin": GIN, "mlp": MLP,
           "gmlp": GraphMLPEncoder,  # gmlp: Graph-MLP's encoder (Linear-GELU-LayerNorm-Dropout-Linear)
           "segcn": SEGCN,  # Cold Brew's teacher: a GCN with per-node structural embeddings (needs num_nodes)
           "gcnii": GCNII}  # a deep GCN (initial residual + identity mapping): the structure recipes' teacher


def build_model(name: str, in_channels: int, hidden_channels: int, out_channels: int, **kwargs) -> nn.Module:
    """Builds a model by name: ``gcn``, ``sage`` (alias ``graphsage``), ``gat``, ``gin``, ``mlp``, ``gmlp``,
    ``gcnii`` (:class:`gkdfast.nn.gcnii.GCNII`) or ``segcn`` (:class:`gkdfast.nn.se_gcn.SEGCN`, which also
    needs ``num_nodes=``) (case-insensitive); ``kwargs`` go to its constructor (``num_layers``, ``dropout``,
    ``heads`` ...).

    Example:
        >>> m = gkdfast.nn.build_model("sage", 8, 16, 3, num_layers=3, dropout=0.2)
        >>> type(m).__name__
        'SAGE'
    """
    if not isinstance(name, str):
        raise TypeError(f"gkdfast.nn.build_model: name must be a string, got {type(name).__name__}")
    cls = _MODELS.get(name.strip().lower())
    if cls is None:
        raise ValueError(f"gkdfast.nn.build_model: unknown model {name!r}; expected one of "
                         f"{', '.join(k for k in _MODELS if k != 'graphsage')}")
    return cls(in_channels, hidden_channels, out_channels, **kwargs)


def model_names() -> List[str]:
    """Names accepted by :func:`build_model`.

    Example:
        >>> model_names()
        ['gat', 'gcn', 'gcnii', 'gin', 'gmlp', 'graphsage', 'mlp', 'sage', 'segcn']
    """
    return sorted(_MODELS)
