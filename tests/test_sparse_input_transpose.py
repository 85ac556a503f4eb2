"""The sparse first layer's weight gradient through the cached transposed structure
(gkdfast.nn.sparse_input._CsrTranspose): the same structure torch builds by transposing the CSR matrix,
the same gradients as the dense layer, built once per feature matrix and reused by every dropped-out
copy, and torch's own product wherever the shortcut does not apply.  On the CPU the shortcut is the
native csr_mm op (tests/test_csr_mm.py), elsewhere _CsrLinearWeightGrad around torch's product."""
import pytest
import torch

import gkdfast

from gkdfast.nn import sparse_input
from gkdfast.nn.sparse_input import _CsrLinearWeightGrad, dropout_sparse_input, sparse_linear


def _bag_of_words(n=60, f=45, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, f, generator=gen) < 0.03).to(dtype) * torch.rand(n, f, generator=gen, dtype=dtype)
    x[5] = 0  # an empty row
    x[:, 7] = 0  # an empty column
    return x


def _uses_cached_transpose(out):
    seen, stack = set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == _CsrLinearWeightGrad.__name__ + "Backward" or "csr_mm" in fn.name():
            return True
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return False


@pytest.fixture
def paths(monkeypatch):
    """Counts which product each sparse_linear call took: "native" (csr_mm with the transposed
    structure), "native forward" (csr_mm without it), "shortcut" (_CsrLinearWeightGrad) or "torch"."""
    taken = []
    native, apply, mm = sparse_input._native_product, _CsrLinearWeightGrad.apply, torch.sparse.mm
    monkeypatch.setattr(sparse_input, "_native_product", lambda xs, t, w: taken.append(
        "native" if t is not None else "native forward") or native(xs, t, w))
    monkeypatch.setattr(_CsrLinearWeightGrad, "apply", lambda *a: taken.append("shortcut") or apply(*a))
    monkeypatch.setattr(torch.sparse, "mm", lambda *a: taken.append("torch") or mm(*a))
    return taken


def test_transposed_structure_is_torchs_transpose():
    x = _bag_of_words()
    csr = sparse_input._operand(x)
    t_crow, t_col, perm = csr._gkdfast_csr_t.transposed()
    want = csr.t().to_sparse_csr()
    assert torch.equal(t_crow, want.crow_indices()) and torch.equal(t_col, want.col_indices())
    assert torch.equal(csr.values()[perm], want.values())


@pytest.mark.parametrize("dropped", [False, True])
def test_weight_gradient_equals_the_dense_layer(dropped):
    x = _bag_of_words()
    lin = torch.nn.Linear(45, 6).double()
    ref = torch.nn.Linear(45, 6).double()
    ref.load_state_dict(lin.state_dict())
    if dropped:  # a fixed "dropout" of every other stored entry, scaled by 2
        inp = dropout_sparse_input(x, lambda v: v * (torch.arange(v.numel()) % 2).to(v.dtype) * 2)
        dense_inp = inp.to_dense()
    else:
        inp, dense_inp = x, x
    out = sparse_linear(lin, inp)
    assert _uses_cached_transpose(out)
    out.square().sum().backward()
    ref(dense_inp).square().sum().backward()
    torch.testing.assert_close(lin.weight.grad, ref.weight.grad)
    torch.testing.assert_close(lin.bias.grad, ref.bias.grad)


def test_structure_built_once_and_shared_by_dropped_copies():
    x = _bag_of_words(seed=1)
    lin = torch.nn.Linear(45, 3).double()
    structure = sparse_input._operand(x)._gkdfast_csr_t
    assert structure._t is None  # nothing built until a backward needs it
    built = []
    for step in range(3):
        gen = torch.Generator().manual_seed(step)
        inp = dropout_sparse_input(x, lambda v: v * (torch.rand(v.shape, generator=gen, dtype=v.dtype) > 0.5) * 2)
        assert inp._gkdfast_csr_t is structure
        sparse_linear(lin, inp).sum().backward()
        built.append(structure._t)
    assert built[0] is not None and all(t is built[0] for t in built)


def test_torchs_product_where_the_shortcut_does_not_apply(paths):
    native = sparse_input._native_csr_mm(torch.zeros(1, 1).to_sparse_csr().double(), torch.zeros(1, 1).double())
    x = _bag_of_words(seed=2)
    lin = torch.nn.Linear(45, 4).double()
    sparse_linear(lin, x)
    assert paths == ["native" if native else "shortcut"]  # (the spy sees the shortcut where it applies)
    with torch.no_grad():  # nothing to differentiate
        sparse_linear(lin, x)
    lin.weight.requires_grad_(False)  # a frozen layer
    sparse_linear(lin, x)
    assert paths[1:] == ["native forward" if native else "torch"] * 2
    # A CSR input without the cached structure (e.g. a batch's rows): torch's product, which transposes
    lin.weight.requires_grad_(True)
    plain = x.to_sparse_csr()
    assert not hasattr(plain, "_gkdfast_csr_t")
    out = sparse_linear(lin, plain)
    assert paths[3:] == ["torch"] and not _uses_cached_transpose(out)


@pytest.mark.skipif(not gkdfast._backend.native_loaded(), reason="native extension not built")
def test_cpu_takes_the_native_product(paths):
    """With the extension on the CPU the products are csr_mm's; GKDFAST_BACKEND=reference gives torch's
    product back, with the same values and weight gradient."""
    x = _bag_of_words(seed=4)
    lin = torch.nn.Linear(45, 5).double()
    out = sparse_linear(lin, x)
    (grad,) = torch.autograd.grad(out.square().sum(), lin.weight)
    assert paths == ["native"]
    with gkdfast._backend.forced("reference"):
        ref = sparse_linear(lin, x)
        (ref_grad,) = torch.autograd.grad(ref.square().sum(), lin.weight)
    assert paths[1] == "shortcut"  # (which calls torch's product inside)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_first_backward_under_inference_mode_builds_ordinary_tensors():
    # helper 126: the structure lives as long as the features, so it must not be made of inference
    # tensors when the first backward happens to run under torch.inference_mode().
    x = _bag_of_words(seed=3)
    lin = torch.nn.Linear(45, 3).double()
    out = sparse_linear(lin, x).sum()
    with torch.inference_mode():
        out.backward()
    assert not any(t.is_inference() for t in sparse_input._operand(x)._gkdfast_csr_t._t)
