"""Full-graph inference one layer at a time, rows in chunks: memory O(N·d), not O(layers·N·d) + autograd.

``model(x, graph)`` on a big graph holds every layer's activations plus the per-layer temporaries of
each op.  :func:`layerwise_inference` computes layer 1 for every node, then layer 2 from that, and
so on.  Each layer is computed for a block of destination rows at a time: the block's CSR row slice
(its in-edges) is multiplied against the whole previous-layer matrix, so apart from the two layer
matrices (which can be memory-mapped files) only one chunk's workspace is alive.

Graph-wide quantities are always taken from the *full* graph (GCN's degrees, GAT's self-loops), so
the result equals ``model(x, graph, return_hidden=True)`` in eval mode up to float summation order.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast._segments import segment_ids
from gkdfast.graph import Graph
from gkdfast.nn.gat_conv import GATConv
from gkdfast.nn.gcn_conv import GCNConv
from gkdfast.nn.gin_conv import GINConv
from gkdfast.nn.models import _Stack
from gkdfast.nn.sage_conv import SAGEConv
from gkdfast.nn.sparse_input import quiet_sparse_csr

__all__ = ["layerwise_inference", "alloc_matrix"]


def alloc_matrix(rows: int, cols: int, path: Optional[str] = None) -> Tensor:
    """A float32 ``[rows, cols]`` buffer: in memory, or a writable memory-mapped raw file at ``path``
    (created sparse, so untouched pages cost neither RAM nor disk).

    Example:
        >>> alloc_matrix(3, 2).shape
        torch.Size([3, 2])
    """
    if path is None or rows * cols == 0:
        return torch.empty(rows, cols)
    with open(path, "wb") as f:
        f.truncate(rows * cols * 4)
    return _open_matrix(rows, cols, path)


def _open_matrix(rows: int, cols: int, path: str) -> Tensor:
    """The writable memory map of an existing raw float32 ``[rows, cols]`` file (when another process
    created it, its writes and ours meet in the shared page cache)."""
    if rows * cols == 0:
        return torch.empty(rows, cols)
    return torch.from_numpy(np.memmap(path, dtype=np.float32, mode="r+", shape=(rows, cols)))


def _flush(t: Tensor) -> None:
    """Writes a mapped buffer's dirty pages back (no-op for an in-memory tensor)."""
    base = t.numpy().base if t.numel() else None
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    if isinstance(base, np.memmap):
        base.flush()


def _layer_file(i: int, layers) -> str:
    """File of layer ``i``'s output: the last is the logits, the one before the hidden embedding."""
    if i == len(layers) - 1:
        return "logits.f32"
    return "hidden.f32" if i == len(layers) - 2 else f"layer{i}.f32"


def _remove(path: Optional[str]) -> None:
    if path is not None and os.path.exists(path):
        os.remove(path)


class _Rows:
    """The in-edges of destination rows ``[a, b)`` of the full graph, as a ``[b-a, N]`` sparse CSR
    matrix with the given per-edge values (CSR order), plus helpers for the row block."""

    def __init__(self, graph: Graph, a: int, b: int):
        self.a, self.b, self.n = a, b, graph.num_nodes
        lo, hi = int(graph.rowptr[a]), int(graph.rowptr[b])
        self.lo, self.hi = lo, hi
        self.crow = (graph.rowptr[a:b + 1] - lo).long()
        self.col = graph.col[lo:hi].long()
        self.deg = (self.crow[1:] - self.crow[:-1])

    def matrix(self, values: Tensor) -> Tensor:
        quiet_sparse_csr()  # ("sparse CSR support is in beta": the CSR matmul is all we use)
        return torch.sparse_csr_tensor(self.crow, self.col, values, size=(self.b - self.a, self.n),
                                       check_invariants=False)

    def local_dst(self) -> Tensor:
        """Row (0-based within the block) of each edge of the block."""
        return segment_ids(self.deg)

    def aggregate(self, h: Tensor, reduce: str, weight: Optional[Tensor] = None) -> Tensor:
        """``reduce`` over each row's in-edges of ``w_e * h[src]`` (rows without in-edges give 0),
        as :func:`gkdfast.spmm` on the full graph restricted to these rows."""
        if self.hi == self.lo:
            return h.new_zeros(self.b - self.a, h.size(1))
        if reduce in ("sum", "mean"):
            vals = weight if weight is not None else torch.ones(self.hi - self.lo, dtype=h.dtype)
            out = self.matrix(vals.to(h.dtype)) @ h
            if reduce == "mean":
                out = out / self.deg.clamp_min(1).to(h.dtype).unsqueeze(-1)
            return out
        msgs = h[self.col]
        if weight is not None:
            msgs = msgs * weight.to(h.dtype).unsqueeze(-1)
        amax = "amax" if reduce == "max" else "amin"
        out = torch.zeros(self.b - self.a, h.size(1), dtype=h.dtype)
        idx = self.local_dst().unsqueeze(-1).expand_as(msgs)
        out = out.scatter_reduce(0, idx, msgs, amax, include_self=False)
        return out


def _csr_weights(graph: Graph) -> Optional[Tensor]:
    return graph.to_csr_order(graph.edge_weight) if graph.edge_weight is not None else None


def _chunked_linear(h: Tensor, weight: Tensor, chunk_rows: int, path: Optional[str]) -> Tensor:
    """``h @ weight.T`` for every row, written block by block into a (possibly mapped) buffer."""
    out = alloc_matrix(h.size(0), weight.size(0), path)
    for a in range(0, h.size(0), chunk_rows):
        out[a:a + chunk_rows] = h[a:a + chunk_rows] @ weight.t()
    return out


class _LayerRunner:
    """Computes one layer's output rows ``[a, b)`` from the whole previous-layer matrix ``h``.

    ``prepare`` runs once per layer and may precompute a per-node transform (e.g. ``h W^T`` when the
    output is narrower than the input, so the aggregation runs at the smaller width, as the layers do)."""

    def __init__(self, layer: nn.Module, graph: Graph, chunk_rows: int, tmp_path: Optional[str]):
        self.layer, self.graph, self.chunk_rows, self.tmp_path = layer, graph, chunk_rows, tmp_path
        self.pre: Optional[Tensor] = None
        self.extra: Tuple[Tensor, ...] = ()

    def prepare(self, h: Tensor) -> None:
        layer, g = self.layer, self.graph
        if isinstance(layer, GCNConv):
            self.dinv = g.gcn_norm_coefficients(None, h.dtype) if layer.normalize else None
            self.w = _csr_weights(g)
            if layer.out_channels < layer.in_channels:
                self.pre = _chunked_linear(h, layer.lin.weight, self.chunk_rows, self.tmp_path)
        elif isinstance(layer, SAGEConv):
            if layer.aggr in ("mean", "sum", "gcn") and layer.out_channels < layer.in_channels:
                self.pre = _chunked_linear(h, layer.lin_l.weight, self.chunk_rows, self.tmp_path)
        elif isinstance(layer, GINConv):
            self.w = _csr_weights(g)
            first = layer.leading_linear()
            if first is not None and first.out_features < first.in_features:
                self.pre = _chunked_linear(h, first.weight, self.chunk_rows, self.tmp_path)
        elif isinstance(layer, GATConv):
            if not layer.add_self_loops:
                raise NotImplementedError("layerwise_inference: GATConv(add_self_loops=False) is not supported")
            heads, c = layer.heads, layer.out_channels
            self.pre = _chunked_linear(h, layer.lin.weight, self.chunk_rows, self.tmp_path)
            t = self.pre.view(-1, heads, c)
            a_src = torch.empty(h.size(0), heads)
            a_dst = torch.empty(h.size(0), heads)
            for a in range(0, h.size(0), self.chunk_rows):
                blk = t[a:a + self.chunk_rows]
                a_src[a:a + self.chunk_rows] = (blk * layer.att_src).sum(-1)
                a_dst[a:a + self.chunk_rows] = (blk * layer.att_dst).sum(-1)
            self.extra = (a_src, a_dst)
        elif not isinstance(layer, nn.Linear):
            raise TypeError(f"layerwise_inference: unsupported layer {type(layer).__name__} "
                            "(GCNConv, SAGEConv, GINConv, GATConv or Linear)")

    def rows(self, h: Tensor, a: int, b: int) -> Tensor:
        layer = self.layer
        if isinstance(layer, nn.Linear):
            return layer(h[a:b])
        r = _Rows(self.graph, a, b)
        if isinstance(layer, GCNConv):
            return self._gcn(layer, r, h)
        if isinstance(layer, SAGEConv):
            return self._sage(layer, r, h)
        if isinstance(layer, GINConv):
            w = self.w[r.lo:r.hi] if self.w is not None else None
            return layer.combine(h, lambda t: r.aggregate(t, "sum", w), lambda t: t[a:b], pre=self.pre)
        return self._gat(layer, r)

    def _gcn(self, layer: GCNConv, r: _Rows, h: Tensor) -> Tensor:
        t = self.pre if self.pre is not None else h
        w = self.w[r.lo:r.hi] if self.w is not None else None
        if self.dinv is None:
            out = r.aggregate(t, "sum", w)
        else:
            # D^-1/2 (A + I) D^-1/2 t with the full graph's degrees: per-edge w_e * dinv[src], then
            # the implicit self-loop, then dinv[dst] (the order gkdfast.spmm(norm="gcn") uses).
            d_src = self.dinv[r.col]
            vals = d_src if w is None else w.to(t.dtype) * d_src
            d_dst = self.dinv[r.a:r.b].unsqueeze(-1)
            agg = r.aggregate(t, "sum", vals) if r.hi > r.lo else t.new_zeros(r.b - r.a, t.size(1))
            out = d_dst * (agg + d_dst * t[r.a:r.b])
        if self.pre is None:
            out = out @ layer.lin.weight.t()
        if layer.bias is not None:
            out = out + layer.bias
        return out

    def _sage(self, layer: SAGEConv, r: _Rows, h: Tensor) -> Tensor:
        return layer.combine(h, r.aggregate, lambda t: t[r.a:r.b], lambda: r.deg, pre=self.pre)

    def _gat(self, layer: GATConv, r: _Rows) -> Tensor:
        heads, c, m = layer.heads, layer.out_channels, r.b - r.a
        t = self.pre.view(-1, heads, c)
        a_src, a_dst = self.extra
        # The self-looped graph of GATConv: existing self-loops dropped, one loop per node added.
        dst = r.local_dst()
        keep = r.col != dst + r.a
        loops = torch.arange(m)
        src = torch.cat([r.col[keep], loops + r.a])
        dst = torch.cat([dst[keep], loops])
        scores = F.leaky_relu(a_src[src] + a_dst[dst + r.a], layer.negative_slope)  # [E', H]
        idx = dst.unsqueeze(-1).expand_as(scores)
        mx = torch.full((m, heads), float("-inf")).scatter_reduce(0, idx, scores, "amax", include_self=True)
        ex = (scores - mx[dst]).exp()
        den = torch.zeros(m, heads).index_add(0, dst, ex)
        alpha = ex / den[dst]
        out = torch.empty(m, heads, c)
        for k in range(heads):  # one head at a time: the block's per-edge messages are [E', C], not [E', H, C]
            out[:, k] = torch.zeros(m, c).index_add(0, dst, alpha[:, k:k + 1] * t[src, k])
        out = out.reshape(m, heads * c) if layer.concat else out.mean(dim=1)
        if layer.bias is not None:
            out = out + layer.bias
        return out


class _Machines:
    """Where the ranks of a group meet during :func:`layerwise_inference`.

    The ranks of one machine share each layer matrix as one memory-mapped file (writes from several
    processes meet in that machine's page cache).  Page caches of different machines are not kept
    coherent, even over a shared file system, so each further machine keeps its own copies of the
    layers, in ``out_dir/.machine<m>`` or, where the environment names a machine-local folder
    (``GKDFAST_SCRATCH``, e.g. a node's local disk), in a folder of its own there, so the copies
    never travel over the shared file system; the machines exchange row blocks by point-to-point messages
    between their first ranks (the leaders): after a layer, the leader of the block owner's machine
    reads the block from its file and sends it to the other leaders, which write it into theirs.
    Rank 0's machine holds the results in ``out_dir`` itself; the others' copies are deleted at the end.
    Without a group: one rank, one machine, files (if any) straight in ``out_dir``."""

    def __init__(self, group, out_dir: Optional[str]):
        self.group, self.out_dir = group, out_dir
        self.rank, self.world = (group.rank, group.world_size) if group is not None else (0, 1)
        self.machine_of = group.machines() if group is not None else [0]
        self.mine = self.machine_of[self.rank]
        self.local = [r for r in range(self.world) if self.machine_of[r] == self.mine]
        self.leaders = [self.machine_of.index(m) for m in range(max(self.machine_of) + 1)]
        self.is_leader = self.rank == self.local[0]
        self.folder = out_dir if out_dir is None or self.mine == 0 else self._copies_folder(out_dir, self.mine)
        if self.folder is not None:
            os.makedirs(self.folder, exist_ok=True)

    @staticmethod
    def _copies_folder(out_dir: str, machine: int) -> str:
        scratch = os.environ.get("GKDFAST_SCRATCH")
        if not scratch:
            return os.path.join(out_dir, f".machine{machine}")
        import hashlib

        # one folder per out_dir and machine, so runs sharing a scratch disk do not meet
        tag = hashlib.sha1(os.path.abspath(out_dir).encode()).hexdigest()[:12]
        return os.path.join(scratch, f"gkdfast-layers-{tag}-machine{machine}")

    def path(self, name: str) -> Optional[str]:
        return os.path.join(self.folder, name) if self.folder is not None else None

    def barrier(self) -> None:
        if self.group is not None:
            self.group.barrier()

    def matrix(self, rows: int, cols: int, name: str) -> Tensor:
        """This machine's ``[rows, cols]`` layer buffer: created by the machine's leader, mapped by the
        machine's other ranks once it exists."""
        path = self.path(name)
        if self.group is None or path is None:
            return alloc_matrix(rows, cols, path)
        if self.is_leader:
            out = alloc_matrix(rows, cols, path)
        self.barrier()
        return out if self.is_leader else _open_matrix(rows, cols, path)

    def exchange(self, out: Tensor, chunk_rows: int, owner, everywhere: bool) -> None:
        """Copies every row block of ``out`` from its owner's machine to the other machines (to rank
        0's machine only unless ``everywhere``).  Call after the layer's barrier; the caller flushes
        and waits again before anyone reads ``out``."""
        if len(self.leaders) < 2 or not self.is_leader:
            return
        receivers = self.leaders if everywhere else self.leaders[:1]
        for j, a in enumerate(range(0, out.size(0), chunk_rows)):
            b = min(a + chunk_rows, out.size(0))
            src = self.leaders[self.machine_of[owner(j)]]
            if self.rank == src:
                for dst in receivers:
                    if dst != src:
                        self.group.send(out[a:b], dst)
            elif self.rank in receivers:
                out[a:b] = self.group.recv(out[a:b], src)

    @property
    def apart(self) -> bool:
        """Whether the ranks span more than one machine (every rank agrees)."""
        return len(self.leaders) > 1

    def results(self, shapes) -> Tuple[Tensor, ...]:
        """Maps of rank 0's machine's result files (``logits.f32``, ``hidden.f32``), once every rank
        has dropped its own maps; a further machine's leader deletes that machine's copies."""
        self.barrier()
        if self.mine != 0 and self.is_leader:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)
        return tuple(_open_matrix(rows, cols, os.path.join(self.out_dir, name))
                     for (rows, cols), name in zip(shapes, ("logits.f32", "hidden.f32")))


@torch.no_grad()
def layerwise_inference(model: nn.Module, x: Tensor, graph: Optional[Graph], *, chunk_rows: int = 65536,
                        out_dir: Optional[str] = None, progress: bool = True, group=None) -> Tuple[Tensor, Tensor]:
    """Eval-mode ``(logits, hidden)`` of a :mod:`gkdfast.nn` model for every node, one layer at a time.

    Each layer is computed for ``chunk_rows`` destination rows at a time from the whole
    previous-layer matrix; the full graph's degrees (GCN) and self-loops (GAT) are used, so the
    result equals ``model.eval()(x, graph, return_hidden=True)`` up to float summation order.

    Args:
        model: a :class:`gkdfast.nn.GCN`, ``SAGE``, ``GIN``, ``GAT`` or ``MLP`` (BatchNorm allowed).
        x: ``[N, F]`` float32 features (may be memory-mapped: only row blocks are read).
        graph: the :class:`gkdfast.Graph` over ``N`` nodes (``None`` for an MLP).
        chunk_rows: destination rows per block; lower it to lower the per-block workspace
            (about ``chunk_rows * (avg_degree + 2) * width * 4`` bytes).
        out_dir: if given, every layer matrix is a memory-mapped file there; the results are
            ``out_dir/logits.f32`` ``[N, C]`` and ``out_dir/hidden.f32`` ``[N, H]`` (raw float32,
            row-major), returned mapped.  Intermediate files are deleted once used.
        progress: tqdm bar over rows x layers, with throughput.
        group: ``None``, or a :class:`gkdfast.distill.ddp.Dist` whose ranks share the work: every
            rank calls with the same model, ``x``, graph and ``out_dir`` (required: a folder every
            rank sees, on one machine or a shared file system), computes every W-th row block of
            each layer, and waits for the others before the next layer reads them.  The ranks of one
            machine share each layer as one memory-mapped file; when the ranks span several machines
            (torchrun's ``GROUP_RANK``, else the host name), each further machine keeps its own
            copies under ``out_dir/.machine<m>``, or under ``$GKDFAST_SCRATCH`` when that names a
            machine-local folder (deleted at the end either way), and the machines' first ranks
            exchange the row blocks by point-to-point messages.  Each rank returns the maps of the
            complete results in ``out_dir``.

    Returns:
        ``(logits [N, C], hidden [N, H])``; ``hidden`` is the input of the last layer after its
        activation (``x`` itself for a one-layer model), as ``return_hidden=True`` gives.

    Example:
        >>> g = gkdfast.Graph(torch.tensor([[0, 1, 2, 3], [1, 2, 0, 0]]), num_nodes=5)
        >>> model = gkdfast.nn.GCN(8, 16, 3).eval()
        >>> x = torch.randn(5, 8)
        >>> logits, hidden = layerwise_inference(model, x, g, chunk_rows=2, progress=False)
        >>> ref_logits, ref_hidden = model(x, g, return_hidden=True)
        >>> torch.allclose(logits, ref_logits, atol=1e-5), hidden.shape
        (True, torch.Size([5, 16]))
    """
    if not isinstance(model, _Stack):
        raise TypeError(f"layerwise_inference: model must be a gkdfast.nn model (GCN, SAGE, GIN, GAT, MLP), "
                        f"got {type(model).__name__}")
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"layerwise_inference: chunk_rows must be a positive int, got {chunk_rows!r}")
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) != model.in_channels:
        raise ValueError(f"layerwise_inference: x must be [N, {model.in_channels}], got "
                         f"{list(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if x.device.type != "cpu":
        raise ValueError(f"layerwise_inference: runs on the CPU (x is on {x.device}); move x and the model to cpu")
    bad = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if bad:  # the row blocks (and the memory-mapped outputs) are float32
        raise TypeError(f"layerwise_inference: runs float32 models, this one has {', '.join(bad)} parameters; "
                        "call model.float() first")
    n = x.size(0)
    if model.uses_graph:
        if not isinstance(graph, Graph):
            raise TypeError("layerwise_inference: a gkdfast.Graph is required for a graph model")
        if graph.num_nodes != n:
            raise ValueError(f"layerwise_inference: x has {n} rows but the graph has {graph.num_nodes} nodes")
        graph = graph.cpu()
    if group is not None and out_dir is None:
        raise ValueError("layerwise_inference: with a group the ranks meet in files; pass out_dir (a folder every "
                         "rank sees)")
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    machines = _Machines(group, out_dir)
    rank, world = machines.rank, machines.world

    def owner(j: int) -> int:  # block j of every layer is computed by rank j mod W
        return j % world

    layers = list(model.layers)
    bar = None
    if progress:
        from gkdfast._progress import progress_bar

        starts = range(0, n, chunk_rows)
        mine = sum(min(chunk_rows, n - a) for a in starts[rank::world])
        bar = progress_bar(total=mine * len(layers), desc="layer-wise inference" + (f" (rank {rank})" if group else ""),
                   unit="rows", unit_scale=True, leave=False, dynamic_ncols=True)
    was_training = model.training
    model.eval()
    h = x.float() if x.dtype != torch.float32 else x
    hidden = h
    try:
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            # each rank its own pre-transform file (it is per-node work every rank needs whole)
            runner = _LayerRunner(layer, graph, chunk_rows,
                                  machines.path(f"pre{i}.f32" if group is None else f"pre{i}.r{rank}.f32"))
            try:  # the pre-transform file goes whether the layer finishes or not
                runner.prepare(h)
                out = machines.matrix(n, model.out_channels if last else model.hidden_channels,
                                      _layer_file(i, layers))
                for a in range(rank * chunk_rows, n, world * chunk_rows):  # every W-th row block
                    b = min(a + chunk_rows, n)
                    blk = runner.rows(h, a, b)
                    if not last:
                        if model.norms is not None:
                            blk = model.norms[i](blk)
                        blk = F.relu(blk)
                    out[a:b] = blk
                    if bar is not None:
                        bar.update(b - a)
            finally:
                _remove(runner.tmp_path)
            del runner
            _flush(out)
            machines.barrier()  # every rank's blocks are in its machine's file before anyone reads it
            if machines.apart:  # the other machines' blocks (the logits: rank 0's machine alone needs them)
                machines.exchange(out, chunk_rows, owner, everywhere=not last)
                _flush(out)
                machines.barrier()
            if i > 0 and not last and machines.is_leader:  # the layer before this one is no longer needed
                _remove(machines.path(_layer_file(i - 1, layers)))
            hidden, h = h, out
        if len(layers) == 1 and out_dir is not None:  # hidden is x itself: give it the same file layout
            hidden = machines.matrix(n, x.size(1), "hidden.f32")
            if machines.mine == 0:  # rank 0's machine holds the results; its ranks split the rows
                k, count = machines.local.index(rank), len(machines.local)
                for a in range(k * chunk_rows, n, count * chunk_rows):
                    hidden[a:a + chunk_rows] = x[a:a + chunk_rows]
            _flush(hidden)
            machines.barrier()
        if machines.apart and out_dir is not None:
            shapes = (tuple(h.shape), tuple(hidden.shape))
            del h, hidden, out  # no map of this machine's copies stays open while they are deleted
            return machines.results(shapes)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return h, hidden
