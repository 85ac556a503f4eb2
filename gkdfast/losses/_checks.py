"""Argument checks shared by the loss modules (messages name the public function, e.g.
``gkdfast.losses.crd``)."""
from __future__ import annotations

import torch
from torch import Tensor

from gkdfast._checks import check_float_matrix


def check_matrix(x, op: str, name: str) -> Tensor:
    """Checks that ``x`` is a 2-D floating tensor [num_nodes, dim] and returns it.

    ``op`` is the loss's public name and ``name`` the argument's, both used in the message.
    Example: ``check_matrix(torch.randn(4, 3), "crd", "student")`` returns the tensor;
    ``check_matrix(torch.randn(4), "crd", "student")`` raises ValueError("gkdfast.losses.crd: student
    must be 2-D [num_nodes, dim], got shape [4]").
    """
    return check_float_matrix(x, f"gkdfast.losses.{op}", name, "[num_nodes, dim]")


def mask_to_ids(nodes: Tensor, n: int, op: str) -> Tensor:
    """A bool ``nodes`` mask of ``[n]`` nodes as its set positions (int64, increasing; PyG's
    ``train_mask`` form); any other tensor is returned as it is.

    Example:
        >>> mask_to_ids(torch.tensor([False, True, True]), 3, "demo").tolist()
        [1, 2]
    """
    if nodes.dtype != torch.bool:
        return nodes
    if nodes.shape != (n,):
        raise ValueError(f"gkdfast.losses.{op}: a bool nodes mask must have shape [{n}] (one entry per node), "
                         f"got {list(nodes.shape)}")
    return nodes.nonzero().squeeze(1)
