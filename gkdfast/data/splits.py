"""Splits: random per-class (CPF / GLNN style) and the GLNN inductive split.

The public Planetoid split is made by the Planetoid reader (see :mod:`gkdfast.data.planetoid`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import Tensor

from gkdfast.graph import Graph
from gkdfast.data.graphdata import GraphData, per_node_extras

__all__ = ["random_split", "cpf_split", "fraction_split", "inductive_split", "InductiveSplit", "subgraph"]


def _check_per_class_arguments(y, train_per_class: int, val_per_class: int, fn: str) -> None:
    if not isinstance(y, Tensor) or y.dim() != 1:
        raise ValueError(f"{fn}: y must be a 1-D label tensor")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"{fn}: y must hold integer class labels, got {y.dtype}")
    if train_per_class < 0 or val_per_class < 0:
        raise ValueError(f"{fn}: train_per_class and val_per_class must be >= 0")


def random_split(y: Tensor, train_per_class: int = 20, val_per_class: int = 30, seed: int = 0
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """Random per-class split: ``train_per_class`` training and ``val_per_class`` validation nodes
    drawn from each class, every other labelled node is test.

    Args:
        y: ``[N]`` int64 labels; nodes with ``y < 0`` are unlabelled and go in no mask.
        train_per_class, val_per_class: nodes per class (a class with fewer nodes gives what it
            has to train first, then to val; it may then have no test nodes).
        seed: the draw depends only on ``seed`` and ``y`` (a CPU ``torch.Generator``).

    Returns:
        ``(train_mask, val_mask, test_mask)``, each ``[N]`` bool on ``y``'s device, disjoint.

    Example:
        >>> y = torch.arange(100) % 2
        >>> tr, va, te = random_split(y, 20, 30, seed=0)
        >>> int(tr.sum()), int(va.sum()), int(te.sum())
        (40, 60, 0)
    """
    _check_per_class_arguments(y, train_per_class, val_per_class, "random_split")
    yc = y.detach().to("cpu", torch.int64)
    n = yc.numel()
    gen = torch.Generator().manual_seed(int(seed))
    train = torch.zeros(n, dtype=torch.bool)
    val = torch.zeros(n, dtype=torch.bool)
    num_classes = int(yc.max()) + 1 if n and int(yc.max()) >= 0 else 0
    for c in range(num_classes):  # one randperm per class: classes are few
        idx = (yc == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        train[idx[:train_per_class]] = True
        val[idx[train_per_class:train_per_class + val_per_class]] = True
    test = (yc >= 0) & ~train & ~val
    return train.to(y.device), val.to(y.device), test.to(y.device)


def cpf_split(y: Tensor, train_per_class: int = 20, val_per_class: int = 30, seed: int = 0
              ) -> Tuple[Tensor, Tensor, Tensor]:
    """The per-class split of the CPF benchmark as the GLNN and NOSMOG reference codes draw it, so that
    seed ``s`` gives their split ``s`` node for node (on the same node order: the largest connected
    component of the CPF files, as :func:`gkdfast.data.preprocess.largest_connected_component` keeps it).

    The draw: NumPy's ``RandomState(seed)`` (a stream NumPy keeps fixed across versions); for each class
    in increasing label order, ``choice(nodes of the class in index order, train_per_class,
    replace=False)``; then, class by class again, ``val_per_class`` nodes by the same call from the
    class's nodes not drawn for training; every other labelled node is test.

    Args:
        y: ``[N]`` integer labels; nodes with ``y < 0`` are unlabelled and go in no mask (the reference
            has none).  Every present class needs ``train_per_class + val_per_class`` nodes.
        train_per_class, val_per_class: nodes per class.
        seed: the reference's seed (its run ``i`` uses seed ``i``).

    Returns:
        ``(train_mask, val_mask, test_mask)``, each ``[N]`` bool on ``y``'s device, disjoint.

    Example:
        >>> y = torch.arange(100) % 2
        >>> tr, va, te = cpf_split(y, 20, 30, seed=0)
        >>> int(tr.sum()), int(va.sum()), int(te.sum())
        (40, 60, 0)
    """
    import numpy as np

    _check_per_class_arguments(y, train_per_class, val_per_class, "cpf_split")
    yc = y.detach().to("cpu", torch.int64).numpy()
    rs = np.random.RandomState(int(seed))
    classes = np.unique(yc[yc >= 0])
    members = [np.flatnonzero(yc == c) for c in classes]
    for c, m in zip(classes, members):
        if m.size < train_per_class + val_per_class:
            raise ValueError(f"cpf_split: class {int(c)} has {m.size} nodes, fewer than {train_per_class} + "
                             f"{val_per_class} to draw")
    train = np.zeros(yc.size, dtype=bool)
    val = np.zeros(yc.size, dtype=bool)
    for m in members:
        train[rs.choice(m, train_per_class, replace=False)] = True
    for m in members:
        val[rs.choice(m[~train[m]], val_per_class, replace=False)] = True
    test = (yc >= 0) & ~train & ~val
    return tuple(torch.from_numpy(a).to(y.device) for a in (train, val, test))


def fraction_split(y: Tensor, train_fraction: float = 0.6, val_fraction: float = 0.2, seed: int = 0
                   ) -> Tuple[Tensor, Tensor, Tensor]:
    """Stratified random split by fractions: in each class, ``round(train_fraction · n_c)`` training and
    ``round(val_fraction · n_c)`` validation nodes, the rest test (the Geom-GCN splits' 60 / 20 / 20).

    Args:
        y: ``[N]`` int64 labels; nodes with ``y < 0`` go in no mask.
        train_fraction, val_fraction: non-negative, summing to at most 1.
        seed: the draw depends only on ``seed`` and ``y``.

    Returns:
        ``(train_mask, val_mask, test_mask)``, each ``[N]`` bool on ``y``'s device, disjoint.

    Example:
        >>> tr, va, te = fraction_split(torch.arange(100) % 2, 0.6, 0.2, seed=0)
        >>> int(tr.sum()), int(va.sum()), int(te.sum())
        (60, 20, 20)
    """
    if not isinstance(y, Tensor) or y.dim() != 1:
        raise ValueError("fraction_split: y must be a 1-D label tensor")
    if train_fraction < 0 or val_fraction < 0 or train_fraction + val_fraction > 1:
        raise ValueError(f"fraction_split: fractions must be >= 0 and sum to <= 1, got {train_fraction}, "
                         f"{val_fraction}")
    yc = y.detach().to("cpu", torch.int64)
    gen = torch.Generator().manual_seed(int(seed))
    train = torch.zeros(yc.numel(), dtype=torch.bool)
    val = torch.zeros(yc.numel(), dtype=torch.bool)
    for c in range(int(yc.max()) + 1 if yc.numel() and int(yc.max()) >= 0 else 0):
        idx = (yc == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_tr, n_va = round(train_fraction * idx.numel()), round(val_fraction * idx.numel())
        n_va = min(n_va, idx.numel() - n_tr)  # (two halves of 3 round to 2 + 2: the class has 3)
        train[idx[:n_tr]] = True
        val[idx[n_tr:n_tr + n_va]] = True
    test = (yc >= 0) & ~train & ~val
    return train.to(y.device), val.to(y.device), test.to(y.device)


def subgraph(graph: Graph, keep: Tensor) -> Tuple[Graph, Tensor]:
    """The subgraph induced by the bool mask ``keep`` [N], relabelled to ``0..keep.sum()-1``
    in increasing old-id order.  Returns ``(subgraph, old_to_new)`` with ``old_to_new[i] = -1``
    for dropped nodes.

    Example:
        >>> g = Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> sg, m = subgraph(g, torch.tensor([True, True, False]))
        >>> sg.edge_index
        tensor([[0],
                [1]])
    """
    keep = keep.to(graph.device)
    n_new = int(keep.sum())
    old_to_new = torch.full((graph.num_nodes,), -1, dtype=torch.int64, device=graph.device)
    old_to_new[keep] = torch.arange(n_new, device=graph.device)
    src = graph.col.long()
    dst = graph.dst.long()
    e = keep[src] & keep[dst]  # CSR order is by destination, and relabelling is monotone: stays sorted
    ei = torch.stack([old_to_new[src[e]], old_to_new[dst[e]]]).to(graph.index_dtype)
    w = None if graph.edge_weight is None else graph.to_csr_order(graph.edge_weight)[e]
    return Graph(ei, n_new, w, validate=False), old_to_new


@dataclass
class InductiveSplit:
    """The GLNN inductive setting (Zhang et al., ICLR 2022, ``graph_split``).

    The test nodes are divided into *inductive* test nodes (a ``test_fraction`` of them, chosen at
    random) and *transductive* test nodes (the rest).  The inductive nodes and **every edge touching
    them** are removed from the graph used in training; the observed graph is the subgraph induced
    by ``train + val + transductive test`` nodes (plus any unlabelled node outside the masks, which
    is observed too).  At inference the model sees the full graph and is scored on the inductive
    nodes it has never seen.

    Fields:
        full: the original data on the full graph (masks as given).
        observed: the observed :class:`GraphData`, nodes relabelled ``0..N_obs-1`` in increasing
            full id; its ``train/val`` masks are the original ones restricted to observed nodes and
            its ``test_mask`` marks the transductive test nodes.
        obs_idx: ``[N_obs]`` int64, full id of each observed node (observed id -> full id).
        ind_idx: ``[N_ind]`` int64, full ids of the held-out inductive test nodes (sorted).
        full_to_obs: ``[N]`` int64, observed id of each full node, ``-1`` for held-out nodes.
        ind_test_mask: ``[N]`` bool over the full graph: the inductive test nodes.
        tran_test_mask: ``[N]`` bool over the full graph: the transductive test nodes.

    Example:
        >>> from gkdfast.data import csbm
        >>> s = inductive_split(csbm(num_nodes=300), test_fraction=0.2, seed=0)
        >>> s.observed.num_nodes + s.ind_idx.numel() == s.full.num_nodes
        True
    """

    full: GraphData
    observed: GraphData
    obs_idx: Tensor
    ind_idx: Tensor
    full_to_obs: Tensor
    ind_test_mask: Tensor
    tran_test_mask: Tensor


def inductive_split(data: GraphData, test_fraction: float = 0.2, seed: int = 0) -> InductiveSplit:
    """GLNN-style inductive split of ``data``'s test nodes; see :class:`InductiveSplit`.

    Args:
        data: a :class:`GraphData` with a split.
        test_fraction: fraction of the **test** nodes held out (GLNN's ``rate=0.2``); rounded down.
        seed: CPU ``torch.Generator`` seed for choosing the held-out nodes.

    Example:
        >>> from gkdfast.data import csbm
        >>> data = csbm(num_nodes=500, num_classes=5)            # 250 test nodes
        >>> s = inductive_split(data, 0.2, seed=0)
        >>> s.observed.num_nodes, s.ind_idx.numel()
        (450, 50)
    """
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"inductive_split: test_fraction must be in [0, 1], got {test_fraction}")
    dev = data.device
    test_idx = data.test_mask.cpu().nonzero().flatten()
    gen = torch.Generator().manual_seed(int(seed))
    n_ind = int(test_idx.numel() * float(test_fraction))
    perm = test_idx[torch.randperm(test_idx.numel(), generator=gen)]
    ind_idx = perm[:n_ind].sort().values
    n = data.num_nodes
    ind_mask = torch.zeros(n, dtype=torch.bool)
    ind_mask[ind_idx] = True
    tran_mask = data.test_mask.cpu() & ~ind_mask
    keep = ~ind_mask
    sub, full_to_obs = subgraph(data.graph.to("cpu"), keep)
    obs_idx = keep.nonzero().flatten()

    def take(t):
        return None if t is None else t[obs_idx.to(t.device)]

    extras = per_node_extras(data.extras, n, take)  # per-node metadata follows the observed nodes
    extras["split"] = f"inductive(test_fraction={test_fraction}, seed={seed}) of {data.extras.get('split', 'given')}"
    observed = GraphData(sub.to(dev), take(data.x), take(data.y), take(data.train_mask), take(data.val_mask),
                         take(tran_mask.to(dev)), data.num_classes, data.name + "[observed]", take(data.sensitive),
                         extras)
    return InductiveSplit(data, observed, obs_idx.to(dev), ind_idx.to(dev), full_to_obs.to(dev),
                          ind_mask.to(dev), tran_mask.to(dev))
