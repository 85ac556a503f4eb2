"""torch.use_deterministic_algorithms(True) and the CUDA paths that otherwise add in a varying order.

* The sampled-negative InfoNCE backward (crd / ncontrast with ``num_negatives=K``) scatters candidate
  gradients with atomicAdd on CUDA; in deterministic mode the CUDA registration runs the chunked ATen
  backward instead (csrc/ops/infonce_sampled_aten.cpp), exposed as ``torch.ops.gkdfast_testing`` so
  the CPU tests here check it against the CPU kernel.
* ``spmm(norm="gcn")`` with edge weights sums degrees with ``index_add_``, which PyTorch itself makes
  deterministic in that mode.
* cuSPARSE (spmm sum / mean, the staged LSP backward, the bag-of-words first layer) is left for
  gkdfast's own kernels and dense products in that mode (csrc/cuda/csr_matmul.h).
* ncontrast's positive weights (built once per graph) are coalesced by a sort and a segmented
  reduction on CUDA (``gkdfast._rows.add_rows``), with or without the mode.
* The sampler's weighted in-degrees are a segmented sum, not a float cumsum (which raises on CUDA in
  that mode before torch 2.14).
The CUDA variants run on a GPU only (scripts/device_check.sh).
"""
from __future__ import annotations

import contextlib

import pytest
import torch

import gkdfast
from gkdfast import losses
from gkdfast._rows import add_rows
from gkdfast.losses import contrastive
from gkdfast.nn import sparse_input
from gkdfast.sampling.blocks import full_in_degree

chunked = torch.ops.gkdfast_testing.infonce_sampled_backward_chunked


@contextlib.contextmanager
def deterministic_algorithms():
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _problem(dtype, n=300, rows=(50, 170), d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(n, d, generator=gen, dtype=torch.float64).to(dtype)
    noise = 0.1 * torch.randn(rows[1] - rows[0], d, generator=gen, dtype=torch.float64)
    a = (c[rows[0]:rows[1]].double() + noise).to(dtype)
    return a, c, rows[0]


@pytest.mark.parametrize("pos_offset", [0, -1])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("workspace_mb", [None, 0.01])  # 0.01 MiB: two anchor rows per chunk
def test_chunked_backward_equals_the_cpu_kernel(dtype, pos_offset, workspace_mb):
    a, c, r0 = _problem(dtype)
    k, seed, inv_tau = 37, 7, 2.0
    loss, lse = torch.ops.gkdfast.infonce(a, c, inv_tau, pos_offset, True, k, seed, r0)
    gen = torch.Generator().manual_seed(1)
    g = torch.rand(loss.shape, generator=gen, dtype=loss.dtype)
    gl = torch.rand(loss.shape, generator=gen, dtype=loss.dtype)
    g[3] = gl[3] = 0  # a row without incoming gradient contributes nothing
    gl[5] = 0
    want = torch.ops.gkdfast.infonce_backward(a, c, lse, g, gl, inv_tau, pos_offset, True, k, seed, r0)
    with gkdfast.settings.tile_workspace(workspace_mb):
        got = chunked(a, c, lse, g, gl, inv_tau, pos_offset, k, seed, r0)
    tol = {} if dtype == torch.float64 else dict(rtol=1e-5, atol=5e-5)
    for x, y in zip(got, want):
        assert x.dtype == dtype
        torch.testing.assert_close(x, y, **tol)
    assert got[0][3].abs().max() == 0  # zero incoming gradient: the anchor row's gradient is zero


def test_chunked_backward_is_reproducible():
    a, c, r0 = _problem(torch.float32)
    loss, lse = torch.ops.gkdfast.infonce(a, c, 2.0, 0, True, 40, 3, r0)
    first = chunked(a, c, lse, loss, lse, 2.0, 0, 40, 3, r0)
    again = chunked(a, c, lse, loss, lse, 2.0, 0, 40, 3, r0)
    assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_chunked_backward_widens_half_precision_inputs():
    a, c, r0 = _problem(torch.float32)
    a16, c16 = a.bfloat16(), c.bfloat16()
    loss, lse = torch.ops.gkdfast.infonce(a16.float(), c16.float(), 2.0, 0, True, 20, 5, r0)
    want = torch.ops.gkdfast.infonce_backward(a16.float(), c16.float(), lse, loss, lse, 2.0, 0, True, 20, 5, r0)
    got = chunked(a16, c16, lse, loss, lse, 2.0, 0, 20, 5, r0)
    for x, y in zip(got, want):
        assert x.dtype == torch.bfloat16
        torch.testing.assert_close(x.float(), y, rtol=1e-2, atol=1e-2)


def test_chunked_backward_refuses_what_the_op_refuses():
    a, c, r0 = _problem(torch.float64)
    lse = torch.zeros(a.size(0), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="pos_offset 0"):
        chunked(a, c, lse, lse, lse, 1.0, 3, 5, 0, r0)
    with pytest.raises(RuntimeError, match="sampled negatives"):
        chunked(a, c, lse, lse, lse, 1.0, 0, 0, 0, r0)


def test_cpu_results_do_not_change_in_deterministic_mode():
    # The CPU kernels are deterministic already: the mode must not switch them to another path.
    s, t = _problem(torch.float32, rows=(0, 300))[1], _problem(torch.float32, seed=1, rows=(0, 300))[1]
    grads = []
    for mode in (False, True):
        ss, tt = s.clone().requires_grad_(), t.clone().requires_grad_()
        ctx = deterministic_algorithms() if mode else contextlib.nullcontext()
        with ctx:
            losses.crd(ss, tt, num_negatives=16, seed=2).backward()
        grads.append((ss.grad, tt.grad))
    assert all(torch.equal(x, y) for x, y in zip(*grads))


# ------------------------------------------------------------------------------ CUDA (and the same on CPU)
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                      reason="no CUDA device")])]


@pytest.mark.parametrize("loss_name", ["crd", "ncontrast"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_sampled_backward_is_bitwise_reproducible_in_deterministic_mode(loss_name, dtype, device):
    # 4,000 rows, 64 negatives each: many candidates are hit by several rows, so atomicAdd orders vary.
    s = torch.randn(4000, 64, device=device).to(dtype)
    t = torch.randn(4000, 64, device=device).to(dtype)
    g = gkdfast.data.csbm(num_nodes=4000, num_classes=4, seed=0).graph.to(device)

    def grads():
        ss, tt = s.clone().requires_grad_(), t.clone().requires_grad_()
        if loss_name == "crd":
            out = losses.crd(ss, tt, num_negatives=64, seed=3)
        else:
            out = losses.ncontrast(g, ss, hops=1, num_negatives=64, seed=3) + 0 * tt.sum()
        out.backward()
        return ss.grad, tt.grad

    free = grads()
    with deterministic_algorithms():
        first, second = grads(), grads()
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-3)
    for x, y in zip(first, free):
        torch.testing.assert_close(x.float(), y.float(), **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_training_step_runs_and_reproduces_in_deterministic_mode(device):
    # Every op of a GNN student's step with the structure and contrastive losses must have a deterministic
    # path (PyTorch raises on the first op without one) and give the same bits twice.
    data = gkdfast.data.csbm(num_nodes=3000, num_classes=4, seed=0)
    g, x = data.graph.to(device), data.x.to(device)
    t_hid = torch.randn(g.num_nodes, 32, device=device)

    def step():
        torch.manual_seed(0)
        model = gkdfast.nn.GAT(x.size(1), 8, 4, heads=4).to(device)
        logits, hid = model(x, g, return_hidden=True)
        head = gkdfast.nn.ProjectionHead(hid.size(1), 32, 32).to(device)
        loss = (logits.logsumexp(1).mean() + losses.lsp(g, hid, t_hid, kernel="rbf", gamma=0.1)
                + losses.gsp(hid, t_hid, kernel="rbf", loss="kl", gamma=0.1)
                + losses.crd(head(hid), t_hid, num_negatives=32, seed=1)
                + losses.ncontrast(g, hid, hops=2, num_negatives=16, seed=2)
                + gkdfast.global_pool(hid, torch.tensor([0, 1000, 3000], device=device), "max").sum())
        loss.backward()
        return [loss.detach()] + [p.grad for p in model.parameters()]

    with deterministic_algorithms():
        first, second = step(), step()
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("device", DEVICES)
def test_weighted_gcn_norm_is_bitwise_reproducible_in_deterministic_mode(device):
    g = gkdfast.data.csbm(num_nodes=20000, num_classes=4, seed=0).graph.to(device)
    w = torch.rand(g.num_edges, device=device)
    x = torch.randn(g.num_nodes, 32, device=device)
    with deterministic_algorithms():
        first = gkdfast.spmm(g, x, edge_weight=w, norm="gcn")
        second = gkdfast.spmm(g, x, edge_weight=w, norm="gcn")
    assert torch.equal(first, second)


def test_weighted_full_in_degree_is_a_segmented_sum():
    # Rows 1 and 4 have no in-edges; the weights' order is the edge_index's, summed per destination.
    edge_index = torch.tensor([[1, 2, 3, 0, 2, 0], [0, 0, 2, 2, 2, 3]])
    w = torch.tensor([0.5, 1.5, 2.0, 0.25, 1e-8, 3.0])
    g = gkdfast.Graph(edge_index, num_nodes=5, edge_weight=w)
    want = torch.zeros(5, dtype=torch.float64).index_add_(0, edge_index[1], w.double()).float()
    got = full_in_degree(g)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    with deterministic_algorithms():
        assert torch.equal(full_in_degree(g), want)


@pytest.mark.parametrize("device", DEVICES)
def test_bag_of_words_input_goes_dense_on_cuda_in_deterministic_mode(device):
    x = torch.zeros(50, 400, device=device)
    x[torch.arange(50), torch.arange(50) * 7] = 1.0  # 0.25 % non-zeros: the sparse first layer's case
    assert sparse_input.sparse_operand(x) is not None
    with deterministic_algorithms():
        on_cuda = x.is_cuda
        assert (sparse_input.sparse_operand(x) is None) == on_cuda


@pytest.mark.parametrize("shape", [(), (3,)])
def test_add_rows_in_fixed_order_equals_index_add(shape):
    gen = torch.Generator().manual_seed(0)
    index = torch.tensor([4, 0, 4, 2, 0, 4])  # unsorted, repeated, rows 1 and 3 empty
    src = torch.randn((6,) + shape, generator=gen, dtype=torch.float64, requires_grad=True)
    want = torch.zeros((5,) + shape, dtype=torch.float64).index_add(0, index, src)
    got = add_rows(5, index, src, fixed_order=True)
    torch.testing.assert_close(got, want)
    row_weights = torch.arange(1.0, 6.0, dtype=torch.float64).view((5,) + (1,) * len(shape))
    (g_src,) = torch.autograd.grad((got * row_weights).sum(), src)
    torch.testing.assert_close(g_src, torch.arange(1.0, 6.0, dtype=torch.float64)[index].view((6,) + (1,) * len(shape))
                               .expand_as(src))
    assert torch.equal(add_rows(5, index, src.detach()), want.detach())  # CPU default: index_add itself


def test_ncontrast_positive_weights_in_fixed_order_equal_the_cpu_sums():
    # ncontrast's positives (Â^hops) are coalesced in a fixed order on CUDA; here on the CPU both ways.
    gen = torch.Generator().manual_seed(1)
    p, c = torch.randint(0, 30, (400,), generator=gen), torch.randint(0, 30, (400,), generator=gen)
    v = torch.rand(400, generator=gen, dtype=torch.float64)
    a, b = contrastive._coalesce(p, c, v, 30, fixed_order=False), contrastive._coalesce(p, c, v, 30, fixed_order=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(a[2], b[2])

