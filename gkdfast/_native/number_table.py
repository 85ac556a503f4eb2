"""``gkdfast::parse_numbers`` (csrc/ops/number_table.h): fake kernel (CPU only, no gradient).

How many tokens a text holds depends on its bytes, so the fake kernel declares the count as a
dynamic size.
"""
from __future__ import annotations

import torch

from gkdfast._native._common import has_op, register_op


def _fake(text, dtype):
    count = torch.library.get_ctx().new_dynamic_size()
    return text.new_empty((count,), dtype=dtype), text.new_empty((2,), dtype=torch.int64)


def register() -> None:
    """Registers the fake kernel of parse_numbers (nothing on a build without the op)."""
    if has_op("parse_numbers"):
        register_op("parse_numbers", _fake)
