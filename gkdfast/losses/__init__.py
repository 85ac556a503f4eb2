"""Distillation losses (functional).  Each one: CPU kernel, CUDA kernel and a pure-PyTorch reference
in :mod:`gkdfast.reference`, chosen per call like the message-passing ops."""
from gkdfast.losses.kd import kd

# structure-preserving losses (lsp, gsp, rsd, relation) ------------------------------------------
from gkdfast.losses.structure import gsp, lsp, relation, rsd  # noqa: E402

# contrastive losses (crd, ncontrast, nt_xent) ------------------------------------------------------

__all__ = ["kd", "lsp", "gsp", "rsd", "relation"]
