"""Global pooling over the graphs of a batch (torch.ops.gkdfast.segment_pool and gkdfast.global_pool)
against the pure-PyTorch reference: values, gradients (twice), ties, empty graphs, malformed offsets."""
import pytest
import torch

import gkdfast
from gkdfast.reference import pooling as ref

REDUCES = ["sum", "mean", "max"]


def _batch(sizes, d=5, dtype=torch.float64, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    x = torch.randn(n, d, generator=g, dtype=dtype).to(device).requires_grad_()
    ptr = torch.tensor([0] + list(torch.tensor(sizes).cumsum(0).tolist()), dtype=torch.long, device=device)
    return x, ptr


SIZES = [3, 0, 1, 7, 0, 2, 12]  # empty graphs, a single node, uneven sizes


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ptr_dtype", [torch.int32, torch.int64])
def test_matches_reference(reduce, dtype, ptr_dtype, device):
    x, ptr = _batch(SIZES, dtype=dtype, device=device)
    ptr = ptr.to(ptr_dtype)
    g = torch.randn(len(SIZES), x.size(1), dtype=dtype, device=device)
    out = gkdfast.global_pool(x, ptr, reduce)
    (gx,) = torch.autograd.grad((out * g).sum(), (x,))
    exp = ref.global_pool(x, ptr.long(), reduce)
    (want,) = torch.autograd.grad((exp * g).sum(), (x,))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, exp, **tol)
    torch.testing.assert_close(gx, want, **tol)
    assert torch.equal(out[1], torch.zeros_like(out[1])) and torch.equal(out[4], torch.zeros_like(out[4]))


def test_max_gradient_goes_to_the_first_maximal_node():
    x = torch.tensor([[1.0], [3.0], [3.0], [2.0]], dtype=torch.float64, requires_grad=True)
    out = gkdfast.global_pool(x, torch.tensor([0, 4]), "max")
    out.sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_on_wide_rows_keeps_first_winner_and_nan(dtype):
    # d = 37: full SIMD blocks plus a tail; ties and NaN in chosen columns of a 5-node graph
    x = torch.randn(5, 37, dtype=dtype)
    x[:, 0] = torch.tensor([1.0, 4.0, 4.0, 2.0, 4.0])  # tie: node 1 wins
    x[:, 9] = torch.tensor([1.0, float("nan"), 5.0, float("nan"), 7.0])  # first NaN wins and sticks
    x[:, 36] = torch.tensor([-3.0, -2.0, -1.0, -1.0, -5.0])  # the tail column: node 2
    x.requires_grad_()
    out = gkdfast.global_pool(x, torch.tensor([0, 5]), "max")
    out.sum().backward()
    torch.testing.assert_close(out[0, :9], x.detach().amax(0)[:9])
    assert out[0, 0] == 4.0 and torch.isnan(out[0, 9]) and out[0, 36] == -1.0
    assert x.grad[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert x.grad[:, 9].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert x.grad[:, 36].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert torch.all(x.grad.sum(0) == 1)  # exactly one winner per column


@pytest.mark.parametrize("reduce", REDUCES)
def test_gradgradcheck(reduce):
    x, ptr = _batch([2, 0, 3, 1], d=3, seed=1)
    torch.autograd.gradcheck(lambda v: gkdfast.global_pool(v, ptr, reduce), (x,))
    torch.autograd.gradgradcheck(lambda v: gkdfast.global_pool(v, ptr, reduce), (x,))


@pytest.mark.parametrize("reduce", REDUCES)
def test_opcheck(reduce):
    x, ptr = _batch([2, 0, 3], d=4, seed=2)
    torch.library.opcheck(torch.ops.gkdfast.segment_pool.default, (x, ptr, reduce))
    out, arg = torch.ops.gkdfast.segment_pool(x.detach(), ptr, reduce)
    grad = torch.randn_like(out).requires_grad_()
    torch.library.opcheck(torch.ops.gkdfast.segment_pool_backward.default, (ptr, arg, grad, x.size(0), reduce))


def test_compile_fullgraph_matches_eager():
    x, ptr = _batch([4, 1, 0, 6], d=8, seed=3)
    fn = torch.compile(lambda v: gkdfast.global_pool(v, ptr, "mean").square().sum(), fullgraph=True)
    (g1,) = torch.autograd.grad(fn(x), (x,))
    (g2,) = torch.autograd.grad(gkdfast.global_pool(x, ptr, "mean").square().sum(), (x,))
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("bad,match", [([1, 2, 5], "ptr"), ([0, 3, 2, 5], "ptr"), ([0, 2, 4], "ptr")])
def test_malformed_offsets_are_a_clear_error(bad, match):
    x = torch.randn(5, 2)
    ptr = torch.tensor(bad)
    with pytest.raises(ValueError, match=match):
        gkdfast.global_pool(x, ptr, "sum")
    with pytest.raises(ValueError, match=match):
        torch.ops.gkdfast.segment_pool(x, ptr, "sum")


def test_bad_arguments():
    x, ptr = _batch([2, 2])
    with pytest.raises(ValueError, match="reduce"):
        gkdfast.global_pool(x, ptr, "min")
    with pytest.raises(ValueError, match="2-D"):
        gkdfast.global_pool(x[:, 0], ptr, "sum")
    with pytest.raises(ValueError, match="int32/int64"):
        gkdfast.global_pool(x, ptr.double(), "sum")
    out, arg = torch.ops.gkdfast.segment_pool(x.detach(), ptr, "max")
    with pytest.raises(ValueError, match="segment_pool"):  # a winner outside its graph would write out of bounds
        torch.ops.gkdfast.segment_pool_backward(ptr, arg.flip(0), torch.ones_like(out), 4, "max")


def test_deterministic_and_thread_count_invariant():
    x, ptr = _batch([5] * 400 + [0, 9], d=33, dtype=torch.float32, seed=4)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            out = gkdfast.global_pool(x, ptr, "mean")
            (gx,) = torch.autograd.grad(out.square().sum(), (x,))
            outs.append((out, gx))
    finally:
        torch.set_num_threads(before)
    for o, g in outs[1:]:
        assert torch.equal(o, outs[0][0]) and torch.equal(g, outs[0][1])


@pytest.mark.parametrize("ptr,needle", [([1, 2, 3], "rowptr\\[0\\] must be 0"), ([0, 2, 1, 3], "decreas"),
                                        ([0, 1, 2, 5], "ptr\\[?-1\\]?.*(3|5)")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_malformed_ptr_is_a_value_error_on_every_path(ptr, needle, dtype):
    """float16 / bfloat16 on the CPU go through the pure-PyTorch reference, which checks ptr as the op does."""
    from gkdfast.pooling import global_pool

    with pytest.raises(ValueError, match=needle):
        global_pool(torch.tensor([[1.0], [2.0], [3.0]], dtype=dtype), torch.tensor(ptr))
