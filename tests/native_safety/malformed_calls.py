"""Throws malformed graphs at every torch.ops.gkdfast graph op and prints one JSON line per case:
{"case": ..., "outcome": "error" | "ok", "message": ...}.  Run in a subprocess by
tests/test_native_safety.py, so a crash (the failure this guards against) fails that test instead of
killing pytest.  GKDFAST_VALIDATE_ATEN=1 runs the device-agnostic (CUDA) validation on the CPU."""
from __future__ import annotations

import json
import sys

import torch

import gkdfast  # noqa: F401  (loads the ops)

ops = torch.ops.gkdfast


def graph(index_dtype):
    # 5 nodes, 8 edges, CSR by destination, plus its transpose as gkdfast.Graph builds it.
    ei = torch.tensor([[1, 2, 0, 3, 4, 0, 1, 2], [0, 0, 1, 1, 2, 3, 4, 4]])
    g = gkdfast.Graph(ei, 5).to(index_dtype=index_dtype)
    t_rowptr, t_col, t_eid = g.transpose_csr()
    return g.rowptr.clone(), g.col.clone(), t_rowptr.clone(), t_col.clone(), t_eid.clone()


def cases(index_dtype):
    rp, col, trp, tcol, teid = graph(index_dtype)
    x = torch.randn(5, 4)
    e = col.numel()

    def spmm(rp=rp, col=col, trp=trp, tcol=tcol, teid=teid, reduce="sum"):
        return lambda: ops.spmm(rp, col, trp, tcol, teid, None, x, reduce)

    def mod(t, idx, val):
        t = t.clone()
        t[idx] = val
        return t

    yield "valid spmm", spmm(), True
    # The validated graph is remembered; an in-place write bumps the version and re-validates.
    rp2, col2 = rp.clone(), col.clone()
    yield "valid spmm (remembered)", spmm(rp=rp2, col=col2), True

    def corrupt_then_call():
        spmm(rp=rp2, col=col2)()
        col2[3] = 10**6
        return spmm(rp=rp2, col=col2)()

    yield "in-place corruption after a valid call", corrupt_then_call, False
    yield "col out of range", spmm(col=mod(col, 3, 5)), False
    yield "col far out of range", spmm(col=mod(col, 3, 10**6)), False
    yield "negative col", spmm(col=mod(col, 0, -1)), False
    yield "rowptr past E", spmm(rp=mod(rp, -1, e + 3)), False
    yield "rowptr ends before E", spmm(rp=mod(rp, -1, e - 2)), False
    yield "rowptr non-monotone", spmm(rp=mod(rp, 2, 7)), False
    yield "rowptr not starting at 0", spmm(rp=mod(rp, 0, 1)), False
    yield "t_col out of range", spmm(tcol=mod(tcol, 0, 9)), False
    yield "t_eid out of range", spmm(teid=mod(teid, 0, e)), False
    yield "t_eid negative", spmm(teid=mod(teid, 1, -4)), False
    yield "t_eid repeated", spmm(teid=mod(teid, 1, teid[0])), False
    yield "t_rowptr non-monotone", spmm(trp=mod(trp, 2, 0)), False
    yield "t_col inconsistent", spmm(tcol=tcol.flip(0)), False
    yield "transpose wrong dtype", spmm(teid=teid.to(torch.int64 if index_dtype == torch.int32 else torch.int32)), False
    yield "max: col out of range", spmm(col=mod(col, 5, 7), reduce="max"), False
    dinv = torch.ones(5)

    def gcn(rp=rp, col=col, dinv=dinv, xx=x):
        return lambda: ops.spmm_gcn(rp, col, trp, tcol, teid, None, dinv, xx)

    yield "spmm_gcn valid", gcn(), True
    yield "spmm_gcn col out of range", gcn(col=mod(col, 3, 5)), False
    yield "spmm_gcn rowptr past E", gcn(rp=mod(rp, -1, e + 3)), False
    yield "spmm_gcn dinv too short", gcn(dinv=torch.ones(4)), False
    yield "spmm_gcn dinv 2-D", gcn(dinv=torch.ones(5, 1)), False
    yield "spmm_gcn x too short", gcn(xx=x[:4]), False
    # csr_mm: the graph's 5 x 5 CSR read as a 5 x 7 matrix (x has 7 rows; the transpose has 7 rows too)
    x7, vals = torch.randn(7, 4), torch.rand(e)
    trp7 = torch.cat([trp, trp[-1:].repeat(2)])

    def cmm(rp=rp, col=col, trp=trp7, tcol=tcol, teid=teid, vals=vals, xx=x7):
        return lambda: ops.csr_mm(rp, col, trp, tcol, teid, vals, xx)

    none = rp.new_empty(0)
    yield "csr_mm valid", cmm(), True
    yield "csr_mm valid without a transpose", cmm(trp=none, tcol=none, teid=none), True
    yield "csr_mm col out of range", cmm(col=mod(col, 3, 7)), False
    yield "csr_mm negative col", cmm(col=mod(col, 0, -1)), False
    yield "csr_mm rowptr past E", cmm(rp=mod(rp, -1, e + 3)), False
    yield "csr_mm rowptr non-monotone", cmm(rp=mod(rp, 2, 7)), False
    yield "csr_mm values too short", cmm(vals=vals[:-1]), False
    yield "csr_mm values float64", cmm(vals=vals.double()), False
    yield "csr_mm x 1-D", cmm(xx=x7[:, 0]), False
    yield "csr_mm x too short for col", cmm(xx=x7[:4]), False
    yield "csr_mm square transpose of a 5 x 7 matrix", cmm(trp=trp), False
    yield "csr_mm t_eid repeated", cmm(teid=mod(teid, 1, teid[0])), False
    yield "csr_mm t_col out of range", cmm(tcol=mod(tcol, 0, 5)), False
    # sddmm with a rowptr whose end lies past E writes past its [E] output.
    yield "sddmm rowptr past E", lambda: ops.sddmm(mod(rp, -1, e + 4), col, trp, tcol, teid, x, x), False
    yield "sddmm valid", lambda: ops.sddmm(rp, col, trp, tcol, teid, x, x), True
    s = torch.randn(e)
    yield "edge_softmax non-monotone", lambda: ops.edge_softmax(mod(rp, 2, 1), s), False
    yield "edge_softmax rowptr past E", lambda: ops.edge_softmax(mod(rp, -1, e + 5), s), False
    yield "edge_softmax valid", lambda: ops.edge_softmax(rp, s), True
    yield "edge_softmax_backward non-monotone", lambda: ops.edge_softmax_backward(mod(rp, 3, 0), s, s), False
    out, arg = ops.spmm(rp, col, trp, tcol, teid, None, x, "max")
    g = torch.ones_like(out)
    yield "arg_backward valid", lambda: ops.spmm_arg_backward(rp, col, trp, tcol, teid, None, x, arg, g), True
    yield "arg_backward arg >= E", lambda: ops.spmm_arg_backward(rp, col, trp, tcol, teid, None, x,
                                                                 mod(arg, (0, 0), e + 100), g), False
    yield "arg_backward arg of another row", lambda: ops.spmm_arg_backward(rp, col, trp, tcol, teid, None, x,
                                                                           mod(arg, (0, 0), e - 1), g), False
    yield "arg_backward arg < -1", lambda: ops.spmm_arg_backward(rp, col, trp, tcol, teid, None, x,
                                                                 mod(arg, (1, 1), -7), g), False
    t = torch.randn(5, 4)
    yield "lsp valid", lambda: ops.lsp(rp, col, trp, tcol, teid, x, t, "rbf", 1.0, 1.0), True
    yield "lsp bad t_col", lambda: ops.lsp(rp, col, trp, mod(tcol, 2, 50), teid, x, t, "rbf", 1.0, 1.0), False
    yield "lsp bad t_eid", lambda: ops.lsp(rp, col, trp, tcol, mod(teid, 2, 1000), x, t, "rbf", 1.0, 1.0), False
    yield "lsp col out of range", lambda: ops.lsp(rp, mod(col, 1, 5), trp, tcol, teid, x, t, "rbf", 1.0, 1.0), False
    seeds = torch.tensor([0, 4, 2])
    yield "sample_neighbors valid", lambda: ops.sample_neighbors(rp, col, seeds, 2, 0, 0), True
    yield "sample_neighbors rowptr past E", lambda: ops.sample_neighbors(mod(rp, -1, e + 3), col, seeds, 2, 0, 0), False
    yield "sample_neighbors non-monotone", lambda: ops.sample_neighbors(mod(rp, 2, 7), col, seeds, 2, 0, 0), False
    yield "sample_neighbors col out of range", lambda: ops.sample_neighbors(rp, mod(col, 3, 10**6), seeds, 2, 0,
                                                                            0), False
    yield "ppr_topk valid", lambda: ops.ppr_topk(trp, tcol, seeds, 2, 0.15, 1e-4), True
    yield "ppr_topk rowptr past E", lambda: ops.ppr_topk(mod(trp, -1, e + 3), tcol, seeds, 2, 0.15, 1e-4), False
    yield "ppr_topk non-monotone", lambda: ops.ppr_topk(mod(trp, 2, 7), tcol, seeds, 2, 0.15, 1e-4), False
    yield "ppr_topk col out of range", lambda: ops.ppr_topk(trp, mod(tcol, 3, 10**6), seeds, 2, 0.15, 1e-4), False
    yield "ppr_topk source out of range", lambda: ops.ppr_topk(trp, tcol, mod(seeds, 1, 99), 2, 0.15, 1e-4), False
    yield "ppr_topk negative source", lambda: ops.ppr_topk(trp, tcol, mod(seeds, 0, -1), 2, 0.15, 1e-4), False
    pair_a, pair_b = col.clone(), col.flip(0).clone()
    yield "symmetric_csr valid", lambda: ops.symmetric_csr(pair_a, pair_b, 5), True
    yield "symmetric_csr id past N", lambda: ops.symmetric_csr(mod(pair_a, 1, 5), pair_b, 5), False
    yield "symmetric_csr huge id", lambda: ops.symmetric_csr(pair_a, mod(pair_b, 2, 10**6), 5), False
    yield "symmetric_csr negative id", lambda: ops.symmetric_csr(mod(pair_a, 0, -1), pair_b, 5), False
    yield "symmetric_csr short dst", lambda: ops.symmetric_csr(pair_a, pair_b[1:], 5), False
    yield "symmetric_csr no nodes", lambda: ops.symmetric_csr(pair_a, pair_b, 0), False
    cdf = torch.cumsum(torch.rand(40, dtype=torch.float64), 0)
    guide = ops.cdf_guide(cdf, 20)
    probe = torch.rand(300, dtype=torch.float64) * 30 - 5
    yield "cdf_search valid", lambda: ops.cdf_search(cdf, guide, probe), True
    # A guide of another array (or garbage) gives wrong indices, never a read outside cdf.
    yield "cdf_search guide past n", lambda: ops.cdf_search(cdf, mod(guide, slice(5, 15), 10**9), probe), True
    yield "cdf_search negative guide", lambda: ops.cdf_search(cdf, mod(guide, slice(0, 12), -7), probe), True
    yield "cdf_search inverted guide", lambda: ops.cdf_search(cdf, guide.flip(0).contiguous(), probe), True
    yield "cdf_search guide of a longer array", lambda: ops.cdf_search(cdf[:3], guide, probe), True
    yield "cdf_search one-entry guide", lambda: ops.cdf_search(cdf, guide[:1], probe), False
    yield "cdf_guide unsorted", lambda: ops.cdf_guide(mod(cdf, 7, -1.0), 20), False
    yield "cdf_guide zero buckets", lambda: ops.cdf_guide(cdf, 0), False
    text = torch.frombuffer(bytearray(b"1 2.5e3 nan,-4\n"), dtype=torch.uint8)
    yield "parse_numbers valid", lambda: ops.parse_numbers(text, torch.float32), True
    yield "parse_numbers strided bytes", lambda: ops.parse_numbers(text[::2], torch.float64), True
    yield "parse_numbers bad token", lambda: ops.parse_numbers(text, torch.int64), True
    # a token running to the last byte (no separator after it) and one of 10^5 digits
    yield "parse_numbers unterminated", lambda: ops.parse_numbers(text[:6].clone(), torch.float64), True
    yield "parse_numbers long token", lambda: ops.parse_numbers(torch.full((10**5,), ord("7"), dtype=torch.uint8),
                                                                torch.float64), True
    yield "parse_numbers long integer", lambda: ops.parse_numbers(torch.full((10**5,), ord("7"), dtype=torch.uint8),
                                                                  torch.int64), True
    yield "parse_numbers int32 text", lambda: ops.parse_numbers(text.int(), torch.int64), False
    yield "parse_numbers 2-D text", lambda: ops.parse_numbers(text.view(1, -1), torch.int64), False
    yield "parse_numbers int32 dtype", lambda: ops.parse_numbers(text, torch.int32), False
    starts = torch.tensor([0, 4, 2, 4], dtype=seeds.dtype)
    yield "deepwalk valid", lambda: ops.deepwalk(rp, col, starts, 4, 3, 2, 2, 0.025, 0, True), True
    yield "deepwalk rowptr past E", lambda: ops.deepwalk(mod(rp, -1, e + 3), col, starts, 4, 3, 2, 2, 0.025, 0,
                                                         True), False
    yield "deepwalk non-monotone", lambda: ops.deepwalk(mod(rp, 2, 7), col, starts, 4, 3, 2, 2, 0.025, 0, True), False
    yield "deepwalk col out of range", lambda: ops.deepwalk(rp, mod(col, 3, 10**6), starts, 4, 3, 2, 2, 0.025, 0,
                                                            True), False
    yield "deepwalk start out of range", lambda: ops.deepwalk(rp, col, mod(starts, 1, 99), 4, 3, 2, 2, 0.025, 0,
                                                              False), False
    yield "deepwalk embedding too large", lambda: ops.deepwalk(rp, col, starts, 2 ** 40, 3, 2, 2, 0.025, 0,
                                                               True), False
    yield "deepwalk negative start", lambda: ops.deepwalk(rp, col, mod(starts, 0, -1), 4, 3, 2, 2, 0.025, 0,
                                                          True), False
    pn, lse = ops.lsp(rp, col, trp, tcol, teid, x, t, "rbf", 1.0, 1.0)
    yield "lsp_backward bad t_eid", lambda: ops.lsp_backward(rp, col, trp, tcol, mod(teid, 0, -3), x, t, pn, lse,
                                                             torch.ones(5), "rbf", 1.0, 1.0, True, True), False


def main():
    for index_dtype in (torch.int64, torch.int32):
        for name, call, valid in cases(index_dtype):
            try:
                call()
                outcome, msg = "ok", ""
            except (ValueError, TypeError, RuntimeError, IndexError) as exc:
                outcome, msg = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            print(json.dumps({"case": f"{name} [{str(index_dtype)[6:]}]", "valid": valid, "outcome": outcome,
                              "message": msg}), flush=True)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
