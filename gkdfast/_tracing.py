"""Whether *this thread* is tracing gkdfast code for ``torch.compile`` / ``torch.export``.

``torch.compiler.is_compiling()`` is one process-wide flag in torch 2.13: while any thread compiles,
every other thread's eager calls saw it too, skipped the graph caches (an inference-mode cache then
broke later training), the sparse first layer and the Philox dropout (helper 116).  The two signals
used here are per thread: Dynamo constant-folds ``is_dynamo_compiling()`` to True while it traces
(False in eager code), and a non-strict ``torch.export`` (or AOTAutograd re-running a Python backward
formula) runs under a fake-tensor mode on this thread's dispatch-mode stack.
"""
from __future__ import annotations

import torch

_FAKE_KEY = getattr(getattr(torch._C, "_TorchDispatchModeKey", None), "FAKE", None)
_is_dynamo_compiling = getattr(torch.compiler, "is_dynamo_compiling", None)


def tracing() -> bool:
    """True while this thread traces for ``torch.compile`` or ``torch.export``; False in eager code, whatever
    other threads compile.

    Example:
        >>> tracing()
        False
    """
    if _is_dynamo_compiling is None or _FAKE_KEY is None:  # (older torch: the process-wide flag)
        return torch.compiler.is_compiling()
    return _is_dynamo_compiling() or torch._C._get_dispatch_mode(_FAKE_KEY) is not None
