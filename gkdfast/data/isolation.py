"""Cold Brew's isolation split: make the lowest-degree nodes strict cold-start nodes.

Cold Brew (Zheng et al., ICLR 2022) evaluates on nodes that have no edges at test time.  Its public
code builds them from the degree distribution:

1. the *tail*: nodes whose in-degree survives four successive median cuts (``degree <= median`` of
   the nodes kept so far, starting from all nodes: the lowest 6 % when degrees are distinct, more
   when they tie: on Planetoid Cora every node of degree <= 2, 1,068 of 2,708);
2. the tail, ordered by degree, is halved: the lower half becomes **isolated** (every edge that
   touches one of them, other than a self-loop, is removed from the graph that every model trains
   and is evaluated on), the upper half stays as the remaining tail;
3. the *head*: nodes whose in-degree survives five successive cuts from above (``degree >= median``).

Its reported cold-start figure is the accuracy on the isolated nodes outside the training set (on
Planetoid Cora: 534 isolated nodes, 489 of them outside the public training set, 1,040 of the
10,556 directed edges removed; CiteSeer: 689 isolated, 1,156 of 9,104 edges removed).  One
difference: ties in degree are ordered by node id here (a stable sort); the reference's unstable
``argsort`` orders them arbitrarily.

Example:
    >>> from gkdfast.data import csbm
    >>> d = isolation_split(csbm(num_nodes=400, num_classes=3, seed=0))
    >>> iso = d.extras["isolated_mask"]
    >>> int(d.graph.in_degree()[iso].max()), d.extras["cold_start"]
    (0, 'isolation(Cold Brew)')
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

__all__ = ["isolation_split", "median_cuts", "cold_start_masks", "COLD_START_SPLIT"]


def median_cuts(values: Tensor, cuts: int, low: bool = True) -> Tensor:
    """Bool mask of the entries that survive ``cuts`` successive median cuts.

    Each cut keeps ``values <= median`` (``low``) or ``values >= median`` of the entries kept so far,
    the median of an even count being the mean of the two middle values (NumPy's).

    Example:
        >>> median_cuts(torch.tensor([1., 1., 2., 3., 5., 8.]), 2).tolist()
        [True, True, False, False, False, False]
    """
    if cuts < 0:
        raise ValueError(f"median_cuts: cuts must be >= 0, got {cuts}")
    v = values.double().reshape(-1)
    keep = torch.ones_like(v, dtype=torch.bool)
    for _ in range(int(cuts)):
        kept = v[keep].sort().values
        if kept.numel() == 0:
            break
        mid = kept.numel() // 2
        median = kept[mid] if kept.numel() % 2 else (kept[mid - 1] + kept[mid]) / 2
        keep = v <= median if low else v >= median
    return keep


def isolation_split(data, tail_cuts: int = 4, head_cuts: int = 5):
    """``data`` with Cold Brew's isolated nodes cut off from the graph (module doc).

    Args:
        data: :class:`gkdfast.data.GraphData` (graph with ``E`` directed edges, both directions of an
            undirected edge stored).
        tail_cuts: median cuts that define the tail (4: the reference's ``top6``).
        head_cuts: median cuts from above that define the head (5: the reference's ``bottom3``).

    Returns:
        ``GraphData`` whose graph has no edge touching an isolated node (self-loops kept), and in
        ``extras``: ``isolated_mask``, ``tail_mask`` (the tail's upper half), ``head_mask`` (bool
        ``[N]``, from the degrees *before* isolation) and ``cold_start = "isolation(Cold Brew)"``.
        Features, labels, the train / validation / test masks and the split rule are unchanged
        (a split re-drawn per seed is still re-drawn); the cold-start
        accuracy is the test accuracy on ``isolated_mask & ~train_mask``.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=400, num_classes=3, seed=0)
        >>> s = isolation_split(d)
        >>> s.graph.num_edges < d.graph.num_edges, bool((s.extras["isolated_mask"] & s.extras["head_mask"]).any())
        (True, False)
    """
    from gkdfast.graph import Graph

    graph = data.graph
    n = graph.num_nodes
    ei = graph.edge_index.cpu().long()
    degree = torch.bincount(ei[1], minlength=n)  # in-degree, as the reference counts it
    tail = median_cuts(degree, tail_cuts, low=True).nonzero().flatten()
    tail = tail[torch.sort(degree[tail], stable=True).indices]
    isolated = torch.zeros(n, dtype=torch.bool)
    isolated[tail[: tail.numel() // 2]] = True
    rest = torch.zeros(n, dtype=torch.bool)
    rest[tail[tail.numel() // 2:]] = True
    head = median_cuts(degree, head_cuts, low=False)
    keep = (ei[0] == ei[1]) | ~(isolated[ei[0]] | isolated[ei[1]])
    w = graph.edge_weight.cpu()[keep] if graph.edge_weight is not None else None
    cut = Graph(ei[:, keep], num_nodes=n, edge_weight=w).to(graph.device)
    extras = dict(data.extras, isolated_mask=isolated, tail_mask=rest, head_mask=head,
                  cold_start="isolation(Cold Brew)")
    return replace(data, graph=cut, extras=extras)


#: ``data.extras["split"]`` mark of the Cold Brew setting: :func:`gkdfast.distill.experiment.seed_split`
#: draws the validation nodes of each seed with :func:`cold_start_masks`.
COLD_START_SPLIT = "isolation(train as given, 500 validation nodes with edges drawn per seed, test = isolated)"


def cold_start_masks(data, seed: int, num_val: int = 500):
    """Train / validation / test masks of Cold Brew's cold-start setting for ``seed``, on a graph from
    :func:`isolation_split`.

    Training nodes are ``data.train_mask`` (isolated or not, as in the public code).  Validation:
    ``num_val`` nodes drawn with ``seed`` among those outside training that kept their edges (the
    public code has no validation set and keeps the epoch best on the test nodes); fewer when there
    are not ``2 · num_val`` such nodes (half of them then).  Test: every isolated node outside
    training, the public code's cold-start evaluation set.

    Returns:
        ``(train, val, test)`` bool ``[N]`` masks.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = isolation_split(csbm(num_nodes=400, num_classes=3, seed=0))
        >>> tr, va, te = cold_start_masks(d, seed=0, num_val=50)
        >>> int(va.sum()), bool((va & d.extras["isolated_mask"]).any()), bool((te & tr).any())
        (50, False, False)
    """
    iso = data.extras.get("isolated_mask") if hasattr(data, "extras") else None
    if iso is None:
        raise ValueError("cold_start_masks: the data has no isolated nodes marked; apply "
                         "gkdfast.data.isolation_split first")
    if not isinstance(num_val, int) or isinstance(num_val, bool) or num_val < 1:
        raise ValueError(f"cold_start_masks: num_val must be a positive int, got {num_val!r}")
    iso = iso.cpu().bool()
    train = data.train_mask.cpu().bool().clone()
    labelled = data.y.cpu() >= 0  # an unlabelled node (y = -1) would count as a wrong answer
    pool = (~train & ~iso & labelled).nonzero().flatten()
    take = min(num_val, pool.numel() // 2)
    gen = torch.Generator().manual_seed(int(seed))
    val = torch.zeros_like(train)
    val[pool[torch.randperm(pool.numel(), generator=gen)[:take]]] = True
    test = iso & ~train & labelled
    if int(test.sum()) == 0 or int(train.sum()) == 0:
        raise ValueError(f"cold_start_masks: {int(train.sum())} training and {int(test.sum())} isolated test nodes; "
                         "the setting needs both")
    return train, val, test
