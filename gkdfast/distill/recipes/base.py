"""The :class:`Recipe` base class and its result type :class:`Trained`.

Each recipe holds its paper's hyperparameters as defaults (override any by keyword:
``GLNN(lamb=0.3, lr=0.005)``), says what student input it needs (:meth:`Recipe.inputs`) and which
weighted terms it trains with (:meth:`Recipe.terms`); :meth:`Recipe.fit` runs a
:class:`~gkdfast.distill.Distiller`.

Example:
    >>> class Plain(Recipe):
    ...     name, needs_teacher = "plain", False
    ...     def terms(self):
    ...         return [CrossEntropy(1.0)]
    >>> Plain(lr=0.05).lr
    0.05
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from torch import Tensor, nn

from gkdfast.distill.distiller import Distiller, FitResult, uses_graph
from gkdfast.distill.terms import CrossEntropy, LossTerm  # noqa: F401  (CrossEntropy: the example)

if TYPE_CHECKING:
    from gkdfast.distill.teacher_cache import TeacherOutputs

__all__ = ["Recipe", "Trained"]

@dataclass
class Trained:
    """A recipe's result: ``model(inputs[, graph])`` gives the logits used for evaluation/timing.

    Attributes:
        model: the student ready for inference (for Cold Brew, MLP + retrieval + classifier).
        inputs: the ``[N, F']`` features ``model`` takes.  uses_graph: whether ``model`` needs the graph.
        fit: the (last) :class:`FitResult`.  seconds: total wall time incl. preprocessing.
        extras: recipe-specific facts about the run (e.g. fitted mixing weights), JSON-friendly.
        baselines: models the recipe trains in the same run as its own comparison point (SAIL's GRACE
            encoder + probe), by method name; ``gkdfast distill`` evaluates each like ``model`` and
            gives it its own results row.
        members: every network an online recipe trains as a usable result (FreeKD's two GNNs, OAD's K
            branches), in eval mode, same ``inputs`` / graph as ``model``; ``model`` is the member
            with the best validation accuracy (``extras["best_peer"]``).  Empty for other recipes.
    """

    model: nn.Module
    inputs: Tensor
    uses_graph: bool
    fit: FitResult
    seconds: float
    extras: Dict[str, object] = field(default_factory=dict)
    baselines: Dict[str, "Trained"] = field(default_factory=dict)
    members: Tuple[nn.Module, ...] = ()


# What a recipe *is*, not a hyperparameter: refused as an override and left out of params() (the
# runner reads stage_epochs from the class, so overriding it would change nothing).
_CLASS_FLAGS = ("name", "needs_teacher", "graph_free_student", "stage_epochs")


class Recipe:
    """Base class: hyperparameters are class attributes, overridable per instance by keyword.

    Training hyperparameters every recipe has: ``lr``, ``weight_decay``, ``epochs``, ``patience``,
    ``batch_size`` (``None`` = full batch), ``ties`` (``"first"`` / ``"last"``: which of several epochs
    with the best validation accuracy is kept) and ``passes`` (``"joint"`` / ``"separate"``: one
    optimiser step per batch for all terms, or GLNN's label pass then soft-label pass) and
    ``batching`` (``"partition"`` / ``"labelled_first"``: Graph-MLP's batches) and ``batch_edges``
    (``"induced"`` / ``"neighbours"``: each batch node's in-neighbours added for a graph-free student),
    all as in :class:`~gkdfast.distill.Distiller`.
    """

    name = "recipe"
    needs_teacher = True
    graph_free_student = False  # True: the recipe trains only graph-free (MLP) students
    # Other epoch budgets of a multi-stage recipe (its own teachers, warm-up, assistants), capped along
    # with ``epochs`` when a quick run caps every recipe (``gkdfast distill --epochs N``).
    stage_epochs: Tuple[str, ...] = ()
    lr = 0.01
    weight_decay = 5e-4
    epochs = 200
    patience: Optional[int] = 50
    batch_size: Optional[int] = None
    ties = "first"  # the best-validation epoch among equals: "first" or "last" (see Distiller)
    passes = "joint"  # "joint": all terms in one step; "separate": label pass, then the others (Distiller)
    batching = "partition"  # "partition" of the pool per epoch, or Graph-MLP's "labelled_first" (Distiller)
    batch_edges = "induced"  # "induced": edges inside the batch; "neighbours": every in-neighbour added (Distiller)

    # Hyperparameters a subclass inherits but does not read (refused rather than silently ignored).
    _not_used: Tuple[str, ...] = ()
    # Whether terms() can be built from the settings alone (to check them where they are given).
    _terms_at_setup = True
    # Learning-rate settings for which 0 means "off" rather than out of range.
    _zero_lr_allowed: Tuple[str, ...] = ()

    def __init__(self, **overrides):
        for k, v in overrides.items():
            if k.startswith("_") or k in self._not_used or k in _CLASS_FLAGS or not hasattr(type(self), k) \
                    or callable(getattr(type(self), k)):
                raise ValueError(f"{self.name}: unknown hyperparameter {k!r}; known: {', '.join(self.params())}")
            default = getattr(type(self), k)
            # Text where the default is not text (``--set x.flag=flase``, ``x.lr=1e-3x``): refused here,
            # before anything trains, instead of failing mid-run or reading a non-empty text as true.
            if isinstance(v, str) and default is not None and not isinstance(default, str):
                raise ValueError(f"{self.name}: {k} takes a {type(default).__name__} (default {default!r}), got the "
                                f"text {v!r}")
            if isinstance(default, bool) and not isinstance(v, bool):
                raise ValueError(f"{self.name}: {k} takes True or False, got {v!r}")
            setattr(self, k, v)
        if overrides:
            self._check_overrides(overrides)

    def _check_overrides(self, overrides: Dict[str, object]) -> None:
        """Values checked where they are given (``get(...)``, ``--set``), before anything trains: the
        shared training settings, then the recipe's terms built once (their own checks: a temperature,
        a kernel, a weight out of range), an error naming the settings that were given."""
        checks = {"lr": lambda v: v > 0, "weight_decay": lambda v: v >= 0,
                  "epochs": lambda v: isinstance(v, int) and v >= 0,
                  "patience": lambda v: v is None or (isinstance(v, int) and v >= 1),
                  "batch_size": lambda v: v is None or (isinstance(v, int) and v >= 1),
                  "ties": lambda v: v in ("first", "last"), "passes": lambda v: v in ("joint", "separate"),
                  "batching": lambda v: v in ("partition", "labelled_first"),
                  "batch_edges": lambda v: v in ("induced", "neighbours")}
        for k, ok in checks.items():
            v = getattr(self, k, None)
            if k in overrides and (isinstance(v, bool) or not ok(v)):
                raise ValueError(f"{self.name}: {k}={v!r} is out of range")
        for k, v in overrides.items():  # loss weights >= 0; learning rates and their scales > 0
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if k.endswith("weight") and not v >= 0:
                raise ValueError(f"{self.name}: {k}={v!r}: a loss weight must be >= 0")
            if (k.endswith("_lr") or k.endswith("lr_scale")) and not (v > 0 or (k in self._zero_lr_allowed and v == 0)):
                raise ValueError(f"{self.name}: {k}={v!r}: a learning rate must be > 0")
        if not self._terms_at_setup:
            return
        given = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        try:
            self.terms()
        except NotImplementedError:
            return
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.name} ({given}): {exc}") from None

    def params(self) -> Dict[str, object]:
        """All hyperparameters and their current values."""
        out = {}
        for cls in reversed(type(self).__mro__):
            for k, v in vars(cls).items():
                if not k.startswith("_") and k not in _CLASS_FLAGS \
                        and k not in self._not_used and not callable(v) \
                        and not isinstance(v, (property, staticmethod, classmethod)):
                    out[k] = getattr(self, k)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    # -- to override ----------------------------------------------------------------------------
    def inputs(self, data, seed: int = 0) -> Tensor:
        """The student's input features (default: ``data.x``)."""
        return data.x

    def inputs_on(self, full, split, seen: Tensor) -> Tensor:
        """The student's inputs for every node of ``full`` after training on ``split.observed``
        (inductive evaluation, :class:`gkdfast.data.splits.InductiveSplit`); ``seen`` is what
        :meth:`inputs` gave for the observed nodes.  Default: the raw features, which need no graph.
        A recipe whose :meth:`inputs` read the graph must say how a new node gets them."""
        if type(self).inputs is not Recipe.inputs:
            raise NotImplementedError(f"recipe {self.name!r} has graph-derived inputs and no inductive version")
        return full.x

    def terms(self) -> List[LossTerm]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- running --------------------------------------------------------------------------------
    def bind(self, terms: List[LossTerm], data, inputs: Tensor, device) -> None:
        """Hands the terms what a batch does not carry (full inputs, labels); default nothing.
        Called by :meth:`fit` before training."""

    def check_student(self, student: nn.Module) -> None:
        """Raises ValueError when the recipe cannot train this student; default accepts any."""

    def distributed_problem(self) -> Optional[str]:
        """Why this recipe cannot train data-parallel (under a process group), or ``None`` when it can:
        checked before any training (``gkdfast distill --distributed``), so a run does not stop halfway.
        Default: an all-pairs term whose loss does not accept ``process_group=``.  Recipes that build
        their terms in :meth:`fit` say it themselves."""
        bad = [t.name for t in self.terms() if t.weight and not t.supports_process_group()]
        if bad:
            return (f"it uses the all-pairs term {bad[0]!r}, whose loss does not accept process_group=")
        return None

    def training_options(self) -> dict:
        """The recipe's :class:`Distiller` settings (lr, weight decay, epochs, patience, batches, ties,
        passes): what :meth:`distiller` passes, and what a recipe's own sub-stages train with."""
        return dict(lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs, patience=self.patience,
                    batch_size=self.batch_size, ties=self.ties, passes=self.passes,
                    batching=self.batching, batch_edges=self.batch_edges)

    def distiller(self, student, teacher, terms: Optional[List[LossTerm]] = None, **kw) -> Distiller:
        """The :class:`Distiller` this recipe trains with (``terms`` default: :meth:`terms`)."""
        opts = dict(self.training_options(), **kw)
        return Distiller(student, self.terms() if terms is None else terms,
                         teacher if self.needs_teacher else None, **opts)

    def teacher_outputs_for(self, teacher, data, distiller_kw) -> "TeacherOutputs":
        """``teacher`` (a trained module or :class:`TeacherOutputs`) as outputs on the run's device, for
        recipes that read the teacher's logits or hidden layer directly; ValueError when it is missing.

        Example:
            >>> import torch
            >>> from gkdfast.data import csbm
            >>> from gkdfast.distill import recipes
            >>> d = csbm(num_nodes=50, num_classes=2, feature_dim=4, seed=0)
            >>> from gkdfast.nn import GCN
            >>> recipes.get("coldbrew").teacher_outputs_for(GCN(4, 8, 2), d, {}).logits.shape
            torch.Size([50, 2])
        """
        from gkdfast.distill.teacher_cache import TeacherOutputs, teacher_outputs

        if teacher is None:
            raise ValueError(f"recipe {self.name!r} needs a teacher")
        dev = distiller_kw.get("device") or "cpu"
        if not isinstance(teacher, TeacherOutputs):
            teacher = teacher_outputs(teacher, data.x.to(dev), data.graph.to(dev),
                                      cache_dir=distiller_kw.get("cache_dir"))
        return teacher.to(dev)

    def check_fit_arguments(self, make_student, data) -> None:
        """The argument checks of :meth:`fit` (for subclasses that override it): a module passed where
        the factory goes, or the arguments in another order, named before anything runs."""
        if isinstance(make_student, nn.Module) or not callable(make_student):
            raise TypeError(f"{self.name}.fit: make_student must be a function in_features -> nn.Module (e.g. "
                            f"lambda f: MLP(f, 64, num_classes)), got {type(make_student).__name__}")
        if not all(hasattr(data, a) for a in ("x", "graph", "y", "train_mask")):
            raise TypeError(f"{self.name}.fit: data must be a gkdfast.data.GraphData, got {type(data).__name__} "
                            "(the order is make_student, data, teacher)")

    def fit(self, make_student: Callable[[int], nn.Module], data, teacher=None, seed: int = 0,
            **distiller_kw) -> Trained:
        """Builds the inputs, the student (``make_student(input_width)``) and trains it.

        Args:
            make_student: ``in_features -> nn.Module`` (the runner builds the same architecture for
                every recipe).  data: :class:`gkdfast.data.GraphData`.
            teacher: trained teacher module or :class:`TeacherOutputs` (``None`` for teacher-free recipes).
            seed: seeds preprocessing (random walks) and the batch order.
            distiller_kw: forwarded to :class:`Distiller` (device, checkpoint_dir, cache_dir, progress, ...).
        """
        self.check_fit_arguments(make_student, data)
        if self.needs_teacher and teacher is None:
            raise ValueError(f"recipe {self.name!r} needs a teacher")
        t0 = time.perf_counter()
        x = self.inputs(data, seed)
        prep = time.perf_counter() - t0
        student = make_student(x.size(1))
        self.check_student(student)
        terms = self.terms()
        self.bind(terms, data, x, distiller_kw.get("device") or "cpu")
        distiller_kw.setdefault("seed", seed)
        result = self.distiller(student, teacher, terms, **distiller_kw).fit(data, x)
        # result.seconds sums training time over resumes, so a resumed run still reports its full cost.
        return Trained(result.student, x, uses_graph(result.student), result, prep + result.seconds)

