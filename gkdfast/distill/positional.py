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
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["random_walks", "position_features"]


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
                      negative: float = 1.0, seed: int = 0) -> Tensor:
    """``[N, dim]`` float32 position features: truncated SVD of the random-walk PPMI matrix.

    Args:
        graph: :class:`gkdfast.Graph`.  dim: embedding width (NOSMOG: 16–128).
        walk_length, walks_per_node, window: as DeepWalk (NOSMOG: 30–70, 1–5, 5).
        negative: the skip-gram negative-sample count, i.e. the PMI shift ``log(negative)``.
        seed: walk seed.

    Example:
        >>> from gkdfast.data import csbm
        >>> p = position_features(csbm(num_nodes=200, seed=0).graph, dim=16, walks_per_node=2)
        >>> p.shape, p.dtype
        (torch.Size([200, 16]), torch.float32)
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    n = graph.num_nodes
    if dim < 1:
        raise ValueError(f"position_features: dim must be >= 1, got {dim}")
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
