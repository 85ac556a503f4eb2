"""Pure-PyTorch implementations of every gkdfast op.

They are the fallback when no native kernel can run a call, and the oracle the kernels are tested
against.  They favour clarity over speed and may materialise E x d (never N x N unless an op's
docstring says so) tensors.  Per-edge tensors here are in the graph's CSR order.
"""
from gkdfast.reference.ops import csr_mm, edge_softmax, sddmm, spmm

__all__ = ["spmm", "sddmm", "edge_softmax", "csr_mm"]
