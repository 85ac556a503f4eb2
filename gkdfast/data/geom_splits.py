"""The Geom-GCN 60/20/20 splits (Pei et al., ICLR 2020; ``<name>_split_0.6_0.2_<i>.npz``), the
full-supervised splits T2-GNN and many heterophily papers report on.

Example:
    >>> from gkdfast.data import load
    >>> d = geom_gcn_split(load("../shared/data/planetoid", name="cora"), "../shared/data/planetoid_geom_gcn_splits", 0)
    >>> int(d.train_mask.sum()), int(d.val_mask.sum()), int(d.test_mask.sum())
    (1192, 796, 497)
"""
from __future__ import annotations

import os
from dataclasses import replace

import torch

from gkdfast.data._util import open_npz

__all__ = ["geom_gcn_split", "with_split_files"]


def geom_gcn_split(data, directory, index: int, name=None):
    """``data`` with the masks of Geom-GCN split ``index`` (0–9) for ``name`` (default ``data.name``).

    Args:
        data: :class:`gkdfast.data.GraphData` of the Planetoid graph the split file was made for.
        directory: folder holding ``<name>_split_0.6_0.2_<index>.npz``.

    Returns:
        ``GraphData`` with ``train_mask``/``val_mask``/``test_mask`` from the file (unlabelled nodes
        dropped from every mask) and ``extras["split"] = "geom-gcn <index>"``.

    Example:
        >>> geom_gcn_split(data, "../shared/data/planetoid_geom_gcn_splits", 3)   # doctest: +SKIP
    """
    name = str(name or data.name).lower()
    path = os.path.join(str(directory), f"{name}_split_0.6_0.2_{int(index)}.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"geom_gcn_split: no split file {path}")
    with open_npz(path) as z:
        masks = [torch.from_numpy(z[k].astype(bool)) for k in ("train_mask", "val_mask", "test_mask")]
    if masks[0].numel() != data.num_nodes:
        raise ValueError(f"geom_gcn_split: {path} has {masks[0].numel()} nodes, the data {data.num_nodes}")
    fmt = data.extras.get("format") if hasattr(data, "extras") else None
    if fmt == "gnn-benchmark":  # same count as Planetoid's Cora / CiteSeer, another node order
        raise ValueError(f"geom_gcn_split: the split files index Planetoid's node order; {data.name} was read "
                         f"from the {fmt!r} format, whose nodes are ordered differently: load the Planetoid files")
    labelled = data.y.cpu() >= 0
    tr, va, te = (m & labelled for m in masks)
    return replace(data, train_mask=tr, val_mask=va, test_mask=te,
                   extras=dict(data.extras, split=f"geom-gcn {int(index)}"))


def with_split_files(data, directory, seeds, name=None):
    """``data`` marked so that seed ``i`` of an experiment trains on Geom-GCN split file ``i``
    (:func:`gkdfast.distill.experiment.seed_split` reads the mark; ``gkdfast distill --split-dir``).
    Every seed's file is opened and checked here, so a missing one fails before any training.

    Example:
        >>> from gkdfast.data import load
        >>> d = with_split_files(load("../shared/data/planetoid", name="cora"),
        ...                      "../shared/data/planetoid_geom_gcn_splits", seeds=range(2))
        >>> d.extras["split"]
        'geom-gcn files'
    """
    directory = str(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--split-dir {directory}: no such directory")
    for seed in seeds:
        if not 0 <= int(seed) <= 9:
            raise ValueError(f"Geom-GCN split files are numbered 0-9; seed {seed} has none (use seeds 0-9)")
        geom_gcn_split(data, directory, int(seed), name=name)
    extras = dict(data.extras, split="geom-gcn files", split_dir=directory, split_name=str(name or data.name))
    return replace(data, extras=extras)
