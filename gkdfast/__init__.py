"""gkdfast: fused, exact, memory-lean kernels for knowledge distillation on graphs.

Public names only; see README.md for a tour.  The other subpackages (``gkdfast.data``,
``gkdfast.distill``, ``gkdfast.sampling``, ``gkdfast.hetero``, ...) are imported on first attribute
access (some pull in scipy, tqdm and matplotlib, which the kernels do not need).
"""
import importlib
import types
from typing import TYPE_CHECKING

from gkdfast import losses, nn, pooling, settings
from gkdfast._backend import backend_info, explain
from gkdfast.graph import Graph
from gkdfast.ops import edge_softmax, gcn_norm, sddmm, spmm
from gkdfast.pooling import global_pool
from gkdfast.retrieval import topk_similar

__version__ = "0.1.0"

# one literal list, so that type checkers read it (the lazy submodules are in it too)
__all__ = ["Graph", "spmm", "sddmm", "edge_softmax", "gcn_norm", "global_pool", "topk_similar", "backend_info",
           "explain", "losses", "nn", "pooling", "settings", "__version__",
           "data", "distill", "sampling", "hetero", "condense", "distributed", "reference", "graph_build",
           "inverse_cdf", "reorder", "cpu_memory"]

_LAZY_SUBMODULES = ("data", "distill", "sampling", "hetero", "condense", "distributed", "reference", "graph_build",
                    "inverse_cdf", "reorder", "cpu_memory")

if TYPE_CHECKING:  # what a type checker or IDE sees; at run time they load on first access (__getattr__)
    from gkdfast import (condense, cpu_memory, data, distill, distributed, graph_build, hetero, inverse_cdf,
                         reference, reorder, sampling)


def __getattr__(name: str) -> types.ModuleType:
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"gkdfast.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'gkdfast' has no attribute {name!r}")
