"""Small pieces the op-family modules share: the namespace prefix and tensor helpers used by
backward formulas."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from gkdfast._autograd import forbid_double_backward

LIB = "gkdfast::"


def register_op(name: str, fake: Callable, backward: Optional[Callable] = None, setup: Optional[Callable] = None,
                no_double_backward: Optional[str] = None) -> None:
    """Registers ``gkdfast::<name>``'s fake kernel, its autograd formula (``backward`` with
    ``setup`` as setup_context) when it has one, or, for a ``*_backward`` op without a derivative,
    an autograd formula that refuses double backward naming the public loss ``no_double_backward``."""
    torch.library.register_fake(LIB + name)(fake)
    if backward is not None:
        torch.library.register_autograd(LIB + name, backward, setup_context=_recording_needs(setup))
    if no_double_backward is not None:
        forbid_double_backward(LIB + name, no_double_backward)


def _recording_needs(setup: Optional[Callable]) -> Callable:
    """``setup`` that first records which inputs need a gradient as ``ctx.input_needs_grad`` (what
    torch's wrapper hands the backward formula as ``ctx.needs_input_grad``: one flag per argument the
    op was called with), which the backward formulas read instead: torch's wrapper shortens
    ``ctx.needs_input_grad`` by its own last flag around each backward call and restores it afterwards, so two
    threads back-propagating through the same node (``autograd.grad(..., retain_graph=True)`` on
    several threads) saw it shortened twice (wrong-length gradient tuples, IndexError) and could leave
    it shortened for good (helper 84: 198 failures in 200 concurrent gsp backward calls)."""

    def setup_context(ctx, inputs, output):
        ctx.input_needs_grad = tuple(ctx.needs_input_grad[:-1])  # (the last flag is the wrapper's own)
        if setup is not None:
            setup(ctx, inputs, output)

    return setup_context


def has_op(name: str) -> bool:
    """True when the loaded extension defines ``gkdfast::<name>`` (an older build may lack newer ops)."""
    return hasattr(torch.ops.gkdfast, name)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of the reduction ops: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def needs_transpose_error(op: str) -> RuntimeError:
    """The error of a backward called on an op that was run without the transposed CSR."""
    return RuntimeError(f"gkdfast.{op}: backward needs the transposed CSR, which was not passed to the op")
