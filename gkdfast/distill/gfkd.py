"""GFKD: graph-free knowledge distillation of a graph classifier (Deng & Zhang, IJCAI 2021).

No generator network: a fixed set of fake graphs is itself the parameter.  Each fake graph has ``n``
nodes (drawn from ``[min_nodes, max_nodes)``), a Bernoulli edge logit per node pair (the adjacency
is a multivariate Bernoulli with ``p = sigmoid(phi)``, symmetric, no self-loops), learnable node
features and a target class (classes dealt evenly).  Two alternating updates per iteration, as in
the public code:

* **features** (gradient descent through the frozen teacher, structure held at ``A = 1[p >= 0.5]``):
  ``CE(teacher(A, X), y) + bn_reg * BN-statistics matching + onehot_cof * H(softmax(one-hot block))``;
  the one-hot block of the features is a softmax over learnable logits (the entropy term pushes it
  towards one-hot), continuous columns are free parameters.
* **structure** by the antithetic ARM estimator, forward passes only: ``u ~ U(0, 1)`` per pair,
  ``b1 = 1[u > sigmoid(-phi)]``, ``b2 = 1[u < sigmoid(phi)]``,
  ``grad phi = (f(b1) - f(b2)) * (u - 1/2)`` with ``f`` the per-graph CE (the public code adds the
  batch's BN term to every graph's ``f``: ``arm_bn=True``).  ARM is
  unbiased for the gradient of ``E_A[f(A)]`` and needs no relaxation, so the teacher sees hard 0/1
  graphs and any convolution (GIN, GCN, SAGE, GAT) works.

The student then learns from these graphs only: ``T^2 KL(softmax(t/T) || softmax(s/T))`` (T = 2), no
labels, no real graph, no model selection.  Fake graphs are stored block-diagonally (one
:class:`gkdfast.Graph` per structure sample, rebuilt from the chosen pairs), so every teacher call is
one batched forward with no per-graph Python loop.

What we chose where the paper and code leave it open (documented in docs/graph-classification.md):
``phi`` starts as ``N(mu, 1)`` per pair with ``mu`` chosen so that the deterministic structure
``1[phi >= 0]`` has the real graphs' mean pair density (0.13 on MUTAG; the code's start is not stated;
a constant negative start leaves every fake graph edgeless, and on isolated nodes feature steps could
not move a 5-layer GIN teacher off one class: measured, hit rate 0.50 after 200 steps); Adam on
``phi`` with lr 0.1 instead of the published 1.0 (measured on a 3-layer MUTAG GIN teacher, 40 fake graphs, 300 iterations: mean teacher CE 0.52 and edge density 0.10 at lr 0.1 against 1.83 and
0.32 at lr 1.0, where the noisy ARM steps switch a third of all pairs on; MUTAG's own density is
about 0.13); ``bn_reg = 0.05`` and ``onehot_cof = 0.1`` (the README says to re-tune them per teacher and
dataset), 70 % of the dataset's graph count as fake graphs (131 of MUTAG's 188, as published); the BN
term left out of the ARM objective by default: it is one number for the whole batch, so in
``f(b1) - f(b2)`` it adds the same large difference to every graph's pairs, noise that swamps the
per-graph CE (measured on a 5-layer GIN(128) MUTAG teacher, 60 fake graphs, 300 iterations: teacher
CE on the fake graphs 5.96 -> 1.72 with BN statistics distance 4.2e5 -> 3.9e3 without it in ARM, but
5.96 -> 32.0 and density 0.12 -> 0.25 with it, bn_reg 0.05).

``onehot_prior=True`` (off by default, the public code starts from random logits) starts the one-hot
logits at the data's feature-class log-frequencies, as DFAD-GNN's generator does here.  Measured on
MUTAG, first 3 of 10 folds, 150 iterations: GIN students 73.7 / 63.2 / 36.8 % with it against
63.2 / 57.9 / 36.8 % without, GCN students 63.2 / 63.2 / 36.8 % against 36.8 / 68.4 / 36.8 %; too few
folds to change the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast._checks import check_settings
from gkdfast.data.batching import GraphBatch, select_graphs
from gkdfast.distill.datafree import BNStatistics, feature_metadata, onehot_frequencies, onehot_log_prior
from gkdfast.distill.graph_level import kd_loss
from gkdfast.graph import Graph

__all__ = ["GFKDConfig", "FakeGraphs", "TransferSet", "arm_gradient", "invert_graphs", "fake_graphs_for", "gfkd_transfer_set",
           "distill_gfkd"]


@dataclass
class GFKDConfig:
    """GFKD hyperparameters (public code: Adam lr 1.0 on the edge logits (ours 0.1, see the module
    docstring) and 0.01 on the features, 1500-2000 iterations, T = 2; students trained on the fake
    graphs only)."""

    num_graphs: int = 0  # 0: 70 % of the real dataset's graph count
    min_nodes: int = 10
    max_nodes: int = 30  # exclusive
    iterations: int = 1500
    lr_structure: float = 0.1  # published 1.0; see the module docstring
    lr_features: float = 0.01
    bn_reg: float = 0.05
    onehot_cof: float = 0.1
    init_logit: Optional[float] = None  # None: N(mu, 1) per pair, mu so that 1[phi >= 0] has the data's density
    arm_bn: bool = False  # the BN term in the ARM objective too (public code); see the module docstring
    onehot_prior: bool = False  # one-hot logits start at the real nodes' feature-class log-frequencies (as DFAD's)
    temperature: float = 2.0
    student_epochs: int = 200
    batch_size: int = 32
    lr_student: float = 0.01

    def __post_init__(self):
        """One clear error for a bad setting at construction, so the CLI fails before any training."""
        if not 2 <= self.min_nodes < self.max_nodes:
            raise ValueError(f"GFKD: need 2 <= min_nodes < max_nodes, got {self.min_nodes}, {self.max_nodes}")
        check_settings("GFKD", self, ints={"num_graphs": 0, "iterations": 0, "student_epochs": 0, "batch_size": 1},
                       positive=("lr_structure", "lr_features", "lr_student", "temperature"),
                       nonnegative=("bn_reg", "onehot_cof"))


class FakeGraphs(nn.Module):
    """``G`` fake graphs with learnable edge logits (one per unordered node pair) and node features.

    Args:
        sizes: ``[G]`` node counts.  num_features: feature width ``F``; the first ``onehot_dim``
            columns are a softmax block, the rest continuous (initialised at ``cont_mean`` +
            ``cont_std`` * noise).  targets: ``[G]`` class of each graph.

    Example:
        >>> fake = FakeGraphs(torch.tensor([3, 4]), num_features=5, onehot_dim=5, targets=torch.tensor([0, 1]))
        >>> fake.phi.numel(), fake.x().shape       # 3 + 6 pairs, 7 nodes
        (9, torch.Size([7, 5]))
        >>> b = fake.batch(torch.ones(9, dtype=torch.bool))
        >>> b.num_graphs, b.graph.num_edges        # complete graphs: 2 * 9 directed edges
        (2, 18)
    """

    def __init__(self, sizes: Tensor, num_features: int, onehot_dim: int, targets: Tensor,
                 init_logit: float = -2.0, cont_mean: Optional[Tensor] = None, cont_std: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None, init_spread: float = 0.0,
                 onehot_prior: Optional[Tensor] = None):
        super().__init__()
        sizes = torch.as_tensor(sizes, dtype=torch.int64)
        if sizes.dim() != 1 or sizes.numel() < 1 or int(sizes.min()) < 2:
            raise ValueError(f"FakeGraphs: sizes must be [G] node counts >= 2, got {sizes.tolist()[:8]}")
        if targets.numel() != sizes.numel():
            raise ValueError(f"FakeGraphs: {targets.numel()} targets for {sizes.numel()} graphs")
        if not 0 <= onehot_dim <= num_features:
            raise ValueError(f"FakeGraphs: onehot_dim must be in [0, {num_features}], got {onehot_dim}")
        self.onehot_dim = onehot_dim
        self.register_buffer("ptr", torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)]))
        self.register_buffer("targets", targets.to(torch.int64))
        src, dst, owner = [], [], []
        for g, n in enumerate(sizes.tolist()):  # pair lists are built once (G is ~100s of small graphs)
            i, j = torch.triu_indices(n, n, 1)
            off = int(self.ptr[g])
            src.append(i + off)
            dst.append(j + off)
            owner.append(torch.full((i.numel(),), g, dtype=torch.int64))
        self.register_buffer("pair_src", torch.cat(src))
        self.register_buffer("pair_dst", torch.cat(dst))
        self.register_buffer("pair_graph", torch.cat(owner))
        phi = torch.full((self.pair_src.numel(),), float(init_logit))
        if init_spread > 0:
            phi = phi + init_spread * torch.randn(phi.shape, generator=generator)
        self.phi = nn.Parameter(phi)
        n_total, cont = int(self.ptr[-1]), num_features - onehot_dim
        logits = torch.randn(n_total, onehot_dim, generator=generator)
        if onehot_prior is not None:  # start the softmax at the given class frequencies (plus the noise)
            logits = logits + onehot_log_prior(onehot_prior, onehot_dim, "FakeGraphs")
        self.onehot_logits = nn.Parameter(logits)
        mean = torch.zeros(cont) if cont_mean is None else cont_mean.float()
        std = torch.ones(cont) if cont_std is None else cont_std.float()
        self.cont = nn.Parameter(mean + std * torch.randn(n_total, cont, generator=generator))

    @property
    def num_graphs(self) -> int:
        return int(self.ptr.numel() - 1)

    def x(self) -> Tensor:
        """``[N, F]`` node features: softmax of the one-hot logits, then the continuous columns."""
        return torch.cat([F.softmax(self.onehot_logits, -1), self.cont], 1)

    def feature_entropy(self) -> Tensor:
        """Mean entropy of the one-hot blocks' softmax (0 when there is no one-hot block)."""
        if not self.onehot_dim:
            return self.phi.new_zeros(())
        logp = F.log_softmax(self.onehot_logits, -1)
        return -(logp.exp() * logp).sum(1).mean()

    def hard_structure(self) -> Tensor:
        """``[P]`` bool: the deterministic structure ``sigmoid(phi) >= 0.5``."""
        return self.phi.detach() >= 0

    def batch(self, pairs: Tensor, x: Optional[Tensor] = None) -> GraphBatch:
        """The fake graphs with the unordered pairs ``pairs`` ``[P]`` (bool) as undirected edges."""
        s, d = self.pair_src[pairs], self.pair_dst[pairs]
        ei = torch.stack([torch.cat([s, d]), torch.cat([d, s])])
        x = self.x() if x is None else x
        return GraphBatch(Graph(ei, int(self.ptr[-1])), x, self.ptr, self.targets)


def arm_gradient(phi: Tensor, u: Tensor, f: Callable[[Tensor], Tensor], owner: Optional[Tensor] = None) -> Tensor:
    """One antithetic ARM sample of ``d/d phi E_{b ~ Bernoulli(sigmoid(phi))}[f(b)]`` (Yin & Zhou 2019):
    ``(f(1[u > sigmoid(-phi)]) - f(1[u < sigmoid(phi)])) * (u - 1/2)``, forward evaluations only.

    Args:
        phi: ``[P]`` logits.  u: ``[P]`` uniform(0, 1) draws.  f: ``bool [P] -> [G]`` (one value per
            group, e.g. per fake graph; ``G = 1`` for a scalar objective).  owner: ``[P]`` group of each
            variable (default: all in group 0).

    Example:
        >>> phi = torch.zeros(2)
        >>> f = lambda b: (b.float() * torch.tensor([2.0, 1.0])).sum().reshape(1)
        >>> arm_gradient(phi, torch.tensor([0.9, 0.2]), f)
        tensor([ 0.4000, -0.3000])
    """
    df = f(u > torch.sigmoid(-phi)) - f(u < torch.sigmoid(phi))
    return (df[owner] if owner is not None else df[0]) * (u - 0.5)


def _objective(teacher: nn.Module, fake: FakeGraphs, pairs: Tensor, x: Tensor, bn: Optional[BNStatistics],
               bn_reg: float) -> Tuple[Tensor, Tensor]:
    """(per-graph CE ``[G]``, BN term) of the teacher on the fake graphs with structure ``pairs``."""
    logits = teacher(fake.batch(pairs, x))
    ce = F.cross_entropy(logits, fake.targets, reduction="none")
    reg = bn.loss() * bn_reg if bn is not None else ce.new_zeros(())
    return ce, reg


def invert_graphs(teacher: nn.Module, fake: FakeGraphs, cfg: GFKDConfig, seed: int = 0,
                  on_iteration: Optional[Callable[[int, float, float], None]] = None) -> List[Tuple[float, float]]:
    """Optimises ``fake`` in place against the frozen ``teacher``; returns ``(mean CE, edge density)``
    per iteration.

    Example:
        >>> from gkdfast.nn.graph_models import GraphClassifier
        >>> t = GraphClassifier("gcn", 4, 16, 2, 2).eval()
        >>> fake = FakeGraphs(torch.tensor([5, 6]), 4, 4, torch.tensor([0, 1]))
        >>> hist = invert_graphs(t, fake, GFKDConfig(iterations=3))
        >>> len(hist), 0.0 <= hist[-1][1] <= 1.0
        (3, True)
    """
    teacher.eval()
    params = list(teacher.parameters())
    grads_were = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    opt_x = torch.optim.Adam([fake.onehot_logits, fake.cont], lr=cfg.lr_features)
    opt_phi = torch.optim.Adam([fake.phi], lr=cfg.lr_structure)
    history = []
    bn = BNStatistics(teacher) if cfg.bn_reg else None
    try:
        for it in range(cfg.iterations):
            # features: gradient descent with the structure fixed at its most likely value
            ce, reg = _objective(teacher, fake, fake.hard_structure(), fake.x(), bn, cfg.bn_reg)
            loss = ce.mean() + reg + cfg.onehot_cof * fake.feature_entropy()
            opt_x.zero_grad()
            loss.backward()
            opt_x.step()
            # structure: ARM, two forward passes on antithetic hard samples
            with torch.no_grad():
                u = torch.rand(fake.phi.shape, generator=gen).to(fake.phi.device)
                x = fake.x()

                def per_graph(pairs):  # f per fake graph: its CE (plus the shared BN term if arm_bn)
                    ce_b, reg_b = _objective(teacher, fake, pairs, x, bn, cfg.bn_reg)
                    return ce_b + reg_b if cfg.arm_bn else ce_b

                fake.phi.grad = arm_gradient(fake.phi, u, per_graph, fake.pair_graph)
            opt_phi.step()
            density = float(fake.hard_structure().float().mean())
            history.append((float(ce.detach().mean()), density))
            if on_iteration is not None:
                on_iteration(it, history[-1][0], density)
    finally:
        if bn is not None:
            bn.__exit__()
        for p, was in zip(params, grads_were):
            p.requires_grad_(was)
    return history


def fake_graphs_for(dataset, cfg: GFKDConfig, seed: int = 0, graphs=None) -> FakeGraphs:
    """Fake graphs shaped like ``dataset``'s node features (the one-hot block and the continuous
    columns' scale: feature metadata, no graph), ``cfg.num_graphs`` of them (0: 70 % of the dataset's
    graph count), classes dealt evenly.  ``graphs``: the ids whose features and edge density give that
    metadata (a fold's training graphs, so its test graphs are never read); default every graph.

    Example:
        >>> from gkdfast.data import load_tu
        >>> fake = fake_graphs_for(load_tu("../shared/data/tu_mutag"), GFKDConfig())
        >>> fake.num_graphs, fake.onehot_dim
        (131, 7)
    """
    if not 2 <= cfg.min_nodes < cfg.max_nodes:
        raise ValueError(f"GFKD: need 2 <= min_nodes < max_nodes, got {cfg.min_nodes}, {cfg.max_nodes}")
    gen = torch.Generator().manual_seed(int(seed))
    g = cfg.num_graphs or max(dataset.num_classes, int(0.7 * len(dataset)))
    sizes = torch.randint(cfg.min_nodes, cfg.max_nodes, (g,), generator=gen)
    targets = (torch.arange(g) % dataset.num_classes)[torch.randperm(g, generator=gen)]
    seen = dataset if graphs is None else select_graphs(dataset, graphs)
    k, mean, std = feature_metadata(seen.x)
    prior = onehot_frequencies(seen.x, k) if cfg.onehot_prior and k else None
    if cfg.init_logit is not None:
        return FakeGraphs(sizes, dataset.x.size(1), k, targets, cfg.init_logit, mean, std, gen, onehot_prior=prior)
    # Start the deterministic structure 1[phi >= 0] at the real graphs' mean pair density rho (counts
    # only, no graph is read): phi ~ N(mu, 1) with P(phi >= 0) = rho.  An empty start (phi < 0
    # everywhere) leaves isolated nodes, on which feature steps cannot move a GIN teacher's class.
    n = (seen.ptr[1:] - seen.ptr[:-1]).double()
    pairs = (n * (n - 1) / 2).sum().clamp_min(1)
    rho = float((seen.graph.num_edges / 2) / pairs)
    rho = min(max(rho, 1e-3), 1 - 1e-3)
    mu = float(torch.special.ndtri(torch.tensor(rho, dtype=torch.float64)))
    return FakeGraphs(sizes, dataset.x.size(1), k, targets, mu, mean, std, gen, init_spread=1.0, onehot_prior=prior)


class TransferSet:
    """The optimised fake graphs, frozen, in the layout :func:`select_graphs` reads, with the teacher's
    logits on them and the inversion's final ``(mean CE, edge density)``.  Built once per teacher and
    shared by every student distilled from it.

    The one-hot block is hardened (argmax) before the teacher labels the graphs: real graphs have
    one-hot features, and students trained on the soft features of the inversion predicted one class
    on real graphs (measured on MUTAG fold 1, GIN(5x128) teacher 73.7 %, 200 iterations: GIN / GCN
    students 36.8 / 36.8 % with soft features, 68.4 / 63.2 % with hardened ones)."""

    def __init__(self, fake: FakeGraphs, teacher: nn.Module, history: List[Tuple[float, float]]):
        x = fake.x().detach()
        if fake.onehot_dim:
            k = fake.onehot_dim
            x = torch.cat([F.one_hot(x[:, :k].argmax(1), k).to(x.dtype), x[:, k:]], 1)
        b = fake.batch(fake.hard_structure(), x)
        self.graph, self.x, self.ptr, self.y = b.graph, b.x, b.ptr, b.y
        with torch.no_grad():
            self.teacher_logits = teacher.eval()(GraphBatch(self.graph, self.x, self.ptr))
        self.inversion_ce, self.edge_density = history[-1] if history else (float("nan"), float("nan"))

    def __len__(self) -> int:
        return int(self.y.numel())


def gfkd_transfer_set(teacher: nn.Module, dataset, cfg: GFKDConfig, seed: int = 0, device=None,
                      graphs=None) -> TransferSet:
    """Fake graphs inverted from ``teacher`` (shaped like ``dataset``'s node features, or those of the
    ``graphs`` ids given, e.g. a fold's training graphs; no real graph is read), frozen with the
    teacher's logits.

    Example:
        >>> from gkdfast.data import load_tu
        >>> from gkdfast.nn.graph_models import GraphClassifier
        >>> ts = gfkd_transfer_set(GraphClassifier("gin", 7, 16, 2, 2), load_tu("../shared/data/tu_mutag"),
        ...                        GFKDConfig(num_graphs=6, iterations=2))
        >>> len(ts), ts.teacher_logits.shape
        (6, torch.Size([6, 2]))
    """
    dev = device or "cpu"
    teacher = teacher.to(dev).eval()
    fake = fake_graphs_for(dataset, cfg, seed, graphs).to(dev)
    return TransferSet(fake, teacher, invert_graphs(teacher, fake, cfg, seed))


def distill_gfkd(teacher: nn.Module, student: nn.Module, dataset, cfg: GFKDConfig, seed: int = 0, device=None,
                 transfer: Optional[TransferSet] = None):
    """Trains ``student`` by ``T^2 KL`` on GFKD's fake graphs only (inverted from ``teacher`` unless a
    ``transfer`` set from :func:`gfkd_transfer_set` is given); returns ``(student, info)`` with the
    inversion's final CE and edge density and the student's last epoch's KD loss.

    Shapes: both models map a :class:`GraphBatch` of ``B`` graphs to ``[B, C]`` logits.

    Example:
        >>> from gkdfast.data import load_tu
        >>> from gkdfast.nn.graph_models import GraphClassifier
        >>> ds = load_tu("../shared/data/tu_mutag")
        >>> t, s = GraphClassifier("gin", 7, 16, 2, 2), GraphClassifier("gcn", 7, 8, 2, 2)
        >>> s, info = distill_gfkd(t, s, ds, GFKDConfig(num_graphs=8, iterations=2, student_epochs=1))
        >>> sorted(info)
        ['edge_density', 'inversion_ce', 'student_kd_loss']
    """
    dev = device or "cpu"
    ts = transfer if transfer is not None else gfkd_transfer_set(teacher, dataset, cfg, seed, dev)
    student.to(dev).train()
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr_student)
    gen = torch.Generator().manual_seed(int(seed))
    last = 0.0
    for _ in range(cfg.student_epochs):
        order = torch.randperm(len(ts), generator=gen)
        total = 0.0
        for s in range(0, order.numel(), cfg.batch_size):
            ids = order[s:s + cfg.batch_size]
            batch = select_graphs(ts, ids).to(dev)
            target = ts.teacher_logits[ids.to(ts.teacher_logits.device)].to(dev)
            loss = kd_loss(student(batch), target, None, cfg.temperature, 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * ids.numel()
        last = total / len(ts)
    student.eval()
    return student, {"inversion_ce": ts.inversion_ce, "edge_density": ts.edge_density, "student_kd_loss": last}
