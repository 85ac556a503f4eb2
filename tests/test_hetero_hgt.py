"""HGT: the fused layer equals the per-edge formula, softmax across relations, specs and errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gkdfast.graph import Graph
from gkdfast.hetero import HeteroGraph
from gkdfast.hetero.hgt import HGT, HGTConv, merged_in_graph
from gkdfast.hetero.models import build_hetero_model


def _random_hetero(seed: int = 0) -> HeteroGraph:
    """Three types; 'movie' receives from actors, directors and movies (three relations into one
    type, so the softmax must span relations); one movie has no in-edge at all."""
    g = torch.Generator().manual_seed(seed)
    n = {"movie": 9, "actor": 7, "director": 4}

    def rel(ns, nd, e):
        src = torch.randint(0, ns, (e,), generator=g)
        dst = torch.randint(0, nd - 1, (e,), generator=g)  # the last destination stays without in-edges
        return Graph(torch.stack([src, dst]), num_nodes=max(ns, nd))

    rels = {("actor", "am", "movie"): rel(7, 9, 20), ("director", "dm", "movie"): rel(4, 9, 8),
            ("movie", "mm", "movie"): rel(9, 9, 12), ("movie", "ma", "actor"): rel(9, 7, 15)}
    y = torch.randint(0, 3, (9,), generator=g)
    tr = torch.zeros(9, dtype=torch.bool)
    tr[:3] = True
    va = torch.zeros(9, dtype=torch.bool)
    va[3:6] = True
    return HeteroGraph(n, {"movie": torch.randn(9, 5, generator=g)}, rels, "movie", y, tr, va, ~(tr | va), 3,
                       name="rand").validate()


def _per_edge(conv: HGTConv, h, hg):
    """The module doc's formula edge by edge: gathered rows, an explicit per-destination softmax."""
    hh, d = conv.heads, conv.head_dim
    out = dict(h)
    for t in conv.types:
        idx = [i for i, r in enumerate(conv.rels) if r[2] == t]
        if not idx:
            continue
        q = conv.q_lin[t](h[t]).view(-1, hh, d)
        scores, msgs, dsts = [], [], []
        for i in idx:
            s = conv.rels[i][0]
            ei = hg.relations[conv.rels[i]].edge_index.long()
            k = conv.k_lin[s](h[s]).view(-1, hh, d)[ei[0]]
            v = conv.v_lin[s](h[s]).view(-1, hh, d)[ei[0]]
            kw = torch.einsum("ehd,hdf->ehf", k, conv.rel_att[i])
            scores.append((kw * q[ei[1]]).sum(-1) * conv.rel_pri[i] / math.sqrt(d))
            msgs.append(torch.einsum("ehd,hdf->ehf", v, conv.rel_msg[i]))
            dsts.append(ei[1])
        score, msg, dst = torch.cat(scores), torch.cat(msgs), torch.cat(dsts)
        agg = torch.zeros(h[t].size(0), hh, d)
        for node in range(h[t].size(0)):
            sel = dst == node
            if bool(sel.any()):
                alpha = torch.softmax(score[sel], dim=0)  # over every in-edge of the node, all relations
                agg[node] = (alpha.unsqueeze(-1) * msg[sel]).sum(0)
        gate = torch.sigmoid(conv.skip[t])
        out[t] = gate * conv.a_lin[t](F.gelu(agg.reshape(-1, conv.hidden))) + (1 - gate) * h[t]
    return out


@pytest.mark.parametrize("heads", [1, 2])
def test_hgt_layer_equals_the_per_edge_formula_with_gradients(heads):
    torch.manual_seed(0)
    hg = _random_hetero()
    conv = HGTConv(hg.node_types, list(hg.relations), 8, heads=heads)
    with torch.no_grad():  # move the gates and priors off their initial values
        for p in conv.skip.values():
            p.uniform_(-1, 1)
        conv.rel_pri.uniform_(0.5, 1.5)
    h = {t: torch.randn(n, 8, requires_grad=True) for t, n in hg.num_nodes.items()}
    ours, ref = conv(h, hg), _per_edge(conv, h, hg)
    for t in hg.num_nodes:
        torch.testing.assert_close(ours[t], ref[t], rtol=1e-5, atol=1e-5)
    w = {t: torch.randn_like(v) for t, v in ours.items()}
    params = [p for p in conv.parameters()] + list(h.values())
    g_ours = torch.autograd.grad(sum((ours[t] * w[t]).sum() for t in ours), params, allow_unused=True)
    g_ref = torch.autograd.grad(sum((ref[t] * w[t]).sum() for t in ref), params, allow_unused=True)
    for a, b in zip(g_ours, g_ref):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_merged_graph_keeps_each_edge_and_its_relation():
    hg = _random_hetero()
    rels = [r for r in hg.relations if r[2] == "movie"]
    g, rel, off = merged_in_graph(hg, "movie", rels)
    assert off == [0, 7, 11, 20]
    got = sorted(zip(g.col.long().tolist(), g.dst.long().tolist(), rel.tolist()))
    want = sorted((int(s) + off[j], int(d), j) for j, r in enumerate(rels)
                  for s, d in hg.relations[r].edge_index.t().tolist())
    assert got == want


def test_hgt_embeds_every_type_and_trains():
    hg = _random_hetero()
    torch.manual_seed(0)
    model = build_hetero_model("hgt:8x2", hg)
    assert isinstance(model, HGT) and len(model.convs) == 2 and model.convs[0].heads == 4
    logits, hidden = model(hg, return_hidden=True)
    assert logits.shape == (9, 3) and sorted(hidden) == ["actor", "director", "movie"]
    assert all(v.shape == (hg.num_nodes[t], 8) for t, v in hidden.items())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss = F.cross_entropy(model(hg)[hg.train_mask], hg.y[hg.train_mask])
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_hgt_spec_and_width_errors():
    hg = HeteroGraph.toy()
    assert build_hetero_model("hgt:6", hg).convs[0].heads == 1  # 6 is not a multiple of 4
    with pytest.raises(ValueError, match="multiple of heads"):
        HGTConv(hg.node_types, list(hg.relations), 6, heads=4)
    with pytest.raises(ValueError, match="hidden and num_layers"):
        HGT(hg, 8, 2, num_layers=0)
