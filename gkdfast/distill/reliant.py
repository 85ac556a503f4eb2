"""RELIANT (Dong et al., "RELIANT: Fair Knowledge Distillation for Graph Neural Networks", SDM 2023).

The student learns from the teacher as in logit KD and, in the same step, pays ``α·Δ̂`` where Δ̂ is a
differentiable stand-in for the bias gap (ΔSP, or ΔEO with ``fairness="eo"``):

    Δ̂ = Σ_c ( mean_{s=0} g(p_c) − mean_{s=1} g(p_c) )²,

over the unlabelled nodes of the batch (the reference's ``idx_no_train``), with ``p`` the student's
softmax and ``g`` the reference's degree-9 odd Legendre polynomial in ``x = 2p − 1``, a smooth stand-in
for the step ``1[p > 1/2]`` on [0, 1].  For ΔEO only nodes of class 1 count; we take the class of a
training node from its label and of any other node from the teacher's prediction (the reference
reads the true labels of every node, test nodes included).

The student's input is ``[x ; π]``, where ``π`` (``[N, proxy_dim]``) is a learnable proxy block of
the sensitive information: each step a second pass feeds the student its per-node ``π`` and moves
``π`` (Adam, ascent) to *maximise* Δ̂, while the student itself always sees the node mean of ``π``
(training and test alike), as in the reference code.  ``proxy_lr = 0`` switches the proxy off.

Defaults: α = 100 (the reference uses 1e3, see :class:`RELIANT`) and the KD terms of
:class:`~gkdfast.distill.recipes.KD` (so ``alpha = 0`` is plain KD, with two extra input columns
holding the same value on every node).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from gkdfast._checks import check_binary_sensitive
from gkdfast.distill.distiller import uses_graph
from gkdfast.distill.recipes import KD, Recipe, Trained
from gkdfast.distill.terms import LossTerm, StepContext

__all__ = ["step_approx", "bias_surrogate", "ProxyStudent", "FairBias", "RELIANT"]

# g(p) = 1/2 + Σ_k c_k·P_k(2p − 1) over the odd Legendre polynomials P_1..P_9, with the reference's
# coefficients c = 1/2, −1/8, 1/16, −5/128, 7/256 (a smooth, monotone step: g(0) ≈ 0.07, g(1) ≈ 0.93).
_STEP_COEFFS = (0.5, 0.0, -1 / 8, 0.0, 1 / 16, 0.0, -5 / 128, 0.0, 7 / 256)


def step_approx(p: Tensor) -> Tensor:
    """Smooth stand-in for ``1[p > 1/2]`` on probabilities ``p`` (any shape): the degree-9 odd
    Legendre polynomial in ``x = 2p − 1`` of the reference code.

    Example:
        >>> [round(float(v), 3) for v in step_approx(torch.tensor([0.0, 0.5, 1.0]))]
        [0.074, 0.5, 0.926]
    """
    x = 2 * p - 1
    out = torch.full_like(x, 0.5)
    p_prev, p_cur = torch.ones_like(x), x  # Bonnet's recursion: (n+1)P_{n+1} = (2n+1)x·P_n − n·P_{n−1}
    for n, c in enumerate(_STEP_COEFFS, start=1):
        if c:
            out = out + c * p_cur
        p_prev, p_cur = p_cur, ((2 * n + 1) * x * p_cur - n * p_prev) / (n + 1)
    return out


def bias_surrogate(probs: Tensor, sensitive: Tensor) -> Tensor:
    """Δ̂ = Σ_c (mean_{s=0} g(p_c) − mean_{s=1} g(p_c))² over the rows of ``probs`` ``[B, C]``;
    rows with ``sensitive`` outside {0, 1} are ignored; 0 when a group is empty.

    Example:
        >>> p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        >>> round(float(bias_surrogate(p, torch.tensor([0, 1]))), 3)   # 2·(g(1) − g(0))²
        1.45
    """
    g = step_approx(probs)
    a, b = sensitive == 0, sensitive == 1
    if not bool(a.any()) or not bool(b.any()):
        return probs.sum() * 0.0
    return (g[a].mean(0) - g[b].mean(0)).pow(2).sum()


class ProxyStudent(nn.Module):
    """``student([x ; π̄])`` with ``π̄`` the node mean of the proxy block ``π`` (a buffer, so the
    student's optimiser never moves it; :class:`FairBias` does).  While ``node_proxy`` is set, the
    given per-node rows are used instead (the proxy's own step).

    Example:
        >>> from gkdfast.nn import MLP
        >>> m = ProxyStudent(MLP(6, 8, 2), num_nodes=10, proxy_dim=2)
        >>> m(torch.randn(10, 4)).shape
        torch.Size([10, 2])
    """

    def __init__(self, student: nn.Module, num_nodes: int, proxy_dim: int = 2, seed: int = 0):
        super().__init__()
        self.student = student
        self.uses_graph = uses_graph(student)
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("proxy", torch.randn(int(num_nodes), int(proxy_dim), generator=gen))
        self.node_proxy: Optional[Tensor] = None

    def forward(self, x: Tensor, graph=None, return_hidden: bool = False):
        extra = self.node_proxy if self.node_proxy is not None else \
            self.proxy.mean(0, keepdim=True).to(x.dtype).expand(x.size(0), -1)
        z = torch.cat([x, extra], dim=1)
        args = (z, graph) if self.uses_graph else (z,)
        return self.student(*args, return_hidden=True) if return_hidden else self.student(*args)


class FairBias(LossTerm):
    """``Δ̂`` of the student's softmax over the batch's unlabelled rows (see the module doc), plus,
    in training mode, one ascent step of the proxy block of ``model`` (a :class:`ProxyStudent`).

    Args:
        weight: α.  sensitive: ``[N]`` int64 (values other than 0/1 are ignored).
        model: the :class:`ProxyStudent` being trained.  fairness: ``"sp"`` or ``"eo"``.
        proxy_lr: Adam step of the proxy (0 = no proxy updates).

    Example:
        >>> term = FairBias(1000.0, torch.tensor([0, 1]), model, "sp")   # doctest: +SKIP
    """

    name = "fair"
    needs_teacher = True

    def __init__(self, weight: float, sensitive: Tensor, model: ProxyStudent, fairness: str = "sp",
                 proxy_lr: float = 0.01):
        super().__init__(weight, nodes="all")
        if fairness not in ("sp", "eo"):
            raise ValueError(f"FairBias: fairness must be 'sp' or 'eo', got {fairness!r}")
        self.fairness, self.proxy_lr = fairness, float(proxy_lr)
        object.__setattr__(self, "_model", model)  # not a submodule: the student's weights stay its own
        self.register_buffer("sensitive", sensitive.detach().to(torch.int64).clone())
        # Adam state of the proxy, as buffers so a checkpoint resumes it exactly.
        self.register_buffer("m", torch.zeros_like(model.proxy))
        self.register_buffer("v", torch.zeros_like(model.proxy))
        self.register_buffer("t", torch.zeros((), dtype=torch.float64))

    def _groups(self, ctx: StepContext) -> Tensor:
        """Per batch row: the sensitive value, or -1 where the row does not count."""
        s = self.sensitive[ctx.nodes].clone()
        s[ctx.labelled] = -1  # the reference's idx_no_train
        if self.fairness == "eo":
            cls = torch.where(ctx.labelled, ctx.y, ctx.teacher_logits.argmax(-1))
            s[cls != 1] = -1
        return s

    def _proxy_step(self, ctx: StepContext, groups: Tensor) -> None:
        model = self._model
        full = ctx.inputs.size(0) == model.proxy.size(0)
        rows = None if full else ctx.nodes
        p = (model.proxy if full else model.proxy[rows]).detach().clone().requires_grad_(True)
        model.node_proxy = p
        try:
            logits, _ = ctx.forward(ctx.inputs)
        finally:
            model.node_proxy = None
        gain = bias_surrogate(torch.softmax(logits, -1), groups)
        if not gain.requires_grad:
            return
        (grad,) = torch.autograd.grad(gain, p, allow_unused=True)
        if grad is None:
            return
        grad = -grad  # ascent on Δ̂
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t += 1
        idx = slice(None) if rows is None else rows
        m = self.m[idx] * b1 + (1 - b1) * grad
        v = self.v[idx] * b2 + (1 - b2) * grad * grad
        self.m[idx], self.v[idx] = m, v
        t = float(self.t)
        step = self.proxy_lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        with torch.no_grad():
            model.proxy[idx] = model.proxy[idx] - step

    def forward(self, ctx: StepContext) -> Tensor:
        groups = self._groups(ctx)
        if self.training and self.proxy_lr > 0:
            self._proxy_step(ctx, groups)
        return bias_surrogate(torch.softmax(ctx.logits, -1), groups)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, fairness={self.fairness!r}, proxy_lr={self.proxy_lr}"


class RELIANT(Recipe):
    """RELIANT fair distillation: KD (``(1−β)·CE + β·T²·KL``, the terms of :class:`KD`) plus
    ``α·Δ̂`` with an adversarial proxy block (module doc).  Needs ``data.sensitive``.

    Hyperparameters: ``alpha`` (α, default 100: the reference's 1e3 cost Bail 33 accuracy points in
    our sweep, docs/results.md, while 100 cut KD's ΔSP by 75 % for 1.7 points), ``fairness`` (``"sp"`` / ``"eo"``),
    ``proxy_dim`` (2), ``proxy_lr`` (Adam step of the proxy, 0.01), ``kd_alpha`` (the KD weight β,
    0.9, as :class:`KD`'s ``alpha``) and ``temperature`` (4, as :class:`KD`).

    Example:
        >>> r = RELIANT(alpha=100.0, fairness="eo")
        >>> [t.name for t in r.terms()]
        ['ce', 'kd']
    """

    name = "reliant"
    alpha = 100.0
    fairness = "sp"
    proxy_dim = 2
    proxy_lr = 0.01
    _zero_lr_allowed = ("proxy_lr",)  # 0: the proxy is not updated
    kd_alpha = KD.alpha
    temperature = KD.temperature

    def terms(self):
        """The KD terms; the bias term joins them in :meth:`fit`, where the student and data exist."""
        return KD(alpha=self.kd_alpha, temperature=self.temperature).terms()

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        """As :meth:`Recipe.fit`, with the proxy block and the bias term added; the returned model
        takes ``data.x`` (it appends the mean proxy itself)."""
        import time

        self.check_fit_arguments(make_student, data)
        if teacher is None:
            raise ValueError("recipe 'reliant' needs a teacher")
        if getattr(data, "sensitive", None) is None:
            raise ValueError(f"recipe 'reliant' needs a sensitive attribute: {getattr(data, 'name', 'data')} has "
                             "none (load a fairness set, or give GraphData(sensitive=...) / an npz 'sensitive')")
        check_binary_sensitive(data.sensitive, "recipe 'reliant'")  # (the bias term would drop other groups)
        if self.fairness not in ("sp", "eo"):
            raise ValueError(f"reliant: fairness must be 'sp' or 'eo', got {self.fairness!r}")
        t0 = time.perf_counter()
        model = ProxyStudent(make_student(data.x.size(1) + int(self.proxy_dim)), data.num_nodes,
                             self.proxy_dim, seed)
        bias = FairBias(float(self.alpha), data.sensitive, model, self.fairness, self.proxy_lr)
        terms = self.terms() + [bias]
        distiller_kw.setdefault("seed", seed)
        prep = time.perf_counter() - t0
        # The recipe's own Distiller options (ties, passes, batching, ...), as every recipe: not a copy of them
        result = self.distiller(model, teacher, terms, **distiller_kw).fit(data, data.x)
        return Trained(result.student, data.x, model.uses_graph, result, prep + result.seconds)
