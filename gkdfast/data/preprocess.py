"""Preprocessing the published protocols apply before training: the largest connected component
(CPF / GLNN / NOSMOG) and row-normalised features (Graph-MLP).

Example:
    >>> from gkdfast.data import csbm
    >>> d = row_normalize(largest_connected_component(csbm(num_nodes=300, seed=0)))
    >>> bool(torch.allclose(d.x.abs().sum(1)[d.x.abs().sum(1) > 0], torch.ones(1)))
    True
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from gkdfast.data.graphdata import GraphData, per_node_extras
from gkdfast.data.splits import subgraph

__all__ = ["largest_component_mask", "largest_connected_component", "row_normalize"]


def largest_component_mask(data: GraphData) -> Tensor:
    """``[N]`` bool: the nodes of the largest (weakly) connected component of ``data.graph``
    (edge directions ignored; ties: the component holding the smallest node id).

    Example:
        >>> from gkdfast.graph import Graph
        >>> g = Graph(torch.tensor([[0, 1, 3], [1, 2, 4]]), 5)
        >>> d = GraphData(g, torch.ones(5, 2), torch.zeros(5, dtype=torch.long), *[torch.zeros(5, dtype=torch.bool)] * 3, 1)
        >>> largest_component_mask(d).tolist()
        [True, True, True, False, False]
    """
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = data.num_nodes
    ei = data.graph.to("cpu").edge_index.long().numpy()
    adj = sp.coo_matrix((np.ones(ei.shape[1], dtype=np.int8), (ei[0], ei[1])), shape=(n, n))
    _, comp = connected_components(adj, directed=True, connection="weak")
    sizes = np.bincount(comp)
    # argmax returns the first largest label; labels are numbered in order of first node: smallest id wins.
    return torch.from_numpy(comp == int(sizes.argmax())).to(data.x.device)


def largest_connected_component(data: GraphData) -> GraphData:
    """``data`` restricted to its largest connected component, nodes relabelled ``0..N'-1`` in
    increasing old id (the CPF benchmark's ``standardize`` step that GLNN and NOSMOG train on).
    Features, labels, masks and a sensitive attribute are sliced alike; ``extras["lcc_nodes"]`` holds
    the kept old ids ``[N']`` and ``extras["split"]`` says the masks were cut to the component.

    Shapes: ``[N, F]`` features → ``[N', F]``.

    Example:
        >>> from gkdfast.graph import Graph
        >>> g = Graph(torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]]), 5)
        >>> m = torch.zeros(5, dtype=torch.bool)
        >>> d = largest_connected_component(GraphData(g, torch.eye(5), torch.arange(5), m, m, m, 5))
        >>> d.num_nodes, d.graph.num_edges, d.extras["lcc_nodes"].tolist()
        (3, 4, [0, 1, 2])
    """
    keep = largest_component_mask(data)
    if bool(keep.all()):
        return replace(data, extras=dict(data.extras, lcc_nodes=torch.arange(data.num_nodes)))
    sub, _ = subgraph(data.graph, keep.to(data.graph.device))
    idx = keep.nonzero().flatten()

    def take(t):
        return None if t is None else t[idx.to(t.device)]

    how = str(data.extras.get("split", "given"))
    extras = dict(per_node_extras(data.extras, data.num_nodes, take), lcc_nodes=idx.cpu(),
                  split=f"{how} restricted to the largest connected component")
    return GraphData(sub, take(data.x), take(data.y), take(data.train_mask), take(data.val_mask),
                     take(data.test_mask), data.num_classes, data.name, take(data.sensitive), extras)


def row_normalize(data: GraphData) -> GraphData:
    """``data`` with each feature row divided by its sum of absolute values (rows of zeros stay zero),
    the ``normalize_features`` step of Graph-MLP's (and GCN's) Planetoid loader.

    Shapes: ``x`` ``[N, F]`` → ``[N, F]``, every non-zero row summing (in absolute value) to 1.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = row_normalize(csbm(num_nodes=200, feature_dim=4, seed=0))
        >>> round(float(d.x[0].abs().sum()), 4)
        1.0
    """
    x = data.x
    norm = x.abs().sum(dim=1, keepdim=True)
    return replace(data, x=x / norm.clamp_min(torch.finfo(x.dtype).tiny),
                   extras=dict(data.extras, features="row-normalised"))
