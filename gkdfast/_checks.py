"""The argument checks every public entry point shares: a 2-D floating-point tensor, a
:class:`gkdfast.Graph`, and a node tensor that matches the graph (one row per node, same device).

Callers pass their own message prefix ``where`` (``gkdfast.spmm``, ``gkdfast.nn.GCNConv``,
``gkdfast.losses.crd``) and argument name, so users see the function and argument they got wrong.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from gkdfast.graph import Graph

_BUILD_HINT = " (build one with gkdfast.Graph(edge_index, num_nodes))"
_MOVE_HINT = "; move one with .to(device)"


def finite_number(value) -> bool:
    """Whether ``value`` is a finite real number (a Python or NumPy int or float, not a bool), also as
    ``torch.compile`` passes one that changes between calls (a symbolic float, on which
    ``math.isfinite`` does not trace).

    Example:
        >>> finite_number(0.5), finite_number(float("nan")), finite_number(True), finite_number("1")
        (True, False, False, False)
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, torch.SymInt, torch.SymFloat)):
        return False
    return bool(value == value) and bool(abs(value) != math.inf)  # (NaN is the one value unequal to itself)


def check_node_mask(mask, n: int, where: str, name: str) -> None:
    """A node mask must be bool ``[N]``: an int 0/1 tensor indexes rows 0 and 1 instead (a silent wrong
    accuracy, or training on two nodes).  TypeError for the dtype, ValueError for the shape."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{where}: {name} must be a bool [N] tensor, got {got}"
                        + (" (an int 0/1 mask indexes rows 0 and 1: use mask.bool(); for node ids, index the "
                           "tensors with them first)" if isinstance(mask, Tensor) else ""))
    if mask.dim() != 1 or mask.size(0) != n:
        raise ValueError(f"{where}: {name} must be a bool [N] tensor with N = {n}, got shape {list(mask.shape)}")


def check_binary_sensitive(sensitive: Tensor, where: str) -> None:
    """The fairness metrics and RELIANT compare groups 0 and 1: any other value (a third group, 1/2
    coding) would be silently left out, so it is a ValueError naming ``where``."""
    values = torch.unique(sensitive)
    if not bool(((values == 0) | (values == 1)).all()):
        raise ValueError(f"{where}: the sensitive attribute must be 0/1, got the values {values.tolist()[:8]}; map "
                         "it to 0/1 (two groups)")


def check_float_matrix(x, where: str, name: str, shape: str) -> Tensor:
    """Returns ``x`` if it is a 2-D floating tensor; raises TypeError / ValueError otherwise.

    Example: ``check_float_matrix(torch.randn(4), "gkdfast.losses.crd", "student", "[num_nodes, dim]")``
    raises ``ValueError("gkdfast.losses.crd: student must be 2-D [num_nodes, dim], got shape [4]")``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: {name} must be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{where}: {name} must be 2-D {shape}, got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{where}: {name} must be floating point, got {x.dtype}")
    return x


def check_graph(graph, where: str, name: str = "graph", swapped_with=None) -> Graph:
    """Returns ``graph`` if it is a :class:`gkdfast.Graph`; raises TypeError naming ``where`` otherwise.

    Example: ``check_graph(edge_index, "gkdfast.spmm")`` raises ``TypeError("gkdfast.spmm: graph must
    be a gkdfast.Graph, got Tensor (build one with gkdfast.Graph(edge_index, num_nodes))")``.
    """
    if not isinstance(graph, Graph):
        if isinstance(swapped_with, Graph):  # ``swapped_with``: the argument a swapped call puts the graph in
            raise TypeError(f"{where}: got the graph as another argument; the graph comes first: "
                            f"{where.rsplit('.', 1)[-1]}(graph, ...)")
        raise TypeError(f"{where}: {name} must be a gkdfast.Graph, got {type(graph).__name__}{_BUILD_HINT}")
    return graph


def check_rows_match(graph: Graph, x: Tensor, where: str, name: str = "x", num_rows: Optional[int] = None,
                     rows_text: Optional[str] = None) -> Tensor:
    """Checks that tensor ``x`` has one row per node of ``graph`` and lives on the graph's device;
    returns it.  ``num_rows`` replaces ``x.size(0)`` (e.g. the rows of all shards of a distributed
    call) and ``rows_text`` the ``"{name} has R rows"`` part of the message; ``{rows}`` in it is filled
    in only when the check fails (formatting a size eagerly would make ``torch.compile`` specialise on it).

    Example: ``check_rows_match(g3, torch.randn(4, 2), "gkdfast.spmm")`` raises
    ``ValueError("gkdfast.spmm: x has 4 rows but the graph has 3 nodes")``.
    """
    n_rows = x.size(0) if num_rows is None else num_rows
    if n_rows != graph.num_nodes:
        rows_text = rows_text.format(rows=n_rows) if rows_text else f"{name} has {n_rows} rows"
        raise ValueError(f"{where}: {rows_text} but the graph has {graph.num_nodes} nodes")
    if x.device != graph.device:
        raise ValueError(f"{where}: {name} is on {x.device} but the graph is on {graph.device}{_MOVE_HINT}")
    return x


def check_node_matrix(graph: Graph, x, where: str, name: str = "x", width: str = "features") -> Tensor:
    """:func:`check_float_matrix` (``[num_nodes, width]``) plus :func:`check_rows_match`: the
    common case of a node-feature argument beside a graph.

    Example: ``check_node_matrix(g3, torch.randn(3), "gkdfast.spmm")`` raises
    ``ValueError("gkdfast.spmm: x must be 2-D [num_nodes, features], got shape [3]")``.
    """
    check_float_matrix(x, where, name, f"[num_nodes, {width}]")
    return check_rows_match(graph, x, where, name)


def check_settings(where: str, obj, ints: Optional[dict] = None, positive=(), nonnegative=()) -> None:
    """Range checks of a settings object's fields, one ValueError naming ``where`` and the field:
    ``ints`` maps a field to its least value (an int, not a bool), ``positive`` fields must be > 0,
    ``nonnegative`` ones >= 0 (NaN fails both).  For configs checked at construction, before training.

    Example:
        >>> from types import SimpleNamespace
        >>> check_settings("X", SimpleNamespace(n=2, lr=0.1), ints={"n": 1}, positive=("lr",))
        >>> check_settings("X", SimpleNamespace(n=0), ints={"n": 1})
        Traceback (most recent call last):
        ...
        ValueError: X: n must be an int >= 1, got 0
    """
    for key, low in (ints or {}).items():
        v = getattr(obj, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{where}: {key} must be an int >= {low}, got {v!r}")
    for keys, ok, text in ((positive, lambda v: v > 0, "> 0"), (nonnegative, lambda v: v >= 0, ">= 0")):
        for key in keys:
            if not ok(getattr(obj, key)):
                raise ValueError(f"{where}: {key} must be {text}, got {getattr(obj, key)!r}")
