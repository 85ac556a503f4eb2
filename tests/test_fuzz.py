"""Hypothesis fuzzing of the public API (issue 18): random malformed graphs and tensors thrown at
``gkdfast.Graph``, ``gkdfast.spmm / sddmm / edge_softmax / gcn_norm``, ``gkdfast.losses.*`` and
``gkdfast.topk_similar``; the raw ``torch.ops.gkdfast`` entry points run in a subprocess
(tests/native_safety/fuzz_raw_ops.py), where a crash is possible.

Outcome rules: a ValueError / TypeError / IndexError whose message starts with ``gkdfast`` and names
the argument that was corrupted; or a result equal to the pure-PyTorch reference backend (NaN where
it has NaN).  Never a crash, never a silent wrong answer.  Kernel behaviours that break the rules and
need a change in csrc/ are listed in tests/native_safety/known_issues.py and pinned below by strict
xfail tests.  ``derandomize=True`` and modest example counts: the suite takes well under a minute.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gkdfast  # noqa: E402
from gkdfast import _backend  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "native_safety"))
from known_issues import ISSUES, gsp_issue, lsp_issue  # noqa: E402

FUZZ = settings(max_examples=int(os.environ.get("GKDFAST_FUZZ_EXAMPLES", "80")), derandomize=True, deadline=None,
                database=None, suppress_health_check=list(HealthCheck), print_blob=False)
ERRORS = (ValueError, TypeError, IndexError)
native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")


def _names(message: str, arg: str) -> bool:
    return re.search(rf"(?<![A-Za-z_]){re.escape(arg)}(?![A-Za-z_])", message) is not None


def _outcome(call, args, known=None):
    """Runs ``call`` natively and on the reference backend and applies the rules; ``args`` are the
    argument names a refusal may name (the corrupted one first)."""
    try:
        got = call()
    except ERRORS as exc:
        msg = str(exc).splitlines()[0]
        assert msg.startswith("gkdfast"), msg
        assert any(_names(msg, a) for a in args), f"message names none of {args}: {msg!r}"
        return "refused"
    with _backend.forced("reference"):
        want = call()
    if known is not None:
        return "known"
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        if g.dtype.is_floating_point:
            torch.testing.assert_close(g, w, rtol=2e-4, atol=1e-5, equal_nan=True)
        else:
            assert torch.equal(g, w)
    return "computed"


@st.composite
def randn(draw, *shape, dtype=torch.float32):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return torch.randn(*shape, generator=gen, dtype=dtype)


@st.composite
def graphs(draw, max_nodes=8):
    """A valid gkdfast.Graph (possibly empty, possibly with a hub that receives every edge)."""
    n = draw(st.integers(0, max_nodes))
    e = 0 if n == 0 else draw(st.integers(0, 20))
    src = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=e, max_size=e))
    if n and draw(st.booleans()):
        hub = draw(st.integers(0, n - 1))
        extra = draw(st.sampled_from([0, 300]))
        src, dst = src + [i % n for i in range(extra)], [hub] * (e + extra)
    else:
        dst = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=e, max_size=e))
    ei = torch.tensor([src, dst], dtype=torch.int64).view(2, -1)
    return gkdfast.Graph(ei.to(draw(st.sampled_from([torch.int64, torch.int32]))), n)


MATRIX_CORRUPTIONS = ("none", "none", "rows", "rank1", "rank3", "int", "bool", "float64", "float16", "nan", "inf",
                      "noncontig", "list", "meta", "empty_width")


@st.composite
def node_matrix(draw, n, d):
    """An [n, d] float32 tensor with one random corruption; returns (tensor, corruption)."""
    x = draw(randn(n, d))
    kind = draw(st.sampled_from(MATRIX_CORRUPTIONS))
    if kind == "rows":
        x = draw(randn(n + draw(st.sampled_from([1, -1])) if n else 1, d))
    elif kind == "rank1":
        x = x.reshape(-1)
    elif kind == "rank3":
        x = x.unsqueeze(0)
    elif kind == "int":
        x = (x * 3).long()
    elif kind == "bool":
        x = x > 0
    elif kind in ("float64", "float16"):
        x = x.to(getattr(torch, kind))
    elif kind in ("nan", "inf") and x.numel():
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = float(kind) * draw(st.sampled_from([1, -1]))
    elif kind == "noncontig":
        x = draw(randn(d, n)).t()
    elif kind == "list":
        x = x.tolist()
    elif kind == "meta":
        x = x.to("meta")
    elif kind == "empty_width":
        x = x[:, :0]
    return x, kind


@st.composite
def edge_values(draw, e, heads=False):
    """[E] (or [E, H]) per-edge values with one random corruption."""
    h = draw(st.sampled_from([None, 1, 3])) if heads else None
    shape = (e,) if h is None else (e, h)
    v = draw(randn(*shape))
    kind = draw(st.sampled_from(["none", "none", "length", "rank", "int", "nan", "inf", "float64", "noncontig"]))
    if kind == "length":
        v = draw(randn(e + 1, *shape[1:]))
    elif kind == "rank":
        v = v.reshape(1, 1, -1)
    elif kind == "int":
        v = (v * 3).long()
    elif kind in ("nan", "inf") and e:
        v.view(-1)[draw(st.integers(0, v.numel() - 1))] = float(kind)
    elif kind == "float64":
        v = v.double()
    elif kind == "noncontig":
        v = draw(randn(*shape[::-1])).t() if h else draw(randn(2 * e))[::2]
    return v, kind


# ----------------------------------------------------------------------------------------- Graph
@FUZZ
@given(st.data())
def test_graph_construction_refuses_malformed_edges_or_builds_the_right_csr(data):
    n = data.draw(st.integers(0, 6))
    e = data.draw(st.integers(0, 8))
    idx = data.draw(st.lists(st.integers(-3, n + 2), min_size=2 * e, max_size=2 * e))
    ei = torch.tensor(idx, dtype=torch.int64).view(2, e)
    kind = data.draw(st.sampled_from(["plain", "int32", "float", "nan", "rank1", "three_rows", "weight_len",
                                      "weight_int", "weight_nan", "num_nodes_neg", "num_nodes_none"]))
    num_nodes, weight, arg = n, None, "edge_index"
    if kind == "int32":
        ei = ei.int()
    elif kind == "float":
        ei = ei.float()
    elif kind == "nan":
        ei = ei.float()
        if e:
            ei[0, 0] = float("nan")
    elif kind == "rank1":
        ei = ei.reshape(-1)
    elif kind == "three_rows":
        ei = torch.cat([ei, ei[:1]])
    elif kind.startswith("weight"):
        arg = "edge_weight"
        weight = data.draw(randn(e + (1 if kind == "weight_len" else 0)))
        if kind == "weight_int":
            weight = weight.long()
        elif kind == "weight_nan" and e:
            weight[0] = float("nan")
    elif kind == "num_nodes_neg":
        num_nodes, arg = -1, "num_nodes"
    elif kind == "num_nodes_none":
        num_nodes = None
    try:
        g = gkdfast.Graph(ei, num_nodes, weight)
    except ERRORS as exc:
        msg = str(exc).splitlines()[0]
        assert msg.startswith("gkdfast"), msg
        assert any(_names(msg, a) for a in (arg, "edge_index", "num_nodes", "edge_weight")), msg
        return
    # Accepted: the input was a valid [2, E] integer index within num_nodes ...
    src, dst = ei[0].long(), ei[1].long()
    n_eff = g.num_nodes
    assert ei.dim() == 2 and ei.size(0) == 2 and not ei.is_floating_point()
    assert e == 0 or (int(ei.min()) >= 0 and int(ei.max()) < n_eff)
    # ... and the CSR lists, for each destination, its sources in the input's edge order.
    assert g.rowptr.tolist() == [0] + torch.bincount(dst, minlength=n_eff).cumsum(0).tolist()
    order = torch.sort(dst, stable=True)[1]
    assert g.col.long().tolist() == src[order].tolist()
    assert torch.equal(g.edge_index.long(), ei.long())
    if weight is not None:
        assert torch.equal(g.edge_weight, weight, ) or bool(weight.isnan().any())


@FUZZ
@given(st.data())
def test_undirected_build_refuses_malformed_pairs_or_builds_their_set(data):
    from gkdfast.graph_build import symmetric_csr
    from gkdfast.reference import graph_build as ref

    n = data.draw(st.integers(0, 6))
    e = data.draw(st.integers(0, 10))
    src = data.draw(st.lists(st.integers(-2, n + 2), min_size=e, max_size=e))
    dst = data.draw(st.lists(st.integers(-2, n + 2), min_size=e, max_size=e))
    dtype = data.draw(st.sampled_from([torch.int32, torch.int64]))
    kind = data.draw(st.sampled_from(["plain", "plain", "float", "bool", "short", "num_nodes_neg"]))
    s, d, num = torch.tensor(src, dtype=dtype), torch.tensor(dst, dtype=dtype), n
    if kind == "float":
        s = s.float()
    elif kind == "bool":
        d = d > 0
    elif kind == "short":
        d = torch.cat([d, d[:1], torch.zeros(1, dtype=dtype)])
    elif kind == "num_nodes_neg":
        num = -1
    try:
        rowptr, col = symmetric_csr(s, d, num)
    except ERRORS as exc:
        msg = str(exc).splitlines()[0]
        assert msg.startswith("gkdfast.symmetric_csr"), msg
        return
    # Accepted: plain ids, all in range, and the CSR of their set of undirected pairs
    assert kind == "plain" and all(0 <= v < n for v in src + dst)
    rows = [sorted({u for a, b in zip(src, dst) if a != b for u, w in ((a, b), (b, a)) if w == r})
            for r in range(n)]
    assert rowptr.tolist() == [0] + torch.tensor([len(r) for r in rows], dtype=torch.int64).cumsum(0).tolist()
    assert col.tolist() == [u for r in rows for u in r] and col.dtype == dtype
    want = ref.symmetric_csr(s, d, num)
    assert torch.equal(want[0], rowptr) and torch.equal(want[1], col)


@FUZZ
@given(st.data())
def test_inverse_cdf_search_refuses_bad_arrays_or_equals_searchsorted(data):
    """Any float list as cdf (sorted or not, NaN, infinities, repeats), any buckets, any values: a
    one-line error naming the op, or exactly torch.searchsorted's indices on both backends."""
    from gkdfast.inverse_cdf import cdf_guide, cdf_search

    floats = st.one_of(st.floats(-5, 5, allow_nan=False), st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
    cdf_list = data.draw(st.lists(floats, min_size=0, max_size=8))
    if data.draw(st.booleans()):
        cdf_list = sorted(v for v in cdf_list if not math.isnan(v))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    cdf = torch.tensor(cdf_list, dtype=dtype)
    values = torch.tensor(data.draw(st.lists(floats, min_size=0, max_size=12)), dtype=dtype)
    buckets = data.draw(st.sampled_from([None, 0, 1, 2, 5, 17, -3]))
    for mode in ("auto", "reference"):
        with _backend.forced(mode):
            try:
                guide = cdf_guide(cdf, buckets)
            except ERRORS as exc:
                msg = str(exc).splitlines()[0]
                assert msg.startswith("gkdfast.cdf_guide"), msg
                bad_order = any(math.isnan(v) for v in cdf_list) or cdf_list != sorted(cdf_list)
                assert bad_order or (buckets is not None and buckets < 1), msg
                continue
            assert torch.equal(cdf_search(cdf, values, guide), torch.searchsorted(cdf, values))


@FUZZ
@given(st.data())
def test_parse_numbers_reads_what_python_reads(data):
    """Any soup of number-like pieces, letters, signs and separators: the native reader gives the
    reference's values and first-bad-token offset bit for bit, or hands the text to Python (status 2)."""
    from gkdfast.reference import number_table as ref

    if not _backend.native_loaded():
        pytest.skip("native extension not built")
    pieces = st.sampled_from(["0", "1", "9", "12", ".", "e", "E", "+", "-", "inf", "nan", "x", "_", " ", ",", "\n",
                              "\t", "\x1c", "00", "e308", "e-330", "1e400", "\u00e9", "\u00a0"])
    text = "".join(data.draw(st.lists(pieces, max_size=40))).encode()
    if data.draw(st.booleans()):  # room after every token for the kernel's 8-byte word reads
        text += b" " * 64
    dtype = data.draw(st.sampled_from([torch.int64, torch.float32, torch.float64]))
    t = torch.frombuffer(bytearray(text), dtype=torch.uint8) if text else torch.empty(0, dtype=torch.uint8)
    got, status = torch.ops.gkdfast.parse_numbers(t, dtype)
    view = {torch.float32: torch.int32, torch.float64: torch.int64, torch.int64: torch.int64}[dtype]
    if status[0] == 2:  # the tokens before the one Python decides on are the reference's
        text = text[:int(status[1])]
        got = got.view(view).tolist()
        want, want_status = ref.parse_numbers(text, dtype)
        assert want_status.tolist() == [0, -1] and got == want.view(view).tolist(), text
        return
    want, want_status = ref.parse_numbers(text, dtype)
    assert status.tolist() == want_status.tolist(), text
    assert got.view(view).tolist() == want.view(view).tolist(), text


@FUZZ
@given(st.data())
def test_graph_from_csr_refuses_malformed_arrays(data):
    n = data.draw(st.integers(0, 5))
    deg = data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    rowptr = torch.tensor([0] + torch.tensor(deg, dtype=torch.int64).cumsum(0).tolist(), dtype=torch.int64)
    e = int(rowptr[-1])
    col = torch.tensor(data.draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=e, max_size=e)),
                       dtype=torch.int64) if n else torch.zeros(0, dtype=torch.int64)
    kind = data.draw(st.sampled_from(["none", "col_out", "col_neg", "rowptr_dec", "rowptr_start", "rowptr_end",
                                      "rowptr_2d", "col_float", "rowptr_empty"]))
    if kind == "col_out" and e:
        col[data.draw(st.integers(0, e - 1))] = n + data.draw(st.integers(0, 5))
    elif kind == "col_neg" and e:
        col[0] = -1
    elif kind == "rowptr_dec" and n >= 2 and e:
        rowptr[1] = e + 1
    elif kind == "rowptr_start":
        rowptr[0] = 1
    elif kind == "rowptr_end":
        rowptr[-1] = e + 2
    elif kind == "rowptr_2d":
        rowptr = rowptr.unsqueeze(0)
    elif kind == "col_float":
        col = col.float()
    elif kind == "rowptr_empty":
        rowptr = rowptr[:0]
    try:
        g = gkdfast.Graph.from_csr(rowptr, col)
    except ERRORS as exc:
        msg = str(exc).splitlines()[0]
        assert msg.startswith("gkdfast") and (_names(msg, "rowptr") or _names(msg, "col")), msg
        return
    rp = rowptr.long()
    assert rp.dim() == 1 and int(rp[0]) == 0 and int(rp[-1]) == col.numel() and bool((rp[1:] >= rp[:-1]).all())
    assert col.numel() == 0 or (int(col.min()) >= 0 and int(col.max()) < g.num_nodes)
    assert torch.equal(g.rowptr.long(), rp) and torch.equal(g.col.long(), col.long())


# ----------------------------------------------------------------------------------------- graph ops
@native
@FUZZ
@given(st.data())
def test_graph_ops_refuse_or_match_the_reference(data):
    g = data.draw(graphs())
    op = data.draw(st.sampled_from(["spmm", "spmm_w", "spmm_gcn", "sddmm", "edge_softmax", "gcn_norm", "lsp",
                                    "ncontrast"]))
    d = data.draw(st.integers(1, 3))
    x, kind = data.draw(node_matrix(g.num_nodes, d))
    if op in ("spmm", "spmm_w", "spmm_gcn"):
        reduce = "sum" if op == "spmm_gcn" else data.draw(st.sampled_from(["sum", "mean", "max", "min"]))
        w, wkind = data.draw(edge_values(g.num_edges)) if op != "spmm" else (None, "none")
        norm = "gcn" if op == "spmm_gcn" else None
        args = ("edge_weight", "x") if wkind != "none" else ("x",)
        _outcome(lambda: gkdfast.spmm(g, x, reduce, edge_weight=w, norm=norm), args)
    elif op == "sddmm":
        b, _ = data.draw(node_matrix(g.num_nodes, d))
        _outcome(lambda: gkdfast.sddmm(g, x, b), ("a", "b"))
    elif op == "edge_softmax":
        s, _ = data.draw(edge_values(g.num_edges, heads=True))
        _outcome(lambda: gkdfast.edge_softmax(g, s), ("scores",))
    elif op == "gcn_norm":
        w, _ = data.draw(edge_values(g.num_edges))
        _outcome(lambda: gkdfast.gcn_norm(g, w)[1], ("edge_weight",))
    elif op == "lsp":
        t, tkind = data.draw(node_matrix(g.num_nodes, d + 1))
        kernel = data.draw(st.sampled_from(["linear", "cosine", "poly", "l2", "rbf", "laplace"]))
        ok = all(isinstance(v, torch.Tensor) and v.dim() == 2 and v.is_floating_point() for v in (x, t))
        known = lsp_issue(x, t) if ok and x.device.type == "cpu" and t.device.type == "cpu" else None
        args = ("student", "teacher", "embeddings")
        _outcome(lambda: gkdfast.losses.lsp(g, x, t, kernel=kernel, reduction="none"), args, known)
    else:
        k, hops = data.draw(st.sampled_from([None, 2])), data.draw(st.sampled_from([1, 2]))
        _outcome(lambda: gkdfast.losses.ncontrast(g, x, tau=0.5, hops=hops, num_negatives=k, seed=3,
                                                  reduction="none"), ("z",))


# ----------------------------------------------------------------------------------------- dense losses
@native
@FUZZ
@given(st.data())
def test_dense_losses_refuse_or_match_the_reference(data):
    n = data.draw(st.integers(0, 7))
    d = data.draw(st.integers(1, 3))
    a, kind = data.draw(node_matrix(n, d))
    b = data.draw(randn(n, d))
    op = data.draw(st.sampled_from(["gsp", "crd", "nt_xent", "kd", "topk_similar", "rsd"]))
    first = {"gsp": "student", "crd": "student", "nt_xent": "z1", "kd": "student_logits", "topk_similar": "query",
             "rsd": "student"}[op]
    args = (first, "student", "teacher", "embeddings", "student_logits", "teacher_logits")
    if op == "gsp":
        kernel = data.draw(st.sampled_from(["linear", "cosine", "poly", "l2", "rbf", "laplace"]))
        loss = data.draw(st.sampled_from(["mse", "kl"]))
        ok = isinstance(a, torch.Tensor) and a.dim() == 2 and a.is_floating_point() and a.device.type == "cpu"
        _outcome(lambda: gkdfast.losses.gsp(a, b, kernel=kernel, loss=loss, gamma=0.5), args,
                 gsp_issue(a, b, kernel) if ok else None)
    elif op == "crd":
        k = data.draw(st.sampled_from([None, 2]))
        _outcome(lambda: gkdfast.losses.crd(a, b, num_negatives=k, seed=1, reduction="none"), args)
    elif op == "nt_xent":
        _outcome(lambda: gkdfast.losses.nt_xent(a, b, reduction="none"), args)
    elif op == "kd":
        _outcome(lambda: gkdfast.losses.kd(a, b, temperature=2.0, reduction="none"), args)
    elif op == "rsd":
        _outcome(lambda: gkdfast.losses.rsd(a, b), args)
    else:
        k = data.draw(st.integers(0, n + 1))
        try:
            vals, _ = gkdfast.topk_similar(a, b, k)
        except ERRORS as exc:
            msg = str(exc).splitlines()[0]
            assert msg.startswith("gkdfast.topk_similar") and any(_names(msg, x) for x in ("query", "keys", "k")), msg
            return
        # In the query's dtype, as topk_similar computes (float16 here: a coarser tolerance).
        scores = (torch.nn.functional.normalize(a.double(), dim=1, eps=1e-8)
                  @ torch.nn.functional.normalize(b.to(a.dtype).double(), dim=1, eps=1e-8).t())
        tol = dict(rtol=1e-2, atol=1e-2) if a.dtype == torch.float16 else dict(rtol=1e-4, atol=1e-5)
        if not bool(scores.isnan().any()):  # the rank of a NaN score is unspecified
            torch.testing.assert_close(vals.double(), torch.sort(scores, 1, descending=True)[0][:, :k], **tol)


# ----------------------------------------------------------------------------------------- raw ops
@native
def test_raw_ops_never_crash_and_refuse_or_match_the_reference():
    script = os.path.join(HERE, "native_safety", "fuzz_raw_ops.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", GKDFAST_FUZZ_EXAMPLES=os.environ.get("GKDFAST_FUZZ_EXAMPLES", "150"))
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env, timeout=600)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, (f"rc {proc.returncode}; last case: {lines[-1] if lines else None}\n"
                                  f"{proc.stderr[-3000:]}")
    summary = json.loads(lines[-1])
    assert summary["done"] and summary["examples"] >= 2 * int(env["GKDFAST_FUZZ_EXAMPLES"]) * 0.9
    assert summary["refused"] > 0 and summary["computed"] > 0  # both kinds of outcome were exercised
    unknown = set(summary) - {"done", "examples", "refused", "computed", "topk_nan_unranked"} - set(ISSUES)
    assert not unknown, unknown


# ----------------------------------------------------------------------------------------- known issues
# Kernel behaviours the fuzzers once found (now fixed: NaN propagates, messages name the argument)
# and the ones still open (strict xfails: each fails today because of the kernel behaviour in
# known_issues.ISSUES; when the kernel is fixed it passes, xfail(strict) turns that into a failure,
# and the entry goes).
@native
def test_known_spmm_max_propagates_nan():
    g = gkdfast.Graph(torch.tensor([[0, 1], [2, 2]]), 3)
    out = gkdfast.spmm(g, torch.tensor([[1.0], [float("nan")], [0.0]]), "max")
    assert bool(out[2].isnan().all())


@native
def test_known_lsp_propagates_nan():
    g = gkdfast.Graph(torch.tensor([[0, 1], [1, 0]]), 2)
    out = gkdfast.losses.lsp(g, torch.randn(2, 3), torch.tensor([[float("nan")] * 3, [1.0] * 3]), reduction="none")
    assert bool(out.isnan().all())


@native
def test_known_gsp_rbf_propagates_nan():
    t = torch.randn(3, 2)
    t[1, 0] = float("nan")
    assert bool(gkdfast.losses.gsp(torch.randn(3, 2), t, kernel="rbf").isnan())


@native
def test_known_edge_softmax_nan_fills_its_row():
    g = gkdfast.Graph(torch.tensor([[0, 0], [0, 0]]), 1)
    assert bool(gkdfast.edge_softmax(g, torch.tensor([float("nan"), 1.0])).isnan().all())


@native
def test_known_sampled_infonce_all_neg_inf_row():
    # (a strict xfail until session 34: the streaming log-sum-exp made NaN of a -inf first value)
    a, c = torch.tensor([[float("inf")]]), torch.tensor([[1.0], [-1.0]])
    loss, lse = torch.ops.gkdfast.infonce(a, c, 1.0, -1, False, 1, 7)  # the one draw is row 1: logit -inf
    assert lse.item() == float("-inf")


@native
@pytest.mark.xfail(strict=True, reason=ISSUES["infonce_nonfinite"])
def test_known_sampled_infonce_two_pos_inf_logits():
    a, c = torch.tensor([[float("inf")], [1.0]]), torch.tensor([[1.0], [1.0]])
    loss, lse = torch.ops.gkdfast.infonce(a, c, 1.0, 0, False, 1, 7)  # positive and the draw: both +inf
    assert lse[0].item() == float("inf")


@native
def test_known_contrastive_op_messages_name_the_argument():
    for call in (lambda: torch.ops.gkdfast.gram_lse(torch.ones(3, 2, dtype=torch.long), 1.0, True),
                 lambda: torch.ops.gkdfast.infonce(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2), 1.0, 0,
                                                   False, 0, 0)):
        with pytest.raises(RuntimeError) as info:
            call()
        assert any(_names(str(info.value), a) for a in ("z", "anchors", "candidates")), str(info.value)


def test_reference_spmm_max_propagates_nan():
    """The reference's rule (fixed here): a NaN message wins its row, it does not zero the row."""
    g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 1, 1]]), 3)
    x = torch.tensor([[1.0], [1.0], [float("nan")]])
    with _backend.forced("reference"):
        for reduce in ("max", "min"):
            out = gkdfast.spmm(g, x, reduce)
            assert bool(out[1].isnan().all()) and out[0].item() == 0.0 and out[2].item() == 0.0
