"""gkdfast::sample_neighbors: native kernel vs the pure-PyTorch reference of the same Philox stream
(exact equality), the sampling contract (real in-neighbours, right edge ids, distinct, min(deg, k)),
determinism across thread counts and batch composition, edge cases, opcheck and bad arguments."""
import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast.data import power_law_graph
from gkdfast.reference import sampling as ref
from gkdfast.sampling import sample_neighbors

native = pytest.mark.skipif(not _backend.has_kernel("sample_neighbors", "CPU"), reason="native op not built")


def _graph(index_dtype=torch.int64, n=300, e=3000, seed=0):
    g = power_law_graph(n, e, seed=seed, exponent=2.1)  # hubs (degree >> fan-out) and low-degree nodes
    return g.to(index_dtype=index_dtype)


def _native(g, seeds, k, seed, hop=0):
    return torch.ops.gkdfast.sample_neighbors(g.rowptr, g.col, seeds, k, seed, hop)


def _floyd_scalar(deg, k, seed, node, hop):
    """Floyd's algorithm with the scalar Philox: the sorted positions one node must get."""
    if deg <= k:
        return list(range(deg))
    chosen = []
    for s in range(k):
        j = deg - k + s
        r = (ref.neighbor_word_py(seed, node, hop, s) * (j + 1)) >> 32
        chosen.append(j if r in chosen else r)
    return sorted(chosen)


def test_reference_matches_scalar_philox_floyd():
    g = _graph()
    seeds = torch.arange(g.num_nodes)
    rp, nbr, eid = ref.sample_neighbors(g.rowptr, g.col, seeds, 5, 123, 2)
    rowptr = g.rowptr.tolist()
    for v in range(0, g.num_nodes, 7):
        want = [rowptr[v] + p for p in _floyd_scalar(rowptr[v + 1] - rowptr[v], 5, 123, v, 2)]
        assert eid[rp[v]:rp[v + 1]].tolist() == want


@native
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("seed_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("k", [1, 3, 10, -1])
def test_native_equals_reference(index_dtype, seed_dtype, k):
    g = _graph(index_dtype)
    seeds = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(1))[:200].to(seed_dtype)
    got = _native(g, seeds, k, 7, 1)
    want = ref.sample_neighbors(g.rowptr, g.col, seeds, k, 7, 1)
    assert got[0].dtype == torch.int64 and got[1].dtype == index_dtype and got[2].dtype == index_dtype
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("k", [1, 4, 25])
def test_contract_real_neighbours_distinct_counts(k):
    g = _graph()
    seeds = torch.arange(g.num_nodes)
    rp, nbr, eid = sample_neighbors(g, seeds, k, seed=3)
    deg = g.rowptr[1:] - g.rowptr[:-1]
    assert torch.equal(rp[1:] - rp[:-1], deg.clamp(max=k))
    assert torch.equal(g.col[eid.long()], nbr)  # eid is the CSR position of a real edge
    owner = torch.repeat_interleave(seeds, rp[1:] - rp[:-1])
    assert torch.equal(g.dst[eid.long()].long(), owner)  # ... into the right destination
    for v in range(g.num_nodes):
        e = eid[rp[v]:rp[v + 1]]
        assert e.unique().numel() == e.numel()  # without replacement
        assert bool((e[1:] > e[:-1]).all())  # ascending


def test_uniform_inclusion_frequency():
    # One node with 8 in-edges, fan-out 3: each edge is kept with probability 3/8 over many seeds.
    g = gkdfast.Graph(torch.tensor([list(range(1, 9)), [0] * 8]))
    hits = torch.zeros(8)
    trials = 4000
    for s in range(trials):
        _, nbr, _ = sample_neighbors(g, torch.tensor([0]), 3, seed=s)
        hits[nbr - 1] += 1
    freq = hits / trials
    assert torch.allclose(freq, torch.full((8,), 3 / 8), atol=0.04), freq


def test_deterministic_across_threads_and_batches():
    g = _graph(torch.int32, n=2000, e=30000)
    seeds = torch.arange(g.num_nodes)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = sample_neighbors(g, seeds, 6, seed=11)
        torch.set_num_threads(2)
        two = sample_neighbors(g, seeds, 6, seed=11)
    finally:
        torch.set_num_threads(old)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    # Batch composition: node v's sample is the same alone, in another order, or repeated.
    sub = torch.tensor([1999, 5, 5, 17])
    rp, nbr, _ = sample_neighbors(g, sub, 6, seed=11)
    for t, v in enumerate(sub.tolist()):
        assert torch.equal(nbr[rp[t]:rp[t + 1]], one[1][one[0][v]:one[0][v + 1]])


def test_seed_and_hop_change_the_sample():
    g = _graph()
    hub = int((g.rowptr[1:] - g.rowptr[:-1]).argmax())
    s = torch.tensor([hub])
    base = sample_neighbors(g, s, 5, seed=0, hop=0)[1]
    assert not torch.equal(base, sample_neighbors(g, s, 5, seed=1, hop=0)[1])
    assert not torch.equal(base, sample_neighbors(g, s, 5, seed=0, hop=1)[1])


def test_hubs_isolated_and_empty():
    # node 0: hub with 50 in-edges; node 1: one in-edge; node 2: isolated.
    ei = torch.tensor([list(range(3, 53)) + [0], [0] * 50 + [1]])
    g = gkdfast.Graph(ei, num_nodes=53)
    rp, nbr, eid = sample_neighbors(g, torch.tensor([0, 1, 2]), 4, seed=0)
    assert rp.tolist() == [0, 4, 5, 5]
    assert nbr[4].item() == 0
    rp, nbr, eid = sample_neighbors(g, torch.tensor([], dtype=torch.int64), 4)
    assert rp.tolist() == [0] and nbr.numel() == 0 and eid.numel() == 0
    empty = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.int64), num_nodes=3)
    rp, nbr, _ = sample_neighbors(empty, torch.tensor([0, 2]), 4)
    assert rp.tolist() == [0, 0, 0] and nbr.numel() == 0


@native
def test_opcheck():
    g = _graph(torch.int32)
    args = (g.rowptr, g.col, torch.tensor([0, 5, 9]), 3, 0, 0)
    torch.library.opcheck(torch.ops.gkdfast.sample_neighbors.default, args)


def test_bad_arguments():
    g = _graph()
    with pytest.raises(ValueError, match="fanout"):
        sample_neighbors(g, torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="fanout"):
        sample_neighbors(g, torch.tensor([0]), -2)
    with pytest.raises(TypeError, match="fanout"):
        sample_neighbors(g, torch.tensor([0]), 2.5)
    with pytest.raises(ValueError, match="seed"):
        sample_neighbors(g, torch.tensor([0]), 2, seed=-1)
    with pytest.raises(ValueError, match="hop"):
        sample_neighbors(g, torch.tensor([0]), 2, hop=70000)
    with pytest.raises(TypeError, match="seeds"):
        sample_neighbors(g, torch.tensor([0.0]), 2)
    with pytest.raises(ValueError, match="1-D"):
        sample_neighbors(g, torch.tensor([[0]]), 2)
    with pytest.raises(IndexError, match="out of range"):
        sample_neighbors(g, torch.tensor([g.num_nodes]), 2)
    with pytest.raises(TypeError, match="Graph"):
        sample_neighbors(g.edge_index, torch.tensor([0]), 2)


@native
def test_native_bad_arguments_direct():
    g = _graph()
    with pytest.raises(IndexError, match="out of range"):
        _native(g, torch.tensor([-1]), 2, 0)
    with pytest.raises(ValueError, match="fanout"):
        _native(g, torch.tensor([0]), 0, 0)
    with pytest.raises(ValueError, match="fanout"):
        _native(g, torch.tensor([0]), -3, 0)
    with pytest.raises(TypeError, match="int32 or int64"):
        _native(g, torch.tensor([0.0]), 2, 0)
    with pytest.raises(TypeError, match="share one index dtype"):
        torch.ops.gkdfast.sample_neighbors(g.rowptr.int(), g.col, torch.tensor([0]), 2, 0, 0)


def test_reference_backend_forced(monkeypatch):
    g = _graph()
    seeds = torch.arange(50)
    auto = sample_neighbors(g, seeds, 4, seed=9)
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    forced = sample_neighbors(g, seeds, 4, seed=9)
    for a, b in zip(auto, forced):
        assert torch.equal(a, b)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("k", [1, 3, 10, -1])
def test_cuda_kernel_equals_cpu_kernel(index_dtype, k):
    # The CUDA kernel draws the same Philox words as the CPU kernel: bit-identical samples.
    g = _graph(index_dtype)
    seeds = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(2))[:300]
    want = torch.ops.gkdfast.sample_neighbors(g.rowptr, g.col, seeds, k, 11, 3)
    got = torch.ops.gkdfast.sample_neighbors(g.rowptr.cuda(), g.col.cuda(), seeds.cuda(), k, 11, 3)
    for a, b in zip(got, want):
        assert a.is_cuda and torch.equal(a.cpu(), b)
    with pytest.raises(IndexError, match="out of range"):
        torch.ops.gkdfast.sample_neighbors(g.rowptr.cuda(), g.col.cuda(), torch.tensor([0, g.num_nodes]).cuda(),
                                           k, 0, 0)
