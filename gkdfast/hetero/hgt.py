"""HGT (Hu, Dong, Wang & Sun, "Heterogeneous Graph Transformer", WWW 2020) on the fused kernels.

Per layer, for an edge ``u -> v`` of relation ``r = (s, name, t)`` and head ``k`` (width ``d = hidden/H``):

    score_k = (K_s(h_u)_k · W^att_{r,k}) · Q_t(h_v)_k · μ_{r,k} / √d
    α       = softmax of the scores over **all** in-edges of ``v``, whatever their relation (per head)
    m_v,k   = Σ_u α_k · V_s(h_u)_k · W^msg_{r,k}
    h_v    ← σ(skip_t) · A_t(GELU(m_v)) + (1 − σ(skip_t)) · h_v            (PyG's ``HGTConv`` update)

``K/Q/V/A`` are per-type Linear maps, ``W^att/W^msg`` per-relation ``d × d`` matrices per head and
``μ`` a per-relation prior.  Every type gets its own embedding, unlike HAN, which embeds the target
type only: a teacher for HIRE's cross-type relation term.

How it runs: the relations into a type ``t`` are merged once into one graph whose sources are the
relations' source nodes stacked (relation ``r``'s nodes at offset ``off_r``), so that the scores of
all of ``t``'s in-edges meet in one :func:`gkdfast.edge_softmax`.  The relation transforms are
applied to the node rows (``[n_s, H, d]`` per relation), never to an ``[E, hidden]`` edge tensor:
one :func:`gkdfast.sddmm` per head gives the scores and one :func:`gkdfast.spmm` per head the
attention-weighted sum, so a layer stores ``O(E·H)`` scalars.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.graph import Graph, cache_mode, derived_cache
from gkdfast.hetero.graph import HeteroGraph, _pad_rows
from gkdfast.nn.philox_dropout import model_dropout
from gkdfast.ops import edge_softmax, sddmm, spmm

__all__ = ["HGT", "HGTConv", "merged_in_graph"]

Relation = Tuple[str, str, str]


def merged_in_graph(hg: HeteroGraph, dst: str, rels: List[Relation]) -> Tuple[Graph, Tensor, List[int]]:
    """The relations ``rels`` (all into ``dst``) as one graph: source ``i`` of relation ``rels[j]``
    becomes node ``offsets[j] + i``, destinations keep their ids.

    Returns:
        ``(graph, relation_of_edge, offsets)``: a square Graph over ``max(Σ n_src, n_dst)`` nodes whose
        edge order is its CSR order (no permutation), the ``[E]`` int64 index into ``rels`` of each edge
        in that order, and the ``len(rels) + 1`` source offsets.

    Example:
        >>> hg = HeteroGraph.toy()
        >>> rels = [r for r in hg.relations if r[2] == "movie"]
        >>> g, rel, off = merged_in_graph(hg, "movie", rels)
        >>> g.num_edges == sum(hg.relations[r].num_edges for r in rels)
        True
        >>> off[-1] == sum(hg.num_nodes[r[0]] for r in rels)
        True
    """
    offsets, srcs, dsts, ids = [0], [], [], []
    for j, r in enumerate(rels):
        ei = hg.relations[r].edge_index.long()
        srcs.append(ei[0] + offsets[-1])
        dsts.append(ei[1])
        ids.append(torch.full((ei.size(1),), j, dtype=torch.long, device=ei.device))
        offsets.append(offsets[-1] + hg.num_nodes[r[0]])
    n = max(offsets[-1], hg.num_nodes[dst])
    device = hg.y.device
    ei = torch.stack([torch.cat(srcs), torch.cat(dsts)]) if srcs else torch.zeros(2, 0, dtype=torch.long, device=device)
    rel = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long, device=device)
    g = Graph(ei, n)
    if g.perm is not None:
        rel = rel[g.perm]
    return Graph._from_parts(g.rowptr, g.col, n), rel, offsets


class HGTConv(nn.Module):
    """One HGT layer over every node type (module doc).

    Args:
        types: node types.  relations: ``(src, name, dst)`` triples.  hidden: width (``heads`` × per-head).
        heads: ``H``.

    Shapes: ``{type: [n_type, hidden]}`` → ``{type: [n_type, hidden]}``; a type that no relation points
    to keeps its input.

    Example:
        >>> hg = HeteroGraph.toy()
        >>> conv = HGTConv(hg.node_types, list(hg.relations), 8, heads=2)
        >>> out = conv({t: torch.randn(n, 8) for t, n in hg.num_nodes.items()}, hg)
        >>> {t: tuple(v.shape) for t, v in out.items()} == {t: (n, 8) for t, n in hg.num_nodes.items()}
        True
    """

    def __init__(self, types, relations, hidden: int, heads: int = 4):
        super().__init__()
        if heads < 1 or hidden % heads:
            raise ValueError(f"HGTConv: hidden ({hidden}) must be a positive multiple of heads ({heads})")
        self.types, self.rels = list(types), list(relations)
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        lin = lambda: nn.ModuleDict({t: nn.Linear(hidden, hidden) for t in self.types})  # noqa: E731
        self.k_lin, self.q_lin, self.v_lin, self.a_lin = lin(), lin(), lin(), lin()
        self.skip = nn.ParameterDict({t: nn.Parameter(torch.ones(())) for t in self.types})
        r, h, d = len(self.rels), heads, self.head_dim
        self.rel_att = nn.Parameter(torch.empty(r, h, d, d))
        self.rel_msg = nn.Parameter(torch.empty(r, h, d, d))
        self.rel_pri = nn.Parameter(torch.ones(r, h))
        for w in (self.rel_att, self.rel_msg):
            nn.init.xavier_uniform_(w.view(r * h, d, d))

    def _graphs(self, hg: HeteroGraph) -> Dict[str, tuple]:
        """Per destination type: ``(merged graph, relation of each edge, offsets, relation indices)``,
        built once per graph (and device: ``hg.to`` makes another graph) and layer layout."""
        # kept on the graph, not on the layer: a pickled, copied or saved model carries no graph (a layer
        # holding its last graph made an HGT's pickle 100x larger after one forward: 11.8 MB against
        # 117 KB, 4,000 nodes), and the merged graphs go with the graph
        per_graph = derived_cache(hg, "hgt")
        key = (tuple(self.types), tuple(self.rels))
        # the relation graphs themselves too: one replaced in place (hg.relations[r] = subgraph, an
        # ablation) must not be served the merged graphs of the old one
        sources = tuple(hg.relations[r] for r in self.rels)
        hit = per_graph.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], sources)):
            return hit[1]
        merged = {}
        with cache_mode():  # built under inference mode, it would break later training
            for t in self.types:
                idx = [i for i, r in enumerate(self.rels) if r[2] == t]
                if idx:
                    g, rel, off = merged_in_graph(hg, t, [self.rels[i] for i in idx])
                    merged[t] = (g, rel, off, idx)
        per_graph[key] = (sources, merged)  # (the entry of a replaced relation's graphs goes)
        return merged

    def forward(self, h: Dict[str, Tensor], hg: HeteroGraph) -> Dict[str, Tensor]:
        hh, d = self.heads, self.head_dim
        k = {t: self.k_lin[t](v).view(-1, hh, d) for t, v in h.items()}
        v_ = {t: self.v_lin[t](v).view(-1, hh, d) for t, v in h.items()}
        out = dict(h)
        for t, (g, rel, _offsets, idx) in self._graphs(hg).items():
            n = g.num_nodes
            # relation transforms on the source rows: [n_s, H, d] x [H, d, d] -> [n_s, H, d]
            def stacked(rows, mats):  # each relation's source rows times its [H, d, d] matrices
                return _pad_rows(torch.cat([torch.einsum("nhd,hde->nhe", rows[self.rels[i][0]], mats[i])
                                            for i in idx]), n)

            keys, vals = stacked(k, self.rel_att), stacked(v_, self.rel_msg)
            q = _pad_rows(self.q_lin[t](h[t]).view(-1, hh, d), n)
            scores = torch.stack([sddmm(g, q[:, j].contiguous(), keys[:, j].contiguous()) for j in range(hh)], 1)
            scores = scores * (self.rel_pri[idx][rel] / math.sqrt(d))  # [E, H]
            alpha = edge_softmax(g, scores)
            msg = torch.stack([spmm(g, vals[:, j].contiguous(), "sum", edge_weight=alpha[:, j].contiguous())
                               for j in range(hh)], 1)[: h[t].size(0)].reshape(-1, self.hidden)
            gate = torch.sigmoid(self.skip[t])
            out[t] = gate * self.a_lin[t](F.gelu(msg)) + (1 - gate) * h[t]
        return out


class HGT(nn.Module):
    """Heterogeneous Graph Transformer over every node type; the classifier reads the target type.

    Args:
        hg: the graph (fixes types, relations and feature widths).  hidden: width.  num_classes: ``C``.
        num_layers: HGT layers.  heads: attention heads (``hidden`` must be a multiple).
        dropout: on the hidden states.

    ``return_hidden=True`` also gives ``{type: [n_type, hidden]}`` (every type, for HIRE).

    Example:
        >>> hg = HeteroGraph.toy()
        >>> logits, hidden = HGT(hg, 8, 2, heads=2)(hg, return_hidden=True)
        >>> logits.shape, sorted(hidden)
        (torch.Size([6, 2]), ['actor', 'movie'])
    """

    def __init__(self, hg: HeteroGraph, hidden: int, num_classes: int, num_layers: int = 2, heads: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        from gkdfast.hetero.models import _Inputs

        if hidden < 1 or num_layers < 1:
            raise ValueError(f"HGT: hidden and num_layers must be >= 1, got {hidden}, {num_layers}")
        self.types, self.target = list(hg.node_types), hg.target
        self.inputs = _Inputs(hg, hidden, self.types)
        self.convs = nn.ModuleList([HGTConv(self.types, list(hg.relations), hidden, heads) for _ in range(num_layers)])
        self.classifier = nn.Linear(hidden, num_classes)
        self.dropout = float(dropout)

    def forward(self, hg: HeteroGraph, return_hidden: bool = False):
        # GELU on the input projections, as PyG's HGT example does before the first layer
        h = {t: F.gelu(v) for t, v in self.inputs(hg).items()}
        for conv in self.convs:
            h = conv({t: model_dropout(v, self.dropout, self.training) for t, v in h.items()}, hg)
        logits = self.classifier(model_dropout(h[self.target], self.dropout, self.training))
        return (logits, h) if return_hidden else logits
