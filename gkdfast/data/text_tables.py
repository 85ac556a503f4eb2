"""Numbers from text tables (edge lists, labels, feature rows as CSV), read in blocks.

The readers used to split a whole file into Python strings and convert those with numpy: about 60
bytes of Python objects per token, so an ogbn-products-sized feature file (2.45 M rows of 100
floats) needed about 15 GB before the first number existed.  :func:`read_numbers` decompresses a
block of the file at a time (``.gz`` or plain) and converts it with the native ``parse_numbers``
op (csrc/ops/number_table.h), so memory is the result plus one block.  The values are the ones the
Python path gives (``gkdfast/reference/number_table.py``, which also runs when the extension is
missing, for tokens only Python reads exactly, and under ``GKDFAST_BACKEND=reference``).

Tokens are separated by ASCII whitespace and commas; integers may be written as floats ("12.0",
exact below 2**53); float32 values are rounded from float64, as numpy rounds.  A token that is not a
number is a :class:`~gkdfast.data.DataFormatError` naming the file, the line and the token.

Example:
    >>> parse_numbers("0,1\\n1,2\\n")
    tensor([0, 1, 1, 2])
"""
from __future__ import annotations

import gzip
import itertools
import os
import re
import zlib
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from gkdfast._quiet import spend_once
from gkdfast.data._util import fail
from gkdfast.reference import number_table as _reference

__all__ = ["parse_numbers", "read_numbers", "open_table_file", "BLOCK_BYTES"]

# Bytes of text converted per call (the decompressed block; a token never straddles two blocks).
BLOCK_BYTES = 64 << 20
# A run of bytes without a separator longer than this is not a number: the file is refused.
MAX_TOKEN_BYTES = 256 << 20

_DTYPES = (torch.int64, torch.float32, torch.float64)
_TOKEN = re.compile(rb"[^ ,\t\n\v\f\r\x1c-\x1f]+")  # a token: up to the next separator


def _check_dtype(dtype, fn: str) -> None:
    if dtype not in _DTYPES:
        raise TypeError(f"gkdfast.data.{fn}: dtype must be torch.int64, torch.float32 or torch.float64, got {dtype!r}")


def _native() -> bool:
    from gkdfast import _backend

    return _backend.choose("parse_numbers", torch.device("cpu")) == "cpu"


def _byte_tensor(block, length: int) -> Tensor:
    """``block[:length]`` as a uint8 tensor without a copy (``bytes`` are read-only: the op only reads)."""
    if not length:
        return torch.empty(0, dtype=torch.uint8)
    # "The given buffer is not writable" (once per process): nothing writes to it
    spend_once("frombuffer", lambda: torch.frombuffer(b"\0", dtype=torch.uint8))
    return torch.frombuffer(block, dtype=torch.uint8, count=length)


def _parse_block(block, length: int, dtype: torch.dtype, native: bool) -> Tuple[Tensor, int, int]:
    """``(values, code, offset)`` of ``block[:length]`` (bytes or bytearray): code 0 (all read) or 1
    (the token at byte ``offset`` is not a number; values hold the tokens before it)."""
    if native:
        values, status = torch.ops.gkdfast.parse_numbers(_byte_tensor(block, length), dtype)
        code, offset = status.tolist()
        if code != 2:
            return values, code, offset
    values, status = _reference.parse_numbers(bytes(memoryview(block)[:length]), dtype)
    code, offset = status.tolist()
    return values, code, offset


def _per_line(dtype: torch.dtype) -> str:
    return "integer columns per line" if dtype == torch.int64 else "numbers per line"


def _not_a_number(source, what: str, dtype: torch.dtype, ncols: int, block, end: int, offset: int,
                  line: Optional[int]):
    m = _TOKEN.match(bytes(memoryview(block)[offset:min(end, offset + 64)]))
    token = (m.group() if m else b"").decode("utf-8", errors="replace")
    where = f"{token!r}" + (f" on line {line}" if line is not None else "")
    if dtype == torch.int64:
        return fail(source, f"{what}: expected {ncols} integer columns per line, found a non-integer value {where}")
    return fail(source, f"{what}: expected numbers, found {where}")


_BLANK = b" \t\r\v\f,"
_NEWLINE = b"\n"


def _line_count(block, end: int, final: bool, newlines: int) -> int:
    """Lines of ``block[:end]``, which holds ``newlines`` newlines (a block ends at a line end unless it is
    the ``final`` one)."""
    lines = newlines
    if final and end:
        last = bytes(memoryview(block)[block.rfind(_NEWLINE, 0, end) + 1:end])
        lines += bool(last.strip(_BLANK))  # a last line without its newline
    return lines


def _check_widths(block, end: int, final: bool, newlines: int, values: int, ncols: int, source, what: str,
                  line: int, dtype: torch.dtype) -> None:
    """The rows of ``block[:end]`` against its lines: the total first (as many numbers as ``ncols``
    times the lines, one count of newlines), and only when that is off (blank lines, or rows of another
    width) line by line, naming the first line of another width.  A file with a column too many or too
    few fails here instead of being regrouped into wrong rows; lines whose errors cancel out in the
    total pass.  (Separators are runs of whitespace and commas, so ``1,,2`` is two numbers.)"""
    if _line_count(block, end, final, newlines) * ncols == values:
        return
    kind = _per_line(dtype)
    for k, row in enumerate(bytes(memoryview(block)[:end]).split(_NEWLINE)):
        width = len(row.replace(b",", b" ").split())
        if width and width != ncols:
            text = row[:60].decode("utf-8", errors="replace")
            raise fail(source, f"{what}: expected {ncols} {kind}, found {width} on line {line + k} ({text!r})")


def _rows(flat: Tensor, ncols: int, source, what: str, dtype: torch.dtype) -> Tensor:
    if flat.numel() % ncols:
        raise fail(source, f"{what}: expected {ncols} {_per_line(dtype)}, got {flat.numel()} numbers")
    return flat.view(-1, ncols)


class _Collector:
    """Gathers the blocks' values: straight into one tensor when the count is known in advance
    (no second copy at the end), else in a list joined at the end.  The count is a hint: a wrong one
    (too small, too large, not allocatable) only costs the copy it was meant to save."""

    def __init__(self, dtype: torch.dtype, expected: Optional[int], most: Optional[int] = None):
        self.dtype = dtype
        self.out = None
        if expected is not None and 0 <= expected <= (most if most is not None else expected):
            try:
                self.out = torch.empty(expected, dtype=dtype)
            except RuntimeError:  # e.g. a corrupt count file: read without the hint
                self.out = None
        self.parts: List[Tensor] = []
        self.count = 0

    def add(self, values: Tensor) -> None:
        n = values.numel()
        if self.out is not None and self.count + n <= self.out.numel():
            self.out[self.count:self.count + n] = values
        else:
            if self.out is not None:  # more than expected: keep what is there, collect the rest
                self.parts.append(self.out[:self.count])
                self.out = None
            self.parts.append(values)
        self.count += n

    def result(self) -> Tensor:
        if self.out is not None:
            # fewer than expected: a copy, so the result does not hold the oversized buffer
            return self.out if self.count == self.out.numel() else self.out[:self.count].clone()
        if not self.parts:
            return torch.empty(0, dtype=self.dtype)
        return torch.cat(self.parts) if len(self.parts) != 1 else self.parts[0]


# Deflate expands at most about 1032-fold: the most text a .gz file of n bytes holds.
_DEFLATE_MAX_RATIO = 1032


def _most_numbers(path: str) -> Optional[int]:
    """The most numbers the file can hold (one byte and one separator each), to refuse an impossible
    count hint before allocating it; None when the size is unknown."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return (size * (_DEFLATE_MAX_RATIO if path.endswith(".gz") else 1) + 1) // 2


def _gzip_module():
    """``isal.igzip`` when installed (Intel ISA-L: about 1.9x gzip's decompression speed, measured in
    docs/data-and-results.md), else ``gzip``; both raise the same errors for bad files."""
    try:
        from isal import igzip

        return igzip
    except ImportError:
        return gzip


def read_errors() -> tuple:
    """The exceptions a bad or truncated (compressed) table file raises while read."""
    errors = (OSError, EOFError, zlib.error)
    try:
        from isal import isal_zlib

        return errors + (isal_zlib.error,)
    except ImportError:
        return errors


def open_table_file(path):
    """A binary reader of a table file; ``.gz`` files are decompressed on the fly (by ``isal`` when
    installed, else ``gzip``).

    Example:
        >>> import tempfile, os, gzip
        >>> p = os.path.join(tempfile.mkdtemp(), "t.csv.gz")
        >>> with gzip.open(p, "wb") as g:
        ...     _ = g.write(b"1,2\\n")
        >>> with open_table_file(p) as f:
        ...     f.read()
        b'1,2\\n'
    """
    path = os.fspath(path)
    return _gzip_module().open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _chunks(f, size: int):
    """The file's bytes, ``size`` at a time, each read (and decompressed) in a helper thread while
    the caller converts the one before: zlib and the native reader both release the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="gkdfast-read") as pool:
        pending = pool.submit(f.read, size)
        while True:
            chunk = pending.result()
            if not chunk:
                return
            pending = pool.submit(f.read, size)
            yield chunk


def _last_separator(block: bytearray, end: int) -> int:
    """Index of the last separator byte in ``block[:end]`` (-1 if none)."""
    nl = block.rfind(b"\n", 0, end)
    if nl >= 0:
        return nl
    return max(block.rfind(sep, 0, end) for sep in (b" ", b",", b"\t", b"\r", b"\v", b"\f"))


def read_numbers(path, dtype: torch.dtype = torch.int64, *, ncols: int = 1, what: str = "numbers",
                 expected: Optional[int] = None, block_bytes: int = BLOCK_BYTES) -> Tensor:
    """Every number of a text table file as a ``[rows, ncols]`` tensor, read block by block.

    Args:
        path: a text file; ``.gz`` files are decompressed on the fly.
        dtype: ``torch.int64`` (default), ``torch.float32`` or ``torch.float64``.
        ncols: numbers per row.  Above 1 the rows are checked against the lines: the numbers must
            be ``ncols`` times the non-blank lines (a file whose lines hold a column too many or too
            few is an error naming the first such line; lines whose errors cancel out in the total
            are not caught).  1 reads the numbers as one stream, however many a line holds.
        what: what the file holds, for error messages ("edge list", "node features").
        expected: the count of numbers if known (e.g. rows x columns): the result is then filled in
            place instead of joined at the end (half the peak memory); any other count still reads.
        block_bytes: decompressed bytes converted per call.

    Returns:
        ``[count // ncols, ncols]`` tensor of ``dtype``.

    Raises:
        DataFormatError: a token that is not a number (the file, line and token are named), or a
            count that is not a multiple of ``ncols``; also for an unreadable file.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "edges.csv")
        >>> _ = open(p, "w").write("0,1\\n1,2\\n2,0\\n")
        >>> read_numbers(p, ncols=2, what="edge list")
        tensor([[0, 1],
                [1, 2],
                [2, 0]])
    """
    _check_dtype(dtype, "read_numbers")
    if not isinstance(ncols, int) or isinstance(ncols, bool) or ncols < 1:
        raise ValueError(f"gkdfast.data.read_numbers: ncols must be a positive int, got {ncols!r}")
    if not isinstance(block_bytes, int) or block_bytes < 1:
        raise ValueError(f"gkdfast.data.read_numbers: block_bytes must be a positive int, got {block_bytes!r}")
    path = os.fspath(path)
    native = _native()
    collect = _Collector(dtype, expected, _most_numbers(path))
    carry, line = b"", 1  # the bytes after the last block's last separator; line number of a block's start
    whole_lines = True  # every block so far ended at a line end: the rows can be checked block by block
    try:
        with open_table_file(path) as f:
            chunks = _chunks(f, block_bytes)
            try:
                for chunk in itertools.chain(chunks, [None]):
                    final = chunk is None
                    block = bytearray(carry)
                    if not final:
                        block += chunk
                    cut = len(block) if final else _last_separator(block, len(block)) + 1
                    carry = bytes(memoryview(block)[cut:])  # a token the block's end may have cut
                    if cut == 0:  # no separator in the block: read on, within reason
                        if len(carry) > MAX_TOKEN_BYTES:
                            raise fail(path, f"{what}: no separator in the first {len(carry)} bytes from line "
                                             f"{line} on (not a text table?)")
                        continue
                    values, code, offset = _parse_block(block, cut, dtype, native)
                    if code:
                        raise _not_a_number(path, what, dtype, ncols, block, cut, offset,
                                            line + block.count(b"\n", 0, offset))
                    newlines = block.count(_NEWLINE, 0, cut)  # once per block: line numbers and the row check
                    if ncols > 1 and whole_lines and (final or block[cut - 1:cut] == _NEWLINE):
                        _check_widths(block, cut, final, newlines, values.numel(), ncols, path, what, line, dtype)
                    else:  # a line longer than a block: rows are only checked by the total count
                        whole_lines = False
                    collect.add(values)
                    line += newlines
            finally:
                chunks.close()  # waits for the helper thread's read before the file closes
    except read_errors() as exc:
        raise fail(path, f"cannot read ({str(exc)[:60]})") from None
    return _rows(collect.result(), ncols, path, what, dtype)


def parse_numbers(text, dtype: torch.dtype = torch.int64, *, ncols: Optional[int] = None, source="text",
                  what: str = "numbers", first_line: Optional[int] = 1) -> Tensor:
    """Every number of a text (``str`` or ``bytes``) already in memory: :func:`read_numbers` without
    the file.

    Args:
        text: the table's text.
        dtype: ``torch.int64`` (default), ``torch.float32`` or ``torch.float64``.
        ncols: ``None`` for a 1-D result, else numbers per row (``[rows, ncols]``; above 1 and with
            ``first_line`` set, checked against the lines as in :func:`read_numbers`).
        source, what: name the text and its content in error messages.
        first_line: the file's line number of the text's first line, for error messages (``2`` for
            the text after a header line); ``None`` when the text is not lines of a file (a column
            joined into one line): errors then name the token only.

    Raises:
        DataFormatError: a token that is not a number (line and token named), or a count that is not
            a multiple of ``ncols``.

    Example:
        >>> parse_numbers("1.5 2\\n-inf", torch.float32)
        tensor([1.5000, 2.0000,   -inf])
    """
    _check_dtype(dtype, "parse_numbers")
    if isinstance(text, str):
        block = text.encode("utf-8", errors="surrogateescape")
    elif isinstance(text, (bytes, bytearray)):
        block = text
    elif isinstance(text, memoryview):
        block = text.tobytes()
    else:
        raise TypeError(f"gkdfast.data.parse_numbers: text must be str or bytes, got {type(text).__name__}")
    values, code, offset = _parse_block(block, len(block), dtype, _native())
    if code:
        line = None if first_line is None else first_line + block.count(b"\n", 0, offset)
        raise _not_a_number(source, what, dtype, ncols or 1, block, len(block), offset, line)
    if ncols is not None and ncols > 1 and first_line is not None:  # rows of a file: check their widths
        _check_widths(block, len(block), True, block.count(_NEWLINE), values.numel(), ncols, source, what,
                      first_line, dtype)
    return values if ncols is None else _rows(values, ncols, source, what, dtype)
