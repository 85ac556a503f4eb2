"""Undirected CSR build (torch.ops.gkdfast.symmetric_csr, gkdfast.graph_build) against a set-based
oracle and the pure-PyTorch reference: repeated pairs, both directions, self-loops, isolated nodes,
int32/int64 ids, thread-count invariance, the loaders' graphs unchanged, opcheck and bad arguments."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from gkdfast import _backend
from gkdfast.data._util import undirected_graph as loader_graph
from gkdfast.graph_build import symmetric_csr, undirected_graph
from gkdfast.reference import graph_build as ref

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _oracle(src, dst, n):
    """Rows as sorted lists, from a Python set of directed pairs."""
    rows = [set() for _ in range(n)]
    for u, v in zip(src.tolist(), dst.tolist()):
        if u != v:
            rows[v].add(u)
            rows[u].add(v)
    rowptr = [0]
    col = []
    for r in rows:
        col += sorted(r)
        rowptr.append(len(col))
    return rowptr, col


def _pairs(n, m, seed, dtype=torch.int64, hub=False):
    """Random pairs with repeats, both directions and self-loops; ``hub``: a quarter of them on node 0."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (m,), generator=g)
    dst = torch.randint(0, n, (m,), generator=g)
    if hub:
        dst[: m // 4] = 0
    src = torch.cat([src, dst[: m // 5], src[: m // 7]])  # reversed pairs and exact repeats
    dst = torch.cat([dst, src[: m // 5], dst[: m // 7]])
    src[::11] = dst[::11]  # self-loops
    return src.to(dtype), dst.to(dtype)


def _build(kind, src, dst, n):
    if kind == "native":
        return torch.ops.gkdfast.symmetric_csr(src, dst, n)
    return ref.symmetric_csr(src, dst, n)


KINDS = [pytest.param("native", marks=native), "reference"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("n,m,hub", [(1, 5, False), (7, 40, False), (50, 600, False), (300, 60_000, True),
                                     (2_000, 90_000, False)])  # the last two: > 65,536 pairs, the parallel path
def test_equals_the_set_oracle(kind, dtype, n, m, hub):
    src, dst = _pairs(n, m, seed=n, dtype=dtype, hub=hub)
    rowptr, col = _build(kind, src, dst, n)
    want_rowptr, want_col = _oracle(src, dst, n)
    assert rowptr.dtype == torch.int64 and col.dtype == dtype
    assert rowptr.tolist() == want_rowptr
    assert col.tolist() == want_col


@pytest.mark.parametrize("kind", KINDS)
def test_empty_and_isolated(kind):
    e = torch.empty(0, dtype=torch.int64)
    for n in (0, 4):
        rowptr, col = _build(kind, e, e, n)
        assert rowptr.tolist() == [0] * (n + 1) and col.numel() == 0
    rowptr, col = _build(kind, torch.tensor([2, 2, 3]), torch.tensor([2, 3, 2]), 6)  # a loop, one pair twice
    assert rowptr.tolist() == [0, 0, 0, 1, 2, 2, 2] and col.tolist() == [3, 2]


@native
def test_the_order_and_repeats_of_the_pairs_do_not_matter():
    src, dst = _pairs(500, 30_000, seed=3)
    want = torch.ops.gkdfast.symmetric_csr(src, dst, 500)
    perm = torch.randperm(src.numel(), generator=torch.Generator().manual_seed(0))
    for s, d in ((src[perm], dst[perm]), (dst, src), (torch.cat([src, dst]), torch.cat([dst, src]))):
        got = torch.ops.gkdfast.symmetric_csr(s, d, 500)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


_SUBPROCESS_CHECK = textwrap.dedent("""
    import sys, torch
    from gkdfast.reference import graph_build
    g = torch.Generator().manual_seed(5)
    n = 3001  # not a power of two: the last group and sub-range are partial
    src = torch.randint(0, n, (200_000,), generator=g, dtype=torch.int64).to(torch.int32)
    dst = torch.randint(0, n, (200_000,), generator=g, dtype=torch.int64).to(torch.int32)
    dst[:50_000] = 7  # a hub: many entries for one row
    src[100_000:100_500] = dst[100_000:100_500]  # self-loops
    want = graph_build.symmetric_csr(src, dst, n)
    for t in (1, 2, 3):
        torch.set_num_threads(t)
        for ids in (torch.int32, torch.int64):
            got = torch.ops.gkdfast.symmetric_csr(src.to(ids), dst.to(ids), n)
            if not (torch.equal(got[0], want[0]) and torch.equal(got[1].long(), want[1].long())):
                sys.exit(f"threads={t} ids={ids}: differs from the reference")
""")


@native
@pytest.mark.parametrize("group_bytes,sub_entries", [(None, None), ("4096", None), ("100000", "1000"),
                                                    (None, "500")])  # groups x sub-ranges (int32 ids): 1x8, 751x1, 24x16, 1x1024
def test_thread_counts_and_row_groups_give_the_same_csr(group_bytes, sub_entries):
    """The kernel moves entries one row group at a time (GKDFAST_CSR_GROUP_BYTES sizes the groups)
    and partitions each by sub-range of rows (GKDFAST_CSR_SUB_ENTRIES): every cut gives the
    reference's CSR, at every thread count."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GKDFAST_CSR_")}
    for name, value in (("GKDFAST_CSR_GROUP_BYTES", group_bytes), ("GKDFAST_CSR_SUB_ENTRIES", sub_entries)):
        if value is not None:
            env[name] = value
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS_CHECK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@native
def test_bad_group_bytes_setting_is_one_error():
    import os

    code = "import torch, gkdfast; torch.ops.gkdfast.symmetric_csr(torch.tensor([0]), torch.tensor([1]), 2)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GKDFAST_CSR_GROUP_BYTES": "lots"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "GKDFAST_CSR_GROUP_BYTES must be a positive integer" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GKDFAST_CSR_SUB_ENTRIES": "-3"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "GKDFAST_CSR_SUB_ENTRIES must be a positive integer" in proc.stderr


@native
def test_native_and_reference_agree_on_a_larger_graph():
    src, dst = _pairs(20_000, 400_000, seed=9, dtype=torch.int32, hub=True)
    got, want = torch.ops.gkdfast.symmetric_csr(src, dst, 20_000), ref.symmetric_csr(src, dst, 20_000)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_loader_graph_as_the_old_global_unique_built_it():
    """The loaders' undirected graphs: int64 indices, the same edges as one sort of all (dst, src) keys."""
    src, dst = _pairs(400, 5_000, seed=2)
    g = loader_graph(src.numpy(), dst.numpy().astype(np.int32), 400)
    keep = src != dst
    a, b = torch.cat([src[keep], dst[keep]]), torch.cat([dst[keep], src[keep]])
    key = torch.unique(b * 400 + a)
    assert g.index_dtype == torch.int64 and g.perm is None
    assert torch.equal(g.edge_index, torch.stack([key % 400, key // 400]))


def test_undirected_graph_index_dtype():
    assert undirected_graph(torch.tensor([0, 1], dtype=torch.int32), torch.tensor([1, 2], dtype=torch.int32),
                            3).index_dtype == torch.int32
    assert undirected_graph([0, 1], [1, 2], 3).index_dtype == torch.int64
    g = undirected_graph(np.array([0, 1], dtype=np.int16), np.array([1, 2], dtype=np.int16), 3,
                         index_dtype=torch.int32)
    assert g.index_dtype == torch.int32 and g.edge_index.tolist() == [[1, 0, 2, 1], [0, 1, 1, 2]]


@native
def test_opcheck():
    src, dst = _pairs(30, 200, seed=4)
    torch.library.opcheck(torch.ops.gkdfast.symmetric_csr.default, (src, dst, 30))
    torch.library.opcheck(torch.ops.gkdfast.symmetric_csr.default, (src.int(), dst.int(), 30))


@pytest.mark.parametrize("kind", KINDS)
def test_shape_and_dtype_errors_are_the_same_on_both_backends(kind):
    i = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="src and dst must be 1-D"):
        _build(kind, i.view(1, 2), i.view(1, 2), 3)
    with pytest.raises(ValueError, match=r"differ in length \(2 vs 3\)"):
        _build(kind, i, torch.tensor([0, 1, 2]), 3)
    with pytest.raises(TypeError, match="int32 or int64"):
        _build(kind, i.float(), i.float(), 3)
    with pytest.raises(ValueError, match="num_nodes must be >= 0"):
        _build(kind, i, i, -1)
    with pytest.raises(ValueError, match="does not fit int32"):
        _build(kind, i.int(), i.int(), 2**31)


@pytest.mark.parametrize("kind", KINDS)
def test_out_of_range_ids_name_the_pair(kind):
    with pytest.raises(ValueError, match=r"symmetric_csr: pair 2 has node id 5 outside \[0, 5\)"):
        _build(kind, torch.tensor([0, 1, 5, 9]), torch.tensor([1, 2, 3, 0]), 5)
    with pytest.raises(ValueError, match=r"pair 1 has node id -1"):
        _build(kind, torch.tensor([0, 1]), torch.tensor([1, -1]), 5)


@native
def test_native_argument_errors():
    op = torch.ops.gkdfast.symmetric_csr
    i = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="differ in length"):
        op(i, torch.tensor([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="1-D"):
        op(i.view(1, 2), i.view(1, 2), 3)
    with pytest.raises(TypeError, match="int32 or int64"):
        op(i.float(), i.float(), 3)
    with pytest.raises(TypeError, match="dst must have src's dtype"):
        op(i, i.int(), 3)
    with pytest.raises(ValueError, match="num_nodes must be >= 0"):
        op(i, i, -1)
    with pytest.raises(ValueError, match="does not fit int32"):
        op(i.int(), i.int(), 2**31)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@native
def test_cuda_tensors_are_built_on_the_host_and_come_back():
    src, dst = _pairs(500, 20_000, seed=6, dtype=torch.int32)
    want = torch.ops.gkdfast.symmetric_csr(src, dst, 500)
    got = torch.ops.gkdfast.symmetric_csr(src.cuda(), dst.cuda(), 500)
    assert got[0].is_cuda and got[1].is_cuda
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])
    with pytest.raises(ValueError, match="one device"):
        torch.ops.gkdfast.symmetric_csr(src.cuda(), dst, 500)


def test_public_function_errors():
    with pytest.raises(TypeError, match="integer node ids"):
        symmetric_csr(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]), 2)
    with pytest.raises(ValueError, match="differ in length"):
        symmetric_csr([0, 1], [1], 2)
    with pytest.raises(ValueError, match="num_nodes must be >= 0"):
        symmetric_csr([0], [0], -2)
    with pytest.raises(ValueError, match="src must be 1-D"):
        symmetric_csr(torch.tensor([[0, 1], [1, 0]]), torch.tensor([1, 0, 1, 0]), 2)
    rowptr, col = symmetric_csr([], [], 3)  # an empty list reads as float64: taken as no pairs
    assert rowptr.tolist() == [0, 0, 0, 0] and col.dtype == torch.int64 and col.numel() == 0
    rowptr, col = symmetric_csr(torch.tensor([0, 1], dtype=torch.int32), torch.tensor([1, 2]), 3)  # mixed: int64
    assert col.dtype == torch.int64 and col.tolist() == [1, 0, 2, 1]
