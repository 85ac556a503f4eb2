"""``gkdfast::cdf_guide`` / ``gkdfast::cdf_search`` (csrc/ops/inverse_cdf.h): fake kernels (indices,
no gradient)."""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake_guide(cdf, num_buckets):
    return cdf.new_empty((num_buckets + 1,), dtype=torch.int64)


def _fake_search(cdf, guide, values):
    return values.new_empty(values.shape, dtype=torch.int64)


def register() -> None:
    """Registers the fake kernels of cdf_guide and cdf_search (nothing on a build without them)."""
    if has_op("cdf_guide"):
        register_op("cdf_guide", _fake_guide)
    if has_op("cdf_search"):
        register_op("cdf_search", _fake_search)
