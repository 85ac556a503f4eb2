"""The native ``csr_mm`` op: a rectangular CSR matrix times a dense one (the sparse first layer's
product, gkdfast/nn/sparse_input.py), against its reference, torch's CSR product and autograd."""
from __future__ import annotations

import pytest
import torch

from gkdfast import _backend
from gkdfast.data import load
from gkdfast.reference import csr_mm as reference_csr_mm

from conftest import need_data

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")

op = torch.ops.gkdfast.csr_mm.default


def _matrix(rows=9, cols=13, density=0.25, seed=0, dtype=torch.float64, index_dtype=torch.int64):
    """A random [rows, cols] CSR matrix (one empty row, one empty column) and its transposed structure."""
    gen = torch.Generator().manual_seed(seed)
    dense = (torch.rand(rows, cols, generator=gen) < density).to(dtype) * torch.randn(rows, cols, generator=gen,
                                                                                       dtype=dtype)
    dense[min(2, rows - 1)] = 0
    dense[:, min(3, cols - 1)] = 0
    csr = dense.to_sparse_csr()
    crow, col, values = csr.crow_indices().clone(), csr.col_indices().clone(), csr.values().clone()
    rows_of = torch.repeat_interleave(torch.arange(rows), crow.diff())
    perm = torch.argsort(col, stable=True)
    t_crow = torch.zeros(cols + 1, dtype=torch.int64)
    t_crow[1:] = torch.bincount(col, minlength=cols).cumsum(0)
    arrays = [crow, col, t_crow, rows_of[perm], perm]
    return dense, [a.to(index_dtype) for a in arrays], values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("shape", [(9, 13), (13, 9), (1, 5), (6, 1)])
def test_equals_the_dense_product_and_the_reference(dtype, index_dtype, shape):
    dense, (crow, col, t_crow, t_col, perm), values = _matrix(*shape, dtype=dtype, index_dtype=index_dtype)
    for d in (1, 7, 40):
        x = torch.randn(shape[1], d, dtype=dtype)
        out = op(crow, col, t_crow, t_col, perm, values, x)
        assert out.shape == (shape[0], d) and out.dtype == dtype
        torch.testing.assert_close(out, dense @ x)
        torch.testing.assert_close(out, reference_csr_mm(crow, col, values, x))
        none = crow.new_empty(0)  # the transposed structure is optional for the forward
        assert torch.equal(op(crow, col, none, none, none, values, x), out)


def test_empty_cases():
    z = torch.zeros(1, dtype=torch.int64)
    none = z.new_empty(0)
    out = op(z, none, none, none, none, torch.zeros(0), torch.randn(4, 3))  # 0 rows
    assert out.shape == (0, 3)
    rowptr = torch.zeros(4, dtype=torch.int64)  # 3 rows, no entries: zeros
    assert torch.equal(op(rowptr, none, none, none, none, torch.zeros(0), torch.randn(5, 2)), torch.zeros(3, 2))
    dense, arrays, values = _matrix()
    assert op(*arrays, values, torch.randn(13, 0, dtype=torch.float64)).shape == (9, 0)


def test_bitwise_torchs_csr_product_on_cora_features():
    """docs/ops.md: on Cora's bag-of-words the CPU kernel gives torch's CSR product bit for bit (both
    add the row's entries in order, a multiply then an add each)."""
    data = load(need_data("planetoid"), name="cora")
    xs = data.x.to_sparse_csr()
    w = torch.randn(data.x.size(1), 64, generator=torch.Generator().manual_seed(0))
    none = xs.crow_indices().new_empty(0)
    out = op(xs.crow_indices(), xs.col_indices(), none, none, none, xs.values(), w)
    assert torch.equal(out, torch.sparse.mm(xs, w))


def test_same_bits_on_one_and_two_threads():
    dense, arrays, values = _matrix(300, 200, density=0.05, dtype=torch.float32)
    x = torch.randn(200, 48)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op(*arrays, values, x)
        torch.set_num_threads(2)
        assert torch.equal(op(*arrays, values, x), one)
    finally:
        torch.set_num_threads(before)


def test_gradients():
    _, arrays, values = _matrix(seed=1)
    x = torch.randn(13, 4, dtype=torch.float64, requires_grad=True)
    values = values.clone().requires_grad_()
    torch.autograd.gradcheck(lambda v, xx: op(*arrays, v, xx), (values, x))
    torch.autograd.gradgradcheck(lambda v, xx: op(*arrays, v, xx), (values, x))


def test_gradient_of_x_equals_the_dense_one_and_needs_the_transpose():
    dense, (crow, col, t_crow, t_col, perm), values = _matrix(seed=2)
    x = torch.randn(13, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(9, 5, dtype=torch.float64)
    (gx,) = torch.autograd.grad(op(crow, col, t_crow, t_col, perm, values, x), x, g)
    torch.testing.assert_close(gx, dense.T @ g)
    none = crow.new_empty(0)
    out = op(crow, col, none, none, none, values, x)
    with pytest.raises(RuntimeError, match="csr_mm: the gradient of x needs the transposed structure"):
        out.backward(g)


def test_opcheck():
    _, arrays, values = _matrix(dtype=torch.float32)
    x = torch.randn(13, 6, requires_grad=True)
    torch.library.opcheck(torch.ops.gkdfast.csr_mm.default, (*arrays, values, x))
    torch.library.opcheck(torch.ops.gkdfast.csr_mm.default, (*arrays, values.clone().requires_grad_(), x.detach()))


@pytest.mark.parametrize("case,error,match", [
    ("col", ValueError, r"csr_mm: sparse matrix col\[0\] = 13 is outside \[0, 13\)"),
    ("values", ValueError, "csr_mm: values must have shape"),
    ("dtype", TypeError, "csr_mm: values has dtype"),
    ("x", ValueError, "csr_mm: x must be 2-D"),
    ("transpose", ValueError, "csr_mm: transposed CSR does not match the graph"),
])
def test_malformed_arguments_raise_naming_the_op(case, error, match):
    _, (crow, col, t_crow, t_col, perm), values = _matrix()
    x = torch.randn(13, 3, dtype=torch.float64)
    args = [crow, col, t_crow, t_col, perm, values, x]
    if case == "col":
        args[1] = col.clone()
        args[1][0] = 13
    elif case == "values":
        args[5] = values[:-1]
    elif case == "dtype":
        args[5] = values.float()
    elif case == "x":
        args[6] = x[:, 0]
    else:  # a square graph's transpose length for this 9 x 13 matrix
        args[2] = t_crow[:10]
    with pytest.raises(error, match=match):
        op(*args)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu(dtype):
    _, arrays, values = _matrix(40, 70, density=0.1, dtype=dtype)
    x = torch.randn(70, 33, dtype=dtype, requires_grad=True)
    out = op(*arrays, values, x)
    (gx,) = torch.autograd.grad(out, x, torch.ones_like(out))
    xc = x.detach().cuda().requires_grad_()
    outc = op(*[a.cuda() for a in arrays], values.cuda(), xc)
    (gxc,) = torch.autograd.grad(outc, xc, torch.ones_like(outc))
    torch.testing.assert_close(outc.cpu(), out)
    torch.testing.assert_close(gxc.cpu(), gx)
