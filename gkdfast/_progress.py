"""Progress bars for long runs, on a terminal and in a batch job's log alike.

On a terminal (or in a notebook) a bar redraws in place, as tqdm does.  When stderr goes to a file
(a batch system, ``2> log``, ``nohup``) in-place redraws are carriage returns: ``gkdfast distill`` wrote
4,644 of them in 200 s, glued in front of the next log line, so ``grep '^seed'`` found nothing.  There
the bar instead writes one plain line at most every ``LOG_INTERVAL`` seconds.
``--no-progress`` (CLI) or ``TQDM_DISABLE=1`` turn bars off everywhere.
"""
from __future__ import annotations

import os
import sys

__all__ = ["progress_bar", "LOG_INTERVAL"]

LOG_INTERVAL = 30.0
"""Seconds between two lines of a bar written to a log (not a terminal)."""


class _LineStream:
    """A file for tqdm that turns each redraw into one line and drops the blank clearing redraws."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _interactive(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` bar (``kwargs`` as tqdm's), drawn in place on a terminal or in a notebook and as
    a line every :data:`LOG_INTERVAL` seconds in a log.  ``enabled=False``: a disabled bar (iterating
    it still yields ``iterable``).  ``TQDM_DISABLE=1`` disables every bar, as tqdm documents.

    Example:
        >>> sum(progress_bar(range(4), enabled=False))
        6
    """
    from tqdm.auto import tqdm

    if os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        enabled = False
    if kwargs.pop("disable", False) is True:  # (a caller's own tqdm-style disable=True)
        enabled = False
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    notebook = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)
    stream = kwargs.pop("file", None) or sys.stderr
    # disable=False: the decision is made here, TQDM_DISABLE included (tqdm reads its TQDM_* variables
    # once, at import, so a later change of them would be missed)
    kwargs["disable"] = False
    if notebook or _interactive(stream):
        return tqdm(iterable, file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)  # (a log has no width to follow)
    kwargs.setdefault("ncols", 100)
    # maxinterval too: tqdm's monitor thread otherwise forces a line every 10 s of a slow-moving bar
    return tqdm(iterable, file=_LineStream(stream), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL, **kwargs)
