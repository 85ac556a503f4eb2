"""Autograd registration helpers shared by the native-op modules."""
from __future__ import annotations

import torch


def forbid_double_backward(qualname: str, loss: str) -> None:
    """Registers an autograd formula for a ``*_backward`` op that raises a clear error.

    Without one, PyTorch would treat the op's outputs as constants under ``create_graph=True`` and
    second derivatives would be silently wrong; with it, asking for them says so.
    """

    def setup(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise RuntimeError(f"gkdfast: double backward through {loss} is not supported "
                           f"({qualname} has no derivative formula); use the reference backend "
                           "(GKDFAST_BACKEND=reference) if you need second derivatives")

    torch.library.register_autograd(qualname, backward, setup_context=setup)
