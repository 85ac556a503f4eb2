"""Published graph-distillation methods as short compositions of :mod:`gkdfast.distill.terms`.

Each recipe holds its paper's hyperparameters as defaults (override any by keyword:
``GLNN(lamb=0.3, lr=0.005)``), says what student input it needs (:meth:`Recipe.inputs`) and which
weighted terms it trains with (:meth:`Recipe.terms`); :meth:`Recipe.fit` runs a
:class:`~gkdfast.distill.Distiller`.  Where we depart from the reference code, the docstring says so.

Conventions shared by all recipes: teacher-matching terms use every observed node (the transductive
setting of GLNN/NOSMOG: the teacher's outputs exist for all nodes), labels only the training nodes,
``gkdfast.losses.kd`` uses ``batchmean``.

One module per method family: :mod:`.base` (the :class:`Recipe` class), :mod:`.logit` (none, KD,
GLNN), :mod:`.representation` (LSP, GSP, G-CRD), :mod:`.mlp_students` (NOSMOG, Graph-MLP),
:mod:`.coldbrew`, :mod:`.gsdn`, :mod:`.assistants` (TA ensembles),
:mod:`.peers` + :mod:`.oad` + :mod:`.freekd` (online distillation between peers),
:mod:`.t2gnn` (incomplete graphs), :mod:`.sail` (self-supervised); this module keeps the registry (:func:`get`, :func:`names`).

Example:
    >>> import gkdfast
    >>> from gkdfast.distill import recipes
    >>> data = gkdfast.data.csbm(num_nodes=300, seed=0)
    >>> teacher = gkdfast.nn.SAGE(data.num_features, 32, data.num_classes)   # (trained first, in practice)
    >>> r = recipes.get("glnn")
    >>> trained = r.fit(lambda f: gkdfast.nn.MLP(f, 32, data.num_classes), data, teacher, epochs=3)
    >>> trained.model.training
    False
"""
from __future__ import annotations

from typing import Dict, List, Optional

from gkdfast.distill.recipes.assistants import TAEnsemble
from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.distill.recipes.coldbrew import ColdBrew, ColdBrewStudent
from gkdfast.distill.recipes.gsdn import GSDN
from gkdfast.distill.recipes.logit import GLNN, KD, NoKD
from gkdfast.distill.recipes.freekd import FreeKD
from gkdfast.distill.recipes.oad import OAD
from gkdfast.distill.recipes.mlp_students import NOSMOG, GraphMLP
from gkdfast.distill.recipes.sail import SAIL
from gkdfast.distill.recipes.t2gnn import T2GNN
from gkdfast.distill.recipes.representation import GCRD, KDGCRD, GSPRecipe, LSPRecipe

__all__ = ["Recipe", "Trained", "NoKD", "KD", "GLNN", "LSPRecipe", "GSPRecipe", "GCRD", "KDGCRD", "NOSMOG", "GraphMLP",
           "ColdBrew", "ColdBrewStudent", "GSDN", "TAEnsemble", "OAD", "FreeKD", "T2GNN", "SAIL", "RECIPES", "get",
           "names", "by_name"]

RECIPES = {r.name: r for r in (NoKD, KD, GLNN, LSPRecipe, GSPRecipe, GCRD, KDGCRD, NOSMOG, GraphMLP, ColdBrew,
                                GSDN, TAEnsemble, OAD, FreeKD, T2GNN, SAIL)}

def names() -> List[str]:
    """Recipe names, ``"none"`` (no KD) first.

    Example:
        >>> names()[:3]
        ['none', 'kd', 'glnn']
    """
    return list(RECIPES)


def get(name: str, **overrides) -> Recipe:
    """The recipe called ``name`` (see :func:`names`) with hyperparameter overrides.

    Example:
        >>> get("kd", temperature=2.0).temperature
        2.0
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    aliases = {"gcrd": "gcrd", "crd": "gcrd", "graphmlp": "graphmlp", "gmlp": "graphmlp", "nokd": "none",
               "hinton": "kd", "vanilla": "kd", "taensemble": "ta_ensemble", "ta": "ta_ensemble",
               "t2gnn": "t2gnn", "t2gcn": "t2gnn", "kdgcrd": "kd_gcrd", "kd+gcrd": "kd_gcrd"}
    key = aliases.get(key, key)
    if key not in RECIPES:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[key](**overrides)


def by_name(overrides: Optional[Dict[str, dict]]) -> Dict[str, dict]:
    """``--set`` values keyed by canonical recipe name, the values of two spellings of one recipe merged
    (``{"glnn": {...}, "GLNN": {...}}`` -> one ``"glnn"`` entry; the later spelling wins a shared key);
    ValueError for an unknown recipe.

    Example:
        >>> by_name({"glnn": {"lamb": 0.3}, "GLNN": {"temperature": 2.0}})
        {'glnn': {'lamb': 0.3, 'temperature': 2.0}}
    """
    out: Dict[str, dict] = {}
    for k, v in (overrides or {}).items():
        if not isinstance(v, dict):
            raise TypeError(f"recipes.by_name: the value for {k!r} must be a dict of hyperparameters, e.g. "
                            f"{{{k!r}: {{'lamb': 0.3}}}}, got {type(v).__name__}")
        out.setdefault(get(k).name, {}).update(v)
    return out


def _register_extensions() -> None:
    """Recipes that live in their own modules (they subclass the ones above, so load them last)."""
    from gkdfast.distill.hire import HIRE
    from gkdfast.distill.reliant import RELIANT

    for r in (RELIANT, HIRE):
        RECIPES[r.name] = r


_register_extensions()
