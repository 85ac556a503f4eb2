"""gkdfast: fused, exact, memory-lean kernels for knowledge distillation on graphs.

Public names only; see README.md for a tour.  The other subpackages (``gkdfast.data``,
``gkdfast.distill``, ``gkdfast.sampling``, ``gkdfast.hetero``, ...) are imported on first attribute
access (some pull in scipy, tqdm and matplotlib, which the kernels do not need).
"""
import importlib

from gkdfast import losses, nn, pooling, settings
from gkdfast._backend import backend_info, explain
from gkdfast.graph import Graph
from gkdfast.ops import edge_softmax, gcn_norm, sddmm, spmm
from gkdfast.pooling import global_pool
from gkdfast.retrieval import topk_similar

__version__ = "0.1.0"

__all__ = ["Graph", "spmm", "sddmm", "edge_softmax", "gcn_norm", "global_pool", "topk_similar", "backend_info",
           "explain",
           "losses", "nn", "pooling", "settings", "__version__"]

_LAZY_SUBMODULES = ("data", "distill", "sampling", "hetero", "condense", "distributed", "reference", "graph_build",
                    "inverse_cdf", "reorder", "cpu_memory")
__all__ += list(_LAZY_SUBMODULES)


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"gkdfast.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'gkdfast' has no attribute {name!r}")
