"""FreeKD: two shallow GNNs teach each other; a reinforcement-learned agent picks, per node, who
teaches whom (soft labels) and whether the teacher's local structure is passed on too.

Example:
    >>> FreeKD().temperature
    1.0
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.distill.recipes.base import Recipe, Trained
from gkdfast.distill.recipes.oad import fit_peers
from gkdfast.distill.recipes.peers import PeerCE, PeerGroup, PeerTerm, peer_outputs
from gkdfast.distill.terms import StepContext

__all__ = ["FreeKD", "FreeKDAgent", "node_state"]

STATE_DIM = 9
# node_state columns the policy may read with reward="teacher_gap": not the two CEs (0 on unlabelled
# nodes) nor the labelled flag, so the policy is a function of what every node has.
_LABEL_FREE = torch.tensor([0., 1., 1., 0., 1., 1., 0., 1., 1.])


def node_state(z0: Tensor, z1: Tensor, y: Tensor, labelled: Tensor, log_degree: Tensor) -> Tensor:
    """The agent's per-node state ``[B, 9]`` (no gradient): for each network its cross-entropy on
    the label (0 where unlabelled), its prediction entropy and top probability; whether the node is
    labelled; log(1 + degree); the two networks' agreement (same argmax).

    Example:
        >>> z = torch.randn(4, 3)
        >>> node_state(z, z, torch.tensor([0, 1, 2, 0]), torch.tensor([True, False, True, False]),
        ...            torch.zeros(4)).shape
        torch.Size([4, 9])
    """
    with torch.no_grad():
        cols = []
        safe_y = y.clamp(min=0)
        for z in (z0, z1):
            logp = F.log_softmax(z.float(), -1)
            ce = -logp.gather(1, safe_y.unsqueeze(1)).squeeze(1) * labelled
            cols += [ce, -(logp.exp() * logp).sum(-1), logp.max(-1).values.exp()]
        agree = (z0.argmax(-1) == z1.argmax(-1)).float()
        return torch.stack(cols + [labelled.float(), log_degree.float(), agree], 1)


class FreeKDAgent(PeerTerm):
    """FreeKD's two-level agent over a 2-peer :class:`PeerGroup` (Φ = peer 0, Ψ = peer 1).

    Per node i the policy (a small MLP on :func:`node_state`) gives ``P(Φ teaches Ψ)`` and
    ``P(propagate structure)``; actions are sampled.  Loss:

    * node level: ``T²·KL(p_teacher^T ‖ p_receiver^T)`` in the sampled direction (teacher detached);
    * structure level: on nodes whose structure action is 1, the LSP loss of the receiver's hidden
      layer against the teacher's (:func:`gkdfast.losses.lsp`, ``reduction="none"``, per node);
    * policy gradient (REINFORCE, mean-reward baseline), rewards on labelled nodes only, ``reward``:

      - ``"teacher_gap"`` (default): the direction action is rewarded at once by
        ``CE(receiver) − CE(teacher)`` (positive when the network that is right on that node taught),
        and the policy sees only label-free columns of the state (entropies, top probabilities,
        degree, agreement), so what it learns on labelled nodes carries to unlabelled ones; the
        structure action keeps the ``"ce_drop"`` reward.
      - ``"ce_drop"``: the previous step's actions are rewarded by the drop in the receiving
        network's cross-entropy since then.  Measured on CiteSeer (published ``peers`` setting,
        5 seeds): this signal is dominated by the CE term's own progress, the direction stays near
        random and the distilled peer ends below two peers trained on labels alone (66.66 against
        67.76 %; the GCN alone 67.06 %); ``"teacher_gap"`` in the same run: see docs/recipes-more.md.

    The previous step's states, actions and losses live in buffers, so a resumed run continues
    exactly.  The fraction of Φ→Ψ choices of each step is a :meth:`step_stats` diagnostic
    (``forward_fraction``), so it reaches the Distiller's checkpointed history.
    """

    name = "freekd"
    needs_graph = needs_hidden = True

    def __init__(self, group: PeerGroup, weight: float = 1.0, temperature: float = 1.0,
                 structure_weight: float = 1.0, policy_weight: float = 1.0, policy_hidden: int = 32,
                 kernel: str = "laplace", gamma: float = 0.01, reward: str = "teacher_gap",
                 confidence_prior: float = 5.0):
        super().__init__(group, weight)
        if len(group.peers) != 2:
            raise ValueError(f"freekd: the agent needs exactly 2 peers, got {len(group.peers)}")
        if reward not in ("teacher_gap", "ce_drop"):
            raise ValueError(f"freekd: reward must be 'teacher_gap' or 'ce_drop', got {reward!r}")
        self.reward, self.confidence_prior = reward, float(confidence_prior)
        self.temperature, self.structure_weight = float(temperature), float(structure_weight)
        self.policy_weight, self.kernel, self.gamma = float(policy_weight), kernel, float(gamma)
        self.policy = nn.Sequential(nn.Linear(STATE_DIM, policy_hidden), nn.Tanh(), nn.Linear(policy_hidden, 2))
        self._forward_fraction: Optional[float] = None

    def bind(self, graph, device) -> "FreeKDAgent":
        """Allocates the per-node memory for ``graph``'s ``N`` nodes."""
        n = graph.num_nodes
        deg = (graph.rowptr[1:] - graph.rowptr[:-1]).to(device).float()
        self.register_buffer("log_degree", torch.log1p(deg), persistent=False)
        self.register_buffer("prev_state", torch.zeros(n, STATE_DIM, device=device))
        self.register_buffer("prev_actions", torch.zeros(n, 2, device=device))
        self.register_buffer("prev_ce", torch.zeros(n, 2, device=device))
        self.register_buffer("has_prev", torch.zeros(n, dtype=torch.bool, device=device))
        return self

    def action_probs(self, state: Tensor) -> Tensor:
        """``[B, 2]``: P(Φ teaches Ψ), P(propagate structure)."""
        logits = self.policy(state * _LABEL_FREE.to(state.device) if self.reward == "teacher_gap" else state)
        if self.confidence_prior:  # start from "the more confident network teaches": H(Ψ) − H(Φ) > 0 → Φ teaches
            prior = self.confidence_prior * (state[:, 4] - state[:, 1])
            logits = torch.cat([logits[:, :1] + prior.unsqueeze(1), logits[:, 1:]], 1)
        return torch.sigmoid(logits)

    def _direction_loss(self, state: Tensor, actions: Tensor, ce_now: Tensor, labelled: Tensor) -> Tensor:
        """REINFORCE for this step's direction actions on labelled nodes, rewarded by
        ``CE(receiver) − CE(teacher)`` (``reward="teacher_gap"``)."""
        ok = labelled
        if int(ok.sum()) < 2:
            return self.policy[0].weight.sum() * 0.0
        fwd = actions[ok, 0]  # 1: Φ (column 0) taught Ψ (column 1)
        ce = ce_now[ok]
        reward = torch.where(fwd.bool(), ce[:, 1] - ce[:, 0], ce[:, 0] - ce[:, 1])
        advantage = reward - reward.mean()
        p = self.action_probs(state[ok])[:, 0].clamp(1e-6, 1 - 1e-6)
        logp = fwd * p.log() + (1 - fwd) * (1 - p).log()
        return -(advantage.detach() * logp).mean()

    def _policy_loss(self, nodes: Tensor, ce_now: Tensor, labelled: Tensor) -> Tensor:
        ok = self.has_prev[nodes] & labelled
        if int(ok.sum()) < 2:
            return self.policy[0].weight.sum() * 0.0
        idx = nodes[ok]
        a = self.prev_actions[idx]
        receiver = a[:, 0].long()  # 1: Φ taught Ψ, so Ψ (column 1) received
        before = self.prev_ce[idx].gather(1, receiver.unsqueeze(1)).squeeze(1)
        after = ce_now[ok].gather(1, receiver.unsqueeze(1)).squeeze(1)
        reward = before - after
        advantage = reward - reward.mean()
        p = self.action_probs(self.prev_state[idx]).clamp(1e-6, 1 - 1e-6)
        logp = a * p.log() + (1 - a) * (1 - p).log()
        if self.reward == "teacher_gap":  # the direction is rewarded at once (_direction_loss)
            logp = logp[:, 1:]
        return -(advantage.detach() * logp.sum(1)).mean()

    def step_stats(self) -> dict:
        """``{"forward_fraction": f}``: the share of this step's nodes where Φ taught Ψ."""
        return {} if self._forward_fraction is None else {"forward_fraction": self._forward_fraction}

    def forward(self, ctx: StepContext) -> Tensor:
        from gkdfast.losses import kd, lsp

        (z0, h0), (z1, h1) = peer_outputs(self.group, ctx)
        nodes, labelled = ctx.nodes, ctx.labelled
        state = node_state(z0, z1, ctx.y, labelled, self.log_degree[nodes])
        ce_now = state[:, [0, 3]]
        loss = self.policy_weight * self._policy_loss(nodes, ce_now, labelled)
        with torch.no_grad():
            actions = torch.bernoulli(self.action_probs(state))
        if self.reward == "teacher_gap":
            loss = loss + self.policy_weight * self._direction_loss(state, actions, ce_now, labelled)
        forward_dir = actions[:, 0].bool()  # Φ -> Ψ
        self._forward_fraction = float(forward_dir.float().mean())
        t = self.temperature
        node_kd = torch.where(forward_dir, kd(z1, z0.detach(), t, reduction="none"),
                              kd(z0, z1.detach(), t, reduction="none"))
        loss = loss + node_kd.mean()
        if self.structure_weight:
            graph = ctx.graph
            s_fwd = lsp(graph, h1, h0.detach(), kernel=self.kernel, gamma=self.gamma, reduction="none")
            s_bwd = lsp(graph, h0, h1.detach(), kernel=self.kernel, gamma=self.gamma, reduction="none")
            chosen = actions[:, 1]
            s = torch.where(forward_dir, s_fwd, s_bwd) * chosen
            loss = loss + self.structure_weight * s.sum() / chosen.sum().clamp(min=1.0)
        with torch.no_grad():
            if ctx.process_group is not None:  # every rank remembers every rank's rows: a node's next
                from gkdfast.distributed import all_gather_rows  # batch may fall on another rank

                nodes, state, actions, ce_now = (all_gather_rows(t.contiguous(), ctx.process_group)
                                                 for t in (nodes, state, actions, ce_now))
            self.prev_state[nodes] = state
            self.prev_actions[nodes] = actions
            self.prev_ce[nodes] = ce_now
            self.has_prev[nodes] = True
        return loss


class FreeKD(Recipe):
    """FreeKD (Feng, Li, Yuan & Wang, "FreeKD: Free-direction Knowledge Distillation for Graph Neural
    Networks", KDD 2022): two peers of the student's architecture, trained with ``Σ CE`` plus the
    :class:`FreeKDAgent` term; no deep teacher.  Both peers are trained; the result is the one with
    the better validation accuracy (``trained.extras``: both accuracies and the Φ→Ψ fraction per epoch).

    No public code exists; what we chose from the paper's description: the agent's state
    (:func:`node_state`), a 2-output policy MLP (32 hidden, tanh) for the two action levels, the
    structure action's reward = drop of the receiver's cross-entropy on labelled nodes between
    consecutive steps (mean baseline), LSP with the Laplace kernel (γ = 0.01) as the local-structure
    loss, T = 1, Adam lr 0.01, weight decay 5e-4, 200 epochs, patience 50 on the best peer's
    validation accuracy.  ``kd_weight`` weighs the whole agent term (node KD, ``structure_weight`` ×
    LSP and ``policy_weight`` × the policy loss together), so ``kd_weight=0`` trains on labels alone.
    The direction policy starts from "the more confident (lower-entropy)
    network teaches" (``confidence_prior`` = 5) and learns a correction rewarded by
    ``CE(receiver) − CE(teacher)`` (``reward="teacher_gap"``); the first agent
    (``confidence_prior=0, reward="ce_drop"``) ended below two label-only peers
    (:class:`FreeKDAgent`, docs/recipes-more.md).

    Shapes: ``make_student(F)`` builds each peer ``[N, F] -> [N, C]`` with ``return_hidden``.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=200, num_classes=3, feature_dim=16, seed=0)
        >>> t = FreeKD(epochs=3).fit(lambda f: gkdfast.nn.GCN(f, 16, 3), d)
        >>> len(t.extras["peer_val_acc"]), len(t.extras["forward_fraction"])
        (2, 3)
    """

    name = "freekd"
    needs_teacher = False
    temperature = 1.0
    kd_weight = 1.0
    structure_weight = 1.0
    policy_weight = 1.0
    policy_hidden = 32
    reward = "teacher_gap"
    confidence_prior = 5.0
    patience: Optional[int] = 50

    def peer_terms(self, group: PeerGroup):
        """``[PeerCE, FreeKDAgent]`` over ``group``."""
        return [PeerCE(group), FreeKDAgent(group, self.kd_weight, self.temperature, self.structure_weight,
                                           self.policy_weight, self.policy_hidden, reward=self.reward,
                                           confidence_prior=self.confidence_prior)]

    def terms(self):
        return [PeerCE(PeerGroup([nn.Identity(), nn.Identity()]))]  # kinds only, for the CLI's checks

    def fit(self, make_student, data, teacher=None, seed: int = 0, **distiller_kw) -> Trained:
        """Trains the two peers with the agent; returns the better one by validation accuracy."""
        self.check_fit_arguments(make_student, data)
        group = PeerGroup([make_student(data.x.size(1)) for _ in range(2)])
        terms = self.peer_terms(group)
        terms[1].bind(data.graph, distiller_kw.get("device") or "cpu")
        trained = fit_peers(self, group, terms, data, seed, 0, **distiller_kw)
        key = f"{terms[1].name}.forward_fraction"  # per epoch, from the (checkpointed) history: whole after a resume
        trained.extras["forward_fraction"] = [round(h[key], 4) for h in trained.fit.history if key in h]
        return trained
