"""Distillation losses (functional).  ``lsp``, ``gsp``, ``rsd``, ``crd``, ``ncontrast`` and ``nt_xent``
run native CPU / CUDA kernels with a pure-PyTorch reference (:mod:`gkdfast.reference.structure`,
:mod:`gkdfast.reference.contrastive`) chosen per call like the message-passing ops; ``kd`` and
``relation`` are plain PyTorch."""
from gkdfast.losses.kd import kd

# structure-preserving losses (lsp, gsp, rsd, relation) ------------------------------------------
from gkdfast.losses.structure import gsp, lsp, relation, rsd  # noqa: E402

# contrastive losses (crd, ncontrast, nt_xent) ------------------------------------------------------
from gkdfast.losses.contrastive import adjacency_power, crd, ncontrast, nt_xent, sample_negatives  # noqa: E402,E501

__all__ = ["kd", "lsp", "gsp", "rsd", "relation", "crd", "ncontrast", "nt_xent", "sample_negatives", "adjacency_power"]
