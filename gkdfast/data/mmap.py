"""A memory-mappable dataset layout: one raw ``.npy`` per array plus ``meta.json``, read back
without copying the arrays into RAM (the OS pages them in from the files on demand).

Layout of a directory written by :func:`save_mmap`:

==================  ===========================  ===============================================
file                dtype / shape                meaning
==================  ===========================  ===============================================
``meta.json``       JSON                         ``format = "gkdfast-mmap"``, ``version``, ``name``,
                                                 ``num_nodes``, ``num_edges``, ``num_classes``,
                                                 ``arrays`` (dtype and shape of every member),
                                                 ``extras`` (the JSON-able part of ``data.extras``)
``rowptr.npy``      int32/int64 ``[N + 1]``      CSR by destination: in-edges of node ``i`` are
                                                 ``rowptr[i]:rowptr[i + 1]``
``col.npy``         int32/int64 ``[E]``          source of each edge, in CSR order
``x.npy``           float32 ``[N, F]``           node features
``y.npy``           int64 ``[N]``                class ids, ``-1`` = unlabelled
``*_mask.npy``      bool ``[N]``                 ``train_mask``, ``val_mask``, ``test_mask``
``edge_weight.npy`` float32 ``[E]``              optional, in CSR order
``sensitive.npy``   int64 ``[N]``                optional sensitive attribute
==================  ===========================  ===============================================

The indices are int32 whenever ``E < 2**31`` (half the bytes of int64).  A write goes to a
temporary sibling directory that is renamed into place at the end, so a killed write never leaves
a half dataset under ``path``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Optional

import numpy as np
import torch

from gkdfast._quiet import spend_once
from gkdfast.data._util import fail
from gkdfast.data.graphdata import GraphData, is_per_node
from gkdfast.graph import Graph

__all__ = ["save_mmap", "load_mmap", "is_mmap_dir", "MMAP_FORMAT"]

MMAP_FORMAT = "gkdfast-mmap"
_VERSION = 1
_MASKS = ("train_mask", "val_mask", "test_mask")
_REQUIRED = ("rowptr", "col", "x", "y") + _MASKS
_OPTIONAL = ("edge_weight", "sensitive")
EXTRA_PREFIX = "extra__"  # a per-node tensor extra's array name (mmap .npy file, npz bundle member)


def is_mmap_dir(path) -> bool:
    """True when ``path`` is a directory holding a ``meta.json`` of this layout.

    Example:
        >>> import os, tempfile
        >>> from gkdfast.data import csbm
        >>> path = save_mmap(csbm(num_nodes=100), os.path.join(tempfile.mkdtemp(), "g"))
        >>> is_mmap_dir(path), is_mmap_dir(os.path.dirname(path))
        (True, False)
    """
    meta = os.path.join(os.fspath(path), "meta.json")
    if not os.path.isfile(meta):
        return False
    try:
        with open(meta) as f:
            return json.load(f).get("format") == MMAP_FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _jsonable(extras: dict) -> dict:
    out = {}
    for k, v in extras.items():
        try:
            json.dumps(v, allow_nan=True)
        except (TypeError, ValueError):
            continue  # tensors, arrays, objects: not part of the layout
        out[str(k)] = v
    return out


def save_mmap(data: GraphData, path, overwrite: bool = False) -> str:
    """Writes ``data`` as a memory-mappable directory (layout in the module doc); returns ``path``.

    The graph is stored as its CSR (``data.graph.rowptr`` / ``col``), so :func:`load_mmap` gives a
    graph whose edge order is CSR order (``edge_weight`` is stored in that order too).  Arrays are
    written straight from the tensors (no extra copy when they are already CPU, contiguous and of
    the stored dtype).

    Args:
        data: a :class:`GraphData`.  path: the directory to create.
        overwrite: replace an existing ``path`` (the old one is removed only after the new one is
            complete); otherwise an existing ``path`` is an error.

    Example:
        >>> import os, tempfile
        >>> from gkdfast.data import csbm, load
        >>> path = save_mmap(csbm(num_nodes=100), os.path.join(tempfile.mkdtemp(), "g"))
        >>> sorted(os.listdir(path))[:3]
        ['col.npy', 'meta.json', 'rowptr.npy']
        >>> load(path).num_nodes
        100
    """
    path = os.path.normpath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (gkdfast generate: choose another --out)")
    g = data.graph.cpu()
    idx = torch.int32 if g.num_edges < 2**31 - 1 else torch.int64
    arrays = {"rowptr": g.rowptr.to(idx), "col": g.col.to(idx), "x": data.x.detach().cpu().to(torch.float32),
              "y": data.y.cpu().to(torch.int64), "train_mask": data.train_mask.cpu().to(torch.bool),
              "val_mask": data.val_mask.cpu().to(torch.bool), "test_mask": data.test_mask.cpu().to(torch.bool)}
    if g.edge_weight is not None:
        arrays["edge_weight"] = g.to_csr_order(g.edge_weight).to(torch.float32)
    if data.sensitive is not None:
        arrays["sensitive"] = data.sensitive.cpu().to(torch.int64)
    # per-node tensor extras (Cold Brew's isolated nodes, PubMed's feature mask): the split markers that
    # need them would otherwise come back without them
    for k, v in data.extras.items():
        if is_per_node(v, g.num_nodes) and re.fullmatch(r"\w+", str(k)):  # (a file name per key)
            arrays[EXTRA_PREFIX + str(k)] = v.detach().cpu()
    meta = {"format": MMAP_FORMAT, "version": _VERSION, "name": data.name, "num_nodes": g.num_nodes,
            "num_edges": g.num_edges, "num_classes": int(data.num_classes),
            "arrays": {k: {"dtype": str(v.numpy().dtype), "shape": list(v.shape)} for k, v in arrays.items()},
            "extras": _jsonable(data.extras)}
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        for k, v in arrays.items():
            np.save(os.path.join(tmp, k + ".npy"), v.contiguous().numpy(), allow_pickle=False)
        with open(os.path.join(tmp, "meta.json"), "w") as f:  # last: a directory with meta.json is complete
            json.dump(meta, f, indent=1)
        if os.path.exists(path):
            old = os.path.join(parent, f".{os.path.basename(path)}.old-{os.getpid()}")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _tensor(arr: np.ndarray) -> torch.Tensor:
    # A read-only memory map makes torch warn (once per process) that the tensor is not writable; that is
    # the point here.
    spend_once("from_numpy", lambda: torch.from_numpy(np.frombuffer(b"\0", dtype=np.uint8)))
    return torch.from_numpy(arr)


def load_mmap(path, mode: str = "c", check_indices: bool = True) -> GraphData:
    """Reads a directory written by :func:`save_mmap`, every array memory-mapped (no copy in RAM).

    Args:
        path: the directory (or its ``meta.json``).
        mode: ``"c"`` (default): copy-on-write maps; the tensors are writable, an in-place write
            copies only the touched pages into private memory and **never changes the files**.
            ``"r"``: read-only maps; the tensors are **read-only** (an in-place write on them is a
            segmentation fault, so only use it with code that never writes its inputs).
        check_indices: also check that every ``col`` entry is in ``[0, N)`` (one pass over ``col``;
            the native kernels trust their indices).

    Returns:
        :class:`GraphData` whose ``x``, ``y``, masks, ``graph.rowptr`` / ``graph.col`` are backed by
        the files; ``extras`` are the stored ones plus ``storage = "mmap"``.  Gathering rows
        (``x[idx]``) reads only those rows; ``data.to("cuda")`` or ``x.clone()`` makes a full copy.

    Raises:
        ValueError: one line naming the file: missing or unreadable member, wrong dtype or shape,
        inconsistent ``rowptr``, index out of range.

    Example:
        >>> import os, tempfile
        >>> from gkdfast.data import csbm
        >>> path = save_mmap(csbm(num_nodes=100), os.path.join(tempfile.mkdtemp(), "g"))
        >>> d = load_mmap(path)
        >>> d.x.shape, d.graph.index_dtype, d.extras["storage"]
        (torch.Size([100, 64]), torch.int32, 'mmap')
    """
    if mode not in ("r", "c"):
        raise ValueError(f"load_mmap: mode must be 'r' (read-only) or 'c' (copy-on-write), got {mode!r}")
    path = os.fspath(path)
    if os.path.basename(path) == "meta.json":
        path = os.path.dirname(path) or "."
    meta_path = os.path.join(path, "meta.json")
    if not os.path.isfile(meta_path):
        raise fail(path, "no meta.json here (not a gkdfast memory-mapped dataset; write one with save_mmap)")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError, RecursionError) as exc:
        raise fail(meta_path, f"not readable JSON ({str(exc)[:80]})") from None
    if not isinstance(meta, dict) or meta.get("format") != MMAP_FORMAT:
        raise fail(meta_path, f"format is not {MMAP_FORMAT!r}")
    if meta.get("version") != _VERSION:
        raise fail(meta_path, f"layout version {meta.get('version')!r} is not supported (this gkdfast reads "
                              f"{_VERSION}); rewrite it with save_mmap")
    try:
        n, e, c = int(meta["num_nodes"]), int(meta["num_edges"]), int(meta["num_classes"])
        specs = meta["arrays"]
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(meta_path, f"missing or bad field {exc}") from None

    arrays = {}
    for k in specs:  # (save_mmap writes extra__<word>; a listed "extra__/../../x" would read outside the folder)
        if str(k).startswith(EXTRA_PREFIX) and not re.fullmatch(EXTRA_PREFIX + r"\w+", str(k)):
            raise fail(meta_path, f"lists the array {k!r}: extra arrays are named {EXTRA_PREFIX}<letters, digits, _>")
    for k in _REQUIRED + _OPTIONAL + tuple(k for k in specs if str(k).startswith(EXTRA_PREFIX)):
        file = os.path.join(path, k + ".npy")
        if k not in specs:
            if k in _REQUIRED:
                raise fail(meta_path, f"does not list the required array {k!r}")
            continue
        if not os.path.isfile(file):
            raise fail(file, "missing (listed in meta.json)")
        try:
            a = np.load(file, mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise fail(file, f"not a readable .npy file ({str(exc)[:80]})") from None
        want = specs[k]
        if str(a.dtype) != want.get("dtype") or list(a.shape) != list(want.get("shape", ())):
            raise fail(file, f"is {a.dtype} {list(a.shape)} but meta.json says {want.get('dtype')} "
                             f"{want.get('shape')} (truncated or replaced file?)")
        arrays[k] = a

    def expect(k, dtypes, shape):
        a = arrays[k]
        if str(a.dtype) not in dtypes or tuple(a.shape) != shape:
            raise fail(os.path.join(path, k + ".npy"), f"must be {'/'.join(dtypes)} {list(shape)}, "
                                                      f"got {a.dtype} {list(a.shape)}")

    expect("rowptr", ("int32", "int64"), (n + 1,))
    expect("col", (str(arrays["rowptr"].dtype),), (e,))
    x = arrays["x"]
    if x.ndim != 2:
        raise fail(os.path.join(path, "x.npy"), f"must be float32 [N={n}, F], got {x.dtype} {list(x.shape)}")
    expect("x", ("float32",), (n, x.shape[1]))
    expect("y", ("int64",), (n,))
    for k in _MASKS:
        expect(k, ("bool",), (n,))
    if "edge_weight" in arrays:
        expect("edge_weight", ("float32",), (e,))
    if "sensitive" in arrays:
        expect("sensitive", ("int64",), (n,))
        sens = arrays["sensitive"]
        if n and bool(((sens != 0) & (sens != 1)).any()):  # one streaming pass; the message names the values
            from gkdfast.data.fairness import check_sensitive

            check_sensitive(os.path.join(path, "sensitive.npy"), np.asarray(sens), "sensitive")
    rowptr, col = arrays["rowptr"], arrays["col"]
    rp_file = os.path.join(path, "rowptr.npy")
    if int(rowptr[0]) != 0 or int(rowptr[-1]) != e:
        raise fail(rp_file, f"must start at 0 and end at num_edges={e}, got {int(rowptr[0])} and {int(rowptr[-1])}")
    if n and bool((np.diff(rowptr) < 0).any()):
        raise fail(rp_file, "is not non-decreasing")
    if check_indices and e and (int(col.min()) < 0 or int(col.max()) >= n):
        raise fail(os.path.join(path, "col.npy"), f"has a node index outside [0, {n}) "
                                                 f"(range [{int(col.min())}, {int(col.max())}])")
    if c < 1 or (n and int(arrays["y"].max()) >= c):
        raise fail(os.path.join(path, "y.npy"), f"has a label >= num_classes={c}")

    t = {k: _tensor(a) for k, a in arrays.items()}
    graph = Graph._from_parts(t["rowptr"], t["col"], n, None, t.get("edge_weight"))
    extras = dict(meta.get("extras") or {})
    for k in [k for k in t if k.startswith(EXTRA_PREFIX)]:
        if t[k].dim() < 1 or t[k].size(0) != n:
            raise fail(os.path.join(path, k + ".npy"), f"has {t[k].size(0) if t[k].dim() else 0} rows for {n} nodes")
        extras[k[len(EXTRA_PREFIX):]] = t.pop(k)
    extras.update(storage="mmap", path=os.path.abspath(path))
    extras.setdefault("split", "file")
    # The masks are checked here (O(N)); x is not scanned for NaN/inf, so that opening stays
    # O(N + E) whatever the feature width (data.validate() does that scan, one pass over x).
    y = arrays["y"]
    if n and int(y.min()) < -1:
        raise fail(os.path.join(path, "y.npy"), f"has a label {int(y.min())} < -1")
    total = np.zeros(n, dtype=np.int8)
    for k in _MASKS:
        m = arrays[k]
        if bool((m & (y < 0)).any()):
            raise fail(os.path.join(path, k + ".npy"), "marks unlabelled nodes (y == -1)")
        total += m
    if bool((total > 1).any()):
        raise fail(path, "train/val/test masks overlap")
    return GraphData(graph, t["x"], t["y"], t["train_mask"], t["val_mask"], t["test_mask"], c,
                     str(meta.get("name") or os.path.basename(os.path.normpath(path))), t.get("sensitive"), extras)


def mapped_file(t: torch.Tensor) -> Optional[str]:
    """The file ``t``'s memory lies in (from ``/proc/self/maps``; Linux only), or None when it is
    ordinary process memory.  Used by tests and checks to prove a tensor was not copied.

    Example:
        >>> mapped_file(torch.zeros(3)) is None
        True
    """
    ptr = t.data_ptr()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                if lo <= ptr < hi:
                    return parts[5].strip() if len(parts) > 5 and parts[5].strip().startswith("/") else None
    except OSError:  # pragma: no cover - not Linux
        return None
    return None
