"""Row gathers on the training hot paths (``t[index]`` through ``index_select`` on CPU), and sums
whose order does not depend on the thread count (:func:`ordered_sum`).

Mini-batch training gathers the batch's rows of the features, the teacher's logits, the labels and
the masks every step.  For a 1-D integer index, ``t[index]`` (``aten::index``) goes through a
generic advanced-indexing kernel that computes an offset per element; ``index_select`` copies
whole rows.  On CPU the row copy is 3-5x faster for rows of 47-128 floats (4,096 rows out of 10⁶,
2 threads: 0.81 against 0.16 ms for 100 floats, 0.31 against 0.11 ms for 47), and its backward
(``index_add_`` into zeros) is cheaper than advanced indexing's (``index_put_`` with accumulate).

Both give the same values.  Gradients: each row's contributions are added in index order by
``index_select``'s backward, the same result every run; ``t[index]``'s backward gives that result
too on one thread or under ``torch.use_deterministic_algorithms(True)``, but with repeated rows, a
large gradient and several threads it adds them with atomics in any order (tests/test_rows.py).
The training loops gather distinct rows (a permutation's slice, a mask's ``nonzero``), where the two
agree bit for bit.

CUDA tensors keep ``t[index]``: the speed-up was measured on CPU only, and ``index_select`` there
would turn a negative id into a device-side assert instead of wrapping it.
"""
from __future__ import annotations

import torch
from torch import Tensor
from gkdfast._tracing import tracing

__all__ = ["take_rows", "add_rows", "ordered_sum"]

_INDEX_DTYPES = (torch.int64, torch.int32)
# torch splits a CPU reduction to one value across its threads above this many elements (at::internal::
# GRAIN_SIZE), so the rounding of such a sum depends on the thread count; a reduction to many values runs
# each one on one thread, in an order that depends only on the length of what it sums.
_PARALLEL_GRAIN = 32_768
_SUM_CHUNK = 16_384


def take_rows(t: Tensor, index: Tensor) -> Tensor:
    """``t[index]`` for a 1-D integer ``index``, gathered by ``index_select`` on CPU when the ids are
    non-negative (see the module docstring); anything else (negative ids, a bool mask, a sparse or
    CUDA ``t``, a 0-d tensor, a ``torch.compile`` trace) is ``t[index]`` itself.

    Shapes: ``t`` ``[N, ...]``, ``index`` ``[B]`` -> ``[B, ...]``.

    Example:
        >>> t = torch.arange(12.0).view(4, 3)
        >>> take_rows(t, torch.tensor([3, 0, 3])).tolist()
        [[9.0, 10.0, 11.0], [0.0, 1.0, 2.0], [9.0, 10.0, 11.0]]
    """
    if tracing():  # (the id check below reads values: no guard on data while tracing)
        return t[index]
    if (index.dim() == 1 and index.dtype in _INDEX_DTYPES and t.dim() >= 1 and t.layout == torch.strided
            and t.device.type == "cpu" and index.device.type == "cpu"
            and (index.numel() == 0 or int(index.min()) >= 0)):
        return t.index_select(0, index)
    return t[index]


def add_rows(num_rows: int, index: Tensor, src: Tensor, fixed_order: "bool | None" = None) -> Tensor:
    """``zeros(num_rows, ...).index_add(0, index, src)``: row ``i`` is the sum of the rows of ``src``
    whose ``index`` is ``i``.  CUDA's ``index_add`` adds repeated ids with atomics, in a varying order
    (the last bits differ between runs); there (``fixed_order=None``: on CUDA) the rows are sorted by
    ``index`` (stably) and summed by a segmented reduction, bitwise reproducible.  Differentiable.

    Shapes: ``index`` ``[M]`` int64 in ``[0, num_rows)``, ``src`` ``[M, ...]`` -> ``[num_rows, ...]``.

    Example:
        >>> add_rows(3, torch.tensor([2, 0, 2]), torch.tensor([1.0, 2.0, 3.0]), fixed_order=True).tolist()
        [2.0, 0.0, 4.0]
    """
    if not (src.is_cuda if fixed_order is None else fixed_order):
        return torch.zeros((num_rows,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device).index_add(0, index,
                                                                                                            src)
    order = torch.argsort(index, stable=True)
    return torch.segment_reduce(src[order], "sum", lengths=torch.bincount(index, minlength=num_rows), axis=0,
                                unsafe=True)


def ordered_sum(x: Tensor, dtype: "torch.dtype | None" = None) -> Tensor:
    """``x.sum(dtype=dtype)`` with the same bits for any thread count: on CPU, above 32,768 elements,
    the sum of fixed 16,384-element chunks (each summed by one thread), then of the chunks' sums.  Up to
    that size, and on other devices, it is ``x.sum()`` itself.  Differentiable.

    Example:
        >>> x = torch.rand(100_000, dtype=torch.float64)
        >>> bool(torch.isclose(ordered_sum(x), x.sum()))
        True
    """
    flat = x.reshape(-1)
    n = flat.numel()
    if n <= _PARALLEL_GRAIN or flat.device.type != "cpu":
        return flat.sum(dtype=dtype)
    full = n - n % _SUM_CHUNK
    parts = flat[:full].view(-1, _SUM_CHUNK).sum(1, dtype=dtype)
    if full < n:
        parts = torch.cat([parts, flat[full:].sum(dtype=dtype).view(1)])
    return ordered_sum(parts)
