"""Small helpers shared by the readers: undirected edge sets, label encoding, error messages."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from gkdfast import graph_build
from gkdfast.graph import Graph


class DataFormatError(ValueError):
    """A data file is missing, malformed or inconsistent (a ValueError with a one-line message)."""


# How to choose among several datasets, for both API and command-line users.
PICK_ONE = "pick one with name= (gkdfast distill: --name)"


def listing(names, limit: int = 12) -> str:
    """``names`` as a short list for a one-line error: the first ``limit``, then how many more."""
    names = list(names)
    head = ", ".join(str(n) for n in names[:limit])
    return f"[{head}{f', ... ({len(names) - limit} more)' if len(names) > limit else ''}]"


def fail(path, msg: str) -> DataFormatError:
    return DataFormatError(f"{os.fspath(path)}: {msg}")


def undirected_graph(src, dst, num_nodes: int) -> Graph:
    """A Graph with every pair ``{u, v}`` (u != v) stored once in each direction, int64 indices.

    Duplicates and self-loops are dropped (:func:`gkdfast.graph_build.undirected_graph`, O(E));
    the rows come sorted by source, so the Graph needs no permutation.
    """
    return graph_build.undirected_graph(src, dst, num_nodes, index_dtype=torch.int64)


def check_edge_range(path, src: np.ndarray, dst: np.ndarray, num_nodes: int, what="edge list"):
    if src.size == 0:
        return
    lo = min(int(src.min()), int(dst.min()))
    hi = max(int(src.max()), int(dst.max()))
    if lo < 0 or hi >= num_nodes:
        raise fail(path, f"{what} has node id {lo if lo < 0 else hi} outside [0, {num_nodes})")


def encode_labels(values: Sequence) -> Tuple[np.ndarray, list]:
    """Class ids for arbitrary label values: sorted distinct values -> 0..C-1.

    Booleans/strings such as ``"False"/"True"`` sort as text, so False -> 0, True -> 1."""
    arr = np.asarray(values)
    classes, inv = np.unique(arr, return_inverse=True)
    return inv.astype(np.int64), [c.item() if hasattr(c, "item") else c for c in classes]


def pick_dataset(directory, names, name: Optional[str], kind: str) -> str:
    """The dataset ``name`` among ``names`` (the ones found in ``directory``), matched ignoring case;
    ``name=None`` picks the only one.  ``kind`` ("Planetoid", "TU", ...) names the format in errors.

    Example:
        >>> pick_dataset("data/", ["MUTAG", "PROTEINS"], "mutag", "TU")
        'MUTAG'
    """
    if name is None:
        if len(names) != 1:
            raise fail(directory, f"holds {kind} datasets {names or 'none'}; {PICK_ONE}")
        return names[0]
    hit = [n for n in names if n.lower() == str(name).lower()]
    if not hit:
        raise fail(directory, f"no {kind} dataset {name!r} here (found {names})")
    return hit[0]


def parse_int_table(path, text: str, ncols: int, what: str, first_line: Optional[int] = 1) -> np.ndarray:
    """Integer table with ``ncols`` columns (comma/whitespace separated) -> int64 ``[rows, ncols]``.
    Integers written as floats (``"12.0"``, ``"1.08e+04"``, as some published edge lists are) are
    accepted and kept exact (past 2**53 too, never through float64); any other token is a
    :class:`DataFormatError` naming the file, the line and the token.  Native when the extension is
    built (:mod:`gkdfast.data.text_tables`); for a file not yet in memory use
    :func:`gkdfast.data.text_tables.read_numbers`, which reads it block by block.  ``first_line``: the
    file's line number of the text's first line (``None``: the text is not lines of the file)."""
    from gkdfast.data.text_tables import parse_numbers

    return parse_numbers(text, torch.int64, ncols=ncols, source=path, what=what, first_line=first_line).numpy()


def parse_json(path, text: str, what: str = "JSON"):
    """``json.loads(text)``, with what it raises on a bad file (malformed text; nesting deep enough to
    exhaust Python's recursion limit, a RecursionError) as a :class:`DataFormatError` naming ``path``."""
    import json

    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise fail(path, f"not valid {what} ({type(exc).__name__}: {str(exc)[:80]})") from None


def csv_rows(path, text: str) -> list:
    """The rows of CSV ``text``; csv's own failures (a field over its size limit, a NUL byte) as a
    :class:`DataFormatError` naming ``path``."""
    import csv
    import io

    try:
        return list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise fail(path, f"not a readable CSV table ({str(exc)[:80]})") from None


def dense_array(mat, path=None, what: str = "matrix") -> np.ndarray:
    """``mat`` (a scipy sparse matrix read from a file, or an array) as a dense array.

    A sparse matrix is checked in full first: scipy's constructors and unpickling trust the stored
    indices, and ``toarray`` of an index past the shape writes out of bounds (a crafted Planetoid,
    gnn-benchmark or .mat file crashed the process with a segmentation fault).  A bad one is a
    :class:`DataFormatError` naming ``path`` and ``what``."""
    if not hasattr(mat, "toarray"):
        return np.asarray(mat)
    return check_sparse(mat, path, what).toarray()


def check_sparse(mat, path=None, what: str = "matrix"):
    """``mat`` (a scipy sparse matrix read from a file), its structure checked in full, as CSR / CSC /
    COO: scipy's constructors and unpickling trust what is stored, and ``toarray`` of an index past the
    shape, or ``tocoo`` of an ``indptr`` that decreases, writes out of bounds (a segmentation fault).  A
    bad one is a :class:`DataFormatError` naming ``path`` and ``what``; a good one is returned (a COO
    matrix is returned as COO)."""
    try:
        if hasattr(mat, "check_format"):  # CSR / CSC: indptr and every index against the shape
            mat.check_format(full_check=True)
        else:  # COO (and other layouts through it): the coordinates against the shape
            coo = mat.tocoo()
            rows, cols = np.asarray(coo.row), np.asarray(coo.col)
            if rows.shape != cols.shape or rows.shape != np.asarray(coo.data).shape:
                raise ValueError("row, col and data lengths differ")
            if rows.size and (rows.min() < 0 or cols.min() < 0 or rows.max() >= coo.shape[0]
                              or cols.max() >= coo.shape[1]):
                raise ValueError(f"an index lies outside the shape {coo.shape}")
            mat = coo
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        where = os.fspath(path) if path is not None else "data"
        raise DataFormatError(f"{where}: {what} is a malformed sparse matrix ({str(exc)[:80]})") from None
    return mat


def to_float_features(mat, path=None) -> torch.Tensor:
    """scipy sparse or dense array -> contiguous float32 [N, F] tensor (sparse input checked by
    :func:`dense_array`)."""
    mat = dense_array(mat, path, "the feature matrix")
    return torch.from_numpy(np.ascontiguousarray(np.asarray(mat, dtype=np.float32)))


def check_npz_members(path) -> None:
    """:func:`check_zip_members` of the ``.npz`` file ``path``, before numpy or scipy reads it."""
    import zipfile

    try:
        with zipfile.ZipFile(os.fspath(path)) as z:
            check_zip_members(z, path)
    except (zipfile.BadZipFile, OSError):  # not a zip at all, or unreadable: the reader's own error says so
        return


def open_npz(path):
    """``np.load(path, allow_pickle=False)`` for a ``.npz``, its members checked first
    (:func:`check_npz_members`); use as a context manager.  Reading a member may still raise numpy's
    own errors for a damaged file."""
    check_npz_members(path)
    return np.load(os.fspath(path), allow_pickle=False)


INFLATION_LIMIT = 1100
"""The most bytes a zip member may claim per compressed byte: deflate's own limit is about 1032."""


def check_zip_members(z, path, names=None) -> None:
    """Refuses members of ``z`` (``names``, default all) that only a decompression bomb needs, before
    any is inflated: methods other than stored and deflate (``zipfile`` also inflates bzip2 and lzma,
    at millions to one: a 1.5 KB .npz reached 2.4 GB of memory) and sizes past deflate's ratio.  The
    declared size bounds what ``zipfile`` inflates (it stops there and checks the CRC)."""
    import zipfile

    infos = z.infolist() if names is None else [z.getinfo(n) for n in names]
    for info in infos:
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise fail(path, f"member {info.filename} is compressed with method {info.compress_type}; only stored "
                             "and deflate members are read (re-save the archive with zip's defaults)")
        if info.file_size > INFLATION_LIMIT * info.compress_size + 65536:
            raise fail(path, f"member {info.filename} claims {info.file_size} bytes from {info.compress_size} "
                             "compressed: more than deflate produces, refused as a decompression bomb")


def mask_from_index(idx, n: int) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[torch.as_tensor(np.asarray(idx), dtype=torch.int64)] = True
    return m


def first_existing(paths) -> Optional[str]:
    for p in paths:
        if os.path.exists(p):
            return p
    return None
