"""Streaming top-k similarity retrieval over all N keys (Cold Brew's teacher-embedding lookup)."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from gkdfast import _backend
from gkdfast._autocast import call_without_autocast
from gkdfast._rows import take_rows

__all__ = ["topk_similar"]

_METRICS = ("cosine", "dot")


def _reference_topk(q: Tensor, keys: Tensor, k: int, block: int = 1024) -> Tuple[Tensor, Tensor]:
    # Row blocks of queries against all keys: memory O(block * N); ties go to the smaller index.
    vals, idxs = [], []
    for i0 in range(0, q.size(0), block):
        scores = q[i0:i0 + block] @ keys.t()
        order = torch.sort(scores, dim=1, descending=True, stable=True)[1][:, :k]
        vals.append(scores.gather(1, order))
        idxs.append(order)
    if not vals:
        return q.new_empty((0, k)), torch.empty((0, k), dtype=torch.int64, device=q.device)
    return torch.cat(vals), torch.cat(idxs)


def topk_similar(query: Tensor, keys: Tensor, k: int, metric: str = "cosine") -> Tuple[Tensor, Tensor]:
    """For each query row, the ``k`` most similar rows of ``keys``, without a ``[Q, N]`` matrix.

    Keys are streamed in tiles; each tile's partial top-k is merged into a running top-k per query,
    so memory is O((Q_tile + k) · N_tile) on top of the inputs.

    Args:
        query: ``[Q, d]``.  keys: ``[N, d]`` (same device; converted to ``query``'s dtype).
        k: how many neighbours, ``0 <= k <= N``.
        metric: ``"cosine"`` (rows L2-normalised with eps 1e-8) or ``"dot"``.

    Returns:
        ``(values [Q, k], indices [Q, k] int64)``, best first.  ``values`` is differentiable w.r.t.
        ``query`` and ``keys`` (recomputed from the selected rows; the selection itself is not); on
        CUDA the gradient for ``keys`` adds repeated rows with ``index_add`` (atomics: the last bits
        may vary between runs unless ``torch.use_deterministic_algorithms(True)`` is on).
        Among equal scores the smaller key index comes first, also for the last slots: of several keys
        tied at the k-th score, the smallest indices are kept (every backend; all-zero key rows tie).

    Example:
        >>> teacher = torch.randn(10000, 64); q = torch.randn(5, 64)
        >>> vals, idx = gkdfast.topk_similar(q, teacher, k=3)
        >>> idx.shape
        torch.Size([5, 3])
    """
    for name, t in (("query", query), ("keys", keys)):
        if not isinstance(t, Tensor):
            raise TypeError(f"gkdfast.topk_similar: {name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 2 or not t.is_floating_point():
            raise ValueError(f"gkdfast.topk_similar: {name} must be a 2-D floating tensor, got "
                             f"{t.dtype} of shape {list(t.shape)}")
    if query.size(1) != keys.size(1):
        raise ValueError(f"gkdfast.topk_similar: query width {query.size(1)} != keys width {keys.size(1)}")
    if query.device != keys.device:
        raise ValueError(f"gkdfast.topk_similar: query on {query.device}, keys on {keys.device}")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= keys.size(0):
        raise ValueError(f"gkdfast.topk_similar: k must be an int in [0, {keys.size(0)}], got {k!r}")
    if metric not in _METRICS:
        raise ValueError(f"gkdfast.topk_similar: unknown metric {metric!r}; expected 'cosine' or 'dot'")
    keys = keys.to(query.dtype)
    q, kk = (F.normalize(query, dim=1, eps=1e-8), F.normalize(keys, dim=1, eps=1e-8)) if metric == "cosine" \
        else (query, keys)
    with torch.no_grad():
        if _backend.choose("topk_similar", q.device, q.dtype) == "reference":
            rows = min(int(q.size(0)), 1024)  # a block of scores and its sort's int64 order (3 words per score)
            _backend.warn_dense_fallback("topk_similar", q.device, q.dtype, 3 * rows * kk.size(0),
                                         f"{rows} x {kk.size(0)} blocks of scores and their sort order",
                                         name="topk_similar")
            search = _reference_topk
        else:
            search = lambda a, b, n: torch.ops.gkdfast.topk_similar(a.contiguous(), b.contiguous(), n)  # noqa: E731
        # autocast off: the similarity products (at::mm in the kernel, a matmul in the reference) would run
        # in the region's half type and pick other neighbours for float32 inputs (234 of 2,000 top-10
        # indices differed in bfloat16)
        _, idx = call_without_autocast(q.device.type, search, q.detach(), kk.detach(), k)
    # [Q, k, d] gather: small, and gives gradients; by index_select on CPU, whose backward adds a key's
    # repeated rows in a fixed order (kk[idx]'s backward adds them with atomics on several threads)
    values = (q.unsqueeze(1) * take_rows(kk, idx.reshape(-1)).view(*idx.shape, kk.size(1))).sum(-1)
    return values, idx
