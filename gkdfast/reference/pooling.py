"""Reference global pooling over the graphs of a batch (pure PyTorch): the oracle of the native
``segment_pool`` op."""
from __future__ import annotations

import torch
from torch import Tensor

from gkdfast._segments import segment_ids


def global_pool(x: Tensor, ptr: Tensor, reduce: str = "sum") -> Tensor:
    """``out[b] = reduce over nodes ptr[b] <= i < ptr[b+1] of x[i]``; empty graphs give 0.

    For max the winning node of each (graph, feature) is the *first* maximal node, and the gradient
    flows to it alone (the native kernel's rule).
    """
    num_graphs = ptr.numel() - 1
    counts = (ptr[1:] - ptr[:-1]).long()
    batch = segment_ids(counts.to(x.device))
    d = x.size(1)
    if reduce in ("sum", "mean"):
        out = x.new_zeros(num_graphs, d).index_add(0, batch, x)
        if reduce == "mean":
            out = out / counts.clamp_min(1).to(x.dtype).unsqueeze(1)
        return out
    if reduce == "max":
        out = x.new_full((num_graphs, d), float("-inf")).scatter_reduce(
            0, batch.view(-1, 1).expand(-1, d), x, "amax", include_self=True)
        # first maximal node per (graph, feature): the gradient goes there only
        # (a NaN is its segment's maximum, as in the kernel: it must match itself here)
        is_max = (x == out[batch]) | (x.isnan() & out[batch].isnan())
        pos = torch.arange(x.size(0), device=x.device).view(-1, 1).expand(-1, d)
        first = torch.full((num_graphs, d), x.size(0), dtype=torch.long, device=x.device).scatter_reduce(
            0, batch.view(-1, 1).expand(-1, d), torch.where(is_max, pos, x.size(0)), "amin", include_self=True)
        empty = counts == 0
        safe = first.clamp_max(max(x.size(0) - 1, 0))
        picked = x.gather(0, safe) if x.size(0) else x.new_zeros(num_graphs, d) + 0 * x.sum()  # (kept on the graph)
        return torch.where(empty.unsqueeze(1), torch.zeros_like(picked), picked)
    raise ValueError(f"gkdfast.reference.global_pool: reduce must be sum, mean or max, got {reduce!r}")
