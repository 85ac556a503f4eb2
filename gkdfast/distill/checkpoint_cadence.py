"""How often a training loop writes its checkpoint: every epoch while that is cheap, and no more than a
set share of the wall time when it is not.

A checkpoint holds the model, the optimiser's moments and the best epoch's weights.  For a small
model that is kilobytes and a save costs milliseconds, so every epoch is written.  For a model with
a large parameter (T2-GNN's learnable imputation on Facebook: 13,482 x 4,714 entries, 1.3 GB with
Adam's moments and the best-epoch copy) one save costs seconds, more than the epoch itself; writing
it every epoch made the run several times slower.  :class:`CheckpointCadence` measures each save and
spaces the next one so that saving stays under ``overhead`` of the time.  A killed run resumes from
the last written epoch and, since the checkpoint holds every RNG state, still ends exactly where an
uninterrupted run would; it only repeats the epochs after that save.

Example:
    >>> c = CheckpointCadence(0.05)
    >>> c.due()                      # nothing written yet
    True
    >>> with c.timed():
    ...     pass                     # a save that took no time: the next epoch is due again
    >>> c.due()
    True
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator, Optional

__all__ = ["CheckpointCadence", "ALWAYS_WRITE_SECONDS"]

# Saves faster than this are written every epoch whatever their share of the time: a resumed run then
# repeats nothing, and tests that stop a run at epoch k find epoch k's checkpoint.
ALWAYS_WRITE_SECONDS = 0.25


class CheckpointCadence:
    """Decides per epoch whether a checkpoint is due.

    Args:
        overhead: the largest share of wall time spent saving, in ``(0, 1]``: after a save that took
            ``s`` seconds, the next is due once ``s / overhead`` seconds have passed.  Saves under
            :data:`ALWAYS_WRITE_SECONDS` are always due.  ``None``: every epoch.
        clock: the time source (tests pass a fake one).
    """

    def __init__(self, overhead: Optional[float] = 0.05, clock: Callable[[], float] = time.perf_counter):
        if overhead is not None and not 0.0 < float(overhead) <= 1.0:
            raise ValueError(f"checkpoint_overhead must be in (0, 1] or None (every epoch), got {overhead}")
        self.overhead = None if overhead is None else float(overhead)
        self._clock = clock
        self._last_cost = 0.0   # seconds the last save took
        self._last_end = None   # clock reading when it ended

    def due(self) -> bool:
        """True when this epoch's checkpoint should be written."""
        if self.overhead is None or self._last_end is None or self._last_cost < ALWAYS_WRITE_SECONDS:
            return True
        return (self._clock() - self._last_end) * self.overhead >= self._last_cost

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Wrap one save: its duration sets the spacing of the next."""
        t0 = self._clock()
        try:
            yield
        finally:
            self._last_end = self._clock()
            self._last_cost = self._last_end - t0
