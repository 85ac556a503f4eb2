"""``gkdfast::sample_neighbors`` (csrc/ops/sample_neighbors.h): fake kernel (indices, no gradient).

The number of sampled edges depends on the data, so the fake kernel declares it as a dynamic size.
"""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake(rowptr, col, seeds, fanout, seed, hop):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return (seeds.new_empty((seeds.shape[0] + 1,), dtype=torch.int64), col.new_empty((nnz,)),
            col.new_empty((nnz,)))


def register() -> None:
    """Registers the fake kernel of sample_neighbors (nothing on a build without the op)."""
    if has_op("sample_neighbors"):
        register_op("sample_neighbors", _fake)
