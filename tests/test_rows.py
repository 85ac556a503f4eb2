"""gkdfast._rows.take_rows (row gathers of the training loops through index_select) against plain
indexing: the same values, the same gradients bit for bit, and the fallbacks; and the loss terms'
row selection, which passes the tensors through when every row is selected."""
import warnings

import numpy as np
import pytest
import torch

from gkdfast._rows import take_rows
from gkdfast.distill.terms import _rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool, torch.int8])
@pytest.mark.parametrize("shape", [(50,), (50, 7), (50, 3, 2)])
def test_same_rows_as_indexing(dtype, shape):
    g = torch.Generator().manual_seed(0)
    t = (torch.randn(shape, generator=g) * 10).to(dtype)
    for index in (torch.randint(0, 50, (80,), generator=g), torch.tensor([], dtype=torch.long),
                  torch.arange(50, dtype=torch.int32)):
        got = take_rows(t, index)
        assert got.dtype == t.dtype and torch.equal(got, t[index])


def test_non_contiguous_and_read_only_sources():
    index = torch.tensor([3, 3, 0, 39])
    t = torch.randn(40, 12)[:, ::3]  # strided view
    assert torch.equal(take_rows(t, index), t[index])
    frozen = np.arange(480, dtype=np.float32).reshape(40, 12)
    frozen.setflags(write=False)  # as a read-only memory-mapped feature file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about non-writable arrays
        t = torch.from_numpy(frozen)
    assert torch.equal(take_rows(t, index), t[index])


def test_gradient_bit_for_bit_with_repeated_rows():
    torch.manual_seed(1)
    index = torch.randint(0, 30, (500,))  # many repeats: contributions accumulate per row
    grads = []
    for gather in (take_rows, lambda t, i: t[i]):
        t = torch.randn(30, 9, generator=torch.Generator().manual_seed(2), requires_grad=True)
        w = torch.randn(500, 9, generator=torch.Generator().manual_seed(3))
        (gather(t, index) * w).sum().backward()
        grads.append(t.grad)
    assert torch.equal(grads[0], grads[1])


def test_gradient_with_many_repeated_rows_is_the_deterministic_one():
    """Large gradient, many repeats, several threads: t[index]'s default backward may add rows in any
    order; take_rows gives the deterministic result every run."""
    g = torch.Generator().manual_seed(4)
    index = torch.randint(0, 1000, (200_000,), generator=g)
    w = torch.randn(200_000, 16, generator=g)
    src = torch.randn(1000, 16, generator=g)

    def grad(gather):
        t = src.clone().requires_grad_(True)
        (gather(t, index) * w).sum().backward()
        return t.grad

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        mine = [grad(take_rows) for _ in range(3)]
        torch.use_deterministic_algorithms(True)
        try:
            reference = grad(lambda t, i: t[i])
        finally:
            torch.use_deterministic_algorithms(False)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(m, reference) for m in mine)


def test_fallbacks_keep_indexing_semantics():
    t = torch.arange(12.0).view(6, 2)
    mask = torch.tensor([True, False, True, False, False, True])
    assert torch.equal(take_rows(t, mask), t[mask])  # a bool mask selects
    with pytest.raises(IndexError):
        take_rows(t, torch.tensor([1.0]))  # a float index is refused, as by t[index]
    negative = torch.tensor([-1, 0, -6])  # negative ids wrap, as in t[index]
    assert torch.equal(take_rows(t, negative), t[negative])


def test_term_rows_pass_through_when_every_row_is_selected():
    a, b = torch.randn(5, 3), torch.randn(5)
    rows = _rows(torch.ones(5, dtype=torch.bool), a, b, None)
    assert rows[0] is a and rows[1] is b and rows[2] is None
    some = _rows(torch.tensor([True, False, True, False, False]), a, b, None)
    assert torch.equal(some[0], a[[0, 2]]) and torch.equal(some[1], b[[0, 2]]) and some[2] is None
