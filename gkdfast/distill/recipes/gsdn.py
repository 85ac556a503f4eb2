"""GSDN / TGS: a teacher-free MLP distils itself over graph edges (neighbourhood self-distillation).

Wu et al., "Teaching Yourself: Graph Self-Distillation on Neighborhood" (arXiv 2210.02097) and its
journal version TGS ("A Teacher-Free Graph KD Framework with Dual Self-Distillation", TKDE 2024),
as the public code ``LirongWu/TGS`` does it: for an edge (i, j) the inference head's logits at node i
are pulled towards a second head's logits at a learnable interpolation of the two endpoints'
features, and pushed away (in probability) from a random node's.  The graph is used only in training.

Example:
    >>> [t.name for t in GSDN().terms()]
    ['gsdn']
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast.nn.philox_dropout import Dropout

from gkdfast.distill.recipes.base import Recipe
from gkdfast.distill.terms import LossTerm, StepContext

__all__ = ["GSDN", "NeighbourSelfDistill", "in_edges"]


def in_edges(graph, nodes: Tensor) -> Tuple[Tensor, Tensor]:
    """Every in-edge ``j -> i`` of the nodes ``i`` in ``nodes``, read from the graph's CSR.

    Args:
        graph: :class:`gkdfast.Graph` (CSR by destination).  nodes: ``[B]`` node ids.

    Returns:
        ``(anchor, neighbour)``: two ``[E_B]`` int64 tensors, ``anchor`` repeating each batch node
        once per in-edge (in batch order), ``neighbour`` the edge's source.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 1]]))
        >>> in_edges(g, torch.tensor([1, 0]))
        (tensor([1, 1]), tensor([0, 2]))
    """
    from gkdfast.nn.sparse_input import csr_row_positions

    pos, deg = csr_row_positions(graph.rowptr.to(nodes.device), nodes)
    anchor = nodes.repeat_interleave(deg)
    neighbour = graph.col.to(nodes.device).long()[pos]
    return anchor, neighbour


class _ScaledLinear(nn.Linear):
    """``Linear`` whose effective weights are ``scale * raw``: with Adam, whose steps ignore the
    gradient's scale, this trains the layer at ``scale`` × the optimiser's learning rate (TGS trains
    its interpolator at 1e-4 while the MLP uses 1e-2, and the Distiller has one optimiser)."""

    def __init__(self, in_features: int, out_features: int, scale: float, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.scale = float(scale)
        with torch.no_grad():  # same initial function as a plain Linear
            self.weight.div_(self.scale)
            if self.bias is not None:
                self.bias.div_(self.scale)

    def optimizer_options(self, weight_decay: float) -> dict:
        """Adam's L2 decay acts on the raw weights: ``wd·scale²`` on them is ``wd`` on the effective
        weights (the plain ``wd`` would be ``wd / scale²`` there, 10^4 times too strong at scale 0.01)."""
        return {"weight_decay": weight_decay * self.scale ** 2}

    def effective(self) -> Tuple[Tensor, Optional[Tensor]]:
        """The weights the layer applies: ``(scale·weight, scale·bias)``."""
        return self.weight * self.scale, (self.bias * self.scale if self.bias is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, *self.effective())


class NeighbourSelfDistill(LossTerm):
    """TGS's loss over the in-edges of the batch nodes: ``L_ne + α·L_cla``.

    For an edge ``(s, d)`` (s = batch node, d = neighbour) and a random node n:
    ``β_s = r + (1−r)·σ(aᵀ[BN(W x_s); BN(W x_d)])``, ``x̃₃ = β_d x_d + (1−β_d) x_s``,
    ``x̃₄ = β_s x_s + (1−β_s) x_d``; ``y`` = the student's logits, ``z`` = a second head on its hidden
    layer (BN → LeakyReLU → Dropout → Linear, as TGS's heads).
    ``L_ne = MSE(y(x_s), z(x̃₃)) + MSE(y(x_d), z(x̃₄)) − MSE(σ y(x_s), σ z(x_n)) − MSE(σ y(x_d), σ z(x_n))``
    (σ = softmax), ``L_cla`` = class-weighted CE of ``y(x_s)`` and ``z(x̃₃)`` on labelled ``s`` (and the
    same for ``d``), weights ``C · normalize₁(labelled-node class histogram / labelled-endpoint histogram)``.

    The term needs the full feature matrix and labels (:meth:`bind`), since a batch node's
    neighbours and the negatives are outside the batch.
    """

    name = "gsdn"
    needs_hidden = needs_graph = True

    def __init__(self, weight: float = 1.0, alpha: float = 0.8, ratio: float = 0.7, factor_dim: int = 128,
                 head_dropout: float = 0.5, factor_lr_scale: float = 0.01):
        super().__init__(weight, nodes="all")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"gsdn: ratio must be in [0, 1], got {ratio}")
        if alpha < 0:
            raise ValueError(f"gsdn: alpha must be >= 0, got {alpha}")
        self.alpha, self.ratio, self.factor_dim = float(alpha), float(ratio), int(factor_dim)
        self.head_dropout, self.factor_lr_scale = float(head_dropout), float(factor_lr_scale)
        self.features: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None
        self.train_mask: Optional[Tensor] = None
        self._class_weight: Optional[Tensor] = None
        self.head = self.factor = self.factor_norm = self.att = None

    def bind(self, features: Tensor, labels: Tensor, train_mask: Tensor) -> "NeighbourSelfDistill":
        """Gives the term the ``[N, F]`` student inputs, ``[N]`` labels and ``[N]`` training mask."""
        self.features, self.labels, self.train_mask = features, labels, train_mask
        self._class_weight = None
        f = features.size(1)
        self.factor = _ScaledLinear(f, self.factor_dim, self.factor_lr_scale)
        self.factor_norm = nn.BatchNorm1d(self.factor_dim)
        self.att = _ScaledLinear(2 * self.factor_dim, 1, self.factor_lr_scale, bias=False)
        return self

    def setup(self, dims) -> None:
        if self.features is None:
            raise ValueError("gsdn: the term needs the full inputs; build it through recipes.GSDN.fit")
        h = dims.student_hidden
        self.head = nn.Sequential(nn.BatchNorm1d(h), nn.LeakyReLU(), Dropout(self.head_dropout),
                                  nn.Linear(h, dims.num_classes))

    def _factor_rows(self, rows: Tensor) -> Tensor:
        """``factor(x[rows])``, sliced from the sparse features when they are bag-of-words."""
        from gkdfast.nn.sparse_input import linear_rows

        return linear_rows(self.features, rows, *self.factor.effective())

    def _beta(self, fa: Tensor, fb: Tensor) -> Tensor:
        """``r + (1−r)·σ(aᵀ[BN(fa); BN(fb)])`` from the two endpoints' factor outputs."""
        za, zb = self.factor_norm(fa), self.factor_norm(fb)
        return self.ratio + (1 - self.ratio) * torch.sigmoid(self.att(torch.cat([za, zb], 1)))

    def class_weight(self, graph, num_classes: int) -> Tensor:
        """TGS's ``C · normalize₁(node_hist / endpoint_hist)`` over labelled nodes / edge endpoints."""
        if self._class_weight is None:
            y, train = self.labels, self.train_mask & (self.labels >= 0)
            node = torch.bincount(y[train], minlength=num_classes).double()
            ei = graph.edge_index.to(y.device).long()
            ends = torch.cat([ei[0][train[ei[0]]], ei[1][train[ei[1]]]])
            edge = torch.bincount(y[ends], minlength=num_classes).double().clamp(min=1.0)
            ratio = node / edge
            self._class_weight = (num_classes * ratio / ratio.sum().clamp(min=1e-12)).float()
        return self._class_weight

    def forward(self, ctx: StepContext) -> Tensor:
        x, y_all, train = self.features, self.labels, self.train_mask
        src, dst = in_edges(ctx.full_graph, ctx.nodes)
        if src.numel() < 2:  # BatchNorm cannot train on one row; a batch of isolated nodes has no edge
            return ctx.logits.sum() * 0.0
        neg = torch.randint(0, x.size(0), (src.numel(),), device=src.device)
        fs, fd = self._factor_rows(src), self._factor_rows(dst)
        beta_s, beta_d = self._beta(fs, fd), self._beta(fd, fs)
        e = src.numel()
        first = _first_linear(ctx.student) if ctx.process_group is None else None
        if first is not None:
            # The five row sets are mixtures of node features and the first layer is linear (bias
            # included, as the mixing weights sum to 1): apply it to each distinct node once (sparse
            # for bag-of-words features) and mix its outputs.  Per step that is O(nnz(nodes)·H + E·H)
            # instead of O(5·E·F·H); the function is the same.
            from gkdfast.nn.sparse_input import linear_rows

            uniq, inv = torch.unique(torch.cat([src, dst, neg]), return_inverse=True)
            ps, pd, pn = linear_rows(x, uniq, first.weight, first.bias)[inv].split(e)
            p3 = beta_d * pd + (1 - beta_d) * ps
            p4 = beta_s * ps + (1 - beta_s) * pd
            logits, hidden = ctx.student.forward_from_first(torch.cat([ps, pd, p3, p4, pn]), return_hidden=True)
        else:
            xs, xd, xn = x[src], x[dst], x[neg]
            x3 = beta_d * xd + (1 - beta_d) * xs
            x4 = beta_s * xs + (1 - beta_s) * xd
            logits, hidden = ctx.forward(torch.cat([xs, xd, x3, x4, xn]))
        y1, y2 = logits[:e], logits[e:2 * e]
        z3, z4, zn = self.head(hidden[2 * e:]).split(e)
        ne = (F.mse_loss(y1, z3) + F.mse_loss(y2, z4) - F.mse_loss(y1.softmax(-1), zn.softmax(-1))
              - F.mse_loss(y2.softmax(-1), zn.softmax(-1)))
        w = self.class_weight(ctx.full_graph, logits.size(1)).to(logits.device)
        cla = logits.sum() * 0.0
        for node, y_head, z_head in ((src, y1, z3), (dst, y2, z4)):
            m = train[node] & (y_all[node] >= 0)
            if bool(m.any()):
                target = y_all[node][m]
                cla = cla + F.cross_entropy(y_head[m], target, weight=w) + F.cross_entropy(z_head[m], target, weight=w)
        return ne + self.alpha * cla


def _first_linear(student) -> Optional[nn.Linear]:
    """The first layer of a :class:`gkdfast.nn.MLP` student that :meth:`forward_from_first` can
    continue from (plain Linear, no input dropout, two or more layers); ``None`` for anything else."""
    from gkdfast.nn import MLP
    from gkdfast.nn.sparse_input import SparseInputLinear

    if not isinstance(student, MLP) or student.input_dropout or student.num_layers < 2:
        return None
    first = student.layers[0]
    return first if type(first) in (nn.Linear, SparseInputLinear) else None


class GSDN(Recipe):
    """GSDN / TGS (Wu et al., arXiv 2210.02097; TKDE 2024): a graph-free student trained without a
    teacher by :class:`NeighbourSelfDistill` over the in-edges of each node batch; inference is the
    plain MLP (the first head).

    Defaults are TGS's Cora settings (``param/best_parameters.json``): interpolation floor r = 0.7,
    α = 0.8, Adam lr 0.01, weight decay 5e-4, 200 epochs, early stopping after 50, interpolator at
    lr 1e-4 (``factor_lr_scale`` = 0.01 of the model's), head dropout 0.5.  What we chose:

    * batches are **node** batches (the Distiller's), each taking every in-edge of its nodes, so an
      epoch still visits every edge once; ``batch_size`` = 128 nodes ≈ TGS's 512 edges on Cora.
    * the inference head is the student's own output layer (a Linear, TGS: BN→LeakyReLU→Dropout→Linear);
      the second head ``z`` is TGS's, on the student's hidden layer; the student's width and depth
      come from the caller (TGS: 1024 hidden).
    * a fresh negative node per edge and step (TGS: per edge and epoch).
    * the interpolator's linear maps train at ``factor_lr_scale`` × the lr with weight decay 5e-4 on the
      weights they apply (:class:`_ScaledLinear`); its BatchNorm trains at the full lr (TGS: 1e-4), and
      its width is ``factor_dim`` = 128 (TGS: the hidden width, 1024 on Cora).

    Shapes: the student maps ``[B, F]`` features to ``[B, C]`` logits and must return its hidden layer
    (``return_hidden=True``), e.g. :class:`gkdfast.nn.MLP`.

    Example:
        >>> from gkdfast.data import csbm
        >>> d = csbm(num_nodes=200, num_classes=3, feature_dim=16, seed=0)
        >>> t = GSDN(epochs=2).fit(lambda f: gkdfast.nn.MLP(f, 32, 3), d)
        >>> t.fit.epochs, t.uses_graph
        (2, False)
    """

    name = "gsdn"
    needs_teacher = False
    graph_free_student = True
    alpha = 0.8
    ratio = 0.7
    factor_dim = 128
    head_dropout = 0.5
    factor_lr_scale = 0.01
    batch_size: Optional[int] = 128

    def terms(self):
        return [NeighbourSelfDistill(1.0, self.alpha, self.ratio, self.factor_dim, self.head_dropout,
                                     self.factor_lr_scale)]

    def check_student(self, student) -> None:
        from gkdfast.distill.distiller import uses_graph

        if uses_graph(student):
            raise ValueError("recipe 'gsdn' needs a graph-free student (e.g. mlp)")

    def bind(self, terms, data, inputs, device) -> None:
        terms[0].bind(inputs.to(device), data.y.to(device), data.train_mask.to(device))
