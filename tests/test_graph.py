"""gkdfast.Graph: construction from every supported input, edge order, transpose, degrees,
transforms and validation errors."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

import gkdfast
from gkdfast import Graph
from conftest import dense_adj, random_edge_index, tiny_graphs, TINY_IDS


def edge_multiset(ei):
    return sorted(map(tuple, ei.t().tolist()))


def check_csr_invariants(g: Graph):
    n, e = g.num_nodes, g.num_edges
    assert g.rowptr.shape == (n + 1,) and g.col.shape == (e,)
    assert g.rowptr.dtype == g.col.dtype
    assert int(g.rowptr[0]) == 0 and int(g.rowptr[-1]) == e
    assert bool((g.rowptr[1:] >= g.rowptr[:-1]).all())
    if e:
        assert 0 <= int(g.col.min()) and int(g.col.max()) < n


# ------------------------------------------------------------------------------ construction
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("name,ei,n", tiny_graphs(), ids=TINY_IDS)
def test_edge_index_round_trip(name, ei, n, index_dtype):
    ei = ei.to(index_dtype)
    g = Graph(ei, n)
    check_csr_invariants(g)
    assert g.num_nodes == n and g.num_edges == ei.size(1)
    assert g.index_dtype == index_dtype
    # edge_index comes back exactly in the order it was given
    assert torch.equal(g.edge_index.long(), ei.long())
    # CSR by destination: row i lists sources of i's in-edges, stable (input order kept within a row)
    for i in range(n):
        srcs = g.col[g.rowptr[i]:g.rowptr[i + 1]].long()
        expected = ei[0][ei[1] == i].long()
        assert torch.equal(srcs, expected)


def test_num_nodes_inferred():
    g = Graph(torch.tensor([[0, 4], [2, 1]]))
    assert g.num_nodes == 5
    assert Graph(torch.zeros(2, 0, dtype=torch.long)).num_nodes == 0


def test_perm_maps_csr_to_input_order():
    ei = torch.tensor([[3, 0, 2, 1, 0], [0, 3, 1, 3, 2]])
    g = Graph(ei)
    vals = torch.arange(5.0)
    csr = g.to_csr_order(vals)
    assert torch.equal(g.dst.long(), torch.sort(ei[1], stable=True).values)
    # value of input edge k lands at the CSR position holding edge k
    assert torch.equal(g.from_csr_order(csr), vals)
    assert torch.equal(torch.stack([g.col, g.dst]).long(), ei[:, csr.long()])


def test_already_sorted_has_no_perm():
    g = Graph(torch.tensor([[1, 2, 0], [0, 0, 2]]))
    assert g.perm is None
    v = torch.randn(3)
    assert g.to_csr_order(v) is v


def test_from_csr():
    g = Graph.from_csr(torch.tensor([0, 1, 3]), torch.tensor([1, 0, 1]))
    assert torch.equal(g.edge_index, torch.tensor([[1, 0, 1], [0, 1, 1]]))
    g32 = Graph.from_csr(torch.tensor([0, 1, 3], dtype=torch.int32), torch.tensor([1, 0, 1], dtype=torch.int32))
    assert g32.index_dtype == torch.int32
    mixed = Graph.from_csr(torch.tensor([0, 1, 3], dtype=torch.int32), torch.tensor([1, 0, 1]))
    assert mixed.index_dtype == torch.int64
    with pytest.raises(ValueError, match="non-decreasing"):
        Graph.from_csr(torch.tensor([0, 2, 1, 3]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="rowptr"):
        Graph.from_csr(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="col indices"):
        Graph.from_csr(torch.tensor([0, 1, 2]), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="num_nodes"):
        Graph.from_csr(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), num_nodes=3)


def test_from_scipy():
    ei = torch.tensor([[0, 2, 1, 2], [1, 0, 2, 2]])
    w = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    m = sp.coo_matrix((w, (ei[0].numpy(), ei[1].numpy())), shape=(4, 4))
    for mat in (m, m.tocsr(), m.tocsc()):
        g = Graph.from_scipy(mat)
        assert g.num_nodes == 4
        assert torch.equal(dense_adj(g.edge_index, 4, g.edge_weight), dense_adj(ei, 4, torch.from_numpy(w)))
    unweighted = Graph.from_scipy(sp.coo_matrix((np.ones(4), (ei[0].numpy(), ei[1].numpy())), shape=(4, 4)))
    assert unweighted.edge_weight is None
    with pytest.raises(ValueError, match="square"):
        Graph.from_scipy(sp.coo_matrix((3, 4)))


def test_from_pyg():
    from torch_geometric.data import Data

    ei = torch.tensor([[0, 2, 1], [1, 0, 2]])
    g = Graph.from_pyg(Data(edge_index=ei, num_nodes=5))
    assert g.num_nodes == 5 and torch.equal(g.edge_index, ei)
    w = torch.tensor([0.5, 1.5, 2.0])
    gw = Graph.from_pyg(Data(edge_index=ei, edge_weight=w, num_nodes=3))
    assert torch.equal(gw.edge_weight, w)
    with pytest.raises(ValueError, match="edge_index"):
        Graph.from_pyg(Data(x=torch.zeros(3, 1)))


def test_from_sparse_coo_and_csr():
    ei = torch.tensor([[0, 2, 1, 3], [1, 0, 2, 2]])
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    coo = torch.sparse_coo_tensor(ei, w, (4, 4))
    for adj in (coo, coo.to_sparse_csr()):
        g = Graph.from_sparse(adj)
        assert torch.equal(dense_adj(g.edge_index, 4, g.edge_weight), dense_adj(ei, 4, w))
    # adj_t: rows are destinations
    gt = Graph.from_sparse(torch.sparse_coo_tensor(ei.flip(0), w, (4, 4)), transposed=True)
    assert torch.equal(dense_adj(gt.edge_index, 4, gt.edge_weight), dense_adj(ei, 4, w))
    ones = Graph.from_sparse(torch.sparse_coo_tensor(ei, torch.ones(4), (4, 4)))
    assert ones.edge_weight is None
    with pytest.raises(TypeError):
        Graph.from_sparse(torch.zeros(3, 3))
    with pytest.raises(TypeError):
        Graph.from_sparse([[0, 1]])


def test_from_torch_sparse_sparsetensor():
    torch_sparse = pytest.importorskip("torch_sparse")
    ei = torch.tensor([[0, 2, 1], [1, 0, 2]])
    st_ = torch_sparse.SparseTensor(row=ei[0], col=ei[1], sparse_sizes=(3, 3))
    g = Graph.from_sparse(st_)
    assert edge_multiset(g.edge_index) == edge_multiset(ei)


# ------------------------------------------------------------------------------ structure
@given(n=st.integers(1, 30), e=st.integers(0, 120), seed=st.integers(0, 2**16),
       int32=st.booleans())
def test_transpose_and_degrees_random(n, e, seed, int32):
    ei = random_edge_index(n, e, seed, torch.int32 if int32 else torch.int64)
    g = Graph(ei, n)
    check_csr_invariants(g)
    t_rowptr, t_col, t_eid = g.transpose_csr()
    assert t_rowptr.dtype == t_col.dtype == t_eid.dtype == g.index_dtype
    # transposed entry k is CSR edge t_eid[k]: its source is the transposed row, its destination t_col[k]
    t_row = torch.repeat_interleave(torch.arange(n), (t_rowptr[1:] - t_rowptr[:-1]).long())
    assert torch.equal(g.col[t_eid.long()].long(), t_row)
    assert torch.equal(g.dst[t_eid.long()].long(), t_col.long())
    assert sorted(t_eid.tolist()) == list(range(e))
    # within a transposed row, CSR positions increase (stable: deterministic backward order)
    for j in range(n):
        seg = t_eid[t_rowptr[j]:t_rowptr[j + 1]]
        assert bool((seg[1:] > seg[:-1]).all())
    assert torch.equal(g.in_degree(), torch.bincount(ei[1].long(), minlength=n))
    assert torch.equal(g.out_degree(), torch.bincount(ei[0].long(), minlength=n))
    assert g.transpose_csr() is g.transpose_csr() or g.transpose_csr()[0] is t_rowptr  # cached
    # reversed graph
    gt = g.t()
    assert torch.equal(dense_adj(gt.edge_index, n), dense_adj(ei, n).t())


def test_degrees_and_isolated():
    g = Graph(torch.tensor([[0, 0, 1, 3], [1, 2, 2, 3]]), 5)
    assert g.in_degree().tolist() == [0, 1, 2, 1, 0]
    assert g.out_degree().tolist() == [2, 1, 0, 1, 0]
    assert g.in_degree(torch.float32).dtype == torch.float32
    assert g.isolated_nodes().tolist() == [False, False, False, False, True]


def test_transpose_empty_graph():
    g = Graph(torch.zeros(2, 0, dtype=torch.long), 3)
    t_rowptr, t_col, t_eid = g.transpose_csr()
    assert t_rowptr.tolist() == [0, 0, 0, 0] and t_col.numel() == 0 and t_eid.numel() == 0
    assert g.in_degree().tolist() == [0, 0, 0] and g.out_degree().tolist() == [0, 0, 0]


# ------------------------------------------------------------------------------ transforms
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_add_self_loops(index_dtype):
    ei = torch.tensor([[0, 1, 2], [1, 1, 0]], dtype=index_dtype)
    g = Graph(ei, 4)
    g2 = g.add_self_loops()
    assert g2.num_edges == 7 and g2.index_dtype == index_dtype
    expected = torch.cat([ei, torch.arange(4, dtype=index_dtype).repeat(2, 1)], 1)
    assert torch.equal(g2.edge_index, expected)  # loops appended after the existing edges
    assert g2.edge_weight is None
    gw = Graph(ei, 4, edge_weight=torch.tensor([2.0, 3.0, 4.0]))
    assert gw.add_self_loops(fill_value=0.5).edge_weight.tolist() == [2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5]


def test_to_device_and_index_dtype(device):
    ei = torch.tensor([[3, 0, 2, 1], [0, 3, 1, 3]])
    g = Graph(ei, 4, edge_weight=torch.tensor([1.0, 2.0, 3.0, 4.0]))
    g.transpose_csr()
    g2 = g.to(device)
    assert g2.device.type == device.type
    assert torch.equal(g2.edge_index.cpu(), ei)
    assert torch.equal(g2.edge_weight.cpu(), g.edge_weight)
    assert all(t.device.type == device.type for t in g2.transpose_csr())
    g3 = g.to(index_dtype=torch.int32)
    assert g3.index_dtype == torch.int32
    assert all(t.dtype == torch.int32 for t in g3.transpose_csr())
    assert torch.equal(g3.edge_index.long(), ei)
    assert "Graph(num_nodes=4" in repr(g3)


def test_gcn_norm_helper():
    ei = torch.tensor([[0, 1, 2], [1, 2, 1]])
    g = Graph(ei, 3)
    g2, w = gkdfast.gcn_norm(g)
    a = dense_adj(ei, 3) + torch.eye(3, dtype=torch.float64)
    dinv = a.sum(1).rsqrt()
    expected = dinv[:, None] * a * dinv[None, :]
    assert torch.allclose(dense_adj(g2.edge_index, 3, w), expected, atol=1e-6)


# ------------------------------------------------------------------------------ validation
def test_negative_index():
    with pytest.raises(ValueError, match="negative"):
        Graph(torch.tensor([[0, -1], [1, 0]]), 3)


def test_out_of_range_index():
    with pytest.raises(ValueError, match=r"num_nodes is 3"):
        Graph(torch.tensor([[0, 3], [1, 0]]), 3)


@pytest.mark.parametrize("bad", [torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
                                 torch.tensor([[0.0, float("nan")], [1.0, 0.0]]),
                                 torch.tensor([[True, False], [False, True]])])
def test_non_integer_index(bad):
    with pytest.raises(TypeError, match="integer"):
        Graph(bad)


def test_nan_message():
    with pytest.raises(TypeError, match="NaN"):
        Graph(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))


@pytest.mark.parametrize("shape", [(3, 4), (4,), (2, 2, 2), (1, 5)])
def test_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\[2, num_edges\]"):
        Graph(torch.zeros(shape, dtype=torch.long))


def test_negative_num_nodes():
    with pytest.raises(ValueError, match="num_nodes"):
        Graph(torch.zeros(2, 0, dtype=torch.long), -1)


def test_other_integer_dtypes_are_accepted():
    g = Graph(torch.tensor([[0, 1], [1, 2]], dtype=torch.int16))
    assert g.index_dtype == torch.int64 and g.num_nodes == 3
    g = Graph([[0, 1], [1, 2]])  # nested lists become a tensor
    assert g.num_edges == 2


def test_edge_weight_validation():
    ei = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="num_edges=2"):
        Graph(ei, 2, edge_weight=torch.ones(3))
    with pytest.raises(TypeError, match="floating"):
        Graph(ei, 2, edge_weight=torch.ones(2, dtype=torch.long))


def test_a_pyg_object_passed_as_edge_index_points_at_from_pyg():
    class Data:  # what PyG's Data looks like to the constructor
        edge_index = torch.tensor([[0, 1], [1, 0]])

    with pytest.raises(TypeError, match=r"gkdfast.Graph.from_pyg\(data\)"):
        gkdfast.Graph(Data())


def test_a_sorted_edge_index_is_copied_not_shared():
    """col used to be a view of a destination-sorted edge_index's first row: it kept all 2 x E indices
    alive (helper 117) and an in-place edit of edge_index edited the graph (caught only later, by the
    transpose check).  The graph now owns its col."""
    e = torch.tensor([[1, 2, 0, 2], [0, 0, 1, 1]])
    g = gkdfast.Graph(e, 3)
    assert g.perm is None  # (the already-sorted path)
    assert g.col.untyped_storage().nbytes() == g.col.numel() * g.col.element_size()
    s, t = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4)
    before = gkdfast.losses.lsp(g, s, t, kernel="linear")
    e[0, 0] = 2
    assert g.col.tolist() == [1, 2, 0, 2]
    assert torch.equal(gkdfast.losses.lsp(g, s, t, kernel="linear"), before)


def test_an_expanded_edge_index_is_copied_too():
    """helper 121: a stride-0 (expanded) edge_index has storage of exactly one row, so the size check
    alone let col share the caller's buffer."""
    base = torch.arange(4)
    g = gkdfast.Graph(base.expand(2, 4))
    base[0] = 3
    assert g.col.tolist() == [0, 1, 2, 3]
