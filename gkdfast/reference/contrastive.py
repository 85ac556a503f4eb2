"""Pure-PyTorch reference of the contrastive losses (crd, nt_xent, ncontrast), the InfoNCE op and
the Philox negative sampler.

These favour clarity: the all-N paths **materialise the N x N logit matrix** (and ncontrast the
dense ``Â^hops``), and the sampled path an ``[N, K, d]`` gather, so use them on small inputs only;
they are the fallback for dtypes/devices without a kernel and the oracle the kernels are tested
against.  The sampler here reproduces ``csrc/common/philox.h`` bit for bit.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["philox4x32_10", "negative_index_py", "sample_negatives", "infonce", "gram_lse", "crd", "nt_xent", "ncontrast",
           "gcn_adjacency_power_dense"]

_M32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_NEG_DOMAIN = 0x6E656700


# ------------------------------------------------------------------------------ Philox (scalar)
def philox4x32_10(counter, key):
    """Philox-4x32-10 on Python ints: ``counter`` 4 words, ``key`` 2 words -> 4 words.

    Example:
        >>> words = philox4x32_10((3, 0, 0, _NEG_DOMAIN), (1, 0))
        >>> len(words), all(0 <= w < 2**32 for w in words)
        (4, True)
        >>> list(words) == philox_words(torch.tensor([3]), torch.arange(4), _NEG_DOMAIN, seed=1).tolist()
        True
    """
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & _M32, p1 & _M32, ((p0 >> 32) ^ c3 ^ k1) & _M32, p0 & _M32
        k0, k1 = (k0 + _W0) & _M32, (k1 + _W1) & _M32
    return c0, c1, c2, c3


def negative_index_py(seed: int, row: int, k: int, n: int) -> int:
    """Negative ``k`` of ``row`` among ``n >= 2`` nodes, exactly as the kernels draw it.

    Example:
        >>> drawn = [negative_index_py(seed=0, row=5, k=k, n=10) for k in range(3)]
        >>> drawn == gkdfast.losses.sample_negatives(10, 3, seed=0, rows=torch.tensor([5]))[0].tolist(), 5 in drawn
        (True, False)
    """
    seed &= (1 << 64) - 1
    words = philox4x32_10((row & _M32, (row >> 32) & _M32, (k >> 2) & _M32, _NEG_DOMAIN), (seed & _M32, seed >> 32))
    j = (words[k & 3] * (n - 1)) >> 32
    return j + (1 if j >= row else 0)


# ------------------------------------------------------------------------------ Philox (vectorised)
def _mulhilo(a: int, b: Tensor) -> Tuple[Tensor, Tensor]:
    # 32x32 -> 64-bit product in int64 without overflow: split b into 16-bit halves.
    p0 = a * (b & 0xFFFF)
    p1 = a * (b >> 16)
    t = p0 + ((p1 & 0xFFFF) << 16)
    return (t >> 32) + (p1 >> 16), t & _M32


def philox_words(keys: Tensor, draws: Tensor, domain: int, seed: int) -> Tensor:
    """Vectorised Philox-4x32-10 as the kernels use it: for every (key, draw) pair the word
    ``draw & 3`` of the block with counter ``(key lo, key hi, draw >> 2, domain)`` and key ``seed``.
    ``keys`` and ``draws`` (int64) broadcast against each other; returns their broadcast shape, int64
    words in ``[0, 2**32)``.

    Example:
        >>> w = philox_words(torch.tensor([[3]]), torch.arange(4).unsqueeze(0), _NEG_DOMAIN, seed=1)
        >>> w.shape, int(w[0, 2]) == philox4x32_10((3, 0, 0, _NEG_DOMAIN), (1, 0))[2]
        (torch.Size([1, 4]), True)
    """
    r, dd = torch.broadcast_tensors(keys, draws)
    c0, c1 = r & _M32, (r >> 32) & _M32
    c2 = dd >> 2
    c3 = torch.full_like(r, domain)
    k0, k1 = seed & _M32, seed >> 32
    for _ in range(10):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _W0) & _M32, (k1 + _W1) & _M32
    sel = dd & 3
    return torch.where(sel == 0, c0, torch.where(sel == 1, c1, torch.where(sel == 2, c2, c3)))


def sample_negatives(rows: Tensor, num_nodes: int, num_negatives: int, seed: int) -> Tensor:
    """``[R, K]`` int64: the negatives the kernels draw for ``rows`` (``[R]`` node ids; vectorised Philox in int64).

    Example:
        >>> neg = sample_negatives(torch.tensor([0, 5]), 10, 3, seed=0)
        >>> neg.shape, torch.equal(neg, gkdfast.losses.sample_negatives(10, 3, seed=0, rows=torch.tensor([0, 5])))
        (torch.Size([2, 3]), True)
    """
    if num_nodes < 2:
        raise ValueError("gkdfast.sample_negatives: need at least 2 nodes")
    seed &= (1 << 64) - 1
    rows = rows.to(torch.int64)
    k = torch.arange(num_negatives, device=rows.device, dtype=torch.int64)
    r = rows.unsqueeze(1).expand(-1, num_negatives)
    word = philox_words(rows.unsqueeze(1), k.unsqueeze(0), _NEG_DOMAIN, seed)
    hi, _ = _mulhilo(num_nodes - 1, word)  # (word * (n-1)) >> 32, n - 1 < 2^32
    return hi + (hi >= r).to(torch.int64)


# ------------------------------------------------------------------------------ InfoNCE op
def infonce(a: Tensor, c: Tensor, inv_tau: float, pos_offset: int, exclude_self: bool, num_negatives: int,
            seed: int, row_begin: int = 0) -> Tuple[Tensor, Tensor]:
    """Reference of ``torch.ops.gkdfast.infonce`` (see csrc/ops/infonce.h): ``(loss [R], lse [R])`` for
    anchors ``a [R, d]`` that are the global rows ``[row_begin, row_begin + R)`` of ``c [N, d]``.

    Example:
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0); s, t = torch.randn(6, 4), torch.randn(6, 4)
        >>> loss, lse = infonce(F.normalize(s), F.normalize(t), 1 / 0.075, 0, False, 0, 0)  # G-CRD, all N
        >>> loss.shape, torch.allclose(loss.mean(), gkdfast.losses.crd(s, t, tau=0.075))
        (torch.Size([6]), True)
    """
    acc = torch.float64 if a.dtype == torch.float64 else torch.float32
    a, c = a.to(acc), c.to(acc)
    r, n = a.size(0), c.size(0)
    rows = torch.arange(row_begin, row_begin + r, device=a.device)
    if num_negatives == 0:
        logits = (a @ c.t()) * inv_tau  # R x N: reference only
        if exclude_self:
            self_mask = rows.unsqueeze(1) == torch.arange(n, device=a.device).unsqueeze(0)
            logits = logits.masked_fill(self_mask, float("-inf"))
        lse = torch.logsumexp(logits, dim=1) if n else logits.new_zeros(r) + 0 * logits.sum()  # (kept on the graph)
    else:
        idx = sample_negatives(rows, n, num_negatives, seed)
        neg = (a.unsqueeze(1) * c[idx]).sum(-1) * inv_tau  # [R, K]
        if pos_offset >= 0:
            neg = torch.cat([((a * c[rows]).sum(-1) * inv_tau).unsqueeze(1), neg], dim=1)
        lse = torch.logsumexp(neg, dim=1)
    loss = lse
    if pos_offset >= 0 and r:
        loss = lse - (a * c[(rows + pos_offset) % n]).sum(-1) * inv_tau
    return loss, lse


def gram_lse(z: Tensor, inv_tau: float, exclude_self: bool) -> Tensor:
    """Reference of ``torch.ops.gkdfast.gram_lse`` (see csrc/ops/gram_lse.h): ``lse [N]`` of the rows of
    ``inv_tau · z zᵀ`` (diagonal left out when ``exclude_self``), in the accumulation dtype.  ``z``: ``[N, d]``.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> logits = (2.0 * z @ z.t()).fill_diagonal_(float("-inf"))
        >>> gram_lse(z, 2.0, exclude_self=True).shape, torch.allclose(gram_lse(z, 2.0, True), logits.logsumexp(1))
        (torch.Size([3]), True)
    """
    return infonce(z, z, inv_tau, -1, exclude_self, 0, 0)[1]


# ------------------------------------------------------------------------------ losses, from their definitions
def _reduce(rows: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.mean()


def crd(student: Tensor, teacher: Tensor, tau: float = 0.075, num_negatives=None, seed=None,
        symmetric: bool = False, reduction: str = "mean") -> Tensor:
    """Dense G-CRD: ``mean_i [logsumexp_j (ẑS_i·ẑT_j/τ) − ẑS_i·ẑT_i/τ]`` (sampled: over {i} ∪ negatives).
    ``student``, ``teacher``: ``[N, d]``; returns a scalar (``[N]`` with ``reduction="none"``).

    Example:
        >>> _ = torch.manual_seed(0); s, t = torch.randn(8, 4), torch.randn(8, 4)
        >>> torch.allclose(crd(s, t), gkdfast.losses.crd(s, t))
        True
        >>> torch.allclose(crd(s, t, num_negatives=3, seed=1), gkdfast.losses.crd(s, t, num_negatives=3, seed=1))
        True
    """
    s = F.normalize(student, dim=1, eps=1e-8)
    t = F.normalize(teacher.to(student.dtype), dim=1, eps=1e-8)
    n = s.size(0)
    k = 0 if num_negatives is None or num_negatives >= n - 1 else int(num_negatives)

    def one(x, y, sd):
        if k == 0:
            logits = x @ y.t() / tau
            return torch.logsumexp(logits, 1) - logits.diagonal()
        idx = sample_negatives(torch.arange(n, device=x.device), n, k, sd)
        pos = (x * y).sum(-1, keepdim=True) / tau
        neg = torch.einsum("nd,nkd->nk", x, y[idx]) / tau
        return torch.logsumexp(torch.cat([pos, neg], 1), 1) - pos.squeeze(1)

    rows = one(s, t, seed or 0)
    if symmetric:
        rows = 0.5 * (rows + one(t, s, _second_seed(seed or 0)))
    return _reduce(rows, reduction)


def _second_seed(seed: int) -> int:
    # The reverse direction of a symmetric sampled crd draws an independent stream.
    return (seed ^ 0x5DEECE66D) & ((1 << 63) - 1)


def nt_xent(z1: Tensor, z2: Tensor, tau: float = 0.5, reduction: str = "mean") -> Tensor:
    """GRACE's loss with full N x N similarity matrices, averaged over both directions.  ``z1``, ``z2``:
    ``[N, d]``; returns a scalar (``[N]`` with ``reduction="none"``).

    Example:
        >>> _ = torch.manual_seed(0); z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
        >>> torch.allclose(nt_xent(z1, z2, tau=0.5), gkdfast.losses.nt_xent(z1, z2, tau=0.5))
        True
    """
    u = F.normalize(z1, dim=1, eps=1e-8)
    v = F.normalize(z2.to(z1.dtype), dim=1, eps=1e-8)

    def semi(x, y):  # in log space: exp(1 / tau) overflows float32 for tau below ~0.011
        refl = x @ x.t() / tau
        between = x @ y.t() / tau
        eye = torch.eye(x.size(0), dtype=torch.bool, device=x.device)
        lse = torch.logsumexp(torch.cat([refl.masked_fill(eye, float("-inf")), between], 1), 1)
        return lse - between.diagonal()

    return _reduce(0.5 * (semi(u, v) + semi(v, u)), reduction)


def gcn_adjacency_power_dense(edge_index: Tensor, num_nodes: int, hops: int, edge_weight=None,
                              dtype=torch.float64) -> Tensor:
    """Dense ``(D^-1/2 (A+I) D^-1/2)^hops`` with ``A[i, j] = w`` for each edge ``j -> i`` (duplicates add).
    ``edge_index``: ``[2, E]`` (row 0 sources), ``edge_weight``: ``[E]``; returns ``[N, N]``.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
        >>> w = gcn_adjacency_power_dense(g.edge_index, 3, hops=2)
        >>> rowptr, col, val = gkdfast.losses.adjacency_power(g, hops=2)  # the sparse W the kernels use
        >>> rows = torch.repeat_interleave(torch.arange(3), rowptr.diff())
        >>> w.shape, torch.allclose(w, torch.zeros(3, 3, dtype=torch.float64).index_put((rows, col), val))
        (torch.Size([3, 3]), True)
    """
    a = torch.zeros(num_nodes, num_nodes, dtype=dtype, device=edge_index.device)
    w = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device) if edge_weight is None \
        else edge_weight.to(dtype)
    a.index_put_((edge_index[1].long(), edge_index[0].long()), w, accumulate=True)
    a = a + torch.eye(num_nodes, dtype=dtype, device=a.device)
    dinv = a.sum(1).rsqrt()
    a_hat = dinv.unsqueeze(1) * a * dinv.unsqueeze(0)
    return torch.linalg.matrix_power(a_hat, hops)


def ncontrast(edge_index: Tensor, num_nodes: int, z: Tensor, tau: float = 1.0, hops: int = 1,
              edge_weight=None, reduction: str = "mean", nodes=None) -> Tensor:
    """Dense Graph-MLP neighbour contrastive loss over all N (the definition in docs/ops.md):
    ``−mean_{i∈P} log(Σ_{j≠i} W_ij e^{s_ij} / Σ_{j≠i} e^{s_ij})``, ``s = cos/τ``, ``W = Â^hops``.
    ``nodes``: a batch (z holds its rows); W becomes the dense ``W[nodes][:, nodes]``.  ``edge_index``:
    ``[2, E]``; ``z``: ``[N, d]`` (``[B, d]`` with ``nodes [B]``); returns a scalar (``[N]`` with ``"none"``).

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]))
        >>> _ = torch.manual_seed(0); z = torch.randn(4, 8)
        >>> ref = ncontrast(g.edge_index, 4, z, tau=0.5, hops=2)
        >>> ref.shape, torch.allclose(ref, gkdfast.losses.ncontrast(g, z, tau=0.5, hops=2))
        (torch.Size([]), True)
    """
    zn = F.normalize(z, dim=1, eps=1e-8)
    s = zn @ zn.t() / tau
    w = gcn_adjacency_power_dense(edge_index, num_nodes, hops, edge_weight, z.dtype)
    if nodes is not None:
        w = w[nodes][:, nodes]
    off = ~torch.eye(w.size(0), dtype=torch.bool, device=z.device)
    w = w * off
    has = (w > 0).any(1)
    s_off = s.masked_fill(~off, float("-inf"))
    den = torch.logsumexp(s_off, 1)
    num = torch.logsumexp(s_off.masked_fill(w <= 0, float("-inf")) + torch.log(w.clamp_min(1e-300)), 1)
    rows = torch.where(has, den - torch.where(has, num, torch.zeros_like(num)), torch.zeros_like(den))
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / has.sum().clamp_min(1)
