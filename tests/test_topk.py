"""topk_similar: streaming top-k vs dense torch.topk, gradients of the values, edge cases, errors."""
import pytest
import torch
import torch.nn.functional as F

import gkdfast
from conftest import DEVICES
from gkdfast import topk_similar


def _qk(q, n, d=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("q, n, k", [(5, 40, 3), (600, 5000, 7), (3, 10, 10), (4, 9, 0)])
def test_matches_dense(metric, q, n, k):
    query, keys = _qk(q, n)
    vals, idx = topk_similar(query, keys, k, metric=metric)
    a, b = (F.normalize(query, dim=1), F.normalize(keys, dim=1)) if metric == "cosine" else (query, keys)
    scores = a @ b.t()
    want = scores.topk(k, dim=1)
    assert vals.shape == (q, k) and idx.shape == (q, k) and idx.dtype == torch.int64
    torch.testing.assert_close(vals, want.values)
    # indices may differ only where scores tie; check they select the same scores
    torch.testing.assert_close(scores.gather(1, idx), want.values)


def test_float64_exact_indices_and_ties_by_index():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    vals, idx = topk_similar(torch.tensor([[1.0, 0.0]], dtype=torch.float64), keys, 3)
    assert idx.tolist() == [[0, 2, 3]]  # three equal cosines: smaller index first
    torch.testing.assert_close(vals, torch.ones(1, 3, dtype=torch.float64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("workspace_mb", [None, 0.05])  # 0.05 MiB: several key tiles per query block
def test_ties_at_the_last_slots_keep_the_smallest_indices_on_every_backend(workspace_mb, device):
    """at::topk keeps an arbitrary subset of keys tied at the k-th score: the kernel used to return
    other neighbours than the reference for all-zero or repeated key rows."""
    g = torch.Generator().manual_seed(1)
    keys = torch.randint(-2, 3, (3000, 4), generator=g).double()  # few distinct scores: ties everywhere
    keys[::7] = 0  # all-zero rows (isolated nodes' embeddings) tie on every score
    query = torch.randint(-2, 3, (9, 4), generator=g).double()
    keys, query = keys.to(device), query.to(device)
    scores = query @ keys.t()
    with gkdfast.settings.tile_workspace(workspace_mb):
        for k in (1, 5, 64):
            vals, idx = topk_similar(query, keys, k, metric="dot")
            order = torch.sort(scores, dim=1, descending=True, stable=True)[1][:, :k]
            assert torch.equal(idx, order), k
            assert torch.equal(vals, scores.gather(1, order))
        zero_vals, zero_idx = topk_similar(query, torch.zeros(50, 4, dtype=torch.float64, device=device), 3)
        assert zero_idx.tolist() == [[0, 1, 2]] * 9 and not zero_vals.any()


@pytest.mark.parametrize("device", DEVICES)
def test_nan_ranks_above_inf_on_every_backend(device):
    """NaN scores rank above +inf (topk's and the reference sort's order) also in the tie path, which
    once mapped NaN to +inf and so kept an inf key where the reference keeps a NaN one."""
    from gkdfast._backend import forced

    inf, nan = float("inf"), float("nan")
    for keys in ([[inf], [nan], [nan], [0.0]], [[5.0], [inf], [nan], [nan], [1.0]]):
        for k in (1, 2, 3):
            got = []
            for mode in ("native", "reference"):
                with forced(mode):
                    got.append(topk_similar(torch.tensor([[1.0]], device=device), torch.tensor(keys, device=device), k,
                                            metric="dot")[1].cpu())
            assert torch.equal(got[0], got[1]), (keys, k, got)


def test_values_are_differentiable():
    query, keys = _qk(4, 30, dtype=torch.float64)
    query.requires_grad_()
    keys.requires_grad_()
    vals, idx = topk_similar(query, keys, 5)
    vals.sum().backward()
    assert query.grad is not None and keys.grad is not None
    assert torch.isfinite(query.grad).all()
    # only the selected keys receive gradient
    untouched = torch.ones(30, dtype=torch.bool)
    untouched[idx.flatten()] = False
    assert keys.grad[untouched].abs().sum() == 0


def test_cold_brew_style_lookup():
    # a query equal to a stored key retrieves it first
    _, keys = _qk(1, 200, d=16, seed=3)
    vals, idx = topk_similar(keys[[17, 42]], keys, 1)
    assert idx.flatten().tolist() == [17, 42]


def test_opcheck():
    query, keys = _qk(5, 20, dtype=torch.float64)
    torch.library.opcheck(torch.ops.gkdfast.topk_similar.default, (query, keys, 4))
    # the values' gradient through the saved indices (the raw op had no autograd formula)
    torch.library.opcheck(torch.ops.gkdfast.topk_similar.default,
                          (query.requires_grad_(), keys.requires_grad_(), 4))
    torch.autograd.gradcheck(lambda q, k: torch.ops.gkdfast.topk_similar(q, k, 4)[0], (query, keys))


def test_half_uses_reference():
    query, keys = _qk(3, 50, dtype=torch.float16)
    vals, idx = topk_similar(query, keys, 4)
    ref = topk_similar(query.float(), keys.float(), 4)[0]
    torch.testing.assert_close(vals.float(), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("args, exc, match", [
    ((torch.randn(2, 3), torch.randn(5, 4), 2), ValueError, "width"),
    ((torch.randn(2, 3), torch.randn(5, 3), 6), ValueError, "k must"),
    ((torch.randn(2, 3), torch.randn(5, 3), -1), ValueError, "k must"),
    ((torch.randn(3), torch.randn(5, 3), 1), ValueError, "2-D"),
    (([1.0], torch.randn(5, 3), 1), TypeError, "tensor"),
])
def test_bad_arguments(args, exc, match):
    with pytest.raises(exc, match=match):
        topk_similar(*args)


def test_bad_metric():
    with pytest.raises(ValueError, match="metric"):
        topk_similar(torch.randn(2, 3), torch.randn(5, 3), 2, metric="l2")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    query, keys = _qk(300, 9000, d=32)
    v, i = topk_similar(query, keys, 8)
    vc, ic = topk_similar(query.cuda(), keys.cuda(), 8)
    torch.testing.assert_close(vc.cpu(), v, rtol=1e-4, atol=1e-5)
