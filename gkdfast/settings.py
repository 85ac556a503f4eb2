"""Process-wide knobs of the native kernels.

Each is an environment variable read at every call, so it can also be set before Python starts.  Each
function sets its variable at once, like ``torch.set_grad_enabled``: ``gkdfast.settings.dropout_impl("torch")``
on its own line keeps the setting for the rest of the process, and ``with gkdfast.settings.dropout_impl("torch"):``
restores the previous value at the end of the block.  Being process-wide, a setting changed in one
thread applies to every thread's calls while it holds: overlapping ``with`` blocks of two threads end
with the value from before both (none is left stuck), but in between each thread's calls see the other's
value: there are no per-thread settings, so where threads must not see each other's, set them once
before the threads start.

* ``tile_workspace(megabytes)`` -> ``GKDFAST_TILE_WORKSPACE_MB``: how much memory the GEMM tiles of
  the all-pairs losses (``losses.gsp``, ``losses.crd`` all-N, ``ncontrast`` / ``nt_xent``'s exact
  denominator, ``topk_similar``) may take at once.  Default on CUDA: 256 MiB (tiles large enough for
  cuBLAS to run at full speed); on CPU the kernels keep their cache-sized tiles unless this is set.
  Memory of those losses is O(N d) plus this budget, whatever N is.  The tile shape sets the order in
  which ``crd``'s exact mode, ``ncontrast`` and ``nt_xent`` accumulate: their last bits change with it.
* ``cuda_impl(name)`` -> ``GKDFAST_CUDA_IMPL``: ``"fast"`` (default: tensor-core tiles with fused
  epilogues for gsp / crd / gram_lse, cuSPARSE for spmm sum / mean in float32 / float64, the staged
  LSP) or ``"legacy"`` (the first-generation kernels: warp-per-row pair loops, gkdfast's own spmm
  for every reduce, the fused-per-row LSP).  Kept to compare both on a GPU.
* ``cpu_gsp_impl(name)`` -> ``GKDFAST_CPU_GSP_IMPL``: ``"simd"`` (default: the CPU's vectorised tile
  loops) or ``"portable"`` (the device-agnostic tile driver with a host epilogue: the orchestration
  and per-element formulas the CUDA path runs, so the CPU tests can check them).
* ``dropout_impl(name)`` -> ``GKDFAST_DROPOUT``: the dropout inside gkdfast's models and
  ``gkdfast.nn.Dropout``: ``"philox"`` (default: ``gkdfast.nn.philox_dropout.dropout``, a mask drawn
  from (seed, position) and nothing stored for backward) or ``"torch"`` (``torch.nn.functional.dropout``:
  the random stream of results recorded before the Philox op existed).
"""
from __future__ import annotations

import math
import os
import threading
from typing import Optional

__all__ = ["tile_workspace", "cuda_impl", "cpu_gsp_impl", "dropout_impl"]


class _env:
    """Sets the variable at once, like ``torch.set_grad_enabled``: called as a statement the setting stays
    for the rest of the process; used in a ``with`` block, the previous value comes back at its end.

    ``with`` blocks are tracked per variable: the variable holds the innermost (latest entered) block
    still open, and when the last one closes, the value from before them, or the last statement-form
    call made meanwhile.  So blocks of two threads that close out of order cannot leave either one's
    value behind (each restoring the value it saw at its start did: a setting stayed stuck)."""

    def __init__(self, name: str, value: Optional[str]):
        self.name, self.value = name, value
        with _LOCK:
            state = _STATE.setdefault(name, {"open": [], "base": None})
            # as a statement this is the new value outside every block; __enter__ undoes that
            self._undo = (bool(state["open"]), state["base"], os.environ.get(name))
            if state["open"]:
                state["base"] = value
            _put(name, value)

    def __enter__(self) -> "_env":
        with _LOCK:
            state = _STATE[self.name]
            had_open, base, before = self._undo
            state["base"] = base if had_open else before
            state["open"].append(self)
            _put(self.name, self.value)
        return self

    def __exit__(self, *exc) -> None:
        with _LOCK:
            state = _STATE[self.name]
            state["open"] = [e for e in state["open"] if e is not self]
            _put(self.name, state["open"][-1].value if state["open"] else state["base"])


_LOCK = threading.Lock()
# Per variable: the with-blocks open now (in order of entry) and the value outside them.
_STATE: dict = {}


def _put(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def tile_workspace(megabytes: Optional[float]):
    """Within the block, the pairwise losses' GEMM tiles use at most ``megabytes`` MiB at once
    (``None``: the default, 256 MiB on CUDA, cache-sized tiles on CPU).  Process-wide.  Another budget
    changes the last bits of ``crd``'s exact mode, ``ncontrast`` and ``nt_xent`` (their summation order).

    Example:
        >>> import torch, gkdfast
        >>> s, t = torch.randn(300, 8), torch.randn(300, 8)
        >>> with gkdfast.settings.tile_workspace(1):
        ...     loss = gkdfast.losses.crd(s, t)
        >>> bool(torch.isfinite(loss))
        True
    """
    if megabytes is not None:
        mb = float(megabytes)
        if not (math.isfinite(mb) and mb > 0):
            raise ValueError(f"gkdfast.settings.tile_workspace: megabytes must be a positive number, got {megabytes!r}")
        return _env("GKDFAST_TILE_WORKSPACE_MB", repr(mb))
    return _env("GKDFAST_TILE_WORKSPACE_MB", None)


def cuda_impl(name: str):
    """Within the block, CUDA calls run the ``"fast"`` (default) or ``"legacy"`` kernels.  Process-wide.

    Example:
        >>> import gkdfast
        >>> with gkdfast.settings.cuda_impl("legacy"):
        ...     pass  # CUDA ops called here use the first-generation kernels
    """
    name = str(name).strip().lower()
    if name not in ("fast", "legacy"):
        raise ValueError(f"gkdfast.settings.cuda_impl: name must be 'fast' or 'legacy', got {name!r}")
    return _env("GKDFAST_CUDA_IMPL", name)


def cpu_gsp_impl(name: str):
    """Within the block, CPU ``gsp`` calls run the ``"simd"`` (default) or ``"portable"`` tile path.

    Example:
        >>> import torch, gkdfast
        >>> s, t = torch.randn(50, 4), torch.randn(50, 4)
        >>> with gkdfast.settings.cpu_gsp_impl("portable"):
        ...     a = gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.5)
        >>> b = gkdfast.losses.gsp(s, t, kernel="rbf", loss="kl", gamma=0.5)
        >>> bool(torch.allclose(a, b, rtol=1e-5))
        True
    """
    name = str(name).strip().lower()
    if name not in ("simd", "portable"):
        raise ValueError(f"gkdfast.settings.cpu_gsp_impl: name must be 'simd' or 'portable', got {name!r}")
    return _env("GKDFAST_CPU_GSP_IMPL", name)


def dropout_impl(name: str):
    """Within the block, gkdfast's models drop out with ``"philox"`` (default) or ``"torch"``
    (``torch.nn.functional.dropout``).  Process-wide.

    Example:
        >>> import torch, gkdfast
        >>> with gkdfast.settings.dropout_impl("torch"):
        ...     out = gkdfast.nn.Dropout(0.5)(torch.ones(4))
    """
    name = str(name).strip().lower()
    if name not in ("philox", "torch"):
        raise ValueError(f"gkdfast.settings.dropout_impl: name must be 'philox' or 'torch', got {name!r}")
    return _env("GKDFAST_DROPOUT", name)
