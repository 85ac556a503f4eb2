"""Argument checks shared by the loss modules (messages name the public function, e.g.
``gkdfast.losses.crd``)."""
from __future__ import annotations

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
