"""Which CSR checks are remembered (csrc/ops/csr_validation.cpp): a graph used again is not checked
again, small graphs included (checking them on every call cost a Cora-sized spmm about two thirds of
its time), small graphs cannot push a large one out, and an in-place edit is checked again."""
import pytest
import torch

import gkdfast
from gkdfast import _backend

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _checks():
    return _backend._C.csr_checks_run()


def _ring(n):
    return gkdfast.Graph(torch.stack([torch.arange(n), (torch.arange(n) + 1) % n]), n)


def _step(g, d=4):
    x = torch.randn(g.num_nodes, d, requires_grad=True)
    gkdfast.spmm(g, x).sum().backward()  # the CSR and (for the backward) its transpose


def test_a_small_graph_is_checked_once():
    g = _ring(50)
    _step(g)
    before = _checks()
    for _ in range(3):
        _step(g)
    assert _checks() == before  # checked on every call before session 41


def test_small_graphs_do_not_push_a_large_one_out():
    big = _ring(40_000)  # 40,001 + 40,000 entries: the large graphs' ring
    _step(big, d=1)
    for n in range(10, 50):  # 40 small graphs, more than either ring holds
        _step(_ring(n), d=1)
    before = _checks()
    _step(big, d=1)
    assert _checks() == before


def test_an_in_place_edit_is_checked_again():
    g = _ring(50)
    _step(g)
    before = _checks()
    g.col.add_(0)  # bumps the version counter, values unchanged
    _step(g)
    assert _checks() > before
