"""``gkdfast::sddmm`` (csrc/ops/sddmm.h): fake kernel.  Its autograd is C++
(csrc/autograd/sddmm_autograd.cpp):

``out[e] = a[i] . b[j]`` per edge ``e = (j -> i)``, so ``grad_a = A (g) b`` (spmm over the CSR with
the edge gradient as weights) and ``grad_b = A^T (g) a`` (spmm over the transposed CSR).
"""
from __future__ import annotations

from gkdfast._native._common import register_op


def _sddmm_fake(rowptr, col, t_rowptr, t_col, t_eid, a, b):
    return a.new_empty((col.shape[0],))


def register() -> None:
    """Registers the fake kernel of sddmm (its autograd kernel is C++)."""
    register_op("sddmm", _sddmm_fake)
