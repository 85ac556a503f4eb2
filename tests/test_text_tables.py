"""Reading numbers from text (torch.ops.gkdfast.parse_numbers, gkdfast.data.text_tables) against the
pure-Python reader (gkdfast/reference/number_table.py, numpy's conversions): every token form the
grammar allows, out-of-range floats, integers written as floats, tokens only Python reads, the first
bad token's offset, thread counts, blocks cut anywhere, gzip, errors and opcheck."""
import gzip
import random
import struct

import numpy as np
import pytest
import torch

from gkdfast import _backend
from gkdfast.data import DataFormatError
from gkdfast.data.text_tables import parse_numbers, read_numbers
from gkdfast.reference import number_table as ref

native = pytest.mark.skipif(not _backend.native_loaded(), reason="native extension not built")
DTYPES = [torch.int64, torch.float32, torch.float64]


def _op(text: bytes, dtype):
    t = torch.frombuffer(bytearray(text), dtype=torch.uint8) if text else torch.empty(0, dtype=torch.uint8)
    values, status = torch.ops.gkdfast.parse_numbers(t, dtype)
    return values, status.tolist()


def _bits(t: torch.Tensor) -> list:
    """Values compared bit for bit (NaN payloads and signs, -0.0)."""
    if t.dtype == torch.float32:
        return t.view(torch.int32).tolist()
    if t.dtype == torch.float64:
        return t.view(torch.int64).tolist()
    return t.tolist()


def _float_tokens(rng: random.Random, n: int) -> list:
    out = []
    for _ in range(n):
        k = rng.randrange(12)
        if k == 0:
            out.append(rng.choice(["inf", "-inf", "+inf", "Infinity", "-INFINITY", "nan", "-nan", "NaN", "+nAn"]))
        elif k == 1:  # out of double's range, both ways, and the subnormal edge
            out.append(rng.choice(["1e400", "-1e400", "1e-400", "-1e-400", "2e-324", "3e-324", "-4.9e-324",
                                   "1.8e308", "1e-310", "0e99999999999", "0.000e500", "123456e-330",
                                   "0.00001e-320", "1" + "0" * 400, "0." + "0" * 400 + "1"]))
        elif k == 2:  # a double's exact repr, so no rounding shortcut passes
            out.append(repr(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]))
        elif k == 3:  # long mantissas (correct rounding beyond 17 digits)
            out.append(f"{rng.randrange(10**30)}.{rng.randrange(10**25):025d}e{rng.randint(-60, 60)}")
        elif k == 4:  # forms: ".5", "5.", "+5", "1.E3", "-0", "007"
            out.append(rng.choice([".5", "5.", "+5", "1.E3", "-0", "-0.0", "007", "+.5e-3", "1e+03", "-.0"]))
        elif k == 5:  # float32 rounding midpoints: double rounding as numpy does it
            m = rng.randrange(1 << 23) | 1
            out.append(repr((2 * m + 1) * 2.0 ** rng.randint(-150, 100)))
        else:
            out.append(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 12)}f}")
    return out


def _int_tokens(rng: random.Random, n: int) -> list:
    out = []
    for _ in range(n):
        k = rng.randrange(8)
        if k == 0:
            out.append(rng.choice(["9223372036854775807", "-9223372036854775808", "+12", "-0", "000123",
                                   "12.0", "1.2e+03", "-7.0E0", "9007199254740991.0", "0e5"]))
        elif k == 1:
            out.append(str(rng.randrange(-(2**63), 2**63)))
        else:
            out.append(str(rng.randrange(-10**6, 10**6)))
    return out


def _join(rng: random.Random, tokens: list) -> bytes:
    seps = [" ", ",", "\n", "\t", "\r\n", ", ", "  ", "\x1c", "\f", "\v"]
    body = "".join(t + rng.choice(seps) for t in tokens)
    return (rng.choice(["", " ", "\n"]) + body).encode()


@native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_native_reads_what_python_reads(dtype, seed):
    rng = random.Random(seed)
    tokens = _int_tokens(rng, 3000) if dtype == torch.int64 else _float_tokens(rng, 3000)
    text = _join(rng, tokens)
    got, status = _op(text, dtype)
    want, want_status = ref.parse_numbers(text, dtype)
    assert status == [0, -1] and want_status.tolist() == [0, -1]
    assert got.dtype == dtype and _bits(got) == _bits(want)


@native
@pytest.mark.parametrize("dtype", DTYPES)
def test_word_wise_forms_match_python(dtype):
    """The kernel reads short integers and fixed-point decimals 8 bytes at a time: every digit count
    on either side of the point (1-20), leading zeros, signs, mantissas around 2^53, each token
    followed by every kind of separator and by bytes that end the fast form (a letter, a second point)."""
    rng = random.Random(3)
    tokens = []
    for ni in range(0, 21):
        for nf in [None] + list(range(0, 21)):
            for _ in range(3):
                ip = "".join(rng.choice("0123456789") for _ in range(ni))
                tok = ip if nf is None else ip + "." + "".join(rng.choice("0123456789") for _ in range(nf))
                if not any(c.isdigit() for c in tok):
                    continue
                tokens.append(rng.choice(["", "-", "+"]) + tok)
    tokens += [str(2**53 + k) for k in range(-2, 3)] + [f"{2**53 + k}.0" for k in range(-2, 3)]
    tokens += ["9007199254740993.5", "0.9007199254740993", "000000000000000000001", "-0.000"]
    seps = [",", "\n", " ", "\t", "\r\n", "\x1c"]
    text = "".join(t + rng.choice(seps) for t in tokens).encode() + b" " * 64
    if dtype == torch.int64:  # integers (int64's 18 digits): the fractional forms are the float tests'
        text = "".join(t + rng.choice(seps) for t in tokens
                       if "." not in t and len(t.lstrip("+-")) <= 18).encode() + b" " * 64
    got, status = _op(text, dtype)
    want, want_status = ref.parse_numbers(text, dtype)
    assert status == want_status.tolist() == [0, -1]
    assert _bits(got) == _bits(want) and got.numel() > 50
    for tail, python in ((b"x ", False), (b".5.5 ", False), (b"e3 ", False), (b"\xc3\xa9 ", True)):
        t = b"7 12345" + tail + b" " * 64  # forms that leave the fast path mid-token
        got, status = _op(t, dtype)
        if python:  # a non-ASCII byte: Python's parser decides
            assert status == [2, 2] and got.tolist() == [7]
            continue
        want, want_status = ref.parse_numbers(t, dtype)
        assert status == want_status.tolist() and _bits(got) == _bits(want)


@native
def test_float32_is_rounded_from_the_double_as_numpy_does():
    # 1 + 2^-24 + 2^-60 lies above the float32 midpoint 1 + 2^-24, but its nearest double is the
    # midpoint itself, which rounds to even (1.0): numpy's result, and ours.
    token = "1.00000005960464477625798673798840354720596224069595336914062"
    got, _ = _op(token.encode(), torch.float32)
    assert got.item() == 1.0 == np.array([token], dtype=np.float32)[0]


@native
def test_float_edges_match_python_float():
    tokens = ["1e400", "-1e400", "1e-400", "-1e-400", "2e-324", "3e-324", "1e-310", "-nan", "0e99999999999"]
    got, status = _op(" ".join(tokens).encode(), torch.float64)
    assert status == [0, -1]
    assert _bits(got) == _bits(torch.tensor([float(t) for t in tokens], dtype=torch.float64))


@native
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", ["abc", "1.2.3", "--5", "+-5", "1e", "e5", ".", "-", "+", "1e+", "nan(1)", "0x10",
                                 "inf5", "12abc", "1,5x"])
def test_first_bad_token_matches_the_reference(dtype, bad):
    text = f"1 2,3\n4.0 {bad} 7\n{bad}\n".encode()
    got, status = _op(text, dtype)
    want, want_status = ref.parse_numbers(text, dtype)
    assert want_status.tolist()[0] == 1 and status == want_status.tolist()
    assert _bits(got) == _bits(want)


@native
@pytest.mark.parametrize("token", ["1.5", "inf", "-nan", "1e-5"])
def test_integers_reject_non_integral_values(token):
    text = f"3 {token}".encode()
    got, status = _op(text, torch.int64)
    assert status == [1, 2] and got.tolist() == [3]
    assert ref.parse_numbers(text, torch.int64)[1].tolist() == [1, 2]


@native
@pytest.mark.parametrize("dtype,token,value", [
    (torch.int64, "1_000", 1000),                      # PEP 515 digit separators
    (torch.float64, "1_0.5", 10.5),
    (torch.int64, "9007199254740993.0", None),         # a float-written integer past 2^53: exact in Python
    (torch.int64, "99999999999999999999", None),       # outside int64: Python names it
    (torch.float64, "\u0661\u0662", 12.0),             # Arabic-Indic digits
])
def test_tokens_only_python_reads_are_handed_to_it(dtype, token, value):
    text = f"5 {token} 6".encode()
    got, status = _op(text, dtype)
    assert status == [2, 2] and got.tolist() == [5]
    if value is None:
        want, want_status = ref.parse_numbers(text, dtype)
        if want_status.tolist()[0] == 0:
            assert parse_numbers(text, dtype).tolist() == want.tolist()
        else:
            with pytest.raises(DataFormatError):
                parse_numbers(text, dtype)
    else:
        assert parse_numbers(text, dtype).tolist() == [5, value, 6]


def test_float_written_integers_stay_exact_past_2_pow_53():
    big = 2**60 + 1
    assert parse_numbers(f"1.0 2e0\n{big} 3", torch.int64).tolist() == [1, 2, big, 3]
    assert parse_numbers("9007199254740993.0", torch.int64).tolist() == [2**53 + 1]
    with pytest.raises(DataFormatError, match="non-integer value '1e30'"):
        parse_numbers("1 1e30", torch.int64)  # integral but outside int64


@native
def test_threads_do_not_change_the_result_and_the_first_bad_token_wins():
    rng = random.Random(5)
    tokens = _float_tokens(rng, 400_000)  # several 1 MiB pieces
    text = bytearray(_join(rng, tokens))
    cuts = [text.index(b"\n", len(text) * k // 5) + 1 for k in (1, 2, 4)]  # at line starts: no token is cut
    for c in reversed(cuts):  # bad tokens in three pieces: the first one is reported
        text[c:c] = b" bad "
    prev = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(_op(bytes(text), torch.float64))
    finally:
        torch.set_num_threads(prev)
    for got, status in runs:
        assert status == runs[0][1] and _bits(got) == _bits(runs[0][0])
    assert runs[0][1] == [1, cuts[0] + 1] and runs[0][0].numel() > 50_000
    want, want_status = ref.parse_numbers(bytes(text), torch.float64)
    assert want_status.tolist() == runs[0][1] and _bits(want) == _bits(runs[0][0])


@native
def test_opcheck():
    text = torch.frombuffer(bytearray(b"1, 2\n3.5 -4e2\n"), dtype=torch.uint8)
    for dtype in DTYPES[1:]:
        torch.library.opcheck(torch.ops.gkdfast.parse_numbers.default, (text, dtype))
    torch.library.opcheck(torch.ops.gkdfast.parse_numbers.default,
                          (torch.frombuffer(bytearray(b"1 2 3"), dtype=torch.uint8), torch.int64))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_text_is_read_on_the_host():
    text = b"1 2.5e3 -inf,7\n0.1 bad 3"
    t = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    for dtype in DTYPES:
        want, want_status = torch.ops.gkdfast.parse_numbers(t, dtype)
        got, status = torch.ops.gkdfast.parse_numbers(t.cuda(), dtype)
        assert got.is_cuda and status.is_cuda and status.tolist() == want_status.tolist()
        assert _bits(got.cpu()) == _bits(want)


@native
def test_op_errors():
    with pytest.raises(TypeError, match="uint8"):
        torch.ops.gkdfast.parse_numbers(torch.zeros(3, dtype=torch.int32), torch.int64)
    with pytest.raises(ValueError, match="1-D"):
        torch.ops.gkdfast.parse_numbers(torch.zeros(2, 2, dtype=torch.uint8), torch.int64)
    with pytest.raises(TypeError, match="int64, float32 or float64"):
        torch.ops.gkdfast.parse_numbers(torch.zeros(2, dtype=torch.uint8), torch.int32)
    got, status = _op(b"", torch.float32)
    assert got.numel() == 0 and status == [0, -1]
    got, status = _op(b" \n,,\t", torch.int64)
    assert got.numel() == 0 and status == [0, -1]


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_read_numbers_in_blocks_of_any_size(tmp_path, backend, gz, block):
    rng = random.Random(11)
    rows = [[rng.uniform(-10, 10) for _ in range(3)] for _ in range(500)]
    text = "".join(",".join(f"{v:.{rng.randint(0, 9)}g}" for v in r) + "\n" for r in rows)
    path = tmp_path / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    want = np.array(text.replace(",", " ").split(), dtype=np.float32).reshape(-1, 3)
    with _backend.forced("auto" if backend == "native" else "reference"):
        for expected in (None, 1500, 10, 5000):
            got = read_numbers(path, torch.float32, ncols=3, what="rows", expected=expected, block_bytes=block)
            assert got.shape == (500, 3) and np.array_equal(got.numpy(), want)


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
def test_read_numbers_names_the_line_and_token(tmp_path, backend):
    path = tmp_path / "edges.csv.gz"
    lines = [f"{i},{i + 1}" for i in range(3000)]
    lines[2345] = "2345,x17"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with _backend.forced("auto" if backend == "native" else "reference"):
        with pytest.raises(DataFormatError, match=r"edges.csv.gz: edge list: expected 2 integer columns per line, "
                                                  r"found a non-integer value 'x17' on line 2346"):
            read_numbers(path, ncols=2, what="edge list", block_bytes=1000)
        path.write_bytes(gzip.compress(b"0,1\n1\n"))
        with pytest.raises(DataFormatError, match=r"expected 2 integer columns per line, found 1 on line 2 \('1'\)"):
            read_numbers(path, ncols=2, what="edge list")
        (tmp_path / "f.txt").write_text("0.5 1e3 zz")
        with pytest.raises(DataFormatError, match="f.txt: features: expected numbers, found 'zz' on line 1"):
            read_numbers(tmp_path / "f.txt", torch.float32, what="features")


def test_read_numbers_errors(tmp_path):
    with pytest.raises(DataFormatError, match="cannot read"):
        read_numbers(tmp_path / "missing.csv")
    bad_gz = tmp_path / "b.csv.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match="cannot read"):
        read_numbers(bad_gz)
    with pytest.raises(TypeError, match="dtype"):
        read_numbers(bad_gz, torch.int32)
    with pytest.raises(ValueError, match="ncols"):
        read_numbers(bad_gz, ncols=0)


def test_reference_locates_the_first_bad_token_in_utf8_bytes():
    text = "é 1 2\n3 ?? 4".encode()
    values, status = ref.parse_numbers(text, torch.float64)
    assert status.tolist() == [1, 0] and values.numel() == 0
    values, status = ref.parse_numbers("1 2\n3 ?? 4".encode(), torch.float64)
    assert status.tolist() == [1, 6] and values.tolist() == [1, 2, 3]


def test_gzip_with_and_without_isal_read_the_same(tmp_path, monkeypatch):
    import sys

    from gkdfast.data import text_tables

    pytest.importorskip("isal", reason="isal not installed: only gzip to compare")
    text = "".join(f"{i},{(i * 7919) % 1000}\n" for i in range(20_000)).encode()
    path = tmp_path / "e.csv.gz"
    path.write_bytes(gzip.compress(text))
    assert text_tables._gzip_module().__name__ == "isal.igzip"
    with_isal = read_numbers(path, ncols=2, block_bytes=4096)
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal now fails
    assert text_tables._gzip_module() is gzip
    assert torch.equal(read_numbers(path, ncols=2, block_bytes=4096), with_isal)
    path.write_bytes(gzip.compress(text)[:5000])  # truncated: the same error either way
    with pytest.raises(DataFormatError, match="cannot read"):
        read_numbers(path, ncols=2)
    monkeypatch.delitem(sys.modules, "isal")
    with pytest.raises(DataFormatError, match="cannot read"):
        read_numbers(path, ncols=2)


@pytest.mark.parametrize("backend", [pytest.param("native", marks=native), "reference"])
def test_read_numbers_edge_cases(tmp_path, backend, monkeypatch):
    from gkdfast.data import text_tables

    with _backend.forced("auto" if backend == "native" else "reference"):
        for name, data in (("e.csv", b""), ("e.csv.gz", gzip.compress(b"")), ("w.csv", b" \n\n ,")):
            (tmp_path / name).write_bytes(data)
            got = read_numbers(tmp_path / name, torch.float32, ncols=3)
            assert got.shape == (0, 3) and got.dtype == torch.float32
        # a token only Python reads, in the middle of a file read in many blocks
        text = "".join(f"{i}\n" for i in range(5000)).replace("\n2500\n", "\n2_500\n").encode()
        (tmp_path / "u.csv").write_bytes(text)
        assert read_numbers(tmp_path / "u.csv", block_bytes=333).view(-1).tolist() == list(range(5000))
        # the count hint is only a hint: too small, too large, impossible to allocate
        for expected in (0, 4999, 5001, 3 * 5000, 10**15):
            got = read_numbers(tmp_path / "u.csv", expected=expected, block_bytes=4096)
            assert got.view(-1).tolist() == list(range(5000))
            assert got.untyped_storage().nbytes() == 8 * 5000  # no oversized buffer kept
        # no separator at all: refused once the run passes the cap
        monkeypatch.setattr(text_tables, "MAX_TOKEN_BYTES", 1000)
        (tmp_path / "n.csv").write_bytes(b"1" * 5000)
        with pytest.raises(DataFormatError, match="no separator in the first"):
            read_numbers(tmp_path / "n.csv", block_bytes=300)


def test_parse_numbers_names_the_files_line():
    with pytest.raises(DataFormatError, match="f.csv: rows: expected numbers, found 'x' on line 4"):
        parse_numbers("1 2\n3\nx", torch.float64, source="f.csv", what="rows", first_line=2)
    with pytest.raises(DataFormatError, match=r"column 'id': expected 1 integer columns per line, found a "
                                              r"non-integer value 'q'$"):
        parse_numbers("1 2 q 4", source="t.csv", what="column 'id'", first_line=None)
    with pytest.raises(DataFormatError, match="found 'ab' on line 1"):  # \x1c ends the token
        parse_numbers(b"1 ab\x1c5", torch.float32)
    with pytest.raises(TypeError, match="str or bytes"):
        parse_numbers(5)


def test_ogb_feature_width_skips_blank_lines(tmp_path):
    from gkdfast.data import load

    raw = tmp_path / "ogbn_blank" / "raw"
    raw.mkdir(parents=True)
    raw.joinpath("edge.csv.gz").write_bytes(gzip.compress(b"0,1\n1,2\n"))
    raw.joinpath("node-label.csv.gz").write_bytes(gzip.compress(b"0\n1\n0\n"))
    raw.joinpath("node-feat.csv.gz").write_bytes(gzip.compress(b"\n\n0.5,1,2\n3,4,5\n6,7,8.25\n"))
    raw.joinpath("num-edge-list.csv.gz").write_bytes(gzip.compress(b""))  # an empty hint file: ignored
    d = load(tmp_path / "ogbn_blank")
    assert d.x.tolist() == [[0.5, 1, 2], [3, 4, 5], [6, 7, 8.25]] and d.graph.num_edges == 4


def test_rows_of_another_width_are_errors_naming_the_line(tmp_path):
    """A weighted edge list read as two columns would regroup its numbers into wrong edges: every
    non-blank line must hold ncols numbers (blank lines are skipped)."""
    p = tmp_path / "edges.csv"
    p.write_text("0,1,5\n2,3,7\n")
    with pytest.raises(DataFormatError, match=r"edge list: expected 2 integer columns per line, found 3 on line 1"):
        read_numbers(p, ncols=2, what="edge list")
    with pytest.raises(DataFormatError, match=r"found 3 on line 1"):
        parse_numbers("0,1,5\n2,3,7\n", ncols=2, what="edge list")
    p.write_text("0,1\n\n2,3\n  \n4,5")  # blank lines and no final newline: fine
    assert read_numbers(p, ncols=2).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert read_numbers(p, ncols=2, block_bytes=4).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert parse_numbers("1 2 3\n4", ncols=1).tolist() == [[1], [2], [3], [4]]  # one column: a stream


def test_ogb_labels_keep_their_nodes_across_empty_lines(tmp_path):
    from gkdfast.data.ogb import _read_labels

    p = tmp_path / "node-label.csv"
    p.write_text("0\n\n1\n")
    lab = _read_labels(p)
    assert lab[0] == 0 and np.isnan(lab[1]) and lab[2] == 1
    p.write_text("0\n1\n")
    assert _read_labels(p).tolist() == [0.0, 1.0]
    p.write_text("0\n\n1\n\n\n")  # blank lines after the last label are not nodes
    assert _read_labels(p).size == 3


def test_later_reads_enter_no_catch_warnings(monkeypatch, tmp_path):
    """catch_warnings swaps the process-wide filter list: entered on every block from several threads, it
    left an "ignore UserWarning" filter behind for good (helper 116).  After the first read, none."""
    import warnings

    from gkdfast.data import mmap as mmap_module
    from gkdfast.data.text_tables import read_numbers

    path = tmp_path / "n.txt"
    path.write_text("1 2 3\n4 5 6\n")
    read_numbers(str(path))
    mmap_module._tensor(np.zeros(2))

    def refuse(*args, **kwargs):
        raise AssertionError("catch_warnings entered again")

    monkeypatch.setattr(warnings, "catch_warnings", refuse)
    assert read_numbers(str(path)).numel() == 6
    assert mmap_module._tensor(np.zeros(3)).numel() == 3
