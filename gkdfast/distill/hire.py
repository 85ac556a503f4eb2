"""The HIRE recipe's hyperparameters (the training itself runs in :mod:`gkdfast.hetero.experiment`,
since HIRE needs a :class:`~gkdfast.hetero.HeteroGraph`, typed models and per-type embeddings)."""
from __future__ import annotations

from gkdfast.distill.recipes import KD, Recipe

__all__ = ["HIRE"]


class HIRE(Recipe):
    """HIRE (Liu, Zheng & Hao, arXiv 2207.11887): ``(1−α)·CE + α·T²·KL + β·relation KD`` on a
    heterogeneous graph; see :mod:`gkdfast.hetero.hire` for the relation term.

    Defaults: α = 0.9 and T = 4 (as :class:`KD`), β = 1, Adam lr 0.01, weight decay 5e-4, 200 epochs,
    patience 50.  On a homogeneous :class:`~gkdfast.data.GraphData` it refuses with a clear error.

    Example:
        >>> HIRE(beta=10.0).beta
        10.0
    """

    name = "hire"
    alpha = KD.alpha
    temperature = KD.temperature
    beta = 1.0

    _terms_at_setup = False  # (its terms exist only on a heterogeneous graph: not built to check settings)

    def terms(self):
        raise ValueError("recipe 'hire' distils heterogeneous GNNs: give a HeCo- or MAGNN-layout folder "
                         "(gkdfast distill --data DIR --name imdb --methods kd,hire)")

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw):
        """Refuses: HIRE trains through :func:`gkdfast.hetero.experiment.run_hetero_experiment`."""
        self.terms()
