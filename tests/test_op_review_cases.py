"""Kernel cases a review of the C++ ops found broken: graphs made under ``torch.inference_mode()``,
gradients through the ops' saved-statistics outputs, an overflowing row range, the backward of an
edgeless graph without a transposed CSR, and NaN / +inf rules shared by kernels and references."""
import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast.reference import ops as ref_ops
from gkdfast.reference import pooling as ref_pooling

pytestmark = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")
O = torch.ops.gkdfast


def test_graph_ops_accept_index_arrays_made_under_inference_mode():
    """Inference tensors have no version counter: the validation cache used to read it and throw."""
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with torch.inference_mode():
        g = gkdfast.Graph(ei, num_nodes=3)
        x = torch.randn(3, 4)
        for _ in range(2):  # the second call must validate again (nothing remembered for these arrays)
            out = gkdfast.spmm(g, x)
            torch.testing.assert_close(out, ref_ops.spmm(g, x, "sum"))
        pooled = gkdfast.global_pool(x, torch.tensor([0, 1, 3]), "sum")
        torch.testing.assert_close(pooled, torch.stack([x[0], x[1:].sum(0)]))
        bad = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 7])
        with pytest.raises(ValueError, match="col"):  # still checked on every call
            O.spmm(*bad, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long),
                   torch.empty(0, dtype=torch.long), None, x, "sum")


def test_saved_statistics_outputs_carry_no_gradient():
    """lsp's log-sum-exps and gsp_tiled's row statistics are saved for the backward, which ignores a
    gradient through them: they are marked non-differentiable instead of silently giving zero."""
    torch.manual_seed(0)
    s = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, dtype=torch.float64)
    per_row, stats = O.gsp_tiled(s, t, "rbf", "kl", 1.0, 1.0)
    assert per_row.requires_grad and not stats.requires_grad
    g = gkdfast.Graph(torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]]), num_nodes=5)
    t_rowptr, t_col, t_eid = g.transpose_csr()
    per_node, lse = O.lsp(g.rowptr, g.col, t_rowptr, t_col, t_eid, s, t, "rbf", 1.0, 1.0)
    assert per_node.requires_grad and not lse.requires_grad
    assert torch.autograd.gradcheck(
        lambda s: O.lsp(g.rowptr, g.col, t_rowptr, t_col, t_eid, s, t, "rbf", 1.0, 1.0)[0].sum(), (s,))


def test_infonce_row_range_check_does_not_overflow():
    a, c = torch.randn(1, 3), torch.randn(3, 3)
    with pytest.raises((ValueError, RuntimeError), match="row_begin"):
        O.infonce(a, c, 1.0, 0, False, 2, 1, 2**63 - 1)


def test_edgeless_backward_without_a_transposed_csr():
    empty = torch.empty(0, dtype=torch.long)
    rowptr = torch.zeros(4, dtype=torch.long)
    for reduce in ("sum", "mean"):
        x = torch.randn(3, 2, requires_grad=True)
        O.spmm(rowptr, empty, empty, empty, empty, None, x, reduce)[0].sum().backward()
        assert torch.equal(x.grad, torch.zeros(3, 2))
    w = torch.empty(0, requires_grad=True)
    x = torch.randn(3, 2, requires_grad=True)
    O.spmm(rowptr, empty, empty, empty, empty, w, x, "sum")[0].sum().backward()
    assert w.grad.shape == (0,) and torch.equal(x.grad, torch.zeros(3, 2))
    a, b = torch.randn(3, 2, requires_grad=True), torch.randn(3, 2, requires_grad=True)
    O.sddmm(rowptr, empty, empty, empty, empty, a, b).sum().backward()
    assert torch.equal(a.grad, torch.zeros(3, 2)) and torch.equal(b.grad, torch.zeros(3, 2))


def test_max_pool_of_a_segment_holding_nan_is_nan_in_kernel_and_reference():
    x = torch.tensor([[1.0], [float("nan")], [3.0], [7.0]])
    ptr = torch.tensor([0, 3, 4])
    kernel = gkdfast.global_pool(x, ptr, "max")
    reference = ref_pooling.global_pool(x, ptr, "max")
    assert torch.isnan(kernel[0]).all() and torch.isnan(reference[0]).all()  # was 7: another segment's value
    assert torch.equal(kernel[1:], reference[1:])


def test_edge_softmax_with_a_plus_inf_score_is_nan_over_its_row_as_torch_softmax():
    g = gkdfast.Graph(torch.tensor([[1, 2, 3, 0], [0, 0, 0, 1]]), num_nodes=4)
    scores = torch.tensor([float("inf"), 1.0, 2.0, 0.5])
    kernel = gkdfast.edge_softmax(g, scores)
    reference = ref_ops.edge_softmax(g, scores)
    torch.testing.assert_close(kernel, reference, equal_nan=True)
    assert torch.isnan(kernel[:3]).all() and kernel[3] == 1.0


def test_references_stay_on_the_autograd_graph_for_empty_inputs(monkeypatch):
    # (half precision on the CPU always takes the reference: an empty batch's backward raised there)
    monkeypatch.setenv("GKDFAST_BACKEND", "reference")
    s = torch.randn(0, 3, requires_grad=True)
    t = torch.randn(0, 3, requires_grad=True)
    for out in (gkdfast.losses.crd(s, t), gkdfast.global_pool(s, torch.tensor([0, 0]), "max")):
        assert out.requires_grad
        out.sum().backward()


@pytest.mark.parametrize("num_negatives", [2, 0])
def test_a_minus_inf_first_logit_adds_nothing_to_the_streaming_log_sum_exp(num_negatives):
    # The sampled kernel streams the positive first: -inf there made the running log-sum-exp
    # exp(-inf - -inf) = NaN, where the reference (and the all-column path) ignore it.
    from gkdfast.reference import contrastive as rc

    a, c = torch.tensor([[1e20], [1.0], [1.0]]), torch.tensor([[-1e20], [1.0], [1.0]])
    args = (1.0, 0, False, num_negatives, 0)
    for got, want in zip(O.infonce(a, c, *args), rc.infonce(a, c, *args)):
        torch.testing.assert_close(got, want)


def test_max_backward_needs_the_transposed_csr_on_every_thread_count():
    # Which backward path runs depends on d and the thread count; only one of them asked for the
    # transpose, so a call passed on one thread and failed on two.
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
    x, none = torch.randn(3, 20), g.col.new_empty(0)
    _, arg = O.spmm(g.rowptr, g.col, none, none, none, None, x, "max")
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            with pytest.raises(ValueError, match="transposed CSR"):
                O.spmm_arg_backward(g.rowptr, g.col, none, none, none, None, x, arg, torch.ones_like(x))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dropout_runs_the_cpu_kernel(dtype, monkeypatch):
    # the CPU kernel dispatches half types, but the backend table sent them to the (100x slower,
    # memory-hungry) reference; the results are bitwise the same either way
    from gkdfast.nn import philox_dropout as pd
    from gkdfast.reference import dropout as ref_dropout

    x = torch.randn(1000, 7).to(dtype)
    assert gkdfast._backend.choose("dropout", x.device, dtype) == "cpu"
    monkeypatch.setattr(ref_dropout, "dropout", lambda *a: pytest.fail("ran the reference"))
    out = pd.dropout(x, 0.3, seed=11)
    monkeypatch.undo()
    assert torch.equal(out, ref_dropout.dropout(x, 0.3, 11))


def test_dropout_with_a_drawn_seed_compiles_without_a_graph_break():
    from gkdfast.nn import philox_dropout as pd

    f = torch.compile(lambda t: pd.dropout(t, 0.5), fullgraph=True, backend="eager")
    out = f(torch.ones(64))
    assert bool(((out == 0) | (out == 2)).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_direct_cpu_op_calls_with_half_inputs_name_the_supported_dtypes(dtype):
    """The CPU kernels take float32 / float64; ATen's generic "not implemented for 'Half'" said neither
    that nor what to do (the public functions run half on CPU through the reference ops)."""
    g = gkdfast.Graph(torch.tensor([[1, 0], [0, 1]]), 2)
    rowptr, col, t = g.rowptr, g.col, g.transpose_csr()
    x = torch.randn(2, 4, dtype=dtype)
    calls = {"spmm": lambda: O.spmm(rowptr, col, *t, None, x, "sum"),
             "sddmm": lambda: O.sddmm(rowptr, col, *t, x, x),
             "edge_softmax": lambda: O.edge_softmax(rowptr, torch.randn(2, dtype=dtype)),
             "segment_pool": lambda: O.segment_pool(x, rowptr, "sum")}
    for name, call in calls.items():
        with pytest.raises(TypeError, match="takes float32 or float64, got (Half|BFloat16).*reference ops"):
            call()
    assert gkdfast.spmm(g, x).dtype == dtype  # the public function still runs it


def test_edge_softmax_with_the_wrong_number_of_scores_names_the_scores():
    rowptr = torch.tensor([0, 3, 7])
    with pytest.raises(ValueError, match=r"must equal the number of edges \(one per row of scores\), 6"):
        O.edge_softmax(rowptr, torch.randn(6))
