"""Heterogeneous GNNs on :class:`~gkdfast.hetero.HeteroGraph`: R-GCN and HAN (HGT: :mod:`gkdfast.hetero.hgt`).

Both take the whole typed graph, return target-type logits ``[n_target, C]`` and, with
``return_hidden=True``, also ``{type: [n_type, hidden]}`` last hidden embeddings (R-GCN: every type;
HAN: the target type only).  A type with features is projected by a Linear layer; a type without
features gets a learned embedding per node (transductive, like the one-hot inputs of HeCo/MAGNN,
without an ``n × n`` identity matrix).

* :class:`RGCN` (Schlichtkrull et al., 2018): per layer
  ``h_t ← W_0 h_t + Σ_{r: s→t} W_r · mean_{s ∈ N_r(t)} h_s``, one ``gkdfast.ops.spmm`` (mean) per relation.
* :class:`HAN` (Wang et al., 2019): per meta-path graph a GAT layer (``gkdfast.nn.GATConv``, fused
  SDDMM / edge-softmax / SpMM kernels), then semantic attention ``β_p = softmax_p(mean_i qᵀ tanh(W z_{p,i} + b))``
  and ``z = Σ_p β_p z_p``.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.hetero.graph import HeteroGraph, relation_spmm
from gkdfast.hetero.hgt import HGT
from gkdfast.nn._utils import derived_graph
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.nn.sparse_input import sparse_linear

__all__ = ["RGCN", "HAN", "build_hetero_model", "HETERO_MODELS"]


class _Inputs(nn.Module):
    """Per type: Linear(F_t → hidden) on its features, or an embedding table when it has none."""

    def __init__(self, hg: HeteroGraph, hidden: int, types):
        super().__init__()
        self.proj = nn.ModuleDict()
        self.emb = nn.ModuleDict()
        for t in types:
            if t in hg.x:
                self.proj[t] = nn.Linear(hg.x[t].size(1), hidden)
            else:
                self.emb[t] = nn.Embedding(hg.num_nodes[t], hidden)
                nn.init.normal_(self.emb[t].weight, std=0.1)

    def forward(self, hg: HeteroGraph) -> Dict[str, Tensor]:
        # a mostly-zero x (IMDB's 3,066 keyword columns) goes through a sparse product, ~30x fewer
        # multiply-adds (gkdfast.nn.sparse_input)
        out = {t: sparse_linear(m, hg.x[t]) for t, m in self.proj.items()}
        out.update({t: m.weight for t, m in self.emb.items()})
        return out


class RGCN(nn.Module):
    """Relational GCN over every node type; the classifier reads the target type.

    Args:
        hg: the graph (fixes types, relations and feature widths).  hidden: width.
        num_classes: ``C``.  num_layers: message-passing layers.  dropout: on hidden states.

    Example:
        >>> from gkdfast.hetero import HeteroGraph
        >>> hg = HeteroGraph.toy()
        >>> logits, hidden = RGCN(hg, 8, 2)(hg, return_hidden=True)
        >>> logits.shape, sorted(hidden)
        (torch.Size([6, 2]), ['actor', 'movie'])
    """

    def __init__(self, hg: HeteroGraph, hidden: int, num_classes: int, num_layers: int = 2, dropout: float = 0.5):
        super().__init__()
        if hidden < 1 or num_layers < 1:
            raise ValueError(f"RGCN: hidden and num_layers must be >= 1, got {hidden}, {num_layers}")
        self.types = list(hg.node_types)
        self.target = hg.target
        self.rels = list(hg.relations)
        self.inputs = _Inputs(hg, hidden, self.types)
        self.self_lin = nn.ModuleList([nn.ModuleDict({t: nn.Linear(hidden, hidden) for t in self.types})
                                       for _ in range(num_layers)])
        self.rel_lin = nn.ModuleList([nn.ModuleDict({_key(r): nn.Linear(hidden, hidden, bias=False)
                                                     for r in self.rels}) for _ in range(num_layers)])
        self.classifier = nn.Linear(hidden, num_classes)
        self.dropout = float(dropout)

    def forward(self, hg: HeteroGraph, return_hidden: bool = False):
        h = self.inputs(hg)
        for i, (sl, rl) in enumerate(zip(self.self_lin, self.rel_lin)):
            h = {t: model_dropout(v, self.dropout, self.training) for t, v in h.items()}
            new = {t: sl[t](h[t]) for t in self.types}
            for r in self.rels:
                src, _, dst = r
                agg = relation_spmm(hg.relations[r], h[src], hg.num_nodes[dst], "mean")
                new[dst] = new[dst] + rl[_key(r)](agg)
            h = {t: F.relu(v) for t, v in new.items()}
        logits = self.classifier(model_dropout(h[self.target], self.dropout, self.training))
        return (logits, h) if return_hidden else logits


class HAN(nn.Module):
    """HAN over the target type's meta-path graphs (``hg.metapaths``).

    Args:
        hg: the graph.  hidden: width (``heads`` × per-head width).  num_classes: ``C``.
        heads: GAT heads.  dropout: on inputs and attention outputs.  semantic_dim: width of the
            semantic-attention projection.

    Example:
        >>> from gkdfast.hetero import HeteroGraph
        >>> hg = HeteroGraph.toy()
        >>> HAN(hg, 8, 2, heads=2)(hg).shape
        torch.Size([6, 2])
    """

    def __init__(self, hg: HeteroGraph, hidden: int, num_classes: int, heads: int = 8, dropout: float = 0.5,
                 semantic_dim: int = 128):
        super().__init__()
        from gkdfast.nn import GATConv

        if not hg.metapaths:
            raise ValueError(f"HAN: {hg.name} has no meta-path graphs (HeteroGraph.metapaths)")
        if hidden % heads:
            raise ValueError(f"HAN: hidden ({hidden}) must be a multiple of heads ({heads})")
        self.target = hg.target
        self.paths = sorted(hg.metapaths)
        self.inputs = _Inputs(hg, hidden, [hg.target])
        self.gat = nn.ModuleDict({p: GATConv(hidden, hidden // heads, heads=heads) for p in self.paths})
        self.sem = nn.Sequential(nn.Linear(hidden, semantic_dim), nn.Tanh(), nn.Linear(semantic_dim, 1, bias=False))
        self.classifier = nn.Linear(hidden, num_classes)
        self.dropout = float(dropout)

    def _graph(self, hg: HeteroGraph, p: str):
        # every node attends to itself too (isolated nodes keep their input); cached on the meta-path
        # graph itself (derived_cache), so it goes with that graph
        return derived_graph(hg.metapaths[p], "han_self_loops", lambda g: g.add_self_loops())

    def forward(self, hg: HeteroGraph, return_hidden: bool = False):
        x = model_dropout(self.inputs(hg)[self.target], self.dropout, self.training)
        zs = torch.stack([F.elu(self.gat[p](x, self._graph(hg, p))) for p in self.paths])  # [P, N, H]
        beta = torch.softmax(self.sem(zs).mean(1), dim=0)  # [P, 1]: one weight per meta-path
        z = (beta.unsqueeze(-1) * zs).sum(0)
        logits = self.classifier(model_dropout(z, self.dropout, self.training))
        return (logits, {self.target: z}) if return_hidden else logits


def _key(r) -> str:
    return "__".join(r)


HETERO_MODELS = {"rgcn": RGCN, "han": HAN, "hgt": HGT}


def build_hetero_model(spec: str, hg: HeteroGraph, num_classes: Optional[int] = None, dropout: float = 0.5):
    """``"rgcn"``, ``"rgcn:16"``, ``"rgcn:16x1"``, ``"han:64"``, ``"hgt:64x2"`` (``name[:hidden[xlayers]]``,
    default hidden 64, R-GCN and HGT 2 layers; HGT with 4 heads when the width allows, else 1) → a model
    for ``hg``.

    Example:
        >>> from gkdfast.hetero import HeteroGraph
        >>> type(build_hetero_model("rgcn:16", HeteroGraph.toy())).__name__
        'RGCN'
    """
    from gkdfast.nn._utils import parse_width_layers

    name, _, rest = str(spec).strip().lower().partition(":")
    if name not in HETERO_MODELS:
        raise ValueError(f"unknown heterogeneous model {name!r}; known: {', '.join(HETERO_MODELS)}")
    width, layers = parse_width_layers(rest, spec, "name[:hidden[xlayers]]", 64, 2)
    c = hg.num_classes if num_classes is None else num_classes
    if name == "han":
        if "x" in rest:
            raise ValueError(f"bad model spec {spec!r}: HAN has one GAT layer per meta-path (han:64, no xlayers)")
        return HAN(hg, width, c, heads=8 if width % 8 == 0 else 1, dropout=dropout)
    if name == "hgt":
        return HGT(hg, width, c, num_layers=layers, heads=4 if width % 4 == 0 else 1, dropout=dropout)
    return RGCN(hg, width, c, num_layers=layers, dropout=dropout)
