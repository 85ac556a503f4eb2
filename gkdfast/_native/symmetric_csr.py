"""``gkdfast::symmetric_csr`` (csrc/ops/symmetric_csr.h): fake kernel (indices, no gradient).

The number of distinct directed edges depends on the data, so the fake kernel declares it as a
dynamic size.
"""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake(src, dst, num_nodes):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return src.new_empty((num_nodes + 1,), dtype=torch.int64), src.new_empty((nnz,))


def register() -> None:
    """Registers the fake kernel of symmetric_csr (nothing on a build without the op)."""
    if has_op("symmetric_csr"):
        register_op("symmetric_csr", _fake)
