"""The one argument check every public entry point shares: a 2-D floating-point tensor.

Callers keep their own message prefix (``gkdfast.spmm``, ``gkdfast.nn.GCNConv``,
``gkdfast.losses.crd``) and shape hint, so users see the function they called.
"""
from __future__ import annotations

from torch import Tensor


def check_float_matrix(x, where: str, name: str, shape: str) -> Tensor:
    """Returns ``x`` if it is a 2-D floating tensor; raises TypeError / ValueError otherwise.

    Example: ``check_float_matrix(torch.randn(4), "gkdfast.losses.crd", "student", "[num_nodes, dim]")``
    raises ``ValueError("gkdfast.losses.crd: student must be 2-D [num_nodes, dim], got shape [4]")``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: {name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{where}: {name} must be 2-D {shape}, got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: {name} must be floating point, got {x.dtype}")
    return x
