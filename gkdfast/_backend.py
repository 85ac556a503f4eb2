"""Loads the native module and chooses a backend per call.

Priority, per call: the CUDA kernel (tensors on a CUDA device), the CPU kernel (tensors on the
CPU), then the pure-PyTorch reference.  Every backend that is *not* used can say why, in words a
user can act on (the xformers ``not_supported_reasons`` pattern)::

    >>> import gkdfast
    >>> gkdfast.backend_info()["backends"]["cpu"]          # doctest: +SKIP
    {'available': True, 'reasons': []}

``GKDFAST_BACKEND=reference`` forces the reference everywhere; ``GKDFAST_BACKEND=native`` makes a
missing kernel an error instead of a silent fallback (useful in benchmarks and CI).
If the extension failed to build or load, importing gkdfast still works: every op runs on the
reference backend and a single warning says why.
"""
from __future__ import annotations

import contextlib
import os
import threading
import sys
import warnings
from typing import Dict, List, Optional, TypedDict

import torch
from gkdfast._tracing import tracing

__all__ = ["backend_info", "choose", "explain", "native_loaded", "load_error", "NATIVE_DTYPES"]

NAMESPACE = "gkdfast"

# dtypes each native backend implements; anything else runs on the reference.
NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
# ops whose kernels take more dtypes than their backend's default (CPU dropout: a Philox mask and a
# multiply, exact in any float type; without this half inputs ran the reference, ~100x slower)
_OP_DTYPES = {
    ("dropout", "cpu"): (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def native_dtypes(op: str, kind: str):
    """The dtypes ``op``'s ``kind`` ("cpu" / "cuda") kernel takes."""
    return _OP_DTYPES.get((op, kind), NATIVE_DTYPES[kind])

_C = None
_LOAD_ERROR: Optional[str] = None
_WARNED = False


def _load():
    global _C, _LOAD_ERROR
    import importlib.util

    if importlib.util.find_spec("gkdfast._C") is None:  # (the import below would blame a circular import)
        folder = os.path.dirname(os.path.abspath(__file__))
        _LOAD_ERROR = f"no compiled gkdfast._C in {folder} (the extension was not built or not installed there)"
        return
    try:
        from gkdfast import _C as module  # noqa: F401  (runs the static operator registrations)

        _C = module
    except Exception as exc:  # ImportError, OSError (undefined symbol), RuntimeError ...
        _LOAD_ERROR = f"{type(exc).__name__}: {exc}"
        return
    # The ops exist now: add their fake kernels and autograd formulas (gkdfast/_native/, one module
    # per csrc/ops/ family).  A failure here is a bug in gkdfast, not a broken build: let it raise.
    from gkdfast import _native

    _native.register_all()


_load()


def _warn_once():
    global _WARNED
    if _LOAD_ERROR is not None and not _WARNED:
        _WARNED = True
        warnings.warn(
            "gkdfast: the native extension gkdfast._C could not be loaded, so every op runs on the pure-PyTorch "
            f"reference backend (correct but slower, and pairwise losses use more memory). Reason: {_LOAD_ERROR}. "
            "Build it against the installed torch (with ninja and setuptools>=77 installed): "
            "`pip install --no-build-isolation -e .` in a source checkout, "
            "or `pip install --no-build-isolation <sdist or folder>` (README, \"Installing into your own "
            "environment\").",
            RuntimeWarning, stacklevel=_caller_stacklevel())


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised while gkdfast is being imported at the first frame
    outside gkdfast and the import machinery: the user's ``import`` line, not the gkdfast module that
    happened to import this one."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1  # level 1: _warn_once, whose caller asked for the warning
    while frame is not None:
        name = frame.f_code.co_filename
        uncounted = "importlib" in name and "_bootstrap" in name  # frames warnings.warn skips without counting
        if not ("importlib" in name or name.startswith(package)):  # (importlib.import_module's frame too)
            return level
        frame, level = frame.f_back, level + (not uncounted)
    return 2


_warn_once()


def native_loaded() -> bool:
    return _C is not None


def load_error() -> Optional[str]:
    return _LOAD_ERROR


_FORCED: Optional[str] = None  # set by forced(); wins over GKDFAST_BACKEND
_FORCED_OPEN: list = []  # forced() blocks open now, in order of entry: (token, mode)
_FORCED_LOCK = threading.Lock()


@contextlib.contextmanager
def forced(mode: str):
    """Within the block, every call uses backend ``mode`` ("reference", "native" or "auto") as if
    ``GKDFAST_BACKEND`` were set, without touching the environment (process-wide, not per thread: the
    innermost block still open wins, so blocks of two threads closing out of order leave nothing
    behind; already compiled ``torch.compile`` functions keep the choice they traced).

    Example:
        >>> import gkdfast, torch
        >>> with forced("reference"):
        ...     choose("spmm", torch.device("cpu"), torch.float32)
        'reference'
    """
    global _FORCED
    mode = str(mode).strip().lower()
    if mode not in ("auto", "reference", "native"):
        raise ValueError(f"gkdfast._backend.forced: mode must be auto, reference or native, got {mode!r}")
    token = object()
    with _FORCED_LOCK:
        _FORCED_OPEN.append((token, mode))
        _FORCED = mode
    try:
        yield
    finally:
        with _FORCED_LOCK:
            _FORCED_OPEN[:] = [e for e in _FORCED_OPEN if e[0] is not token]
            _FORCED = _FORCED_OPEN[-1][1] if _FORCED_OPEN else None


def _mode() -> str:
    if _FORCED is not None:
        return _FORCED
    mode = os.environ.get("GKDFAST_BACKEND", "auto").strip().lower() or "auto"
    if mode not in ("auto", "reference", "native"):
        raise ValueError(f"GKDFAST_BACKEND must be auto, reference or native, got {mode!r}")
    return mode


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vjp, jacrev, jvp, hessian, vmap) or a forward-mode AD
    level (``torch.autograd.forward_ad.dual_level``) is active.

    The native ops cannot serve either: their autograd is either a ``torch.library.register_autograd``
    formula, which functorch refuses ("must override the setup_context staticmethod") and which drops
    forward-mode tangents **silently** (the kernel runs below autograd when no input requires grad: a
    zero tangent, no error), or, for the hot ops (``csrc/autograd/``), a C++ autograd function, which
    functorch refuses too and which raises on a forward-mode tangent.  Their calls therefore take the reference,
    which composes with both.

    Example:
        >>> with torch.autograd.forward_ad.dual_level():
        ...     transforms_active()
        True
    """
    return torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0


def reference_requested() -> bool:
    """Whether the pure-PyTorch reference was asked for (``GKDFAST_BACKEND=reference`` or
    ``forced("reference")``), is the only backend (no extension), or is the one that composes with the
    active ``torch.func`` / forward-mode AD (:func:`transforms_active`): for code paths that are plain
    PyTorch on every backend and only pick their reference form (no kernel to check for).

    Example:
        >>> with forced("reference"):
        ...     reference_requested()
        True
    """
    return _mode() == "reference" or not native_loaded() or transforms_active()


def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when ``gkdfast::<op>`` has a kernel registered for ``dispatch_key`` ("CPU", "CUDA")."""
    if _C is None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", dispatch_key)
    except RuntimeError:  # op not defined at all
        return False


def _reasons(op: str, device: torch.device, dtype: Optional[torch.dtype], mode: Optional[str] = None,
             transforms: Optional[bool] = None) -> Dict[str, List[str]]:
    """Why each backend can or cannot run ``op`` for tensors on ``device`` with ``dtype``, under ``mode``
    and ``transforms`` (read now when not given: :func:`choose` passes the values it keys its cache by)."""
    mode = _mode() if mode is None else mode
    transforms = transforms_active() if transforms is None else transforms
    out: Dict[str, List[str]] = {"cuda": [], "cpu": [], "reference": []}
    for kind, key in (("cuda", "CUDA"), ("cpu", "CPU")):
        r = out[kind]
        if mode == "reference":
            r.append("GKDFAST_BACKEND=reference forces the reference backend")
        if transforms:
            r.append("a torch.func transform or forward-mode AD is active, which the native ops' autograd "
                     "does not support (the reference does)")
        if _C is None:
            r.append(f"native extension not loaded ({_LOAD_ERROR})")
        elif not has_kernel(op, key):
            if kind == "cuda" and not _C.compiled_with_cuda():
                r.append("gkdfast was built without CUDA kernels (CPU-only torch or no CUDA toolkit at build time)")
            else:
                r.append(f"no {key} kernel registered for gkdfast::{op}")
        if device.type != kind:
            r.append(f"inputs are on {device.type}, not {kind}")
        if dtype is not None and dtype not in native_dtypes(op, kind):
            r.append(f"dtype {dtype} has no {kind} kernel (supported: "
                     + ", ".join(str(d).replace("torch.", "") for d in native_dtypes(op, kind)) + ")")
    return out


def _assume_constant(fn):
    """Under torch.compile, ``fn`` runs at trace time and its result is baked into the graph (the
    dispatcher queries behind a backend choice cannot be traced); eager calls are unchanged.

    This is ``torch._dynamo.assume_constant_result``, which marks ``fn`` with one attribute and does
    nothing else.  The mark is set here directly because importing ``torch._dynamo`` costs about 2 s
    (``import gkdfast``: 3.0-3.2 s against 5.5-5.6 s on the 2-core development machine), which a
    process that neither compiles nor steps a torch optimiser (both load Dynamo themselves) need not
    pay: ``gkdfast --help``, ``gkdfast generate``, reading data or results.  ``tests/test_compile.py``
    checks that Dynamo's decorator still sets exactly this mark; its fullgraph tests, that compiled
    calls do not graph-break."""
    fn._dynamo_marked_constant = True
    return fn


# (op, device type, dtype, mode, transforms) -> "cpu" / "cuda": a native choice depends on nothing else (the
# registered kernels do not change in a process), and working it out asks the dispatcher about every
# backend: 9.9 us per call, as long as a small spmm itself.  Fallbacks are not kept: they warn.
_NATIVE_CHOICES: Dict[tuple, str] = {}


@_assume_constant
def choose(op: str, device: torch.device, dtype: Optional[torch.dtype] = None) -> str:
    """Returns "cuda", "cpu" or "reference" for this call.

    With ``GKDFAST_BACKEND=native`` a call that would fall back raises instead, listing the reasons.
    Under ``torch.compile`` the choice is made once while tracing (``GKDFAST_BACKEND`` changed
    later does not affect an already compiled function).
    """
    device = torch.device(device)
    # The mode is read once: another thread's forced() block closing between two reads would store a
    # native choice under the "reference" key, for good (helper 116).
    mode, transforms = _mode(), transforms_active()
    key = (op, device.type, dtype, mode, transforms)
    kind = _NATIVE_CHOICES.get(key)
    if kind is not None:
        return kind
    reasons = _reasons(op, device, dtype, mode, transforms)
    for kind in ("cuda", "cpu"):
        if not reasons[kind]:
            _NATIVE_CHOICES[key] = kind
            return kind
    if device.type == "cuda" and _C is not None and not _C.compiled_with_cuda() and mode != "reference":
        _warn_cpu_only_build()
    if mode == "native":
        raise NotImplementedError(
            f"gkdfast.{op}: GKDFAST_BACKEND=native but no native kernel can run this call: "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in reasons.items() if k != "reference" and v))
    return "reference"


_CPU_ONLY_WARNED = False
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _warn_at_caller(message: str) -> None:
    """``warnings.warn(message, RuntimeWarning)`` attributed to the first frame outside gkdfast (the
    user's call), however deep inside the package (wrappers, helpers) the warning is raised."""
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def _warn_cpu_only_build() -> None:
    """Once per process: CUDA tensors met a build without CUDA kernels, so every op runs the reference
    (E x d messages, N x N blocks), which ``explain()`` would show but nothing else says."""
    global _CPU_ONLY_WARNED
    if _CPU_ONLY_WARNED:
        return
    _CPU_ONLY_WARNED = True
    _warn_at_caller("gkdfast: this build has no CUDA kernels, so ops on CUDA tensors run the pure-PyTorch reference "
                    "(E x d and N x N intermediates instead of O(N·d) memory); reinstall gkdfast with a CUDA "
                    "toolkit and a CUDA build of torch (README, Install)")


# (op, reason) pairs already warned about by warn_dense_fallback: one warning each per process.
_DENSE_WARNED: set = set()
DENSE_WARN_BYTES = 64 << 20


def warn_dense_fallback(op: str, device: torch.device, dtype: Optional[torch.dtype], elements: int,
                        what: str, name: Optional[str] = None) -> None:
    """Warns once per public function and reason when native op ``op`` is about to run on the reference
    backend, which builds ``elements`` values (``what``, e.g. "an N x N matrix") that the native kernel
    never holds, and they take more than :data:`DENSE_WARN_BYTES`: the O(N·d) memory a user counts on is
    not what they get.  ``name``: the public function the user called (default ``op``), which the
    warning names.  (Not while ``torch.compile`` traces: an eager call of the same function warns.)

    Example:
        >>> warn_dense_fallback("gsp_tiled", torch.device("cpu"), torch.float32, 10, "a 10 x 1 block")  # small: silent
    """
    if tracing() or elements * 4 < DENSE_WARN_BYTES:  # (no size guard while tracing)
        return
    reasons = [r for r in _reasons(op, device, dtype).get(device.type, [])
               if not r.startswith("inputs are on")]
    key = (name or op, tuple(reasons))
    if key in _DENSE_WARNED:
        return
    _DENSE_WARNED.add(key)
    _warn_at_caller(f"gkdfast: {name or op} runs on the pure-PyTorch reference here, which holds {what} "
                    f"({elements * 4 / 2**20:,.0f} MiB or more) where the native kernel needs O(N·d) memory: "
                    f"{'; '.join(reasons) or 'no native kernel'}. Float32 or float64 inputs on the CPU (any of "
                    "them on CUDA) take the kernel.")


# public functions whose heavy part is one native op (what explain() reports for them)
_PUBLIC_OPS = {"gsp": "gsp_tiled", "crd": "infonce", "nt_xent": "gram_lse",
               "ncontrast": "gram_lse", "global_pool": "segment_pool"}
# public functions that run no native op on any backend: explain() says so instead of naming a kernel
_PLAIN_PYTORCH = {"rsd": "a Gram-matrix identity in plain PyTorch", "kd": "plain PyTorch",
                  "relation": "plain PyTorch"}


def explain(op: str, device="cpu", dtype: Optional[torch.dtype] = torch.float32) -> Explanation:
    """Which backend ``op`` would use for ``device``/``dtype`` and why the others were not used.
    ``op``: a native op (``registered_ops()``) or a public name that runs one: ``gsp`` -> ``gsp_tiled``
    (its rbf / poly / l2 / laplace kernels and ``loss="kl"``; linear and cosine with ``mse`` are a
    plain-PyTorch Gram path), ``crd`` -> ``infonce``, ``nt_xent`` and exact ``ncontrast`` -> ``gram_lse``
    (sampled ``ncontrast``: ``infonce``), ``global_pool`` -> ``segment_pool``.  ``rsd``, ``kd`` and
    ``relation`` run no native op (a ValueError says so), nor does any other name.

    Example:
        >>> gkdfast.explain("spmm", "cpu", torch.float16)["chosen"]   # doctest: +SKIP
        'reference'
    """
    if op in _PLAIN_PYTORCH:
        raise ValueError(f"gkdfast.explain: {op} runs no native op on any backend ({_PLAIN_PYTORCH[op]}): "
                         "it is the same code everywhere")
    op = _PUBLIC_OPS.get(op, op)
    known = registered_ops()
    if known and op not in known:
        raise ValueError(f"gkdfast.explain: unknown op {op!r}; ops: {', '.join(known)} (or a public name: "
                         f"{', '.join(sorted(_PUBLIC_OPS))})")
    device = torch.device(device)
    reasons = _reasons(op, device, dtype)
    try:
        chosen = choose(op, device, dtype)
    except NotImplementedError:
        chosen = None
    return {"op": op, "device": str(device), "dtype": str(dtype).replace("torch.", ""), "chosen": chosen,
            "not_used": {k: v for k, v in reasons.items() if k != chosen and v}}


def registered_ops() -> List[str]:
    """Names of every operator in the gkdfast namespace (empty when the extension is not loaded)."""
    if _C is None:
        return []
    ns = getattr(torch.ops, NAMESPACE)
    names = []
    for schema in torch._C._jit_get_all_schemas():
        if schema.name.startswith(NAMESPACE + "::"):
            names.append(schema.name.split("::", 1)[1])
    if not names:  # older torch: fall back to attribute listing
        names = [n for n in dir(ns) if not n.startswith("_")]
    return sorted(set(names))


class BackendStatus(TypedDict):
    """One backend in :func:`backend_info`: usable or not, and why not."""
    available: bool
    reasons: List[str]


class BackendInfo(TypedDict):
    """What :func:`backend_info` returns (a plain dict; the keys and value types for type checkers)."""
    version: str
    torch: str
    torch_cuda: Optional[str]
    mode: str
    extension_loaded: bool
    load_error: Optional[str]
    compiled_with_cuda: bool
    cuda_device: Optional[str]
    openmp_threads: Optional[int]
    torch_threads: int
    backends: Dict[str, BackendStatus]
    ops: Dict[str, List[str]]


class Explanation(TypedDict):
    """What :func:`explain` returns: the backend chosen (``None``: none can run the call in
    ``GKDFAST_BACKEND=native`` mode) and why each other one was not."""
    op: str
    device: str
    dtype: str
    chosen: Optional[str]
    not_used: Dict[str, List[str]]


def backend_info() -> BackendInfo:
    """A dict describing what is available: the extension, each backend, and each op's kernels.

    Example:
        >>> info = gkdfast.backend_info()
        >>> sorted(info["backends"])
        ['cpu', 'cuda', 'reference']
    """
    cuda_device = torch.cuda.is_available()
    backends: Dict[str, BackendStatus] = {
        "cuda": {"available": False, "reasons": []},
        "cpu": {"available": False, "reasons": []},
        "reference": {"available": True, "reasons": []},
    }
    mode = _mode()
    if _C is None:
        for k in ("cuda", "cpu"):
            backends[k]["reasons"].append(f"native extension not loaded ({_LOAD_ERROR})")
    else:
        if not _C.compiled_with_cuda():
            backends["cuda"]["reasons"].append("built without CUDA kernels")
        if not cuda_device:
            backends["cuda"]["reasons"].append("no CUDA device visible to torch")
    if mode == "reference":
        for k in ("cuda", "cpu"):
            backends[k]["reasons"].append("GKDFAST_BACKEND=reference")
    for k in ("cuda", "cpu"):
        backends[k]["available"] = not backends[k]["reasons"]
    ops = {}
    for op in registered_ops():
        ops[op] = [key.lower() for key in ("CPU", "CUDA") if has_kernel(op, key)]
    return {
        "version": _version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "mode": mode,
        "extension_loaded": _C is not None,
        "load_error": _LOAD_ERROR,
        "compiled_with_cuda": bool(_C is not None and _C.compiled_with_cuda()),
        "cuda_device": torch.cuda.get_device_name(0) if cuda_device else None,
        "openmp_threads": _C.openmp_max_threads() if _C is not None else None,
        "torch_threads": torch.get_num_threads(),
        "backends": backends,
        "ops": ops,
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("gkdfast")
    except Exception:
        return "0+unknown"
