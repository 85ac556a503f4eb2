"""Representation-matching recipes between teacher and student embeddings: LSP, GSP, G-CRD, KD+G-CRD.

Example:
    >>> [t.name for t in GSPRecipe().terms()]
    ['ce', 'gsp']
"""
from __future__ import annotations

from gkdfast.distill.recipes.base import Recipe
from gkdfast.distill.terms import CRD, GSP, LSP, CrossEntropy, LogitKD

__all__ = ["LSPRecipe", "GSPRecipe", "GCRD", "KDGCRD"]


class LSPRecipe(Recipe):
    """LSP (Yang, Qiu, Song, Tao & Wang, "Distilling Knowledge from Graph Convolutional Networks",
    CVPR 2020): ``CE + β·L_LSP``, where L_LSP compares, per node, the softmax over its in-neighbours of
    a kernel between hidden embeddings, teacher vs student (KL(teacher ‖ student)).

    Defaults from the official code: Laplace kernel ``exp(−0.01·‖h_i − h_j‖₁)`` (γ = 0.01), τ = 1,
    β = 1, Adam lr 0.005.  The official code applies LSP only for the first 30 epochs; we keep it on
    throughout.  ``kd_weight > 0`` adds ``kd_weight``·KL at T = 1 beside CE (weight 1): not Joshi's
    "KD+LSP", which is ``(1−α)·CE + α·T²·KL`` (α 0.9, T 4) plus the term (as :class:`KDGCRD` for G-CRD).
    """

    name = "lsp"
    beta = 1.0
    kernel = "laplace"
    gamma = 0.01
    tau = 1.0
    kd_weight = 0.0
    lr = 0.005

    def terms(self):
        out = [CrossEntropy(1.0), LSP(self.beta, self.kernel, self.gamma, self.tau)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out


class GSPRecipe(Recipe):
    """GSP (Joshi, Liu, Teo, Sun & Wang, "On Representation Knowledge Distillation for Graph Neural
    Networks", TNNLS 2022): ``CE + β·MSE(K^S, K^T)`` over all pairs of a node sample, after
    ProjectionHeads (Linear→BN→ReLU→Linear to ``proj_dim``) on both sides.

    Defaults from the reference scripts: cosine kernel, β = 100, ``max_samples`` = 4096,
    ``proj_dim`` = 128.  Our loss is exact over the whole sample without the S×S(×d) tensors; the
    sample is drawn from all nodes (the reference draws from training nodes).
    """

    name = "gsp"
    beta = 100.0
    kernel = "cosine"
    proj_dim = 128
    max_samples = 4096
    kd_weight = 0.0

    def terms(self):
        out = [CrossEntropy(1.0), GSP(self.beta, self.kernel, "mse", proj_dim=self.proj_dim,
                                      max_samples=self.max_samples)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out


class GCRD(Recipe):
    """G-CRD (Joshi et al., TNNLS 2022): ``CE + β·InfoNCE(ẑ^S, ẑ^T)``, L2-normalised projections,
    the student row as anchor and the teacher rows as candidates (positive = same node).

    Defaults from the reference scripts: τ = 0.075, β = 0.1 (representation-only runs),
    ``proj_dim`` = 256, ``max_samples`` = 16384 in-batch negatives (all of them, exact, tiled).
    """

    name = "gcrd"
    beta = 0.1
    tau = 0.075
    proj_dim = 256
    max_samples = 16384
    kd_weight = 0.0

    def terms(self):
        out = [CrossEntropy(1.0), CRD(self.beta, self.tau, self.proj_dim, self.max_samples)]
        if self.kd_weight:
            out.append(LogitKD(self.kd_weight, 1.0))
        return out



class KDGCRD(GCRD):
    """KD + G-CRD (Joshi et al., TNNLS 2022, ``gnn_kd_and_aux.py``): vanilla KD plus the G-CRD term,
    ``(1−α)·CE + α·T²·KL(p_T^τ ‖ p_S^τ) + β·InfoNCE(ẑ^S, ẑ^T)``.

    Defaults: α = 0.9, T = 4 (their KD), β = 0.05 (they tune β over {0.01, 0.05} with KD: an order of
    magnitude below the representation-only 0.1), τ = 0.075, ``proj_dim`` = 256.
    """

    name = "kd_gcrd"
    _not_used = ("kd_weight",)  # G-CRD's optional KD term: here KD is the α term
    alpha = 0.9
    temperature = 4.0
    beta = 0.05

    def terms(self):
        return [CrossEntropy(1 - self.alpha), LogitKD(self.alpha, self.temperature),
                CRD(self.beta, self.tau, self.proj_dim, self.max_samples)]
