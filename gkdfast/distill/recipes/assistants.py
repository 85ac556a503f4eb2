"""Teacher-assistant ensembles: a chain of shrinking assistants between teacher and student, and a
student distilled from a validation-tuned mix of their soft labels.

Example:
    >>> TAEnsemble().assistant_widths
    (64, 32, 16)
"""
from __future__ import annotations

import time
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.distill.terms import CrossEntropy, LogitKD

__all__ = ["TAEnsemble", "mix_soft_labels", "fit_mix_weights"]


def mix_soft_labels(logits: Sequence[Tensor], weights: Tensor, temperature: float = 1.0) -> Tensor:
    """``Σ_i w_i · softmax(z_i / T)`` with ``w`` normalised to sum 1 (all-zero ``w``: uniform).

    Args:
        logits: ``m`` tensors ``[N, C]``.  weights: ``[m]`` non-negative.  temperature: T > 0.

    Returns:
        ``[N, C]`` probabilities.

    Example:
        >>> z = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])]
        >>> mix_soft_labels(z, torch.tensor([1.0, 1.0])).round(decimals=3)
        tensor([[0.5000, 0.5000]])
    """
    w = torch.as_tensor(weights, dtype=torch.float32).clamp(min=0)
    if w.numel() != len(logits):
        raise ValueError(f"mix_soft_labels: {len(logits)} logit matrices but {w.numel()} weights")
    w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / w.numel())
    return sum(wi * torch.softmax(z.float() / temperature, -1) for wi, z in zip(w.tolist(), logits))


def fit_mix_weights(logits: Sequence[Tensor], y: Tensor, temperature: float = 1.0, seed: int = 0,
                    maxiter: int = 100) -> Tensor:
    """Mixing weights that minimise the cross-entropy of :func:`mix_soft_labels` against ``y``,
    found by ``scipy.optimize.differential_evolution`` over ``[0, 1]^m`` (seeded, deterministic).

    Args:
        logits: ``m`` tensors ``[V, C]`` (the validation rows).  y: ``[V]`` labels.

    Returns:
        ``[m]`` float32 weights summing to 1.

    Example:
        >>> y = torch.tensor([0, 1, 0, 1])
        >>> good = torch.nn.functional.one_hot(y, 2).float() * 4
        >>> bad = good.flip(1)
        >>> w = fit_mix_weights([good, bad], y)
        >>> bool(w[0] > 0.9)
        True
    """
    from scipy.optimize import differential_evolution

    if len(logits) < 1:
        raise ValueError("fit_mix_weights: give at least one logit matrix")
    if y.numel() == 0:
        raise ValueError("fit_mix_weights: no validation rows to fit the weights on")
    probs = torch.stack([torch.softmax(z.double() / temperature, -1) for z in logits])  # [m, V, C]
    yy = y.long()

    def loss(w):
        w = torch.as_tensor(w, dtype=torch.float64).clamp(min=0)
        w = w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / w.numel())
        p = torch.einsum("m,mvc->vc", w, probs)
        return float(-torch.log(p[torch.arange(yy.numel()), yy].clamp(min=1e-12)).mean())

    if len(logits) == 1:
        return torch.ones(1)
    res = differential_evolution(loss, [(0.0, 1.0)] * len(logits), seed=seed, maxiter=maxiter, tol=1e-7,
                                 polish=True)
    w = torch.as_tensor(res.x, dtype=torch.float32).clamp(min=0)
    return w / w.sum() if float(w.sum()) > 0 else torch.full_like(w, 1.0 / w.numel())


class TAEnsemble(Recipe):
    """Teacher-assistant ensemble: TAKD's chain of assistants (Mirzadeh et al., AAAI 2020: teacher →
    TA₁ → … → TA_m, each trained by KD from the previous one) with the student distilled from a
    weighted mix of the assistants' soft labels, the weights fitted by differential evolution on
    the validation loss of the mix (:func:`fit_mix_weights`).

    Loss of the student: ``(1−α)·CE + α·T²·KL(p_mix^T ‖ p_S^T)`` with
    ``p_mix^T = Σ_i w_i softmax(z_i / T)`` — the KD recipe's α = 0.9, T = 4; the weights minimise the
    validation cross-entropy of ``p_mix^1`` (at T = 1).

    What we chose (no reference code): assistants are ``assistant_model`` GNNs of widths
    ``assistant_widths`` = (64, 32, 16) (the teacher is 128 wide by default), each trained by the KD
    recipe from the one before; ``mix = "de"`` (default) fits the weights, ``"uniform"`` uses equal
    weights, ``"best"`` puts all weight on the assistant with the best validation accuracy (the
    "best single assistant" baseline); ``include_teacher`` adds the teacher to the mix.  The DE
    objective uses the validation nodes only.  After :meth:`fit`, ``trained.extras`` holds the
    weights, the sources' validation accuracies and the assistants' train seconds.

    Shapes: any student ``[N, F] -> [N, C]``; the assistants need the graph.

    Example:
        >>> from gkdfast.data import csbm
        >>> from gkdfast.distill.teacher_cache import TeacherOutputs
        >>> d = csbm(num_nodes=200, num_classes=3, feature_dim=16, seed=0)
        >>> r = TAEnsemble(epochs=3, assistant_widths=(8, 4))
        >>> t = r.fit(lambda f: gkdfast.nn.MLP(f, 16, 3), d, TeacherOutputs(torch.randn(200, 3)))
        >>> len(t.extras["weights"])
        2
    """

    name = "ta_ensemble"
    alpha = 0.9
    temperature = 4.0
    assistant_model = "sage"
    assistant_widths: Sequence[int] = (64, 32, 16)
    assistant_epochs: Optional[int] = None
    stage_epochs = ("assistant_epochs",)
    mix = "de"
    include_teacher = False
    de_maxiter = 100

    def terms(self):
        return [CrossEntropy(1 - self.alpha), LogitKD(self.alpha, self.temperature)]

    def _check(self) -> None:
        if self.mix not in ("de", "uniform", "best"):
            raise ValueError(f"ta_ensemble: mix must be 'de', 'uniform' or 'best', got {self.mix!r}")
        widths = list(self.assistant_widths)
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"ta_ensemble: assistant_widths must be positive ints, got {self.assistant_widths!r}")

    def assistants(self, data, teacher, seed: int, **distiller_kw) -> List[dict]:
        """Trains the chain; returns per assistant ``{"logits", "val_acc", "seconds"}``."""
        from gkdfast.distill.distiller import accuracy, call_model
        from gkdfast.distill.recipes.logit import KD
        from gkdfast.distill.teacher_cache import TeacherOutputs
        from gkdfast.nn import build_model

        dev = distiller_kw.get("device") or "cpu"
        graph = data.graph.to(dev)
        prev, out = teacher, []
        for i, width in enumerate(self.assistant_widths):
            kw = dict(distiller_kw)
            if kw.get("checkpoint_dir"):
                kw["checkpoint_dir"] = f"{kw['checkpoint_dir']}-ta{i}"
            kw["desc"] = f"ta_ensemble: assistant {i + 1} ({self.assistant_model}:{width})"
            # the recipe's training settings reach the assistants too (not KD's defaults)
            kd = KD(alpha=self.alpha, temperature=self.temperature,
                    **dict(self.training_options(), epochs=self.assistant_epochs or self.epochs))
            num_classes = teacher.logits.size(1)
            torch.manual_seed(seed * 1000 + i)
            trained = kd.fit(lambda f, w=width: build_model(self.assistant_model, f, w, num_classes, dropout=0.5),
                             data, prev, seed, **kw)
            with torch.no_grad():
                logits = call_model(trained.model.eval(), data.x.to(dev), graph, True, False)[0].float()
            out.append({"logits": logits, "val_acc": accuracy(logits.cpu(), data.y.cpu(), data.val_mask.cpu()),
                        "seconds": trained.seconds})
            prev = TeacherOutputs(logits)
        return out

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        """Trains the assistants, fits the mix, then the student (see the class docstring)."""
        from gkdfast.distill.distiller import accuracy
        from gkdfast.distill.teacher_cache import TeacherOutputs

        self.check_fit_arguments(make_student, data)
        self._check()
        teacher = self.teacher_outputs_for(teacher, data, distiller_kw)
        dev = distiller_kw.get("device") or "cpu"
        t0 = time.perf_counter()
        # The assistants draw from torch's RNG; the student must start from the same weights as every
        # other method's student of this seed, so the RNG is restored afterwards.
        cuda = [torch.device(dev).index or 0] if torch.device(dev).type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            tas = self.assistants(data, teacher, seed, **distiller_kw)
        sources = [a["logits"] for a in tas]
        accs = [a["val_acc"] for a in tas]
        if self.include_teacher:
            sources.insert(0, teacher.logits.float())
            accs.insert(0, accuracy(teacher.logits.cpu(), data.y.cpu(), data.val_mask.cpu()))
        val = data.val_mask.to(dev)
        if self.mix == "de":
            # The fit scores how well the mix predicts the labels (T = 1); at the KD temperature the
            # cross-entropy would favour whichever source is sharpest, not the most accurate.
            weights = fit_mix_weights([s[val].cpu() for s in sources], data.y[data.val_mask.cpu()],
                                      1.0, seed, self.de_maxiter)
        elif self.mix == "uniform":
            weights = torch.full((len(sources),), 1.0 / len(sources))
        else:
            weights = torch.nn.functional.one_hot(torch.tensor(max(range(len(accs)), key=accs.__getitem__)),
                                                  len(sources)).float()
        p = mix_soft_labels(sources, weights, self.temperature)
        target = TeacherOutputs(self.temperature * torch.log(p.clamp(min=1e-12)))  # softmax(t/T) == p
        prep = time.perf_counter() - t0
        trained = Recipe.fit(self, make_student, data, target, seed, **distiller_kw)
        trained.seconds += prep
        trained.extras.update(weights=[round(float(w), 4) for w in weights], source_val_acc=accs,
                              assistant_seconds=[a["seconds"] for a in tas])
        return trained
