"""Hypothesis fuzzing of the raw ``torch.ops.gkdfast`` entry points, run in a subprocess by
tests/test_fuzz.py (a crash here, the failure this guards against, fails that test instead of
killing pytest).

Each example builds a valid input (a small random CSR with its transpose, or dense rows), applies
one random corruption (a value out of range or negative, a non-monotone or too short/long rowptr, a
wrong length, dtype or rank, a non-contiguous view, NaN/Inf, a hub node with every edge, empty
arrays), and calls one op.  An oracle in plain Python says whether the corrupted input is still
valid.  Outcome rules:

* invalid input: a ValueError / TypeError / IndexError / RuntimeError whose one-line message starts
  with ``gkdfast`` and names one of the op's arguments;
* valid input: the result equals the pure-PyTorch reference (``gkdfast.reference``), NaN where it
  has NaN; a valid but unusual layout (non-contiguous) may instead be refused with such a message.

Before each call the case is printed (flushed), so a crash leaves its input on stdout.  The last
line is ``{"done": true, ...}``; a broken rule raises (hypothesis prints the shrunk example) and the
process exits non-zero.  ``GKDFAST_FUZZ_EXAMPLES`` scales the number of examples.
"""
from __future__ import annotations

import json
import os
import re
import sys

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gkdfast  # noqa: F401  (loads the ops)
from gkdfast import reference as ref
from gkdfast.graph import Graph
from gkdfast.reference import contrastive as ref_contrastive
from gkdfast.reference import sampling as ref_sampling
from gkdfast.reference import structure as ref_structure

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from known_issues import gsp_issue, infonce_issue, lsp_issue, message_issue  # noqa: E402

ops = torch.ops.gkdfast
EXAMPLES = int(os.environ.get("GKDFAST_FUZZ_EXAMPLES", "120"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)
ERRORS = (ValueError, TypeError, IndexError, RuntimeError)
COUNTS = {"examples": 0, "refused": 0, "computed": 0}

# Mismatches that need a kernel change (csrc/): counted, not compared (see known_issues.py).

GRAPH_ARGS = ("rowptr", "col", "t_rowptr", "t_col", "t_eid")
# Names a message may use for an argument besides the schema's own ("graph rowptr", "edge_weight").
# "graph indices" (a dtype message about rowptr and col together) counts as naming them.
ALIASES = {"weight": ("weight", "edge_weight", "edge weights"), "x": ("x",), "scores": ("scores",),
           "rows": ("rows", "row"), "a": ("a",), "b": ("b",), "student": ("student",), "teacher": ("teacher",), "seeds": ("seed node", "seeds"),
           "rowptr": ("rowptr", "graph indices"), "col": ("col", "graph indices"), "t_rowptr": ("t_rowptr", "transposed CSR"),
           "t_col": ("t_col", "transposed CSR"), "t_eid": ("t_eid", "transposed CSR")}


def note(**case):
    print(json.dumps(case, default=str), flush=True)


def names_an_argument(message: str, args) -> bool:
    words = [w for a in args for w in ALIASES.get(a, (a,))]
    return any(re.search(rf"(?<![A-Za-z_]){re.escape(w)}(?![A-Za-z_])", message) for w in words)


def check_outcome(op, args, call, valid, reference, strict=True, known=None):
    """Runs ``call`` and applies the outcome rules (module docstring); ``known`` names a KNOWN issue
    that applies to this input (the result is then not compared)."""
    COUNTS["examples"] += 1
    try:
        got = call()
    except ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else ""
        if valid and strict:
            raise AssertionError(f"{op}: a valid input was refused: {type(exc).__name__}: {msg}")
        assert msg.startswith("gkdfast"), f"{op}: message does not name gkdfast: {msg!r}"
        issue = message_issue(msg)
        if issue is not None:
            COUNTS[issue] = COUNTS.get(issue, 0) + 1
        else:
            assert names_an_argument(msg, args), f"{op}: message names none of {args}: {msg!r}"
        COUNTS["refused"] += 1
        return
    assert valid, f"{op}: an invalid input was accepted (silent result)"
    if known is not None:
        COUNTS[known] = COUNTS.get(known, 0) + 1
        return
    want = reference()
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        if g.dtype.is_floating_point:
            torch.testing.assert_close(g, w.to(g.dtype), rtol=1e-4, atol=1e-5, equal_nan=True)
        else:
            assert torch.equal(g.long(), w.long()), f"{op}: {g} != {w}"
    COUNTS["computed"] += 1


# ------------------------------------------------------------------------------------ graphs
@st.composite
def graphs(draw):
    """(rowptr, col, t_rowptr, t_col, t_eid, n) of a valid small graph, int64 or int32; sometimes a hub
    node receives every edge (a huge degree relative to the graph)."""
    n = draw(st.integers(0, 8))
    e = 0 if n == 0 else draw(st.integers(0, 24))
    src = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=e, max_size=e))
    if n and draw(st.booleans()):
        dst = [draw(st.integers(0, n - 1))] * e  # hub
        if draw(st.booleans()):  # and many more edges on it
            src = src + [i % n for i in range(200)]
            dst = dst + [dst[0] if dst else 0] * 200
    else:
        dst = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=e, max_size=e))
    dtype = draw(st.sampled_from([torch.int64, torch.int32]))
    g = Graph(torch.tensor([src, dst], dtype=torch.int64).view(2, -1), n).to(index_dtype=dtype)
    t_rowptr, t_col, t_eid = g.transpose_csr()
    return [g.rowptr.clone(), g.col.clone(), t_rowptr.clone(), t_col.clone(), t_eid.clone()], n


def csr_is_valid(rowptr, col, n_expected=None) -> bool:
    if rowptr.dim() != 1 or col.dim() != 1 or rowptr.numel() < 1:
        return False
    if rowptr.dtype not in (torch.int32, torch.int64) or col.dtype != rowptr.dtype:
        return False
    n = rowptr.numel() - 1
    if n_expected is not None and n != n_expected:
        return False
    rp = rowptr.long()
    if int(rp[0]) != 0 or int(rp[-1]) != col.numel() or bool((rp[1:] < rp[:-1]).any()):
        return False
    return not (col.numel() and (int(col.min()) < 0 or int(col.max()) >= n))


def graph_is_valid(arrays, need_transpose) -> bool:
    """The docs/ops.md "Graph arguments" table, in plain Python."""
    rowptr, col, t_rowptr, t_col, t_eid = arrays
    if not csr_is_valid(rowptr, col):
        return False
    n, e = rowptr.numel() - 1, col.numel()
    if t_rowptr.numel() == 0 and t_col.numel() == 0 and t_eid.numel() == 0:
        return not (need_transpose and e > 0)
    if any(t.dim() != 1 or t.dtype != rowptr.dtype for t in (t_rowptr, t_col, t_eid)):
        return False
    if not csr_is_valid(t_rowptr, t_col, n) or t_eid.numel() != e:
        return False
    eid = t_eid.long()
    if e and (int(eid.min()) < 0 or int(eid.max()) >= e or eid.unique().numel() != e):
        return False
    trp, rp = t_rowptr.long(), rowptr.long()
    t_row = torch.repeat_interleave(torch.arange(n), trp[1:] - trp[:-1])
    if e and not torch.equal(col.long()[eid], t_row):
        return False
    dst_of_eid = torch.repeat_interleave(torch.arange(n), rp[1:] - rp[:-1])[eid] if e else eid
    return not (e and not torch.equal(dst_of_eid, t_col.long()))


CORRUPTIONS = ("none", "set", "drop_last", "append", "swap", "dtype", "noncontig", "rank2", "empty_transpose",
               "float")


@st.composite
def corrupted_graphs(draw):
    arrays, n = draw(graphs())
    kind = draw(st.sampled_from(CORRUPTIONS))
    which = draw(st.integers(0, 4))
    a = arrays[which]
    e = arrays[1].numel()
    if kind == "set" and a.numel():
        i = draw(st.integers(0, a.numel() - 1))
        v = draw(st.sampled_from([-1, -(10**6), n, n + 1, e, e + 1, 10**6, 2**31 - 1, 0, 1]))
        a = a.clone()
        a[i] = v if a.dtype == torch.int64 or abs(v) < 2**31 else 2**31 - 1
    elif kind == "drop_last" and a.numel():
        a = a[:-1].clone()
    elif kind == "append":
        a = torch.cat([a, a.new_tensor([draw(st.integers(-2, n + 2))])])
    elif kind == "swap" and a.numel() >= 2:
        i, j = draw(st.integers(0, a.numel() - 1)), draw(st.integers(0, a.numel() - 1))
        a = a.clone()
        a[i], a[j] = a[j].clone(), a[i].clone()
    elif kind == "dtype":
        a = a.to(torch.int32 if a.dtype == torch.int64 else torch.int64)
    elif kind == "noncontig":
        a = a.repeat_interleave(2)[::2]  # same values, stride 2
    elif kind == "rank2":
        a = a.unsqueeze(0)
    elif kind == "float":
        a = a.float()
    arrays = list(arrays)
    arrays[which] = a
    if kind == "empty_transpose":
        arrays[2:] = [arrays[0].new_empty(0)] * 3
    return arrays, n, kind


def _parts(arrays):
    rowptr, col = arrays[0], arrays[1]
    return Graph._from_parts(rowptr.long().contiguous(), col.long().contiguous(), rowptr.numel() - 1)


@st.composite
def randn(draw, *shape):
    """Standard-normal floats from a hypothesis-drawn seed (so shrinking replays the same tensor)."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    return torch.randn(*shape, generator=gen)


@st.composite
def node_rows(draw, n, d=None):
    """An [n, d] float32 tensor, sometimes with NaN/Inf entries."""
    d = draw(st.integers(1, 4)) if d is None else d
    x = draw(randn(n, d))
    if n and draw(st.booleans()):
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e30]))
    return x


@SETTINGS
@given(st.data())
def fuzz_graph_ops(data):
    arrays, n, kind = data.draw(corrupted_graphs())
    op = data.draw(st.sampled_from(["spmm", "spmm_w", "sddmm", "edge_softmax", "lsp", "sample_neighbors"]))
    strict = kind != "noncontig"
    x = data.draw(node_rows(n))
    e_ok = arrays[1].numel() if arrays[1].dim() == 1 else -1
    note(op=op, kind=kind, n=n, shapes=[list(a.shape) for a in arrays], dtypes=[str(a.dtype) for a in arrays])
    if op in ("spmm", "spmm_w"):
        reduce = data.draw(st.sampled_from(["sum", "mean", "max", "min"]))
        w = data.draw(randn(max(e_ok, 0))) if op == "spmm_w" else None
        valid = graph_is_valid(arrays, need_transpose=False)
        check_outcome("spmm", GRAPH_ARGS + ("weight", "x"), lambda: ops.spmm(*arrays, w, x, reduce)[0], valid,
                      lambda: ref.spmm(_parts(arrays), x, reduce, w), strict)
    elif op == "sddmm":
        valid = graph_is_valid(arrays, need_transpose=False)
        check_outcome("sddmm", GRAPH_ARGS + ("a", "b"), lambda: ops.sddmm(*arrays, x, x), valid,
                      lambda: ref.sddmm(_parts(arrays), x, x), strict)
    elif op == "edge_softmax":
        heads = data.draw(st.sampled_from([None, 1, 3]))
        s = data.draw(randn(max(e_ok, 0)) if heads is None else randn(max(e_ok, 0), heads))
        # edge_softmax reads only rowptr: the scores' length must match rowptr[-1] (= E when valid).
        rp = arrays[0]
        valid = (rp.dim() == 1 and rp.numel() >= 1 and rp.dtype in (torch.int32, torch.int64) and int(rp[0]) == 0
                 and not bool((rp[1:] < rp[:-1]).any()) and int(rp[-1]) == s.size(0))
        check_outcome("edge_softmax", ("rowptr", "scores"), lambda: ops.edge_softmax(arrays[0], s), valid,
                      lambda: ref.edge_softmax(Graph._from_parts(rp.long().contiguous(),
                                                                 torch.zeros(s.size(0), dtype=torch.long),
                                                                 rp.numel() - 1), s), strict)
    elif op == "lsp":
        t = data.draw(node_rows(n))
        kernel = data.draw(st.sampled_from(["linear", "cosine", "rbf", "laplace"]))
        valid = graph_is_valid(arrays, need_transpose=False)
        check_outcome("lsp", GRAPH_ARGS + ("student", "teacher"),
                      lambda: ops.lsp(*arrays, x, t, kernel, 1.0, 1.0)[0], valid,
                      lambda: ref_structure.lsp(_parts(arrays), x, t, kernel, 1.0, 1.0, "none"), strict,
                      known=lsp_issue(x, t) if valid else None)
    else:
        seeds = torch.tensor(data.draw(st.lists(st.integers(-2, n + 1), max_size=4)), dtype=torch.int64)
        fanout = data.draw(st.sampled_from([-1, 1, 2]))
        valid = csr_is_valid(arrays[0], arrays[1]) and bool(((seeds >= 0) & (seeds < n)).all())
        check_outcome("sample_neighbors", ("rowptr", "col", "seeds"),
                      lambda: ops.sample_neighbors(arrays[0], arrays[1], seeds, fanout, 0, 0), valid,
                      lambda: ref_sampling.sample_neighbors(arrays[0], arrays[1], seeds, fanout, 0, 0), strict)


# ------------------------------------------------------------------------------------ dense ops
@st.composite
def dense_pair(draw):
    """(a, c): rows of floats, sometimes malformed (rank, dtype, width, NaN/Inf, non-contiguous, empty)."""
    n = draw(st.integers(0, 7))
    d = draw(st.integers(1, 4))
    a, c = draw(node_rows(n, d)), draw(node_rows(n, d))
    kind = draw(st.sampled_from(["none", "none", "rank1", "int", "width", "rows", "noncontig", "float64"]))
    if kind == "rank1":
        a = a.reshape(-1)
    elif kind == "int":
        a = a.nan_to_num().long()
    elif kind == "width":
        c = draw(randn(n, d + 1))
    elif kind == "rows":
        c = draw(randn(n + 1, d))
    elif kind == "noncontig":
        a = a.t().contiguous().t()
    elif kind == "float64":
        c = c.double()
    return a, c, kind


def _dense_ok(a, c, same_rows=True):
    return (a.dim() == 2 and c.dim() == 2 and a.dtype == c.dtype and a.dtype in (torch.float32, torch.float64)
            and a.size(1) == c.size(1) and (a.size(0) == c.size(0) or not same_rows))


@SETTINGS
@given(st.data())
def fuzz_dense_ops(data):
    a, c, kind = data.draw(dense_pair())
    op = data.draw(st.sampled_from(["infonce", "gram_lse", "gsp_tiled", "topk_similar", "sample_negatives"]))
    strict = kind != "noncontig"
    note(op=op, kind=kind, a=list(a.shape), c=list(c.shape), dtypes=[str(a.dtype), str(c.dtype)])
    if op == "infonce":
        k = data.draw(st.sampled_from([0, 0, 1, 3, -1]))
        pos = data.draw(st.sampled_from([-1, 0, 1, 9]))
        excl = data.draw(st.booleans())
        row_begin = data.draw(st.sampled_from([0, 0, 1, -1]))
        r = max(a.size(0) - max(row_begin, 0), 0) if a.dim() == 2 else 0
        a_rows = a[:r] if a.dim() == 2 and row_begin > 0 else a
        n = c.size(0) if c.dim() == 2 else 0
        valid = (_dense_ok(a_rows, c, same_rows=False) and k >= 0 and 0 <= row_begin <= n - a_rows.size(0)
                 and not (k > 0 and pos > 0) and not (k > 0 and n < 2))
        check_outcome("infonce", ("anchors", "candidates", "num_negatives", "row_begin", "pos_offset", "a", "c"),
                      lambda: ops.infonce(a_rows, c, 2.0, pos, excl, k, 7, row_begin), valid,
                      lambda: ref_contrastive.infonce(a_rows, c, 2.0, pos, excl, k, 7, row_begin), strict,
                      known=infonce_issue(a_rows, c, k) if valid else None)
    elif op == "gram_lse":
        excl = data.draw(st.booleans())
        valid = a.dim() == 2 and a.dtype in (torch.float32, torch.float64)
        check_outcome("gram_lse", ("z",), lambda: ops.gram_lse(a, 0.5, excl), valid,
                      lambda: ref_contrastive.gram_lse(a, 0.5, excl), strict)
    elif op == "gsp_tiled":
        kernel = data.draw(st.sampled_from(["linear", "cosine", "poly", "l2", "rbf", "laplace", "nope"]))
        loss = data.draw(st.sampled_from(["mse", "kl"]))
        n = a.size(0) if a.dim() == 2 else 0
        rb, re_ = data.draw(st.sampled_from([(0, -1), (0, -1), (1, n), (0, n + 1), (-1, 2), (2, 1)]))
        # Widths may differ (student and teacher are compared through their own kernels).
        valid = (a.dim() == 2 and c.dim() == 2 and a.dtype == c.dtype and a.dtype in (torch.float32, torch.float64)
                 and a.size(0) == c.size(0) and kernel != "nope" and 0 <= rb <= (n if re_ < 0 else re_) <= n)
        check_outcome("gsp_tiled", ("student", "teacher", "kernel", "row_begin", "row_end"),
                      lambda: ops.gsp_tiled(a, c, kernel, loss, 0.5, 1.0, rb, re_)[0], valid,
                      lambda: ref_structure.gsp_rows(a, c, kernel, loss, 1.0, 0.5, rb, n if re_ < 0 else re_), strict,
                      known=gsp_issue(a, c, kernel) if valid else None)
    elif op == "topk_similar":
        n = c.size(0) if c.dim() == 2 else 0
        k = data.draw(st.sampled_from([0, 1, n, n + 1, -1]))
        valid = _dense_ok(a, c, same_rows=False) and 0 <= k <= n
        # Values only: which of several tied keys fills a slot is unspecified, and so is the rank of a
        # NaN score (its row is then only checked not to crash).
        nan = valid and bool((a @ c.t()).isnan().any())
        check_outcome("topk_similar", ("query", "keys", "k"), lambda: ops.topk_similar(a, c, k)[0], valid,
                      lambda: torch.sort(a @ c.t(), dim=1, descending=True)[0][:, :k], strict,
                      known="topk_nan_unranked" if nan else None)
    else:
        n = data.draw(st.integers(-1, 6))
        k = data.draw(st.sampled_from([0, 2, -1]))
        rows = torch.tensor(data.draw(st.lists(st.integers(-1, 7), max_size=4)), dtype=torch.int64)
        rows = rows.int() if data.draw(st.booleans()) and kind == "int" else rows
        valid = n >= 2 and k >= 0 and rows.dtype == torch.int64 and bool(((rows >= 0) & (rows < n)).all())
        check_outcome("sample_negatives", ("rows", "num_nodes", "num_negatives"),
                      lambda: ops.sample_negatives(rows, n, k, 3), valid,
                      lambda: ref_contrastive.sample_negatives(rows, n, k, 3), strict)


def main():
    fuzz_graph_ops()
    fuzz_dense_ops()
    print(json.dumps({"done": True, **COUNTS}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
