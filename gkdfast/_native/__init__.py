"""Python-side registrations of the native operators: one module per op family, mirroring
``csrc/ops/`` (``spmm``, ``sddmm``, ``edge_softmax``, ``lsp``, ``gsp``, ``infonce``, ``gram_lse``,
``sample_neighbors``, ``ppr``, ``deepwalk``, ``segment_pool``, ``dropout``, ``symmetric_csr``, ``inverse_cdf``,
``number_table``).

Each module holds, for the ops its C++ header declares, the fake (meta) kernel that torch.compile
and meta tensors use to know output shapes, and the autograd formula (usually another native op:
``*_backward``), except for the hot ops of a GNN layer (``spmm``, ``spmm_gcn``, ``sddmm``,
``edge_softmax``, ``dropout``), whose autograd is C++ (``csrc/autograd/``).  :func:`register_all`
runs once, from :mod:`gkdfast._backend`, right after the extension ``gkdfast._C`` has loaded; without
the extension nothing is registered and every call
takes the pure-PyTorch reference.  docs/adding-an-op.md walks through adding an op end to end.

Example:
    >>> from gkdfast import _backend, _native
    >>> _native.registered() == _backend.native_loaded()
    True
"""
from __future__ import annotations

import importlib

__all__ = ["FAMILIES", "register_all", "registered"]

# One module per csrc/ops/<family>.h, in dependency order (none depends on another today).
FAMILIES = ("spmm", "sddmm", "edge_softmax", "lsp", "gsp", "infonce", "gram_lse", "sample_neighbors", "ppr",
            "deepwalk", "segment_pool", "dropout", "symmetric_csr", "inverse_cdf", "number_table")

_DONE = False


def register_all() -> None:
    """Registers every family's fake kernels and Python autograd formulas (idempotent: torch.library
    refuses a second registration, so later calls do nothing).

    Example:
        >>> register_all()  # already done by ``import gkdfast`` when the extension loaded
    """
    global _DONE
    if _DONE:
        return
    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}").register()
    _DONE = True


def registered() -> bool:
    """True once :func:`register_all` has run (that is, when the native extension loaded).

    Example:
        >>> isinstance(registered(), bool)
        True
    """
    return _DONE
