"""Teacher outputs computed once and kept on disk, memory-mapped.

Every distillation term reads the teacher's logits and (for representation losses) its last hidden
embedding.  A big teacher should run once, not once per student, recipe or seed, so
:func:`teacher_outputs` stores both as raw float32 files keyed by a hash of (teacher weights, teacher
class, node features, graph) and maps them back with ``torch.from_file`` on the next call: the
students then read pages of the file instead of holding a second copy in memory.

Under torch.distributed (every rank calling with the same teacher) the inference is sharded by node
range: rank 0 creates the files at full size, each rank computes and writes its own row range, and
after a barrier every rank maps the finished entry (the cache folder must be shared by the ranks:
one machine, or a shared file system).
"""
from __future__ import annotations

import collections
import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from gkdfast._io import _UMASK, no_space_error, out_of_space

__all__ = ["TeacherOutputs", "teacher_outputs", "fingerprint", "default_cache_dir"]

_HASH_BLOCK = 1 << 24  # bytes hashed per slice


@dataclass
class TeacherOutputs:
    """What the students learn from.

    Attributes:
        logits: ``[N, C]`` float32 teacher logits (before softmax).
        hidden: ``[N, H]`` float32 last hidden embedding, or ``None`` when the teacher cannot return one.
        key: the cache key (hex) these were stored under, or ``None`` when not cached.
        cached: ``True`` when they were read from the cache rather than computed.
    """

    logits: Tensor
    hidden: Optional[Tensor] = None
    key: Optional[str] = None
    cached: bool = False

    def to(self, device) -> "TeacherOutputs":
        h = self.hidden.to(device) if self.hidden is not None else None
        return TeacherOutputs(self.logits.to(device), h, self.key, self.cached)


def default_cache_dir() -> str:
    """``$GKDFAST_CACHE`` if set, else ``~/.cache/gkdfast``.

    Example:
        >>> default_cache_dir()                           # doctest: +SKIP
        '/root/.cache/gkdfast'
    """
    return os.environ.get("GKDFAST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gkdfast")


def hash_dropout_implementation(h) -> None:
    """Feeds the dropout implementation models train with (``gkdfast.settings.dropout_impl``) into
    ``h``: other masks, another training.  Nothing for the default (Philox), so keys made before the
    setting existed are unchanged.

    Example:
        >>> import hashlib
        >>> a, b = hashlib.sha256(), hashlib.sha256()
        >>> hash_dropout_implementation(a)
        >>> a.hexdigest() == b.hexdigest()
        True
    """
    from gkdfast.nn.philox_dropout import dropout_implementation

    impl = dropout_implementation()
    if impl != "philox":
        h.update(f"dropout={impl}".encode())


def hash_edge_weights(h, graph) -> None:
    """Feeds ``graph``'s edge weights, if any, into ``h`` in CSR order: the weights are stored in the order
    of the input edges, so two graphs with the same CSR and the same weight vector can still weigh
    different edges (hashing the raw vector would give them one key).  Nothing for an unweighted graph.

    Example:
        >>> import hashlib, gkdfast
        >>> w = torch.tensor([1.0, 5.0, 1.0])
        >>> a, b = hashlib.sha256(), hashlib.sha256()
        >>> hash_edge_weights(a, gkdfast.Graph(torch.tensor([[1, 0, 2], [0, 1, 0]]), 3, w))
        >>> hash_edge_weights(b, gkdfast.Graph(torch.tensor([[1, 2, 0], [0, 0, 1]]), 3, w))
        >>> a.hexdigest() == b.hexdigest()
        False
    """
    weight = getattr(graph, "edge_weight", None)
    if weight is not None:
        hash_tensor(h, graph.to_csr_order(weight))


def hash_tensor(h, t) -> None:
    """Feeds dtype, shape and every byte of ``t`` (a tensor, or a NumPy array such as a memory-mapped
    feature matrix) into the hashlib object ``h``.

    Example:
        >>> import hashlib
        >>> a, b = hashlib.sha256(), hashlib.sha256()
        >>> hash_tensor(a, torch.zeros(2)); hash_tensor(b, torch.zeros(2, dtype=torch.float64))
        >>> a.hexdigest() == b.hexdigest()                # same values, different dtype
        False
    """
    if isinstance(t, np.ndarray):
        h.update(f"{t.dtype}{t.shape}".encode())
        raw = np.ascontiguousarray(t).reshape(-1).view(np.uint8)
    else:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if not t.numel():
            return
        raw = t.reshape(-1).view(torch.uint8).numpy()
    # The bytes are fed straight from the buffer, in slices: no copy of a large (possibly
    # memory-mapped) matrix is ever made, only its pages are read.
    for start in range(0, raw.size, _HASH_BLOCK):
        h.update(raw[start:start + _HASH_BLOCK])


# Bump when the cached files' meaning or layout changes: old entries then miss instead of being
# mapped with new assumptions.
CACHE_FORMAT = 3  # 3: the key also covers callables, buffers and forward code (session 36)


def _describe(value) -> str:
    """A description of an attribute that is the same in every process: values of plain types and
    containers of them, dtypes and devices as text, functions and classes by their qualified name (an
    activation passed in), anything else by its type (never a repr with a memory address)."""
    if value is None or isinstance(value, (int, float, str, bool, bytes)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({','.join(_describe(v) for v in value)})"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "{" + ",".join(f"{_describe(k)}:{_describe(v)}" for k, v in items) + "}"
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, functools.partial):  # partial(leaky_relu, negative_slope=0.1): the bound values count
        return f"partial({_describe(value.func)},{_describe(value.args)},{_describe(value.keywords)})"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _code_digest(fn) -> str:
    """16 hex digits of a function's code (bytecode, names, constants, nested functions' code), through
    decorators (``__wrapped__``): an edited ``forward`` computes something else.  ``-`` without code."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return "-"
    h = hashlib.sha256()

    def feed(c):
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:  # (numbers, strings, tuples of them: stable reprs; code objects: recursed)
            if inspect.iscode(const):
                feed(const)
            else:
                h.update(repr(const).encode())

    feed(code)
    return h.hexdigest()[:16]


def _plain_settings(model: nn.Module) -> str:
    """Non-parameter settings of every submodule (SAGE aggregation, GCN normalisation, dropout, an
    activation function passed in, ...): its class and the code of its ``forward``, its plain-valued
    attributes and its public attributes of other types (:func:`_describe`), which change outputs
    without changing any weight."""
    parts = []
    for name, module in model.named_modules():
        # (private attributes: plain scalars only; a private tuple may be a cache holding weak references
        # or tensors, whose description would change from run to run)
        settings = {k: _describe(v) for k, v in sorted(vars(module).items())
                    if not k.startswith("__") and k != "training"
                    and (not k.startswith("_") or v is None or isinstance(v, (int, float, str, bool)))}
        parts.append(f"{name}:{type(module).__qualname__}[{_code_digest(type(module).forward)}]{settings}")
    return ";".join(parts)


def fingerprint(model: nn.Module, x: Tensor, graph=None) -> str:
    """Hex SHA-256 of (cache format, gkdfast version, model class, its non-parameter settings,
    state_dict, x, graph structure and edge weights).

    Two calls agree exactly when the teacher would produce the same outputs (same weights on the
    same inputs), which is what makes the cache safe to share between runs.  Not seen: tensors held as
    plain attributes (not parameters or buffers) and code outside the modules' ``forward`` methods.

    Example:
        >>> key = fingerprint(torch.nn.Linear(3, 2), torch.zeros(5, 3))
        >>> len(key)
        64
    """
    from gkdfast import __version__

    h = hashlib.sha256()
    h.update(f"format{CACHE_FORMAT};gkdfast{__version__};".encode())
    h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    h.update(_plain_settings(model).encode())
    state = model.state_dict()
    for name, value in state.items():
        h.update(name.encode())
        if isinstance(value, Tensor):
            hash_tensor(h, value)
    for name, value in model.named_buffers():  # non-persistent buffers (a missing-entry mask) shape outputs too
        if name not in state:
            h.update(f"buffer:{name}".encode())
            hash_tensor(h, value)
    hash_tensor(h, x)
    if graph is not None:
        h.update(str(graph.num_nodes).encode())
        hash_tensor(h, graph.rowptr)
        hash_tensor(h, graph.col)
        h.update(b"w" if getattr(graph, "edge_weight", None) is not None else b"-")
        hash_edge_weights(h, graph)
    return h.hexdigest()


def _forward(model: nn.Module, x: Tensor, graph, chunk_rows: Optional[int] = None,
             out_dir: Optional[str] = None, progress: bool = False):
    """Runs ``model`` in eval mode, asking for the hidden embedding when the model supports it;
    layer-wise in row blocks (into ``out_dir``'s files when given) when ``chunk_rows`` is set."""
    if chunk_rows is not None:
        from gkdfast.nn.layerwise import layerwise_inference

        return layerwise_inference(model, x, graph, chunk_rows=chunk_rows, out_dir=out_dir, progress=progress)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                out = model(x, graph, return_hidden=True)
            except TypeError:
                out = model(x, graph) if graph is not None else model(x)
    finally:
        model.train(was_training)
    if isinstance(out, tuple):
        logits, hidden = out[0], out[1]
    else:
        logits, hidden = out, None
    return logits.float(), (hidden.float() if hidden is not None else None)


STALE_SECONDS = 24 * 3600


def _sweep_stale(folder: str, max_age: float = STALE_SECONDS) -> None:
    """Removes the ``.tmp-*`` folders of runs that were killed while writing (an out-of-memory kill
    leaves N x width files behind): those untouched for ``max_age`` seconds, so a live writer, which
    touches its files as it goes, keeps its own."""
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if not name.startswith(".tmp-") or not os.path.isdir(path):
            continue
        try:
            newest = max([os.path.getmtime(path)] + [os.path.getmtime(os.path.join(path, f)) for f in os.listdir(path)])
        except OSError:  # removed meanwhile by its owner
            continue
        if now - newest > max_age:
            shutil.rmtree(path, ignore_errors=True)


def entry_folder(cache_dir: str, key: str) -> str:
    """The folder of the cache entry ``key`` (complete once its ``meta.json`` exists)."""
    return os.path.join(cache_dir, "teachers", key)


def _durable(folder: str) -> None:
    """fsyncs every file of ``folder`` and the folder itself before the rename that publishes it: after an
    OS crash a published entry could otherwise hold pre-sized files of zeros (layer-wise inference sizes
    them first) that the size check would pass and serve as teacher outputs."""
    from gkdfast._io import _fsync_dir

    for name in os.listdir(folder):
        fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _write(path: str, t: Tensor) -> None:
    t.detach().cpu().contiguous().float().numpy().tofile(path)


def _map(path: str, shape) -> Tensor:
    numel = 1
    for s in shape:
        numel *= int(s)
    if numel == 0:
        return torch.empty(*shape)
    size = os.path.getsize(path)
    if size != numel * 4:
        raise ValueError(f"teacher cache: {path} holds {size} bytes but its meta.json says {list(shape)} float32 "
                         f"({numel * 4} bytes); delete the folder {os.path.dirname(path)} to recompute")
    # shared=False: a private (copy-on-write) mapping, so a caller writing into it never changes the file.
    return torch.from_file(path, shared=False, size=numel, dtype=torch.float32).view(*shape)


# Checksums: a file up to this size is read whole; a larger one (hundreds of MiB per million nodes) by
# every STRIDE-th block of BLOCK bytes, so a new process checks a products-sized entry in a fraction
# of a second instead of re-reading gigabytes.  Sparse damage in the skipped blocks goes unseen there.
_CRC_WHOLE_BYTES = 1 << 30
_CRC_BLOCK = 1 << 20
_CRC_STRIDE = 64


def _file_digest(path: str, stride: int, block: Optional[int] = None) -> int:
    """CRC-32 of every ``stride``-th ``block``-byte block of the file (``_CRC_BLOCK`` by default; all of
    it for stride 1, which equals the whole file's CRC-32: the CRC chains over the blocks)."""
    block = _CRC_BLOCK if block is None else int(block)
    crc, size = 0, os.path.getsize(path)
    with open(path, "rb") as f:
        for start in range(0, size, block * stride):
            f.seek(start)
            crc = zlib.crc32(f.read(block), crc)
    return crc


def _seal(folder: str, meta: dict) -> dict:
    """Completes an entry being written: a checksum of each tensor file into ``meta.json`` (checked when
    the entry is mapped), then everything fsynced before the rename that publishes it.  Returns the
    checksums (see :func:`_remember`)."""
    sums = {}
    for name in ("logits", "hidden"):
        if meta.get(name):
            path = os.path.join(folder, f"{name}.f32")
            stride = 1 if os.path.getsize(path) <= _CRC_WHOLE_BYTES else _CRC_STRIDE
            sums[name] = {"stride": stride, "block": _CRC_BLOCK, "crc": _file_digest(path, stride)}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(dict(meta, crc32=sums), f)
    os.chmod(folder, 0o777 & ~_UMASK)  # mkdtemp made it 0700: a cache shared by users must be readable
    _durable(folder)
    return sums


# Files this process has checked against (or written with) their meta.json: (path, size, mtime) -> checksum,
# the most recent _VERIFIED_MAX (a long sweep opens a new entry per teacher).
_VERIFIED: "collections.OrderedDict[tuple, dict]" = collections.OrderedDict()
_VERIFIED_MAX = 4096


def _verified(stamp: tuple, want: dict) -> None:
    _VERIFIED[stamp] = want
    _VERIFIED.move_to_end(stamp)
    while len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)


def _stamp(path: str) -> tuple:
    st = os.stat(path)
    return path, st.st_size, st.st_mtime_ns


def _remember(folder: str, sums: dict) -> None:
    """Records the checksums :func:`_seal` computed under the published folder, so the writer does not
    read its own files again (a rename keeps sizes and times)."""
    for name, want in sums.items():
        _verified(_stamp(os.path.join(folder, f"{name}.f32")), want)


def _read_meta(folder: str) -> dict:
    meta_path = os.path.join(folder, "meta.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        meta["shapes"] = {name: meta[name] for name in ("logits", "hidden") if meta.get(name) or name == "logits"}
        return meta
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"teacher cache: {meta_path} is damaged ({type(exc).__name__}: {exc}); delete the folder "
                         f"{folder} to recompute") from None


def _open_entry(folder: str, key: str, cached: bool, check: bool = True) -> TeacherOutputs:
    """Maps a published entry.  A damaged ``meta.json``, or a tensor file whose size disagrees with it,
    is a ``ValueError`` naming the folder to delete; with ``check`` (not on a rank that has rank 0's
    word for it) so is a file whose checksum disagrees (entries written before checksums existed: size
    only).  Each file's checksum is read once per process."""
    meta = _read_meta(folder)
    maps = {}
    for name, shape in meta["shapes"].items():
        path = os.path.join(folder, f"{name}.f32")
        maps[name] = _map(path, shape)  # (the size check)
        want = (meta.get("crc32") or {}).get(name)
        if not check or want is None:
            continue
        if isinstance(want, int):  # (the first checksummed entries: the whole file's CRC-32)
            want = {"stride": 1, "crc": want}
        stamp = _stamp(path)
        if _VERIFIED.get(stamp) != want:
            if (not isinstance(want, dict)
                    or _file_digest(path, int(want.get("stride", 1)), want.get("block")) != want.get("crc")):
                raise ValueError(f"teacher cache: {path} does not match the checksum in its meta.json (damaged "
                                 f"on disk); delete the folder {folder} to recompute")
        _verified(stamp, want)
    return TeacherOutputs(maps["logits"], maps.get("hidden"), key, cached=cached)


def teacher_outputs(teacher: nn.Module, x: Tensor, graph=None, cache_dir: Optional[str] = None,
                    device=None, chunk_rows: Optional[int] = None, progress: bool = False, distributed="auto",
                    process_group=None, key: Optional[str] = None) -> TeacherOutputs:
    """Teacher logits and hidden embedding for every node, computed once and cached on disk.

    Args:
        teacher: any module; called as ``teacher(x, graph, return_hidden=True)`` when it accepts that
            (the :mod:`gkdfast.nn` models do), else ``teacher(x, graph)``.
        x: ``[N, F]`` node features.  graph: a :class:`gkdfast.Graph` (or ``None`` for graph-free teachers).
        cache_dir: where ``teachers/<key>/`` is stored; ``None`` computes without caching.
        device: device for the returned tensors (the mapped files live on the CPU; default CPU).
        chunk_rows: if given, the teacher (a :mod:`gkdfast.nn` model on the CPU) runs by
            :func:`gkdfast.nn.layerwise_inference` with this many rows per block, writing its
            outputs straight into the cache files (never a full in-memory copy): for graphs whose
            full forward does not fit in memory.  Same cache key either way.  Under a process group
            the ranks share the row blocks of every layer (below).
        progress: tqdm bar for the layer-wise inference.
        distributed / process_group: as in :class:`~gkdfast.distill.Distiller`: with a process group
            of several ranks and a ``cache_dir``, each rank computes rows ``[r·⌈N/W⌉, (r+1)·⌈N/W⌉)``
            into the shared cache (a graph-free teacher runs on those rows only; a GNN still runs over
            the whole graph, since its rows need their neighbourhoods) and every rank maps the
            result; with ``chunk_rows`` the ranks run layer-wise inference together instead (every
            W-th row block of each layer, a barrier between layers), so a GNN's work is divided too.
            Every rank must pass the same teacher weights and inputs (checked: the cache keys must
            agree).
        key: :func:`fingerprint` ``(teacher, x, graph)`` when the caller has already computed it (it
            hashes every byte of ``x``); ``None`` computes it.

    Returns:
        :class:`TeacherOutputs` with ``logits [N, C]`` and ``hidden [N, H]`` (or ``None``).

    Example:
        >>> import tempfile
        >>> from gkdfast.data import csbm
        >>> from gkdfast.nn import SAGE
        >>> data, cache = csbm(num_nodes=100, num_classes=3, seed=0), tempfile.mkdtemp()
        >>> model = SAGE(data.num_features, 16, 3)
        >>> out = teacher_outputs(model, data.x, data.graph, cache_dir=cache)
        >>> out.logits.shape, out.hidden.shape, out.cached
        (torch.Size([100, 3]), torch.Size([100, 16]), False)
        >>> teacher_outputs(model, data.x, data.graph, cache_dir=cache).cached   # second call: from disk
        True
    """
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher_outputs: teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError("teacher_outputs: x must be a [N, F] tensor")
    if cache_dir is None:
        logits, hidden = _forward(teacher, x, graph, chunk_rows, None, progress)
        out = TeacherOutputs(logits.cpu(), hidden.cpu() if hidden is not None else None)
        return out.to(device) if device is not None else out

    from gkdfast.distill import ddp as _ddp

    key = fingerprint(teacher, x, graph) if key is None else key
    folder = entry_folder(cache_dir, key)
    meta_path = os.path.join(folder, "meta.json")
    group = _ddp.resolve(distributed, process_group)
    if group is not None:
        out = _sharded(teacher, x, graph, cache_dir, key, group, chunk_rows, progress)
        return out.to(device) if device is not None else out
    if os.path.exists(meta_path):
        out = _open_entry(folder, key, cached=True)
        return out.to(device) if device is not None else out

    os.makedirs(os.path.join(cache_dir, "teachers"), exist_ok=True)
    _sweep_stale(os.path.join(cache_dir, "teachers"))
    # Write into a temporary folder and rename it into place, so a run killed mid-write never
    # leaves a half-written entry that a later run would trust.
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.join(cache_dir, "teachers"))
    try:
        logits, hidden = _forward(teacher, x, graph, chunk_rows, tmp, progress)
        if chunk_rows is None:  # layer-wise inference wrote the files itself
            _write(os.path.join(tmp, "logits.f32"), logits)
            if hidden is not None:
                _write(os.path.join(tmp, "hidden.f32"), hidden)
        meta = {"logits": list(logits.shape), "hidden": list(hidden.shape) if hidden is not None else None}
        del logits, hidden  # drop the writable maps before the folder is renamed
        sums = _seal(tmp, meta)
        try:
            os.rename(tmp, folder)
            _remember(folder, sums)
        except OSError:
            if os.path.exists(meta_path):  # another process stored the same key first: theirs is identical
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # a stale folder without meta.json (a killed older version): never map its files
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    except BaseException as exc:
        full = out_of_space(tmp, exc)  # before the temporary folder is gone and frees its space
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise no_space_error(os.path.join(cache_dir, "teachers", key), cache_dir) from exc
        raise
    out = _open_entry(folder, key, cached=False)
    return out.to(device) if device is not None else out


def _sharded(teacher: nn.Module, x: Tensor, graph, cache_dir: str, key: str, group, chunk_rows: Optional[int] = None,
             progress: bool = False) -> TeacherOutputs:
    """The distributed path of :func:`teacher_outputs` (``group``: a :class:`gkdfast.distill.ddp.Dist`)."""
    from gkdfast.distill.distiller import uses_graph

    odd = [r for r, k in enumerate(group.all_gather_object(key)) if k != key]
    if odd:
        raise ValueError(f"teacher_outputs: rank(s) {odd} hold another teacher or other inputs than rank "
                         f"{group.rank}; every rank must pass the same teacher weights, features and graph")
    folder = entry_folder(cache_dir, key)
    # One decision for all ranks (another job could create the entry between two ranks' checks).
    if not group.broadcast_object(os.path.exists(os.path.join(folder, "meta.json"))):
        n = x.size(0)
        tmp = None
        if group.is_main:
            os.makedirs(os.path.join(cache_dir, "teachers"), exist_ok=True)
            _sweep_stale(os.path.join(cache_dir, "teachers"))
            tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.join(cache_dir, "teachers"))
        tmp = group.broadcast_object(tmp)
        if chunk_rows is not None:  # the ranks run the layers together, writing into tmp's files
            from gkdfast.nn.layerwise import layerwise_inference

            # A machine's ranks meet in its memory-mapped files; machines exchange row blocks by messages.
            logits, hidden = layerwise_inference(teacher, x, graph, chunk_rows=chunk_rows, out_dir=tmp,
                                                 progress=progress and group.is_main, group=group)
            meta = {"logits": list(logits.shape), "hidden": list(hidden.shape) if hidden is not None else None}
            del logits, hidden  # drop the writable maps before the folder is renamed
        else:
            chunk = -(-n // group.world_size)
            lo, hi = min(n, group.rank * chunk), min(n, (group.rank + 1) * chunk)
            if graph is None or not uses_graph(teacher):
                logits, hidden = _forward(teacher, x[lo:hi], None)
            else:
                logits, hidden = _forward(teacher, x, graph)
                logits, hidden = logits[lo:hi], hidden[lo:hi] if hidden is not None else None
            meta = {"logits": [n, logits.size(1)], "hidden": [n, hidden.size(1)] if hidden is not None else None}
            if group.is_main:
                for name, shape in (("logits", meta["logits"]), ("hidden", meta["hidden"])):
                    if shape is not None:
                        with open(os.path.join(tmp, f"{name}.f32"), "wb") as f:
                            f.truncate(shape[0] * shape[1] * 4)  # full size: every rank writes into it
            group.barrier()
            for name, rows in (("logits", logits), ("hidden", hidden)):
                if rows is not None and rows.numel():
                    with open(os.path.join(tmp, f"{name}.f32"), "r+b") as f:
                        f.seek(lo * rows.size(1) * 4)
                        f.write(rows.detach().cpu().contiguous().float().numpy().tobytes())
                        f.flush()
                        os.fsync(f.fileno())
        group.barrier()
        if group.is_main:
            sums = _seal(tmp, meta)
            try:
                os.rename(tmp, folder)
                _remember(folder, sums)
            except OSError:
                if os.path.exists(os.path.join(folder, "meta.json")):  # another job stored the same key first
                    shutil.rmtree(tmp, ignore_errors=True)
                else:  # a stale folder without meta.json (a killed older version): never map its files
                    shutil.rmtree(folder, ignore_errors=True)
                    os.rename(tmp, folder)
        group.barrier()
        cached = False
    else:
        cached = True
    # Rank 0 checks the entry and tells the others (each reading every file would multiply the reads).
    checked = group.on_main(lambda: _open_entry(folder, key, cached=cached),
                            f"teacher cache: rank 0 could not use the entry {folder}", ValueError)
    return checked if checked is not None else _open_entry(folder, key, cached=cached, check=False)
