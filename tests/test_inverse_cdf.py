"""Guided inverse-CDF search (torch.ops.gkdfast.cdf_guide / cdf_search, gkdfast.inverse_cdf)
against torch.searchsorted and the pure-PyTorch reference: ties, zero weights, NaN and infinite
values, float32 round-off at bucket edges, degenerate arrays, thread counts, opcheck and errors."""
import math

import pytest
import torch

from gkdfast import _backend
from gkdfast.inverse_cdf import cdf_guide, cdf_search
from gkdfast.reference import inverse_cdf as ref

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")
KINDS = [pytest.param("native", marks=native), "reference"]


def _guide(kind, cdf, b):
    return torch.ops.gkdfast.cdf_guide(cdf, b) if kind == "native" else ref.cdf_guide(cdf, b)


def _search(kind, cdf, guide, values):
    return torch.ops.gkdfast.cdf_search(cdf, guide, values) if kind == "native" else ref.cdf_search(cdf, guide, values)


def _cdf(n, seed, dtype, zeros=False, heavy=False):
    """A cumulative sum of Pareto-like weights; ``zeros``: a third of them 0 (runs of ties);
    ``heavy``: a few weights a thousand times the rest (entries spanning many buckets)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64).add_(1e-3).pow_(-0.7)
    if zeros:
        w[torch.rand(n, generator=g) < 1 / 3] = 0
    if heavy and n:
        w[torch.randint(0, n, (3,), generator=g)] *= 1000
    return torch.cumsum(w, 0).to(dtype)


def _probes(cdf, m, seed):
    """Uniform values over the range and a little beyond, every entry itself and its float
    neighbours (the round-off cases), and NaN / +-inf."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = (float(cdf[0]), float(cdf[-1])) if cdf.numel() else (0.0, 1.0)
    span = max(hi - lo, 1.0)
    u = torch.rand(m, generator=g, dtype=torch.float64) * (1.2 * span) + (lo - 0.1 * span)
    parts = [u.to(cdf.dtype), cdf, torch.nextafter(cdf, torch.full_like(cdf, math.inf)),
             torch.nextafter(cdf, torch.full_like(cdf, -math.inf)),
             torch.tensor([math.nan, math.inf, -math.inf, lo, hi], dtype=cdf.dtype)]
    return torch.cat(parts)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,zeros,heavy", [(1, False, False), (2, True, False), (37, True, True), (1000, False, True),
                                           (50_000, True, True)])  # the last: > 16,384 entries, the parallel path
def test_equals_searchsorted(kind, dtype, n, zeros, heavy):
    cdf = _cdf(n, seed=n, dtype=dtype, zeros=zeros, heavy=heavy)
    values = _probes(cdf, 30_000, seed=n + 1)
    want = torch.searchsorted(cdf, values)
    for buckets in (1, 2, max(1, n // 7), n, 3 * n + 1):
        guide = _guide(kind, cdf, buckets)
        assert guide.dtype == torch.int64 and guide.shape == (buckets + 1,)
        assert int(guide[0]) == 0 and int(guide[-1]) == n and bool((guide[1:] >= guide[:-1]).all())
        got = _search(kind, cdf, guide, values)
        assert got.dtype == torch.int64 and torch.equal(got, want), buckets


@native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_guide_equals_the_reference_guide(dtype):
    for n, seed in ((5, 0), (3000, 1), (40_000, 2)):
        cdf = _cdf(n, seed, dtype, zeros=True, heavy=True)
        for buckets in (1, 3, n // 2, 2 * n):
            assert torch.equal(torch.ops.gkdfast.cdf_guide(cdf, buckets), ref.cdf_guide(cdf, buckets))


def _hard_arrays():
    """Arrays whose buckets are hard to get right: flat, one entry, infinite ends, a width that
    overflows float64, a subnormal width (an infinite scale), and entries on the bucket edges
    ``lo + k * width / B`` and their float neighbours (B = 10)."""
    f64 = dict(dtype=torch.float64)
    edges = torch.tensor([k * 0.1 for k in range(11)], **f64)
    around = torch.cat([edges, torch.nextafter(edges, torch.full_like(edges, 2.0)),
                        torch.nextafter(edges, torch.full_like(edges, -1.0))]).sort().values.clamp(0.0, 1.0)
    return [torch.full((5,), 3.0, **f64), torch.tensor([2.0], **f64), torch.tensor([1.0, 4.0, math.inf], **f64),
            torch.tensor([-math.inf, -math.inf, 0.0, 2.0], **f64), torch.tensor([-1e308, 0.0, 1e308], **f64),
            torch.tensor([0.0, 5e-324, 5e-324], **f64), around, around.float(),
            torch.tensor([-3.0, -3.0, -1.0, 0.0, 0.0, 7.0], dtype=torch.float32)]


@native
def test_native_guide_equals_the_reference_guide_on_hard_arrays():
    for cdf in _hard_arrays():
        for buckets in (1, 3, 10, 1000):
            got, want = torch.ops.gkdfast.cdf_guide(cdf, buckets), ref.cdf_guide(cdf, buckets)
            assert torch.equal(got, want), (cdf.tolist(), buckets)


@pytest.mark.parametrize("kind", KINDS)
def test_the_answer_lies_in_the_values_bucket(kind):
    """The property the search relies on: for each value, torch.searchsorted's index lies in
    [guide[b], guide[b + 1]] with b the value's bucket (ref.bucket_of, the C++ bucket's twin)."""
    arrays = _hard_arrays() + [_cdf(3000, seed=12, dtype=torch.float32, zeros=True, heavy=True)]
    for cdf in arrays:
        values = _probes(cdf, 2000, seed=13)
        want = torch.searchsorted(cdf, values)
        for buckets in (1, 7, 10, 2 * cdf.numel() + 3):
            guide = _guide(kind, cdf, buckets)
            b = ref.bucket_of(values, float(cdf[0]), float(cdf[-1]), buckets)
            assert bool((guide[b] <= want).all() and (want <= guide[b + 1]).all()), (cdf.tolist()[:5], buckets)
            assert torch.equal(_search(kind, cdf, guide, values), want)


def test_bucket_of_follows_the_c_order_of_tests():
    """NaN ends: not ``v < last`` (NaN) puts a value in the last bucket, as the C++ ``!(v < hi)``;
    ``v > first`` decides first, so a value at a zero-width array's only point is in bucket 0."""
    v = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    assert ref.bucket_of(v, 0.5, math.nan, 4).tolist() == [0, 3, 3]
    assert ref.bucket_of(v, 1.0, 1.0, 4).tolist() == [0, 0, 3]
    assert ref.bucket_of(torch.tensor(1.5, dtype=torch.float64), 1.0, 2.0, 4).tolist() == 2  # 0-dim


@pytest.mark.parametrize("kind", KINDS)
def test_degenerate_arrays(kind):
    empty = torch.empty(0, dtype=torch.float64)
    guide = _guide(kind, empty, 4)
    assert guide.tolist() == [0] * 5
    assert _search(kind, empty, guide, torch.tensor([0.0, math.nan], dtype=torch.float64)).tolist() == [0, 0]
    flat = torch.full((6,), 2.5, dtype=torch.float64)  # zero width: every entry in bucket 0
    values = torch.tensor([2.0, 2.5, 3.0, math.nan, -math.inf], dtype=torch.float64)
    assert _search(kind, flat, _guide(kind, flat, 3), values).tolist() == [0, 0, 6, 6, 0]
    inf_ends = torch.tensor([-math.inf, -1.0, 0.0, 5.0, math.inf], dtype=torch.float64)  # infinite width
    values = torch.tensor([-math.inf, -3.0, 0.0, 4.0, 1e300, math.inf, math.nan], dtype=torch.float64)
    got = _search(kind, inf_ends, _guide(kind, inf_ends, 4), values)
    assert torch.equal(got, torch.searchsorted(inf_ends, values))


@pytest.mark.parametrize("kind", KINDS)
def test_values_of_any_shape_and_layout(kind):
    cdf = _cdf(500, seed=3, dtype=torch.float32)
    guide = _guide(kind, cdf, 100)
    values = (torch.rand(40, 30) * float(cdf[-1])).t()  # 2-D, not contiguous
    got = _search(kind, cdf, guide, values)
    assert got.shape == (30, 40) and torch.equal(got, torch.searchsorted(cdf, values.contiguous()))
    assert _search(kind, cdf, guide, torch.empty(0, 3)).shape == (0, 3)


@native
def test_thread_counts_give_the_same_indices():
    cdf = _cdf(100_000, seed=4, dtype=torch.float64, zeros=True, heavy=True)
    values = _probes(cdf, 200_000, seed=5)
    want_guide, want = ref.cdf_guide(cdf, 50_000), torch.searchsorted(cdf, values)
    before = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            guide = torch.ops.gkdfast.cdf_guide(cdf, 50_000)
            assert torch.equal(guide, want_guide), t
            assert torch.equal(torch.ops.gkdfast.cdf_search(cdf, guide, values), want), t
    finally:
        torch.set_num_threads(before)


@native
def test_a_guide_of_another_array_stays_in_bounds():
    cdf = _cdf(1000, seed=6, dtype=torch.float64)
    other = ref.cdf_guide(_cdf(5000, seed=7, dtype=torch.float64), 800)
    garbage = torch.randint(-10**9, 10**9, (801,))
    values = _probes(cdf, 5000, seed=8)
    for guide in (other, garbage, other.flip(0).contiguous()):
        got = torch.ops.gkdfast.cdf_search(cdf, guide, values)
        assert int(got.min()) >= 0 and int(got.max()) <= cdf.numel()


@native
def test_opcheck():
    cdf = _cdf(64, seed=9, dtype=torch.float64, zeros=True)
    guide = torch.ops.gkdfast.cdf_guide(cdf, 16)
    torch.library.opcheck(torch.ops.gkdfast.cdf_guide.default, (cdf, 16))
    values = torch.rand(7, 3, dtype=torch.float64) * 40
    torch.library.opcheck(torch.ops.gkdfast.cdf_search.default, (cdf, guide, values))
    torch.library.opcheck(torch.ops.gkdfast.cdf_search.default, (cdf.float(), guide, torch.rand(11) * 40))


@pytest.mark.parametrize("kind", KINDS)
def test_errors_are_the_same_on_both_backends(kind):
    cdf = torch.tensor([0.0, 1.0, 3.0, 2.0, 5.0])
    with pytest.raises(ValueError, match=r"non-decreasing and free of NaN; entry 3 is smaller than the one before"):
        _guide(kind, cdf, 4)
    with pytest.raises(ValueError, match="entry 0 is NaN"):
        _guide(kind, torch.tensor([math.nan, 1.0]), 4)
    with pytest.raises(ValueError, match="entry 2 is smaller"):
        _guide(kind, torch.tensor([0.0, 1.0, math.nan, 2.0]), 4)
    with pytest.raises(ValueError, match="cdf must be 1-D"):
        _guide(kind, torch.ones(2, 2), 4)
    with pytest.raises(TypeError, match="cdf must be float32 or float64"):
        _guide(kind, torch.arange(4), 4)
    with pytest.raises(ValueError, match=r"num_buckets must be in \[1, 2\^62\)"):
        _guide(kind, torch.ones(3), 0)
    with pytest.raises(ValueError, match="num_buckets must be in"):
        _guide(kind, torch.ones(3), 2**63 - 1)
    good = torch.tensor([0.0, 1.0, 2.0])
    guide = _guide(kind, good, 2)
    with pytest.raises(TypeError, match="values must have cdf's dtype"):
        _search(kind, good, guide, torch.tensor([0.5], dtype=torch.float64))
    with pytest.raises(TypeError, match="guide must be int64"):
        _search(kind, good, guide.int(), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="guide must be 1-D with at least 2 entries"):
        _search(kind, good, guide[:1], torch.tensor([0.5]))


def test_public_functions():
    cdf = torch.cumsum(torch.tensor([1.0, 3.0, 0.0, 4.0]), 0)
    assert cdf_guide(cdf).shape == (3,)  # default: n // 2 buckets
    assert cdf_search(cdf, torch.tensor([0.5, 1.5, 7.9])).tolist() == [0, 1, 3]  # guide built when omitted
    with pytest.raises(TypeError, match="cdf must be a tensor"):
        cdf_guide([1.0, 2.0])
    with pytest.raises(TypeError, match="values must be a tensor"):
        cdf_search(cdf, [1.0])
    with _backend.forced("reference"):
        assert cdf_search(cdf, torch.tensor([4.0])).tolist() == [1]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_the_cpu(dtype):
    cdf = _cdf(30_000, seed=10, dtype=dtype, zeros=True, heavy=True)
    values = _probes(cdf, 100_000, seed=11)
    guide = torch.ops.gkdfast.cdf_guide(cdf, 9_000)
    got_guide = torch.ops.gkdfast.cdf_guide(cdf.cuda(), 9_000)
    assert got_guide.is_cuda and torch.equal(got_guide.cpu(), guide)
    got = torch.ops.gkdfast.cdf_search(cdf.cuda(), got_guide, values.cuda())
    assert got.is_cuda and torch.equal(got.cpu(), torch.searchsorted(cdf, values))
    with pytest.raises(ValueError, match="entry 3 is smaller"):
        torch.ops.gkdfast.cdf_guide(torch.tensor([0.0, 1.0, 3.0, 2.0], device="cuda"), 4)
    with pytest.raises(ValueError, match="one device"):
        torch.ops.gkdfast.cdf_search(cdf.cuda(), got_guide, values)
    for hard in _hard_arrays():  # the buckets computed on the device, against the CPU's
        probe = _probes(hard, 500, seed=14)
        for buckets in (1, 10, 1000):
            g_cpu = torch.ops.gkdfast.cdf_guide(hard, buckets)
            g_gpu = torch.ops.gkdfast.cdf_guide(hard.cuda(), buckets)
            assert torch.equal(g_gpu.cpu(), g_cpu), (hard.tolist(), buckets)
            assert torch.equal(torch.ops.gkdfast.cdf_search(hard.cuda(), g_gpu, probe.cuda()).cpu(),
                               torch.searchsorted(hard, probe))
    empty = torch.empty(0, dtype=dtype, device="cuda")
    assert torch.ops.gkdfast.cdf_guide(empty, 3).tolist() == [0, 0, 0, 0]
    assert torch.ops.gkdfast.cdf_search(empty, torch.zeros(4, dtype=torch.long, device="cuda"),
                                        torch.ones(2, dtype=dtype, device="cuda")).tolist() == [0, 0]
    grid = (torch.rand(30, 20, dtype=dtype) * float(cdf[-1])).cuda().t()  # not contiguous
    assert torch.equal(torch.ops.gkdfast.cdf_search(cdf.cuda(), got_guide, grid).cpu(),
                       torch.searchsorted(cdf, grid.cpu().contiguous()))
    garbage = torch.randint(-10**9, 10**9, (9_001,), device="cuda")
    out = torch.ops.gkdfast.cdf_search(cdf.cuda(), garbage, values.cuda())
    assert int(out.min()) >= 0 and int(out.max()) <= cdf.numel()
