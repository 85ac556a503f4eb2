"""Position features from random walks (NOSMOG's DeepWalk input), without word2vec.

NOSMOG appends a DeepWalk embedding to each node's features.  DeepWalk trains skip-gram on
random-walk windows; skip-gram with negative sampling implicitly factorises the shifted pointwise
mutual information (PMI) matrix of (node, context) co-occurrences in those windows (Levy & Goldberg,
2014; Qiu et al., NetMF, 2018).  So we do that factorisation directly:

1. ``walks_per_node`` uniform random walks of ``walk_length`` steps from every node (vectorised over
   nodes: one gather per step, no Python loop over nodes);
2. count co-occurrences of nodes at most ``window`` steps apart, symmetrically, in a sparse matrix;
3. positive PMI: ``max(0, log(C_ij · total / (c_i · c_j)) − log(negative))``;
4. truncated SVD (rank ``dim``): embedding ``U · sqrt(S)``, then each column standardised.

Memory is O(N·walks·length·window) for the sparse counts, never N×N dense; it is deterministic for
a given ``seed``.  Differences from NOSMOG's code: no networkx graph, no word2vec training, and a
closed-form factorisation instead of SGD, so numbers differ slightly from the reference DeepWalk.

:func:`deepwalk_features` is the other way, the one NOSMOG's code takes: skip-gram with negative
sampling trained by SGD on the same walks (word2vec's update rule, batched), raw embeddings
without the column standardisation.  ``position_features(..., method="deepwalk")`` picks it.

:func:`streaming_deepwalk` is the same skip-gram at scale: the native ``gkdfast::deepwalk`` op
generates each walk from its Philox words when it trains on it, so neither the walks nor the pairs
are ever stored; memory is O(N·dim) and the threads update the embeddings lock-free, as word2vec
does (``method="stream"``).  It is what the out-of-core pipeline uses for NOSMOG.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["random_walks", "position_features", "deepwalk_features", "streaming_deepwalk", "POSITION_METHODS"]

POSITION_METHODS = ("svd", "deepwalk", "stream")
# The native op's limits (csrc/ops/deepwalk.h), checked here for one-line messages that name them.
_MAX_WALK_LENGTH, _MAX_WINDOW, _MAX_NEGATIVE = 10000, 100, 100
# Above this many walks the pure-Python reference (one update at a time) would take hours: refuse
# instead of falling back silently when the native kernel cannot run.
_REFERENCE_MAX_WALKS = 20000


def random_walks(graph, walk_length: int = 30, walks_per_node: int = 1, seed: int = 0) -> Tensor:
    """Uniform random walks starting from every node, ``walks_per_node`` times.

    Walks follow in-edges of the CSR-by-destination graph (for an undirected graph, stored in both
    directions, that is the same as following out-edges).  A node without neighbours stays put.

    Returns:
        ``[N * walks_per_node, walk_length + 1]`` int64 node ids (column 0 = start node).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
        >>> random_walks(g, walk_length=4).shape
        torch.Size([3, 5])
    """
    if walk_length < 1 or walks_per_node < 1:
        raise ValueError("random_walks: walk_length and walks_per_node must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    rowptr, col = graph.rowptr.cpu().long(), graph.col.cpu().long()
    n = graph.num_nodes
    deg = rowptr[1:] - rowptr[:-1]
    cur = torch.arange(n).repeat(walks_per_node)
    out = [cur]
    for _ in range(walk_length):
        d = deg[cur]
        r = (torch.rand(cur.numel(), generator=gen) * d.clamp(min=1)).long()
        nxt = col[(rowptr[cur] + r).clamp(max=max(col.numel() - 1, 0))] if col.numel() else cur
        cur = torch.where(d > 0, nxt, cur)
        out.append(cur)
    return torch.stack(out, dim=1)


def position_features(graph, dim: int = 64, walk_length: int = 30, walks_per_node: int = 5, window: int = 5,
                      negative: float = 1.0, seed: int = 0, method: str = "svd") -> Tensor:
    """``[N, dim]`` float32 position features: truncated SVD of the random-walk PPMI matrix
    (``method="svd"``, default) or skip-gram embeddings trained on the walks (``"deepwalk"``:
    :func:`deepwalk_features` with its defaults; ``"stream"``: :func:`streaming_deepwalk` with
    ``deterministic=True``, O(N·dim) memory, repeatable).

    Args:
        graph: :class:`gkdfast.Graph`.  dim: embedding width (NOSMOG: 16–128).
        walk_length, walks_per_node, window: as DeepWalk (NOSMOG: 30–70, 1–5, 5).
        negative: the skip-gram negative-sample count, i.e. the PMI shift ``log(negative)`` (svd only).
        seed: walk seed.  method: ``"svd"``, ``"deepwalk"`` or ``"stream"``.

    Example:
        >>> from gkdfast.data import csbm
        >>> p = position_features(csbm(num_nodes=200, seed=0).graph, dim=16, walks_per_node=2)
        >>> p.shape, p.dtype
        (torch.Size([200, 16]), torch.float32)
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    if method == "deepwalk":
        return deepwalk_features(graph, dim, walk_length, walks_per_node, window, seed=seed)
    if method == "stream":
        # deterministic: the features must not depend on thread timing (a resumed or data-parallel run
        # recomputes them and checks they are the inputs it trained on)
        return streaming_deepwalk(graph, dim, walk_length, walks_per_node, window, seed=seed, deterministic=True)
    if method != "svd":
        raise ValueError(f"position_features: method must be one of {', '.join(map(repr, POSITION_METHODS))}, "
                         f"got {method!r}")
    n = graph.num_nodes
    if dim < 1:
        raise ValueError(f"position_features: dim must be >= 1, got {dim}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"position_features: window must be a positive int, got {window!r}")
    if not negative > 0:  # (the PMI shift is log(negative))
        raise ValueError(f"position_features: negative must be > 0, got {negative!r}")
    if n == 0:
        return torch.zeros(0, dim)
    walks = random_walks(graph, walk_length, walks_per_node, seed).numpy()
    rows, cols = [], []
    for off in range(1, min(window, walk_length) + 1):
        a, b = walks[:, :-off].ravel(), walks[:, off:].ravel()
        rows += [a, b]
        cols += [b, a]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    counts = sp.coo_matrix((np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=(n, n)).tocsr()
    counts.sum_duplicates()
    total = counts.sum()
    rsum = np.asarray(counts.sum(axis=1)).ravel()
    csum = np.asarray(counts.sum(axis=0)).ravel()
    coo = counts.tocoo()
    pmi = np.log(coo.data * total / (rsum[coo.row] * csum[coo.col])) - np.log(max(negative, 1e-12))
    keep = pmi > 0
    ppmi = sp.csr_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n, n))
    k = min(dim, n - 1)
    if k < 1 or ppmi.nnz == 0:
        return torch.zeros(n, dim)
    # ARPACK's start vector is random: fix it so the features are reproducible.
    v0 = np.random.default_rng(seed).standard_normal(n)
    u, s, _ = svds(ppmi, k=k, v0=v0)
    order = np.argsort(-s)
    emb = u[:, order] * np.sqrt(s[order])
    # SVD signs are arbitrary: make each column's largest-magnitude entry positive for determinism.
    sign = np.sign(emb[np.abs(emb).argmax(axis=0), np.arange(emb.shape[1])])
    emb = emb * np.where(sign == 0, 1.0, sign)
    emb = (emb - emb.mean(0)) / (emb.std(0) + 1e-8)
    if k < dim:
        emb = np.concatenate([emb, np.zeros((n, dim - k))], axis=1)
    return torch.from_numpy(emb.astype(np.float32))


def _skipgram_pairs(walks: Tensor, window: int, gen: torch.Generator,
                    alive: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """(centre, context) pairs of every walk position, both directions, with word2vec's reduced window:
    a pair ``off`` steps apart is kept with probability ``(window - off + 1) / window`` (word2vec draws
    the window of each centre uniformly from 1..window, so nearer contexts count more).  ``alive``
    (bool, the walks' shape): positions a walk really reached; pairs touching another are dropped."""
    centres, contexts = [], []
    for off in range(1, min(window, walks.size(1) - 1) + 1):
        a, b = walks[:, :-off].reshape(-1), walks[:, off:].reshape(-1)
        keep = torch.rand(a.numel(), generator=gen) < (window - off + 1) / window
        if alive is not None:
            keep &= alive[:, :-off].reshape(-1) & alive[:, off:].reshape(-1)
        centres += [a[keep], b[keep]]
        contexts += [b[keep], a[keep]]
    return torch.cat(centres), torch.cat(contexts)


def deepwalk_features(graph, dim: int = 64, walk_length: int = 30, walks_per_node: int = 5, window: int = 5,
                      negative: int = 5, epochs: int = 1, lr: float = 0.025, batch_size: int = 1024,
                      seed: int = 0) -> Tensor:
    """``[N, dim]`` float32 DeepWalk embeddings: skip-gram with negative sampling on random walks.

    What NOSMOG's position encoder (word2vec on DeepWalk walks) does, in PyTorch: walks from
    :func:`random_walks`; (centre, context) pairs within ``window`` steps (reduced window, as
    word2vec); per pair ``negative`` contexts drawn from the walk-frequency distribution to the power
    0.75; the word2vec update ``v_c += lr·[(1−σ(v_c·u_o))·u_o − Σ σ(v_c·u_k)·u_k]`` (and the mirror
    updates of the context vectors ``u``), applied to ``batch_size`` pairs at once with
    ``index_add_``, the learning rate decaying linearly to ``lr·1e-4`` over all steps.  Input vectors
    start uniform in ±0.5/dim, context vectors at zero (word2vec's initialisation; an isolated node
    has no pairs and keeps its initial vector, as in the reference); the input vectors
    are returned as they are (no standardisation: the reference appends raw word2vec vectors).
    No frequent-node subsampling.  Deterministic for a given ``seed``; memory O(pairs + N·dim).

    Args:
        graph: :class:`gkdfast.Graph`.  dim: embedding width.  walk_length, walks_per_node, window:
            DeepWalk's walk settings.  negative: negatives per pair.  epochs: passes over the pairs
            (NOSMOG: 1–5).  lr: initial SGD step (word2vec: 0.025).  batch_size: pairs per step.
            seed: walks, window draws, negatives and initialisation.

    Example:
        >>> from gkdfast.data import csbm
        >>> p = deepwalk_features(csbm(num_nodes=200, seed=0).graph, dim=16, walks_per_node=2, walk_length=10)
        >>> p.shape, p.dtype
        (torch.Size([200, 16]), torch.float32)
    """
    for name, v in (("dim", dim), ("negative", negative), ("epochs", epochs), ("batch_size", batch_size),
                    ("window", window)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"deepwalk_features: {name} must be a positive int, got {v!r}")
    if not lr > 0:
        raise ValueError(f"deepwalk_features: lr must be > 0, got {lr}")
    n = graph.num_nodes
    if n == 0:
        return torch.zeros(0, dim)
    gen = torch.Generator().manual_seed(int(seed))
    walks = random_walks(graph, walk_length, walks_per_node, seed)
    # A walk at a node without in-edges stands still in random_walks; the reference's walk stops there.
    # So a position counts only when the walk moved into it: an isolated start has no pairs (its
    # vector stays as initialised, as in the reference), and a sink reached mid-walk keeps the pairs
    # of its arrival (it was dropped whole before, though walks visit it) but not its repeats.
    degree = (graph.rowptr[1:] - graph.rowptr[:-1]).cpu()
    alive = torch.ones_like(walks, dtype=torch.bool)
    alive[:, 1:] = degree[walks[:, :-1]] > 0
    centres, contexts = _skipgram_pairs(walks, window, gen, alive)
    noise = torch.bincount(walks.reshape(-1), minlength=n).double().pow(0.75)
    emb_in = (torch.rand(n, dim, generator=gen, dtype=torch.float64) - 0.5) / dim
    emb_out = torch.zeros(n, dim, dtype=torch.float64)
    steps = epochs * max(1, -(-centres.numel() // batch_size))
    step = 0
    for _ in range(epochs):
        order = torch.randperm(centres.numel(), generator=gen)
        for start in range(0, centres.numel(), batch_size):
            idx = order[start:start + batch_size]
            c, o = centres[idx], contexts[idx]
            neg = torch.multinomial(noise, idx.numel() * negative, replacement=True, generator=gen)
            rate = lr * max(1e-4, 1.0 - step / steps)
            step += 1
            vc, uo, un = emb_in[c], emb_out[o], emb_out[neg].view(idx.numel(), negative, dim)
            g_pos = 1.0 - torch.sigmoid((vc * uo).sum(1, keepdim=True))           # [B, 1]
            g_neg = -torch.sigmoid(torch.einsum("bd,bkd->bk", vc, un)).unsqueeze(2)  # [B, K, 1]
            d_in = g_pos * uo + (g_neg * un).sum(1)
            emb_out.index_add_(0, o, rate * g_pos * vc)
            emb_out.index_add_(0, neg, (rate * g_neg * vc.unsqueeze(1)).reshape(-1, dim))
            emb_in.index_add_(0, c, rate * d_in)
    return emb_in.float()


def streaming_deepwalk(graph, dim: int = 64, walk_length: int = 30, walks_per_node: int = 5, window: int = 5,
                       negative: int = 5, lr: float = 0.025, seed: int = 0, deterministic: bool = False) -> Tensor:
    """``[N, dim]`` float32 DeepWalk embeddings in O(N·dim) memory: skip-gram with negative sampling,
    each walk trained on as it is generated (the native ``gkdfast::deepwalk`` op; docs/ops.md).

    ``walks_per_node`` rounds; each round starts one walk from every node, in a random order drawn
    from ``seed`` (DeepWalk shuffles the nodes per round).  Per walk, as word2vec trains a sentence:
    a reduced window (uniform in 1..``window``) per position, the word2vec update for every
    (context, centre) pair with ``negative`` noise nodes drawn from the walks' node counts to the
    power 0.75, the learning rate decaying linearly from ``lr`` to ``lr·1e-4`` over the walks.  The
    walks come from Philox words keyed by (seed, walk), so the op regenerates them instead of storing
    them: memory is the two ``[N, dim]`` matrices plus O(N), against O(N·walks·length·window) for
    :func:`deepwalk_features` and :func:`position_features`' PPMI matrix.  Differences from NOSMOG's
    word2vec: no frequent-node subsampling, noise counts from the walks themselves, one pass.

    The threads update the embeddings without locks (Hogwild, like word2vec): which update sees which
    depends on the timing, so two runs differ (statistically equivalent: the same quality, measured
    in tests/test_streaming_deepwalk.py); ``deterministic=True`` runs the walks in order on one thread
    (bitwise repeatable, the reference's order, about half the speed on 2 threads).  Without the
    native extension the pure-Python reference runs, one update at a time: up to 20,000 walks, beyond
    that a ``RuntimeError`` says to build the extension.

    Args:
        graph: :class:`gkdfast.Graph` (walks follow in-edges; CPU, any device accepted and copied).
        dim: embedding width.  walk_length: steps per walk (a walk stops early at a node without
            in-edges).  walks_per_node: rounds.  window: the largest context distance.
        negative: noise nodes per pair.  lr: initial SGD step (word2vec: 0.025).
        seed: start orders, walks, windows, negatives and initial vectors.
        deterministic: one thread, walks in order.

    Example:
        >>> from gkdfast.data import csbm
        >>> g = csbm(num_nodes=300, seed=0).graph
        >>> p = streaming_deepwalk(g, dim=16, walk_length=10, walks_per_node=2)
        >>> p.shape, p.dtype
        (torch.Size([300, 16]), torch.float32)
    """
    from gkdfast import _backend
    from gkdfast.reference import deepwalk as ref

    for name, v in (("dim", dim), ("walk_length", walk_length), ("walks_per_node", walks_per_node),
                    ("window", window)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"streaming_deepwalk: {name} must be a positive int, got {v!r}")
    if not isinstance(negative, int) or isinstance(negative, bool) or negative < 0:
        raise ValueError(f"streaming_deepwalk: negative must be an int >= 0, got {negative!r}")
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
        raise ValueError(f"streaming_deepwalk: lr must be positive and finite, got {lr!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"streaming_deepwalk: seed must be an int >= 0, got {seed!r}")
    if walk_length > _MAX_WALK_LENGTH or window > _MAX_WINDOW or negative > _MAX_NEGATIVE:
        raise ValueError(f"streaming_deepwalk: walk_length <= {_MAX_WALK_LENGTH}, window <= {_MAX_WINDOW} and "
                         f"negative <= {_MAX_NEGATIVE} (the Philox word budget of a walk), got {walk_length}, "
                         f"{window}, {negative}")
    n = graph.num_nodes
    rowptr, col = graph.rowptr.cpu(), graph.col.cpu()
    gen = torch.Generator().manual_seed(int(seed))
    index = torch.int32 if n < 2 ** 31 else torch.int64
    starts = torch.cat([torch.randperm(n, generator=gen, dtype=index) for _ in range(walks_per_node)]) \
        if n else torch.zeros(0, dtype=index)
    args = (rowptr, col, starts, dim, walk_length, window, negative, float(lr), int(seed), bool(deterministic))
    if _backend.choose("deepwalk", torch.device("cpu")) == "cpu":
        return torch.ops.gkdfast.deepwalk(*args)
    if starts.numel() > _REFERENCE_MAX_WALKS:
        raise RuntimeError(f"streaming_deepwalk: {starts.numel()} walks need the native kernel (gkdfast._C, "
                           f"see gkdfast.explain('deepwalk')); the pure-Python reference trains one pair at a time and is "
                           f"meant for at most {_REFERENCE_MAX_WALKS} walks")
    return ref.deepwalk(*args)
