"""gkdfast: fused, exact, memory-lean kernels for knowledge distillation on graphs.

Public names only; see README.md for a tour.
"""
from gkdfast._backend import backend_info, explain
from gkdfast.graph import Graph
from gkdfast.ops import edge_softmax, gcn_norm, sddmm, spmm
from gkdfast import losses
from gkdfast.retrieval import topk_similar
from gkdfast import nn

__version__ = "0.1.0"

__all__ = ["Graph", "spmm", "sddmm", "edge_softmax", "gcn_norm", "topk_similar", "backend_info", "explain", "losses", "nn", "__version__"]
