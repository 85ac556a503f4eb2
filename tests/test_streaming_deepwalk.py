"""Streaming DeepWalk (torch.ops.gkdfast.deepwalk, streaming_deepwalk, position_features(method="stream")):
the native kernel run deterministically against the pure-Python reference (same walks, windows,
negatives and update order), the Philox initial vectors, what Hogwild threads may and may not change,
that the embeddings recover planted communities, opcheck and argument errors."""
import pytest
import torch

import gkdfast
from gkdfast import _backend
from gkdfast.data import csbm
from gkdfast.distill.positional import position_features, streaming_deepwalk
from gkdfast.reference import deepwalk as ref

from conftest import load_repo_script

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _directed(n=30, e=90, seed=0):
    """Self-loops, duplicate edges, nodes without in-edges (walks stop there) and isolated nodes."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n - 5, (e,), generator=g)  # the last 5 nodes have no in-edge
    return gkdfast.Graph(torch.stack([src, dst]), n)


@native
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("length, window, negative", [(6, 2, 3), (3, 5, 0), (8, 1, 5)])
def test_deterministic_kernel_equals_the_reference(index_dtype, length, window, negative):
    g = _directed().to(index_dtype=index_dtype)
    starts = torch.tensor([3, 29, 0, 3, 17, 26, 8] * 3, dtype=index_dtype)  # 26..29: no in-edge
    args = (g.rowptr, g.col, starts, 8, length, window, negative, 0.05, 11, True)
    got = torch.ops.gkdfast.deepwalk(*args)
    want = ref.deepwalk(*args)
    assert got.dtype == torch.float32 and got.shape == (30, 8)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7), (got - want).abs().max()
    assert not torch.equal(got, ref.deepwalk(g.rowptr, g.col, starts[:0], 8, length, window, negative, 0.05, 11))
    assert torch.equal(got, torch.ops.gkdfast.deepwalk(*args))  # one thread, in order: bitwise repeatable


@native
def test_initial_vectors_and_untouched_rows():
    g = _directed()
    empty = torch.zeros(0, dtype=torch.int64)
    init = torch.ops.gkdfast.deepwalk(g.rowptr, g.col, empty, 6, 4, 2, 2, 0.025, 5, False)
    assert torch.equal(init, ref.deepwalk(g.rowptr, g.col, empty, 6, 4, 2, 2, 0.025, 5))  # same Philox words
    assert float(init.abs().max()) <= 0.5 / 6 and float(init.std()) > 0.01
    assert not torch.equal(init, torch.ops.gkdfast.deepwalk(g.rowptr, g.col, empty, 6, 4, 2, 2, 0.025, 6, False))
    # Node 30 has no edge at all: walks from it have no pair and no walk reaches it, so with several
    # threads (Hogwild) its row keeps its initial vector while the others move.
    ei = torch.stack([g.col.long(), torch.repeat_interleave(torch.arange(30), g.rowptr[1:] - g.rowptr[:-1])])
    g31 = gkdfast.Graph(ei, 31)
    init31 = torch.ops.gkdfast.deepwalk(g31.rowptr, g31.col, empty, 6, 4, 2, 2, 0.025, 5, False)
    starts = torch.tensor([30] * 8 + list(range(25)))
    got = torch.ops.gkdfast.deepwalk(g31.rowptr, g31.col, starts, 6, 4, 2, 2, 0.025, 5, False)
    assert torch.isfinite(got).all() and torch.equal(got[30], init31[30]) and not torch.equal(got[:25], init31[:25])


@native
def test_threads_train_the_same_model_as_one_thread():
    # Hogwild may change rounding, not what is learnt: both recover the planted classes equally.
    probe_accuracy = load_repo_script("benchmarks/bench_positions.py").probe_accuracy  # half the nodes train it
    data = csbm(num_nodes=400, num_classes=2, feature_dim=4, seed=0)
    accs = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for det in (True, False):
            p = streaming_deepwalk(data.graph, dim=16, walk_length=20, walks_per_node=5, lr=0.05, seed=1,
                                   deterministic=det)
            accs.append(probe_accuracy(p, data.y))
    finally:
        torch.set_num_threads(before)
    # The classes are the planted communities, so positions alone separate them (chance: 0.5).
    assert min(accs) > 0.85, accs
    assert abs(accs[0] - accs[1]) < 0.05, accs


def test_reference_backend_gives_the_native_answer(monkeypatch):
    g = _directed(n=20, e=50, seed=3)
    kw = dict(dim=4, walk_length=4, walks_per_node=2, window=2, negative=2, seed=2, deterministic=True)
    monkeypatch.setattr(_backend, "choose", lambda *a, **k: "reference")
    from_reference = streaming_deepwalk(g, **kw)
    monkeypatch.undo()
    assert from_reference.shape == (20, 4)
    if _backend.native_loaded():
        assert torch.allclose(streaming_deepwalk(g, **kw), from_reference, rtol=1e-5, atol=1e-7)


def test_position_features_stream_and_the_nosmog_recipe():
    data = csbm(num_nodes=120, num_classes=2, feature_dim=4, seed=0)
    p = position_features(data.graph, dim=8, walk_length=5, walks_per_node=1, method="stream")
    assert p.shape == (120, 8) and torch.isfinite(p).all()
    from gkdfast.distill.recipes import get

    x = get("nosmog", pos_method="stream", pos_dim=8, walk_length=5, walks_per_node=1).inputs(data)
    assert x.shape == (120, 12) and torch.equal(x[:, :4], data.x)
    with pytest.raises(ValueError, match="method must be one of 'svd', 'deepwalk', 'stream'"):
        position_features(data.graph, dim=8, method="word2vec")


def test_the_reference_refuses_a_large_graph(monkeypatch):
    monkeypatch.setattr(_backend, "choose", lambda *a, **k: "reference")
    with pytest.raises(RuntimeError, match="need the native kernel"):
        streaming_deepwalk(csbm(num_nodes=5000, seed=0).graph, walks_per_node=5)


def test_empty_graph():
    g = gkdfast.Graph(torch.zeros(2, 0, dtype=torch.int64), 0)
    assert streaming_deepwalk(g, dim=3).shape == (0, 3)


@native
def test_opcheck():
    g = _directed()
    torch.library.opcheck(torch.ops.gkdfast.deepwalk.default,
                          (g.rowptr, g.col, torch.tensor([0, 4, 7]), 4, 5, 2, 2, 0.025, 0, True))


@pytest.mark.parametrize("kw, match", [
    (dict(dim=0), "dim must be a positive int"),
    (dict(window=0), "window must be a positive int"),
    (dict(negative=-1), "negative must be an int >= 0"),
    (dict(lr=0.0), "lr must be positive and finite"),
    (dict(lr=float("inf")), "lr must be positive and finite"),
    (dict(walk_length=10001), "walk_length <= 10000"),
    (dict(lr=True), "lr must be positive and finite"),
    (dict(seed=-1), "seed must be an int >= 0"),
])
def test_public_argument_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        streaming_deepwalk(_directed(), **kw)


@native
@pytest.mark.parametrize("args, exc, match", [
    ((4, 5, 0, 2, 0.025, 0), ValueError, "window must be in"),
    ((4, 5, 2, 101, 0.025, 0), ValueError, "negative must be in"),
    ((0, 5, 2, 2, 0.025, 0), ValueError, "dim must be in"),
    ((4, 5, 2, 2, -1.0, 0), ValueError, "lr must be positive"),
    ((4, 5, 2, 2, 0.025, -3), ValueError, "seed must be >= 0"),
    ((2 ** 40, 5, 2, 2, 0.025, 0), ValueError, "dim must be in"),
])
def test_op_argument_errors(args, exc, match):
    g = _directed()
    with pytest.raises(exc, match=match):
        torch.ops.gkdfast.deepwalk(g.rowptr, g.col, torch.tensor([0, 1]), *args, False)


@native
def test_embedding_size_is_bounded_before_allocating():
    # 2^17 nodes x dim 2^24 = 2^41 floats per matrix: refused by the check, nothing allocated
    rowptr, col = torch.zeros(2 ** 17 + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    with pytest.raises(ValueError, match="too large an embedding matrix"):
        torch.ops.gkdfast.deepwalk(rowptr, col, torch.tensor([0]), 2 ** 24, 5, 2, 2, 0.025, 0, False)


@native
def test_start_out_of_range_is_an_error():
    g = _directed()
    with pytest.raises(ValueError, match="start node 30 is out of range"):
        torch.ops.gkdfast.deepwalk(g.rowptr, g.col, torch.tensor([0, 30]), 4, 5, 2, 2, 0.025, 0, False)
    with pytest.raises(ValueError, match="start node 30 is out of range"):
        ref.deepwalk(g.rowptr, g.col, torch.tensor([0, 30]), 4, 5, 2, 2, 0.025, 0)


@native
@pytest.mark.cuda  # conftest skips it without a GPU; scripts/device_check.sh runs -m cuda
def test_cuda_tensors_train_on_the_host_and_come_back():
    g = _directed()
    starts = torch.tensor([3, 0, 17, 8])
    want = torch.ops.gkdfast.deepwalk(g.rowptr, g.col, starts, 8, 6, 2, 3, 0.05, 11, True)
    got = torch.ops.gkdfast.deepwalk(g.rowptr.cuda(), g.col.cuda(), starts.cuda(), 8, 6, 2, 3, 0.05, 11, True)
    assert got.device.type == "cuda" and torch.equal(got.cpu(), want)
