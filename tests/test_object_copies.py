"""User objects crossing copy, pickle and device boundaries: what a copy carries, what it shares, and
the errors of a Tensor-style ``.to(dtype)``."""
from __future__ import annotations

import copy
import io
import pickle
import threading

import pytest
import torch

import gkdfast
from gkdfast.data import csbm
from gkdfast.data.batching import collate
from gkdfast.hetero import HeteroGraph
from gkdfast.hetero.models import build_hetero_model
from gkdfast.sampling import NeighborLoader


def test_inv_perm_of_a_graph_already_in_csr_order_is_the_identity():
    # Before: TypeError from torch.empty_like(None) whenever the input was destination-sorted.
    g = gkdfast.Graph(torch.tensor([[1, 0, 2], [0, 1, 1]]))
    assert g.perm is None
    assert torch.equal(g.inv_perm, torch.arange(3))
    shuffled = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 0, 1]]))
    assert torch.equal(shuffled.perm[shuffled.inv_perm], torch.arange(3))


def test_graph_pickle_drops_rebuildable_caches_and_the_callers_storage():
    n, e = 200, 2000
    gen = torch.Generator().manual_seed(0)
    dst = torch.sort(torch.randint(0, n, (e,), generator=gen)).values
    ei = torch.stack([torch.randint(0, n, (e,), generator=gen), dst])
    g = gkdfast.Graph(ei, n)
    assert g.col.untyped_storage().nbytes() == e * g.col.element_size()  # its own copy, not a view of ei
    g.transpose_csr(), g.dst
    copy_ = pickle.loads(pickle.dumps(g))
    assert copy_._dst is None and copy_._transpose is not None  # the sort stays, the gather is redone
    assert copy_.col.untyped_storage().nbytes() == e * copy_.col.element_size()  # not both rows of ei
    torch.testing.assert_close(gkdfast.spmm(copy_, torch.ones(n, 2)), gkdfast.spmm(g, torch.ones(n, 2)))
    assert torch.equal(copy_.edge_index, g.edge_index)
    x = torch.randn(n, 3)
    deep = copy.deepcopy(g)
    torch.testing.assert_close(gkdfast.spmm(deep, x), gkdfast.spmm(g, x))
    # torch.save / torch.load, including the default weights_only=True with the class allowed
    buf = io.BytesIO()
    torch.save(g, buf)
    buf.seek(0)
    with torch.serialization.safe_globals([gkdfast.Graph]):
        loaded = torch.load(buf)
    assert torch.equal(loaded.rowptr, g.rowptr) and torch.equal(loaded.col, g.col)


def test_graph_unpickles_a_state_without_newer_attributes():
    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]))
    state = g.__getstate__()
    for name in ("_dst", "_inv_perm", "_transpose"):
        del state[name]  # as if pickled by a version before these caches existed
    old = gkdfast.Graph.__new__(gkdfast.Graph)
    old.__setstate__(state)
    torch.testing.assert_close(gkdfast.spmm(old, torch.eye(2)), gkdfast.spmm(g, torch.eye(2)))


def test_to_with_a_dtype_says_what_to_do():
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
    assert g.to(torch.int32).index_dtype == torch.int32  # an index dtype, as index_dtype=
    with pytest.raises(TypeError, match="Graph.to takes a device, not a dtype"):
        g.to(torch.float64)
    data = csbm(num_nodes=40, seed=0)
    with pytest.raises(TypeError, match=r"GraphData.to takes a device, not a dtype \(torch.float64\).*double\(\)"):
        data.to(torch.float64)
    batch = collate([gkdfast.data.TUGraph(gkdfast.Graph(torch.tensor([[0], [1]])), torch.ones(2, 3), 0)] * 2)
    with pytest.raises(TypeError, match="GraphBatch.to takes a device"):
        batch.to(torch.float16)
    with pytest.raises(TypeError, match="HeteroGraph.to takes a device"):
        HeteroGraph.toy().to(torch.float64)
    assert data.to("cpu").x is data.x  # shared when already there, as Tensor.to (the docstring says so)


def test_hetero_graph_compares_by_identity():
    # Before: hg == copy.deepcopy(hg) raised "Boolean value of Tensor with more than one value is ambiguous".
    hg = HeteroGraph.toy()
    assert hg == hg and hg != copy.deepcopy(hg)
    assert len({hg, hg}) == 1


def test_hgt_layers_hold_no_graph():
    # Before: each layer kept its last HeteroGraph, so a pickled or deep-copied model carried the data.
    hg = HeteroGraph.toy()
    torch.manual_seed(0)
    model = build_hetero_model("hgt:8x2", hg).eval()
    before = len(pickle.dumps(model))
    out = model(hg)
    assert len(pickle.dumps(model)) == before
    torch.testing.assert_close(copy.deepcopy(model)(hg), out)
    assert hg._cache["hgt"]  # the merged graphs live on the graph and go with it
    assert "_cache" not in pickle.loads(pickle.dumps(hg)).__dict__


def test_a_copied_neighbor_loader_samples_beside_its_original():
    # Before: copy.copy gave the copy its own lock but the same scratch node map; the two sampling
    # in two threads corrupted each other's batches (145-231 of 240 wrong, or "seeds must be distinct").
    n = 3000
    gen = torch.Generator().manual_seed(0)
    g = gkdfast.Graph(torch.randint(0, n, (2, 30000), generator=gen), n)
    a = NeighborLoader(g, torch.arange(n), [5, 5], batch_size=256, seed=1)
    b = copy.copy(a)
    assert b._map is not a._map and b._map_lock is not a._map_lock
    seeds = [torch.randperm(n, generator=torch.Generator().manual_seed(i))[:256] for i in range(12)]
    want = [a.sample(s, 0).n_id.clone() for s in seeds]
    wrong, errors = [], []

    def run(loader):
        try:
            for _ in range(2):
                wrong.extend(i for i, s in enumerate(seeds) if not torch.equal(loader.sample(s, 0).n_id, want[i]))
        except Exception as exc:  # noqa: BLE001  (an exception in a thread does not fail the test by itself)
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(x,)) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and errors == []
    assert torch.equal(pickle.loads(pickle.dumps(a)).sample(seeds[0], 0).n_id, want[0])
