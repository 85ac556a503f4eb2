"""Benchmark inputs and peer implementations of message passing (``out[i] = reduce_{j->i} x[j]``).

Every peer is a function ``make(ctx, reduce) -> callable(x) -> out`` or ``None`` when it cannot run
that reduction (the caller reports "n/a").  ``ctx`` is a :class:`SpmmInputs` built once per graph, so
format conversions (CSR tensors, index copies) are never inside a timed region.

Peers:
    gkdfast            gkdfast.spmm (the kernel under test)
    torch_csr          torch.sparse.mm(A_csr, x): torch's CSR matmul with autograd; sum only
    torch_sparse_mm    torch.sparse.mm(A_csr, x, reduce=...) (sum/mean/amax/amin; has a backward on CPU)
    pyg_gather_scatter x[src] then index_add_ (sum) / scatter_reduce (mean, amax, amin), as PyG's
                       MessagePassing does; materialises an E x d message tensor
    torch_scatter      torch_scatter.segment_csr(x[col], rowptr, reduce) (when installed)
    torch_sparse       torch_sparse.matmul(SparseTensor, x, reduce) (when installed)
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

import gkdfast

REDUCES = ("sum", "mean", "max", "min")
_TORCH_REDUCE = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}


# ------------------------------------------------------------------------------------ graphs
def chung_lu(num_nodes: int, num_edges: int, seed: int = 0, exponent: float = 2.5) -> torch.Tensor:
    """A directed Chung–Lu graph with power-law expected degrees: ``[2, num_edges]`` int64.

    Both ends of every edge are drawn with probability proportional to ``(i + 1) ** (-1/(exponent-1))``
    (inverse-CDF sampling), then node ids are shuffled so hubs spread over the id range.  Duplicates and
    self-loops are kept (they are valid input and only make the benchmark slightly harder).
    """
    gen = torch.Generator().manual_seed(seed)
    w = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-1.0 / (exponent - 1.0))
    cdf = torch.cumsum(w, 0)
    cdf /= cdf[-1].clone()
    ends = torch.searchsorted(cdf, torch.rand(2 * num_edges, generator=gen, dtype=torch.float64))
    relabel = torch.randperm(num_nodes, generator=gen)
    return relabel[ends.clamp_max(num_nodes - 1)].view(2, num_edges)


def power_law(num_nodes: int, num_edges: int, seed: int = 0) -> gkdfast.Graph:
    """gkdfast.data.power_law_graph when available, else our own Chung–Lu generator."""
    try:
        from gkdfast.data import power_law_graph

        return power_law_graph(num_nodes, num_edges, seed=seed, directed=True)
    except (ImportError, AttributeError, TypeError):
        return gkdfast.Graph(chung_lu(num_nodes, num_edges, seed), num_nodes)


@dataclass
class SpmmInputs:
    """One graph in every format the peers need (built once, outside timed regions)."""
    graph: gkdfast.Graph
    src: torch.Tensor          # [E] int64, CSR order
    dst: torch.Tensor          # [E] int64, CSR order
    rowptr64: torch.Tensor     # [N+1] int64
    col64: torch.Tensor        # [E] int64
    csr: torch.Tensor          # torch sparse CSR [N, N], A[i, j] = 1 for j -> i
    num_nodes: int
    num_edges: int
    dim: int
    index_bytes: int

    @classmethod
    def build(cls, graph: gkdfast.Graph, dim: int, dtype=torch.float32) -> "SpmmInputs":
        graph.transpose_csr()  # cached now, so backward timings do not include building it
        rowptr64, col64 = graph.rowptr.long(), graph.col.long()
        n = graph.num_nodes
        csr = torch.sparse_csr_tensor(rowptr64, col64, torch.ones(graph.num_edges, dtype=dtype), (n, n))
        return cls(graph, col64, graph.dst.long(), rowptr64, col64, csr, n, graph.num_edges, dim,
                   graph.col.element_size())

    @property
    def device(self) -> torch.device:
        return self.col64.device

    def to(self, device) -> "SpmmInputs":
        """The same inputs on ``device`` (the graph's cached CSR and transposed CSR move with it)."""
        device = torch.device(device)
        graph = self.graph.to(device)
        graph.transpose_csr()
        return SpmmInputs(graph, self.src.to(device), self.dst.to(device), self.rowptr64.to(device),
                          self.col64.to(device), self.csr.to(device), self.num_nodes, self.num_edges, self.dim,
                          self.index_bytes)

    def features(self, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
        x = torch.randn(self.num_nodes, self.dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        return x.to(self.device)


# ------------------------------------------------------------------------------------ peers
def _gkdfast(ctx: SpmmInputs, reduce: str):
    return lambda x: gkdfast.spmm(ctx.graph, x, reduce)


def _torch_csr(ctx: SpmmInputs, reduce: str):
    if reduce != "sum":
        return None
    return lambda x: torch.sparse.mm(ctx.csr, x)


def _torch_sparse_mm(ctx: SpmmInputs, reduce: str):
    r = _TORCH_REDUCE[reduce]
    return lambda x: torch.sparse.mm(ctx.csr, x, r)


def _pyg_gather_scatter(ctx: SpmmInputs, reduce: str):
    n, d, src, dst = ctx.num_nodes, ctx.dim, ctx.src, ctx.dst

    def run(x):
        msg = x.index_select(0, src)
        if reduce == "sum":
            return x.new_zeros(n, d).index_add_(0, dst, msg)
        idx = dst.view(-1, 1).expand(-1, d)
        if reduce == "mean":  # as torch_geometric.utils.scatter(reduce="mean"): a sum and a count, then divide
            count = x.new_zeros(n).scatter_add_(0, dst, x.new_ones(dst.numel())).clamp_(min=1)
            return x.new_zeros(n, d).scatter_add_(0, idx, msg) / count.unsqueeze(1)
        return x.new_zeros(n, d).scatter_reduce_(0, idx, msg, _TORCH_REDUCE[reduce], include_self=False)

    return run


def _torch_scatter(ctx: SpmmInputs, reduce: str):
    ts = optional_module("torch_scatter")
    if ts is None:
        return None
    return lambda x: ts.segment_csr(x.index_select(0, ctx.col64), ctx.rowptr64, reduce=reduce)


_SPARSE_TENSORS: Dict[int, object] = {}


def _torch_sparse(ctx: SpmmInputs, reduce: str):
    tsp = optional_module("torch_sparse")
    if tsp is None:
        return None
    key = id(ctx)
    if key not in _SPARSE_TENSORS:  # adj_t layout: rows are destinations
        _SPARSE_TENSORS[key] = tsp.SparseTensor(rowptr=ctx.rowptr64, col=ctx.col64,
                                                sparse_sizes=(ctx.num_nodes, ctx.num_nodes))
    adj = _SPARSE_TENSORS[key]
    return lambda x: tsp.matmul(adj, x, reduce=reduce)


PEERS: Dict[str, Callable[[SpmmInputs, str], Optional[Callable]]] = {
    "gkdfast": _gkdfast,
    "torch_csr": _torch_csr,
    "torch_sparse_mm": _torch_sparse_mm,
    "pyg_gather_scatter": _pyg_gather_scatter,
    "torch_scatter": _torch_scatter,
    "torch_sparse": _torch_sparse,
}


def optional_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or installed against another torch (undefined symbols)
        return None


def make(peer: str, ctx: SpmmInputs, reduce: str) -> Optional[Callable]:
    """The peer's forward function for ``reduce``, or None when it cannot run it here."""
    return PEERS[peer](ctx, reduce)


def fwd_bwd(fn: Callable, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """A closure running forward + backward w.r.t. ``x`` (``x.grad`` reset each time)."""
    def run():
        x.grad = None
        fn(x).backward(grad)
    return run


def max_difference(peer: str, ctx: SpmmInputs, reduce: str) -> Optional[float]:
    """Largest |peer - gkdfast| over the forward output and the gradient w.r.t. ``x`` (for an upstream
    gradient of ones), relative to the largest gkdfast value; None when the peer cannot run the case.
    Checked once per case before timing: a peer computing something else would make the ratio
    meaningless (max/min ties may pick other edges, but the values agree)."""
    def both(name):
        fn = make(name, ctx, reduce)
        if fn is None:
            return None
        x = ctx.features().requires_grad_()
        out = fn(x)
        (g,) = torch.autograd.grad(out, x, torch.ones_like(out), allow_unused=True)
        return out.detach(), (torch.zeros_like(x) if g is None else g)

    theirs = both(peer)
    if theirs is None:
        return None
    ours = both("gkdfast")
    worst = 0.0
    for a, b in zip(ours, theirs):
        scale = max(float(a.abs().max()), 1e-30) if a.numel() else 1.0
        worst = max(worst, float((a - b).abs().max()) / scale if a.numel() else 0.0)
    return worst


# ------------------------------------------------------------------------------------ machine
def copy_bandwidth(num_bytes: int = 256 << 20, repeats: int = 5, device="cpu") -> float:
    """Memory bandwidth of ``device`` in GB/s for a large tensor copy (bytes read + written)."""
    device = torch.device(device)
    n = num_bytes // 4
    a = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    b = torch.empty_like(a)
    b.copy_(a)  # touch the pages
    wait = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        wait()
        t0 = time.perf_counter()
        b.copy_(a)
        wait()
        best = min(best, time.perf_counter() - t0)
    return 2 * n * 4 / best / 1e9


def spmm_bytes(ctx: SpmmInputs, elem_bytes: int = 4, backward: bool = False) -> int:
    """Bytes an SpMM must move at least under a gather model: one feature row read per edge, the
    output written once, the indices read once.  fwd+bwd counts the transposed pass again."""
    one = ctx.num_edges * ctx.dim * elem_bytes + ctx.num_nodes * ctx.dim * elem_bytes \
        + (ctx.num_edges + ctx.num_nodes + 1) * ctx.index_bytes
    return 2 * one if backward else one


def stream_vs(fn: Callable[[], object], num_bytes: int, repeats: int = 7, max_bytes: int = 2 << 30) -> dict:
    """Times ``fn`` against *streaming* ``num_bytes`` (a sequential read, ``torch.sum`` of a float32
    buffer), interleaved in one loop so both see the same machine load; keeps the best of each.

    Returns ``{"ms", "stream_ms", "ratio" (= ms / stream_ms), "stream_gbps"}``.  The buffer is capped
    at ``max_bytes`` (then the stream time is scaled linearly); the default 2 GiB is well above the
    last-level caches of current CPUs, so it measures memory bandwidth, not cache bandwidth.
    For SpMM, ``num_bytes = E * d * 4``: the feature rows the gather reads, one per edge.
    """
    n = max(1, min(num_bytes, max_bytes) // 4)
    buf = torch.ones(n, dtype=torch.float32)
    scale = num_bytes / (n * 4)
    fn()
    buf.sum()  # warm-up: pages touched, code paths loaded
    best, best_stream = float("inf"), float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        buf.sum()
        best_stream = min(best_stream, time.perf_counter() - t0)
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    del buf
    stream = best_stream * scale
    return {"ms": best * 1e3, "stream_ms": stream * 1e3, "ratio": best / stream,
            "stream_gbps": num_bytes / stream / 1e9}
