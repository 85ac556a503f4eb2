"""Argument checks shared by the loss modules (messages name the public function, e.g.
``gkdfast.losses.crd``)."""
from __future__ import annotations

from torch import Tensor


def check_matrix(x, op: str, name: str) -> Tensor:
    """Checks that ``x`` is a 2-D floating tensor [num_nodes, dim] and returns it.

    ``op`` is the loss's public name and ``name`` the argument's, both used in the message.
    Example: ``check_matrix(torch.randn(4, 3), "crd", "student")`` returns the tensor;
    ``check_matrix(torch.randn(4), "crd", "student")`` raises ValueError("gkdfast.losses.crd: student
    must be 2-D [num_nodes, dim], got shape [4]").
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"gkdfast.losses.{op}: {name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"gkdfast.losses.{op}: {name} must be 2-D [num_nodes, dim], got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"gkdfast.losses.{op}: {name} must be floating point, got {x.dtype}")
    return x
