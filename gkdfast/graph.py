"""The :class:`Graph` object: CSR by destination, its cached transpose, degrees.

Messages flow from ``edge_index[0]`` (source ``j``) to ``edge_index[1]`` (destination ``i``).
A Graph stores the edges sorted by destination (a stable sort, so edges into one node keep the
order they were given in) and remembers the permutation, so that per-edge tensors (edge weights,
``sddmm`` outputs, ``edge_softmax`` inputs) are always exchanged with the user *in the order of the
edge_index the graph was built from*.  The transposed CSR (by source), used by every backward pass
instead of atomics, is built on first use and cached.
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Optional, Tuple

import torch
from torch import Tensor
from gkdfast._segments import segment_ids
from gkdfast._tracing import tracing

__all__ = ["Graph"]

_INDEX_DTYPES = (torch.int32, torch.int64)


def _as_index(t, what: str) -> Tensor:
    if not isinstance(t, Tensor):
        if hasattr(t, "edge_index") or hasattr(t, "adj_t"):  # a PyG Data / HeteroData-like object
            raise TypeError(f"gkdfast.Graph: {what} must be a tensor, got {type(t).__name__}; build a graph from "
                            "a PyG object with gkdfast.Graph.from_pyg(data)")
        try:
            t = torch.as_tensor(t)
        except Exception as exc:  # pragma: no cover - message only
            raise TypeError(f"gkdfast.Graph: {what} must be a tensor, got {type(t).__name__}") from exc
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(
            f"gkdfast.Graph: {what} must be an integer tensor (int32 or int64), got {t.dtype}"
            + (" (NaN is never a valid index)" if t.is_floating_point() and bool(torch.isnan(t).any()) else ""))
    if t.dtype not in _INDEX_DTYPES:
        t = t.to(torch.int64)
    return t


def check_to_device(device, owner: str):
    """``device`` for ``owner.to(device)``; a dtype there (as ``Tensor.to`` would take) is a TypeError
    that says what to do instead, not torch's "invalid combination of arguments" from deep inside."""
    if isinstance(device, torch.dtype):
        raise TypeError(f"{owner}.to takes a device, not a dtype ({device}): cast the tensors that need it "
                        "(e.g. data.x = data.x.double()); a Graph's indices: Graph.to(index_dtype=torch.int32)")
    return device


def derived_cache(owner, name: str) -> dict:
    """The dict ``name`` among what other modules derive from ``owner`` (a :class:`Graph` or a
    ``HeteroGraph``) and keep while it lives: self-loop graphs, ncontrast's positives, merged relations.

    Kept on the object, not in a module-level table keyed by it: ``torch.compile`` guards what it reads
    from an input's attributes per call, but took a weak-keyed table's entry for the first graph as a
    constant, so a function compiled on graph A and called with graph B of the same size ran on A's
    self-loop graph or positives.  Not pickled (:meth:`Graph.__getstate__`) and not carried by ``.to``.
    """
    cache = getattr(owner, "_cache", None)  # (not owner.__dict__.setdefault: torch 2.11's Dynamo cannot trace it)
    if cache is None:
        cache = owner._cache = {}
    return cache.setdefault(name, {})


def cache_mode():
    """The context the graph's cached tensors (destinations, transposed CSR, inverse permutation,
    derived graphs) are built in: outside inference mode, since an inference tensor kept in a cache
    would make every later autograd use of the graph fail ("Inference tensors cannot be saved for
    backward")."""
    if tracing():  # (Dynamo cannot trace is_inference_mode_enabled; a trace is no cache)
        return contextlib.nullcontext()
    return torch.inference_mode(False) if torch.is_inference_mode_enabled() else contextlib.nullcontext()


class Graph:
    """A directed graph stored as CSR by destination, with a cached transposed CSR.

    Args:
        edge_index: ``[2, E]`` int32 or int64 tensor; ``edge_index[0]`` are sources ``j``,
            ``edge_index[1]`` destinations ``i`` (messages flow ``j -> i``, as in PyG).
        num_nodes: number of nodes ``N``; defaults to ``max(edge_index) + 1`` (0 for no edges).
        edge_weight: optional ``[E]`` floating tensor, in the order of ``edge_index``; used by
            :func:`gkdfast.spmm` when no explicit ``edge_weight`` is passed.

    Index dtype is kept (int32 stays int32 while ``E < 2**31``), so large graphs use half the memory.
    ``col`` is the graph's own copy of the sources, also for an ``edge_index`` already sorted by destination
    (a view of it kept all 2 x E indices alive, and an edit of ``edge_index`` edited the graph).  Building a
    Graph validates the indices (it reads them), so under ``torch.compile(fullgraph=True)`` build it
    outside the compiled function and pass it in.  From PyG: :meth:`Graph.from_pyg`.

    Example:
        >>> import torch, gkdfast
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2], [1, 2, 0]]))
        >>> g.num_nodes, g.num_edges
        (3, 3)
        >>> g.in_degree()
        tensor([1, 1, 1])
    """

    def __init__(self, edge_index: Tensor, num_nodes: Optional[int] = None, edge_weight: Optional[Tensor] = None,
                 *, validate: bool = True):
        edge_index = _as_index(edge_index, "edge_index")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"gkdfast.Graph: edge_index must have shape [2, num_edges], got {list(edge_index.shape)}")
        num_edges = edge_index.size(1)
        if num_nodes is None:
            num_nodes = int(edge_index.max()) + 1 if num_edges > 0 else 0
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, numbers.Integral) and not (
                isinstance(num_nodes, Tensor) and num_nodes.numel() == 1 and not num_nodes.is_floating_point()):
            raise TypeError(f"gkdfast.Graph: num_nodes must be an int, got {num_nodes!r}")
        num_nodes = int(num_nodes)
        if num_nodes < 0:
            raise ValueError(f"gkdfast.Graph: num_nodes must be >= 0, got {num_nodes}")
        if validate and num_edges > 0:
            lo, hi = int(edge_index.min()), int(edge_index.max())
            if lo < 0:
                col = int((edge_index < 0).nonzero()[0, 1])
                raise ValueError(f"gkdfast.Graph: edge_index has a negative index ({lo}), first at edge {col}")
            if hi >= num_nodes:
                col = int((edge_index >= num_nodes).nonzero()[0, 1])
                raise ValueError(
                    f"gkdfast.Graph: edge_index has index {hi} but num_nodes is {num_nodes} "
                    f"(indices must be in [0, {num_nodes})); first offending edge is {col}")
        index_dtype = edge_index.dtype
        if index_dtype == torch.int32 and num_edges >= 2**31 - 1:
            index_dtype = torch.int64
        src, dst = edge_index[0], edge_index[1]
        # Stable sort by destination; skip it (and the permutation) when already sorted.
        if num_edges > 1 and not bool((dst[1:] >= dst[:-1]).all()):
            dst_sorted, perm = torch.sort(dst.to(torch.int64), stable=True)
            src = src[perm]
            dst = dst_sorted
        else:
            perm = None
        counts = torch.bincount(dst.to(torch.int64), minlength=num_nodes) if num_edges else \
            torch.zeros(num_nodes, dtype=torch.int64, device=edge_index.device)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=edge_index.device)
        torch.cumsum(counts, 0, out=rowptr[1:])
        col = src.to(index_dtype).contiguous()
        if col.untyped_storage().data_ptr() == edge_index.untyped_storage().data_ptr():
            # A view of edge_index (already sorted, same dtype; also an expanded one): kept as it was, it held
            # all 2 x E of the input alive for the E sources (helper 117) and shared the caller's buffer.
            col = col.clone()
        self._init_from_csr(rowptr.to(index_dtype), col, num_nodes, perm, edge_weight)

    # ------------------------------------------------------------------ construction helpers
    def _init_from_csr(self, rowptr: Tensor, col: Tensor, num_nodes: int, perm: Optional[Tensor],
                       edge_weight: Optional[Tensor]):
        if rowptr.dim() != 1 or rowptr.size(0) != num_nodes + 1:
            raise ValueError(f"gkdfast.Graph: rowptr must have num_nodes + 1 = {num_nodes + 1} entries, got "
                             f"shape {list(rowptr.shape)}")
        self.rowptr = rowptr  # (num_nodes is read from its length)
        self.col = col
        self.perm = perm  # CSR position -> input edge id (None: input was already in CSR order)
        self._inv_perm: Optional[Tensor] = None
        self._transpose: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        self._dst: Optional[Tensor] = None
        self._cache: dict = {}  # see derived_cache
        self.edge_weight = None
        if edge_weight is not None:
            self.edge_weight = self.check_edge_values(edge_weight, "edge_weight")

    @classmethod
    def _from_parts(cls, rowptr, col, num_nodes, perm=None, edge_weight=None) -> "Graph":
        g = cls.__new__(cls)
        g._init_from_csr(rowptr, col, num_nodes, perm, edge_weight)
        return g

    @classmethod
    def from_csr(cls, rowptr: Tensor, col: Tensor, num_nodes: Optional[int] = None,
                 edge_weight: Optional[Tensor] = None) -> "Graph":
        """Builds a Graph from CSR by destination: row ``i`` lists the sources of ``i``'s in-edges.

        Args:
            rowptr: ``[N + 1]`` non-decreasing, ``rowptr[0] == 0``, ``rowptr[-1] == E``.
            col: ``[E]`` source index of each edge.
        Per-edge tensors are then in CSR order.

        Example:
            >>> g = Graph.from_csr(torch.tensor([0, 1, 3]), torch.tensor([1, 0, 1]))
            >>> g.edge_index
            tensor([[1, 0, 1],
                    [0, 1, 1]])
        """
        rowptr = _as_index(rowptr, "rowptr")
        col = _as_index(col, "col")
        if rowptr.dim() != 1 or rowptr.numel() < 1 or col.dim() != 1:
            raise ValueError("gkdfast.Graph.from_csr: rowptr must be 1-D with N+1 entries and col 1-D")
        n = rowptr.numel() - 1
        if num_nodes is not None and int(num_nodes) != n:
            raise ValueError(f"gkdfast.Graph.from_csr: rowptr describes {n} nodes but num_nodes={num_nodes}")
        if int(rowptr[0]) != 0 or int(rowptr[-1]) != col.numel():
            raise ValueError(f"gkdfast.Graph.from_csr: need rowptr[0] == 0 and rowptr[-1] == len(col) "
                             f"({col.numel()}), got {int(rowptr[0])} and {int(rowptr[-1])}")
        if n > 0 and bool((rowptr[1:] < rowptr[:-1]).any()):
            raise ValueError("gkdfast.Graph.from_csr: rowptr must be non-decreasing")
        if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n):
            raise ValueError(f"gkdfast.Graph.from_csr: col indices must be in [0, {n}), "
                             f"got range [{int(col.min())}, {int(col.max())}]")
        dtype = torch.int64 if torch.int64 in (rowptr.dtype, col.dtype) else torch.int32
        return cls._from_parts(rowptr.to(dtype).contiguous(), col.to(dtype).contiguous(), n, None, edge_weight)

    @classmethod
    def from_scipy(cls, matrix, num_nodes: Optional[int] = None, dtype: torch.dtype = torch.float32) -> "Graph":
        """From a square scipy.sparse matrix ``A`` with ``A[src, dst] != 0`` for an edge ``src -> dst``
        (PyG's ``from_scipy_sparse_matrix`` convention).  Stored values become ``edge_weight`` of
        ``dtype`` (float32 by default, the features' usual dtype; ``torch.float64`` keeps double weights
        for float64 features: spmm needs the two to match); when every stored value is 1 there is no
        ``edge_weight``, as in :meth:`from_sparse`.  Every stored entry is an edge, as in PyG:
        duplicate entries stay parallel edges and an explicitly stored zero a weight-0 edge (call
        ``matrix.sum_duplicates()`` and ``matrix.eliminate_zeros()`` first for one edge per nonzero;
        :meth:`from_sparse` coalesces a torch COO tensor instead).

        Example:
            >>> import scipy.sparse as sp
            >>> g = Graph.from_scipy(sp.coo_matrix(([1.0], ([0], [1])), shape=(2, 2)))
        """
        import numpy as np

        coo = matrix.tocoo()
        if coo.shape[0] != coo.shape[1]:
            raise ValueError(f"gkdfast.Graph.from_scipy: adjacency must be square, got {coo.shape}")
        ei = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"gkdfast.Graph.from_scipy: dtype must be torch.float32 or torch.float64, got {dtype}")
        w = torch.from_numpy(np.asarray(coo.data, dtype=np.float64 if dtype == torch.float64 else np.float32))
        if num_nodes is not None and num_nodes < coo.shape[0]:
            raise ValueError(f"gkdfast.Graph.from_scipy: num_nodes={num_nodes} is smaller than the matrix "
                             f"({coo.shape[0]} x {coo.shape[1]})")
        n = coo.shape[0] if num_nodes is None else num_nodes
        return cls(ei, n, None if bool((w == 1).all()) else w)

    @classmethod
    def from_pyg(cls, data) -> "Graph":
        """From a torch_geometric ``Data`` (uses ``edge_index``, ``num_nodes`` and ``edge_weight``
        when present).

        Example:
            >>> from torch_geometric.data import Data
            >>> g = Graph.from_pyg(Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2))
        """
        ei = getattr(data, "edge_index", None)
        if ei is None:
            adj_t = getattr(data, "adj_t", None)
            if adj_t is None:
                raise ValueError("gkdfast.Graph.from_pyg: data has neither edge_index nor adj_t")
            return cls.from_sparse(adj_t, transposed=True)
        return cls(ei, data.num_nodes, getattr(data, "edge_weight", None))

    @classmethod
    def from_sparse(cls, adj, transposed: bool = False) -> "Graph":
        """From a torch sparse COO/CSR tensor or a torch_sparse ``SparseTensor``.

        ``adj[src, dst]`` is an edge ``src -> dst`` (PyG's ``to_torch_coo_tensor(edge_index)`` and
        ``SparseTensor(row=edge_index[0], col=edge_index[1])``); pass ``transposed=True`` for an
        ``adj_t`` (rows are destinations).  Non-unit values become ``edge_weight``.  An uncoalesced COO
        tensor is coalesced first: duplicate entries become one edge with their summed value (unlike
        :meth:`from_scipy`, which keeps them as parallel edges).

        Example:
            >>> a = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.ones(1), (2, 2))
            >>> Graph.from_sparse(a).num_edges
            1
        """
        if isinstance(adj, Tensor):
            if adj.layout == torch.sparse_csr:
                adj = adj.to_sparse_coo()
            if adj.layout != torch.sparse_coo:
                raise TypeError(f"gkdfast.Graph.from_sparse: expected a sparse tensor, got layout {adj.layout}")
            adj = adj.coalesce()
            row, col = adj.indices()
            values = adj.values()
            shape = adj.shape
        elif type(adj).__name__ == "SparseTensor" and hasattr(adj, "coo"):
            row, col, values = adj.coo()
            shape = adj.sizes()
        else:
            raise TypeError(f"gkdfast.Graph.from_sparse: unsupported type {type(adj).__name__}")
        if shape[0] != shape[1]:
            raise ValueError(f"gkdfast.Graph.from_sparse: adjacency must be square, got {tuple(shape)}")
        if values is not None and values.dtype == torch.bool:  # a stored False is no edge
            keep = values
            row, col, values = row[keep], col[keep], None
        src, dst = (col, row) if transposed else (row, col)
        weight = None
        if values is not None and values.numel() and values.dtype != torch.bool and not bool((values == 1).all()):
            # integer values (counts, coalesced duplicates) are weights too, as from_scipy takes them
            weight = values if values.is_floating_point() else values.to(torch.float32)
        return cls(torch.stack([src, dst]), int(shape[0]), weight)

    # ------------------------------------------------------------------ basic properties
    @property
    def num_nodes(self) -> int:
        """Number of nodes N (``rowptr`` has N + 1 entries).  Read from a tensor's size, so that under
        ``torch.compile`` it is a size like the others, not a constant: a plain attribute made every
        graph size a recompile (lsp failed on the ninth size with the recompile limit)."""
        return self.rowptr.size(0) - 1

    @property
    def num_edges(self) -> int:
        """Number of directed edges E (an undirected edge stored both ways counts twice)."""
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        """Device of the CSR arrays; node and edge tensors passed to the ops must be on it."""
        return self.col.device

    @property
    def index_dtype(self) -> torch.dtype:
        """``torch.int32`` or ``torch.int64``: the dtype of ``rowptr`` and ``col``."""
        return self.col.dtype

    @property
    def dst(self) -> Tensor:
        """Destination of each edge, in CSR order ([E], the graph's index dtype)."""
        if self._dst is None:
            with cache_mode():
                # output_size: a static length, so torch.compile can trace it (no data-dependent size)
                dst = segment_ids(self.in_degree(), self.num_edges, dtype=self.index_dtype)
            return self._keep("_dst", dst)
        return self._dst

    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` (source, destination) in the order the graph was built from."""
        ei = torch.stack([self.col, self.dst])
        return ei if self.perm is None else ei[:, self.inv_perm]

    @property
    def inv_perm(self) -> Tensor:
        """``[E]``: input edge id -> CSR position, the inverse of ``perm`` (built once, then cached);
        ``arange(E)`` when the input edges were already in CSR order (``perm`` is None)."""
        if self.perm is None:
            return torch.arange(self.num_edges, device=self.device)
        if self._inv_perm is None:
            with cache_mode():
                inv = torch.empty_like(self.perm)
                inv[self.perm] = torch.arange(self.perm.numel(), device=self.perm.device)
            return self._keep("_inv_perm", inv)
        return self._inv_perm

    def _keep(self, attr: str, value):
        """``value``, stored as the cache ``attr`` unless this thread traces for torch.compile / export
        (:func:`gkdfast._tracing.tracing`): the caches are then computed in the traced code but not stored.
        A stored trace-time value was a FakeTensor after a non-strict ``torch.export`` (later eager calls
        returned FakeTensors), or, replayed after a compiled call under ``torch.inference_mode()``, an
        inference tensor that broke the next training step.  Build the caches with one eager call per
        graph first (README, "torch.compile")."""
        if not tracing():
            setattr(self, attr, value)
        return value

    def in_degree(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        """Number of in-edges per node, ``[N]`` (int64 unless ``dtype`` is given)."""
        deg = (self.rowptr[1:] - self.rowptr[:-1]).to(torch.int64)
        return deg if dtype is None else deg.to(dtype)

    def out_degree(self, dtype: Optional[torch.dtype] = None) -> Tensor:
        """Number of out-edges per node, ``[N]``."""
        t_rowptr = self.transpose_csr()[0]
        deg = (t_rowptr[1:] - t_rowptr[:-1]).to(torch.int64)
        return deg if dtype is None else deg.to(dtype)

    def isolated_nodes(self) -> Tensor:
        """Boolean ``[N]``: nodes with neither in- nor out-edges."""
        return (self.in_degree() == 0) & (self.out_degree() == 0)

    # ------------------------------------------------------------------ transpose (cached)
    def transpose_csr(self) -> Tuple[Tensor, Tensor, Tensor]:
        """CSR by *source*: ``(t_rowptr [N+1], t_col [E] destinations, t_eid [E])`` where
        ``t_eid[k]`` is the CSR position of the k-th transposed entry.  Built once, cached."""
        if self._transpose is None:
            with cache_mode():
                transpose = self._build_transpose()
            return self._keep("_transpose", transpose)
        return self._transpose

    def _build_transpose(self) -> Tuple[Tensor, Tensor, Tensor]:
        """The transposed CSR of :meth:`transpose_csr`, computed."""
        n, dt = self.num_nodes, self.index_dtype
        src = self.col.to(torch.int64)
        order = torch.sort(src, stable=True)[1] if self.num_edges else src
        # Counts by index_add (a static [n] shape, unlike bincount) so torch.compile can trace
        # the transpose when a compiled function builds it.
        counts = torch.zeros(n, dtype=torch.int64, device=self.device).index_add_(
            0, src, torch.ones_like(src))
        t_rowptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        t_col = self.dst[order] if self.num_edges else self.col.new_empty(0)
        return t_rowptr.to(dt), t_col.to(dt).contiguous(), order.to(dt).contiguous()

    def t(self) -> "Graph":
        """The reversed graph (every edge ``j -> i`` becomes ``i -> j``), sharing cached CSRs.
        Its per-edge order is the transposed CSR order."""
        t_rowptr, t_col, t_eid = self.transpose_csr()
        g = Graph._from_parts(t_rowptr, t_col, self.num_nodes)
        inv = torch.empty_like(t_eid)
        inv[t_eid.long()] = torch.arange(t_eid.numel(), device=self.device, dtype=t_eid.dtype)
        g._transpose = (self.rowptr, self.col, inv)
        if self.edge_weight is not None:
            g.edge_weight = self.to_csr_order(self.edge_weight)[t_eid.long()]
        return g

    # ------------------------------------------------------------------ per-edge value order
    def check_edge_values(self, values: Tensor, name: str = "edge values", allow_heads: bool = False) -> Tensor:
        """``values`` unchanged if it is a floating ``[E]`` (or ``[E, heads]`` with ``allow_heads``) tensor
        on the graph's device; otherwise TypeError/ValueError naming ``name``, the shape and the device."""
        if not isinstance(values, Tensor):
            raise TypeError(f"gkdfast: {name} must be a tensor, got {type(values).__name__}")
        ok = values.dim() == 1 or (allow_heads and values.dim() == 2)
        if not ok or values.size(0) != self.num_edges:
            want = "[num_edges]" + (" or [num_edges, heads]" if allow_heads else "")
            raise ValueError(f"gkdfast: {name} must have shape {want} with num_edges={self.num_edges}, "
                             f"got {list(values.shape)}")
        if not values.is_floating_point():
            raise TypeError(f"gkdfast: {name} must be floating point, got {values.dtype}")
        if values.device != self.device:
            raise ValueError(f"gkdfast: {name} is on {values.device} but the graph is on {self.device}")
        return values

    def to_csr_order(self, values: Tensor) -> Tensor:
        """Per-edge values from the user's edge order to CSR order (differentiable)."""
        return values if self.perm is None else values[self.perm]

    def from_csr_order(self, values: Tensor) -> Tensor:
        """Per-edge values from CSR order back to the user's edge order (differentiable)."""
        return values if self.perm is None else values[self.inv_perm]

    # ------------------------------------------------------------------ transforms
    def add_self_loops(self, fill_value: float = 1.0) -> "Graph":
        """A new graph with one self-loop ``i -> i`` per node appended after the existing edges
        (existing self-loops are kept, as in PyG's ``add_self_loops``).  If the graph has
        ``edge_weight``, the loops get ``fill_value``.

        Example:
            >>> Graph(torch.tensor([[0], [1]])).add_self_loops().num_edges
            3
        """
        loops = torch.arange(self.num_nodes, device=self.device, dtype=self.index_dtype)
        ei = torch.cat([self.edge_index, torch.stack([loops, loops])], dim=1)
        w = None
        if self.edge_weight is not None:
            w = torch.cat([self.edge_weight, self.edge_weight.new_full((self.num_nodes,), fill_value)])
        return Graph(ei, self.num_nodes, w, validate=False)

    def gcn_norm_coefficients(self, edge_weight: Optional[Tensor] = None, dtype=torch.float32) -> Tensor:
        """``deg^{-1/2}`` of ``A + I`` (``[N]``), where ``deg_i = 1 + sum of in-edge weights``, and 0 where
        ``deg_i <= 0`` (negative weights can cancel the self-loop; PyG's ``gcn_norm`` also gives 0 for
        a zero degree).  :func:`gkdfast.spmm` with ``norm="gcn"`` uses it to apply ``D^-1/2 (A+I) D^-1/2``
        without materialising per-edge weights or the self-loops.  Without edge weights the result depends
        on the structure alone and is kept per dtype (GCN layers ask for it in every forward): the same
        tensor is returned each time, so do not modify it in place."""
        if edge_weight is None:
            edge_weight = self.edge_weight
        if edge_weight is None and not tracing():
            per_dtype = derived_cache(self, "gcn_dinv")
            dinv = per_dtype.get(dtype)
            if dinv is None:
                with cache_mode():  # an inference tensor kept here would break later training on the graph
                    dinv = per_dtype[dtype] = self._gcn_dinv(None, dtype)
            return dinv
        return self._gcn_dinv(edge_weight, dtype)

    def _gcn_dinv(self, edge_weight: Optional[Tensor], dtype) -> Tensor:
        """:meth:`gcn_norm_coefficients`, computed."""
        # Summed in at least float32, and in the widest of the weights', the asked and float32: float16
        # stops counting at 2,048 and bfloat16 at 256, which would mis-scale every hub.
        acc = torch.promote_types(dtype, torch.float32)
        if edge_weight is None:
            deg = self.in_degree(acc) + 1
        else:
            w = self.to_csr_order(edge_weight)
            w = w.to(torch.promote_types(w.dtype, acc)) if w.is_floating_point() else w.to(acc)
            deg = torch.zeros(self.num_nodes, dtype=w.dtype, device=self.device)
            deg = deg.index_add(0, self.dst.long(), w) + 1
        # (clamped before rsqrt so that a masked entry has a finite gradient, not 0 * inf)
        dinv = deg.clamp_min(torch.finfo(deg.dtype).tiny).rsqrt()
        return torch.where(deg <= 0, torch.zeros_like(dinv), dinv).to(dtype)  # (a NaN degree stays NaN)

    def reorder(self, method="rcm", communities: Optional[Tensor] = None):
        """Relabels the nodes for gather locality: returns ``(graph, reordering)``.

        ``method`` is ``"rcm"`` (reverse Cuthill–McKee), ``"degree"`` (hubs first), ``"community"``
        (grouped by ``communities``, an ``[N]`` partition) or an ``[N]`` permutation tensor (new id ->
        old id).  ``reordering`` (:class:`gkdfast.reorder.Reordering`)
        maps node tensors both ways: ``reordering.permute(x)`` before, ``reordering.unpermute(out)``
        after.  In-edge order is kept, so spmm results are bitwise the permuted originals.  See
        :func:`gkdfast.reorder.reorder_graph`; for a whole dataset use ``GraphData.reorder``.

        Example:
            >>> g = Graph(torch.tensor([[0, 1, 2], [2, 2, 0]]))
            >>> g2, r = g.reorder("degree")
            >>> x = torch.randn(3, 4)
            >>> import gkdfast
            >>> torch.equal(r.unpermute(gkdfast.spmm(g2, r.permute(x))), gkdfast.spmm(g, x))
            True
        """
        from gkdfast.reorder import reorder_graph

        return reorder_graph(self, method, communities)

    def to(self, device=None, index_dtype: Optional[torch.dtype] = None) -> "Graph":
        """The graph on another device and/or index dtype (cached transpose included).  A new Graph;
        index tensors already on ``device`` with that dtype are shared, as ``Tensor.to`` shares them.
        ``g.to(torch.int32)`` means ``g.to(index_dtype=torch.int32)``."""
        if isinstance(device, torch.dtype) and device in (torch.int32, torch.int64) and index_dtype is None:
            device, index_dtype = None, device
        device = torch.device(check_to_device(device, "Graph")) if device is not None else self.device
        if index_dtype is not None:
            if index_dtype not in (torch.int32, torch.int64):
                raise TypeError(f"Graph.to: index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
            if index_dtype == torch.int32 and max(self.num_nodes, self.num_edges) >= 2**31 - 1:
                raise ValueError(f"Graph.to: {self.num_nodes} nodes / {self.num_edges} edges do not fit int32 "
                                 "indices; keep int64")

        def mv(t, is_index=True):
            if t is None:
                return None
            return t.to(device=device, dtype=index_dtype if (is_index and index_dtype) else t.dtype)

        g = Graph._from_parts(mv(self.rowptr), mv(self.col), self.num_nodes,
                              None if self.perm is None else self.perm.to(device))
        if self.edge_weight is not None:
            g.edge_weight = self.edge_weight.to(device)
        if self._transpose is not None:
            g._transpose = tuple(mv(t) for t in self._transpose)
        return g

    def cuda(self) -> "Graph":
        """``self.to("cuda")``."""
        return self.to("cuda")

    def cpu(self) -> "Graph":
        """``self.to("cpu")``."""
        return self.to("cpu")

    # ------------------------------------------------------------------ pickling (torch.save, spawn, deepcopy)
    def __getstate__(self) -> dict:
        # The structure, not what is cheap to rebuild on first use (destinations, inverse permutation;
        # the transposed CSR, a sort, stays); a ``col`` that views the caller's [2, E] edge_index is
        # copied, so that storage (both rows) does not travel with it.
        state = self.__dict__.copy()
        state["_dst"] = state["_inv_perm"] = None
        state["_cache"] = {}
        col = state["col"]
        if col.device.type != "meta" and col.untyped_storage().nbytes() > col.numel() * col.element_size():
            state["col"] = col.clone()
        return state

    def __setstate__(self, state: dict) -> None:
        # defaults first: a pickle made before an attribute existed still loads
        self.__dict__.update(perm=None, edge_weight=None, _inv_perm=None, _transpose=None, _dst=None, _cache={})
        self.__dict__.update(state)
        self.__dict__.pop("num_nodes", None)  # (an attribute before it was read from rowptr)

    def __repr__(self) -> str:
        return (f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, device={self.device}, "
                f"index_dtype={self.index_dtype}{', weighted' if self.edge_weight is not None else ''})")
