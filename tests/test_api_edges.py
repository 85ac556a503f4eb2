"""Public-API edge cases found in review: masked teacher classes in kd, ncontrast after the graph's
weights change, hops on the batch path, integer and float64 sparse adjacencies, degrees in the asked
dtype, and relation's Gram mode on no rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gkdfast
from gkdfast import losses


def test_kd_with_a_class_the_teacher_rules_out_is_finite_and_matches_kl_div():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.tensor([[1.0, 2.0, -float("inf"), 0.5], [0.0, 0.0, 0.0, 0.0], [-float("inf"), 3.0, 1.0, 1.0]])
    loss = losses.kd(s, t, temperature=2.0)
    loss.backward()
    want = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="batchmean") * 4  # xlogy: 0·log 0 = 0
    torch.testing.assert_close(loss, want)
    assert torch.isfinite(s.grad).all()
    with pytest.raises(ValueError, match="finite number > 0"):
        losses.kd(s, t, temperature=float("inf"))


def test_ncontrast_follows_the_graphs_weights_when_they_change():
    torch.manual_seed(0)
    ei = torch.randint(0, 20, (2, 60))
    ei = torch.cat([ei, ei.flip(0)], 1)
    g, z = gkdfast.Graph(ei, 20), torch.randn(20, 4)
    plain = losses.ncontrast(g, z, hops=2)
    w = torch.rand(g.num_edges)
    g.edge_weight = w  # a new weight tensor on the same graph
    torch.testing.assert_close(losses.ncontrast(g, z, hops=2), losses.ncontrast(gkdfast.Graph(ei, 20, w), z, hops=2))
    w.mul_(2.0)  # the same tensor written in place
    torch.testing.assert_close(losses.ncontrast(g, z, hops=2),
                               losses.ncontrast(gkdfast.Graph(ei, 20, w.clone()), z, hops=2))
    g.edge_weight = None
    torch.testing.assert_close(losses.ncontrast(g, z, hops=2), plain)


@pytest.mark.parametrize("hops", [0, -2, True, 1.5])
def test_ncontrast_checks_hops_on_the_batch_path_too(hops):
    g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    with pytest.raises(ValueError, match="hops must be an int >= 1"):
        losses.ncontrast(g, torch.randn(3, 4), hops=hops, nodes=torch.tensor([0, 1]))


def test_integer_sparse_values_are_weights_and_scipy_weights_take_the_dtype_asked():
    sp = pytest.importorskip("scipy.sparse")
    idx = torch.tensor([[0, 1], [1, 2]])
    g = gkdfast.Graph.from_sparse(torch.sparse_coo_tensor(idx, torch.tensor([5, 7]), (3, 3)))
    assert g.edge_weight is not None and g.edge_weight.tolist() == [5.0, 7.0]
    m = sp.coo_matrix((np.array([5, 7]), ([0, 1], [1, 2])), shape=(3, 3))
    assert gkdfast.Graph.from_scipy(m).edge_weight.tolist() == [5.0, 7.0]  # the two constructors agree
    m64 = sp.coo_matrix((np.array([0.1, 0.3]), ([0, 1], [1, 2])), shape=(3, 3))
    g32 = gkdfast.Graph.from_scipy(m64)  # float32 by default: the features' usual dtype
    assert g32.edge_weight.dtype == torch.float32 and gkdfast.spmm(g32, torch.ones(3, 2)).dtype == torch.float32
    g64 = gkdfast.Graph.from_scipy(m64, dtype=torch.float64)
    assert g64.edge_weight.dtype == torch.float64 and g64.edge_weight.tolist() == [0.1, 0.3]
    out = gkdfast.spmm(g64, torch.ones(3, 2, dtype=torch.float64))
    assert out.dtype == torch.float64
    with pytest.raises(ValueError, match="smaller than the matrix"):
        gkdfast.Graph.from_scipy(m64, num_nodes=2)
    bools = gkdfast.Graph.from_sparse(torch.sparse_coo_tensor(idx, torch.tensor([True, True]), (3, 3)))
    assert bools.edge_weight is None


def test_gcn_degrees_in_the_asked_dtype_on_a_weighted_graph():
    w = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float32)
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3, w)
    d64 = g.gcn_norm_coefficients(None, torch.float64)
    want = (1.0 + w.double()[[2, 0, 1]]).rsqrt()  # node i's in-edge weight, + the self-loop
    assert d64.dtype == torch.float64
    torch.testing.assert_close(d64, want, rtol=1e-7, atol=0)  # float32 weights, float64 sums
    assert g.gcn_norm_coefficients(None, torch.float32).dtype == torch.float32


def test_relation_gram_on_no_rows_is_zero():
    out = losses.relation([torch.zeros(0, 4), torch.zeros(0, 4)], [torch.zeros(0, 3), torch.zeros(0, 3)], mode="gram")
    assert float(out) == 0.0


def test_a_pairwise_loss_on_the_dense_reference_warns_once_when_large(monkeypatch):
    from gkdfast import _backend

    monkeypatch.setattr(_backend, "_DENSE_WARNED", set())
    s, t = torch.randn(3000, 4).half(), torch.randn(3000, 4).half()  # float16 on the CPU: the reference
    with pytest.warns(RuntimeWarning, match="gsp_tiled runs on the pure-PyTorch reference.*3000 x 3000"):
        losses.gsp(s, t, kernel="rbf")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses.gsp(s, t, kernel="rbf")  # the same reason again: no second warning
        losses.gsp(s[:100], t[:100], kernel="rbf")  # small: silent
        losses.gsp(s.float(), t.float(), kernel="rbf")  # the kernel: silent


def test_every_public_subpackage_is_an_attribute_of_gkdfast():
    # gkdfast.hetero, .condense, .reorder, ... raised AttributeError in a fresh interpreter (the README
    # names them); run in a subprocess so no earlier import hides it
    import subprocess
    import sys

    code = ("import gkdfast; [getattr(gkdfast, n) for n in gkdfast.__all__]; "
            "assert {'hetero', 'condense', 'reorder', 'cpu_memory', 'graph_build'} <= set(gkdfast.__all__); "
            "gkdfast.hetero.RGCN, gkdfast.hetero.HAN, gkdfast.hetero.HGT")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("case", ["lsp", "spmm", "sddmm", "sampled_crd", "topk"])
def test_other_ops_on_the_reference_warn_when_large(monkeypatch, case):
    """lsp, message passing, sampled InfoNCE and top-k hold E x d / R x K x d / block x N values on the
    reference (float16 on the CPU): a warning above the threshold, as the pairwise losses give."""
    import gkdfast
    from gkdfast import _backend

    if _backend._C is None:
        pytest.skip("needs the native extension (its float32 kernels are the silent case)")
    monkeypatch.setattr(_backend, "_DENSE_WARNED", set())
    monkeypatch.setattr(_backend, "DENSE_WARN_BYTES", 1 << 16)
    g = gkdfast.Graph(torch.randint(0, 500, (2, 4000)), num_nodes=500)
    x, y = torch.randn(500, 16).half(), torch.randn(500, 16).half()
    calls = {"lsp": ("losses.lsp", lambda: losses.lsp(g, x, y)),
             "spmm": ("spmm", lambda: gkdfast.spmm(g, x)),
             "sddmm": ("sddmm", lambda: gkdfast.sddmm(g, x, y)),
             "sampled_crd": (r"sampled InfoNCE \(num_negatives=\)", lambda: losses.crd(x, y, num_negatives=64)),
             "topk": ("topk_similar", lambda: gkdfast.topk_similar(x, y, 5))}
    name, call = calls[case]
    with pytest.warns(RuntimeWarning, match=f"gkdfast: {name} runs on the pure-PyTorch reference") as rec:
        call()
    assert [w.filename for w in rec if "pure-PyTorch" in str(w.message)] == [__file__]  # the user's line
    import warnings

    with warnings.catch_warnings():  # float32: the kernel, silent
        warnings.simplefilter("error")
        x, y = x.float(), y.float()
        call()


def test_sddmm_under_autocast_takes_the_float32_kernel_on_the_cpu():
    import gkdfast

    g = gkdfast.Graph(torch.randint(0, 50, (2, 300)), num_nodes=50)
    a, b = torch.randn(50, 8), torch.randn(50, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gkdfast.sddmm(g, a.bfloat16(), b.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, gkdfast.sddmm(g, a.bfloat16().float(), b.bfloat16().float()))


def test_cuda_tensors_with_a_cpu_only_build_warn_once(monkeypatch):
    from gkdfast import _backend

    if _backend._C is None or _backend._C.compiled_with_cuda():
        pytest.skip("needs the CPU-only build (the CUDA build has the kernels)")
    monkeypatch.setattr(_backend, "_CPU_ONLY_WARNED", False)
    with pytest.warns(RuntimeWarning, match="this build has no CUDA kernels"):
        assert _backend.choose("spmm", torch.device("cuda"), torch.float32) == "reference"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _backend.choose("lsp", torch.device("cuda"), torch.float32)  # once per process
