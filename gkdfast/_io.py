"""Crash-safe file writes shared by checkpoints, results and caches.

A write goes to a uniquely named temporary file in the target's folder (so two processes writing
the same target never share a temporary name), is flushed and fsync'ed, then renamed over the
target: readers see the old file or the new one, never a half-written one, even after a crash.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import time
from typing import Callable, IO, Iterator

__all__ = ["atomic_write", "save_checkpoint_file", "DirectoryBusy", "exclusive_dir", "file_stem"]


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: flipping it later would open a window for other threads


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Calls ``write(f)`` on a fresh binary temporary file beside ``path``, then renames it to ``path``.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "x.txt")
        >>> atomic_write(p, lambda f: f.write(b"hello"))
        >>> open(p).read()
        'hello'
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temps(folder, f".{os.path.basename(path)}.")
    # the name first, then the file inside the try: an interrupt right after mkstemp created its file
    # would leave it behind, unnamed here (helper 102: 12 empty temporaries from 300 Ctrl-Cs)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies: open()'s mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = out_of_space(folder, exc)  # before the temporary file is gone and frees its space
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if full:
            raise no_space_error(path, folder) from exc
        raise
    _fsync_dir(folder)


# Below this much free space a failed write is taken for a full disk: torch's zip writer reports a
# short write as "unexpected pos ..." and numpy's tofile as "N requested and M written", neither an
# ENOSPC.
_FULL_BYTES = 16 << 20


def out_of_space(folder: str, exc: BaseException) -> bool:
    """Whether the write that raised ``exc`` into ``folder`` failed for want of space: ENOSPC / EDQUOT,
    or a short write (an ``OSError`` without an errno, torch's zip writer's "unexpected pos") with less
    than 16 MiB left on the folder's file system."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    short_write = ((isinstance(exc, OSError) and exc.errno is None)
                   or (isinstance(exc, RuntimeError) and "unexpected pos" in str(exc)))
    if not short_write:
        return False
    try:
        return shutil.disk_usage(folder).free < _FULL_BYTES
    except OSError:
        return False


def no_space_error(path: str, folder: str) -> OSError:
    """The one error of a write that ran out of space: names what was written, the folder and what to do."""
    return OSError(errno.ENOSPC, f"no space left on the file system of {folder} while writing "
                                 f"{os.path.basename(path)}; free some space or write elsewhere, then run again "
                                 f"(a gkdfast distill run resumes from its checkpoints)", path)


# A temporary file of an atomic write untouched this long was left by a killed writer (a live one
# writes to it continuously; an hour is far beyond the largest checkpoint's write).
STALE_TEMP_SECONDS = 3600.0


def _remove_stale_temps(folder: str, prefix: str, max_age: float = STALE_TEMP_SECONDS) -> None:
    """Deletes ``prefix*.tmp`` files in ``folder`` older than ``max_age`` seconds: what a process killed
    between its temporary write and the rename leaves behind (a checkpoint's can be gigabytes)."""
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            p = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if now - os.path.getmtime(p) > max_age:
                    os.unlink(p)


def save_checkpoint_file(obj, f: IO[bytes]) -> None:
    """``torch.save(obj, f)`` without the zip records' CRC-32, which costs more than the write itself
    for large tensors (a 1 GB state: 4.2 s with it, 0.7 s without, one core).  ``torch.load`` reads
    such a file as usual; what a CRC would catch (a torn write) :func:`atomic_write` already rules
    out.  Restores the previous setting afterwards (it is process-wide in torch).

    Example:
        >>> import io, torch
        >>> buf = io.BytesIO()
        >>> save_checkpoint_file({"w": torch.ones(2)}, buf)
        >>> _ = buf.seek(0)
        >>> torch.load(buf, weights_only=True)["w"]
        tensor([1., 1.])
    """
    import torch
    import torch.serialization as ser

    get, set_ = getattr(ser, "get_crc32_options", None), getattr(ser, "set_crc32_options", None)
    if get is None or set_ is None:  # older torch: always computes it
        torch.save(obj, f)
        return
    before = get()
    set_(False)
    try:
        torch.save(obj, f)
    finally:
        set_(before)


class DirectoryBusy(OSError):
    """Another process holds the folder's lock (e.g. a second run writing into the same ``--out``)."""


def file_stem(name: str) -> str:
    """``name`` (e.g. a dataset's, read from its file) made safe as a file name: characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``_`` and leading dots go, so a name such as
    ``../x`` or ``/tmp/x`` cannot place a file outside the folder it is joined to.

    Example:
        >>> file_stem("../../etc/cora"), file_stem("cora-ml")
        ('_.._etc_cora', 'cora-ml')
    """
    stem = re.sub(r"[^\w.-]", "_", str(name)).lstrip(".")
    return stem or "data"


@contextlib.contextmanager
def exclusive_dir(folder: str, what: str = "output folder", enabled: bool = True) -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (a ``.lock`` file inside it) for the ``with`` block, so
    two runs never write the same checkpoints and results; a second one fails at once with
    :class:`DirectoryBusy` instead of waiting or interleaving.  The lock dies with the process.
    ``enabled=False`` makes it a no-op (e.g. on the non-zero ranks of a multi-process run, whose
    rank 0 holds the lock for all of them).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with exclusive_dir(d):
        ...     pass
    """
    os.makedirs(folder, exist_ok=True)
    if not enabled:
        yield
        return
    # (O_NOFOLLOW: a .lock planted as a symlink in a reused folder must not create a file elsewhere)
    lock = os.path.join(folder, ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        # a path problem (exit 2), not the machine's: retrying would meet the same link
        raise FileExistsError(errno.EEXIST, f"{lock} is a symbolic link; the {what}'s lock file is never "
                                            "followed: remove the link") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DirectoryBusy(f"{folder}: another gkdfast run is using this {what}; wait for it to "
                                    "finish or choose another folder") from None
            raise
        yield
    finally:
        os.close(fd)
