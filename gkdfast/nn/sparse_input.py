"""``Linear`` on a mostly-zero input matrix (bag-of-words features) through a sparse product.

Citation and social graphs ship binary bag-of-words features with well under 1 % non-zeros
(Facebook: 22,470 × 4,714 at 0.3 %).  A dense ``x @ Wᵀ`` spends almost all its multiply-adds on
zeros; a CSR copy of ``x`` made once and kept (the features do not change between epochs) does the
same product in ``nnz·out`` instead of ``N·F·out``, and autograd still reaches the weight.

Example:
    >>> lin = torch.nn.Linear(50, 4)
    >>> x = torch.zeros(6, 50); x[0, 3] = 1.0
    >>> torch.allclose(sparse_linear(lin, x), lin(x), atol=1e-6)
    True
"""
from __future__ import annotations

import weakref
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkdfast._segments import concat_ranges, segment_ids
from gkdfast._quiet import spend_once
from gkdfast import _backend
from gkdfast._autocast import autocast_on
from gkdfast.graph import cache_mode
from gkdfast._tracing import tracing

__all__ = ["sparse_linear", "sparse_operand", "wants_sparse", "input_product", "dropout_sparse_input", "dropped_linear",
           "SparseInputLinear",
           "linear_rows", "sparse_rows", "csr_head", "csr_row_positions", "has_forward_hooks", "SPARSE_DENSITY"]

SPARSE_DENSITY = 0.05
"""Inputs with fewer non-zeros than this fraction take the sparse product."""

# id(features) -> (weak reference to them, their stamp, their CSR copy or None for "dense").  The
# entry goes when the tensor is freed (the weakref's callback), so a mini-batch's sliced features do
# not outlive their step, and a tensor written in place (its version moves) or given other memory
# (``x.data = y`` keeps the version) is converted again.  Writes that bypass the version counter are
# not seen: through ``x.data[...]``, ``x.numpy()``, the NumPy array behind ``torch.from_numpy``, or
# another tensor sharing the storage (``set_``).  After such a write, pass a fresh tensor (``x.clone()``).
_CACHE: Dict[int, Tuple["weakref.ref[Tensor]", tuple, Optional[Tensor]]] = {}


def _stamp(x: Tensor) -> tuple:
    return x._version, x.data_ptr(), x.storage_offset(), tuple(x.shape), x.stride()


def _forget(key: int, ref) -> None:
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is ref:
        del _CACHE[key]


def quiet_sparse_csr() -> None:
    """Spends torch's two once-per-process sparse-CSR warnings ("support is in beta state", "invariant
    checks are implicitly disabled") on a 1 x 1 tensor, hidden: the CSR products are what we need.

    Call before making a CSR tensor.  Only the first call enters ``warnings.catch_warnings``
    (:func:`gkdfast._quiet.spend_once`): entering it resets every module's warning registry (Python 3.11),
    so doing it on every forward (as before) made other code's once-per-location warnings repeat on
    every training step."""
    spend_once("sparse_csr", lambda: torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]),
                                                             torch.tensor([1.0]), (1, 1)))


def _operand(x: Tensor) -> Tensor:
    # Dense stays dense for: a trainable input, anything but a plain float32/float64 matrix (sparse
    # products in half types are not everywhere), autocast regions (the dense product is the one
    # autocast casts), torch.compile tracing (the cache lookup would break the graph) and torch.func /
    # forward-mode AD (vmap cannot count non-zeros, jvp's dual tensors have no data pointer, and
    # sparse.mm rejects a functorch-wrapped weight).
    # An inference tensor (made under torch.inference_mode()) has no version counter to watch: dense.
    # On CUDA under torch.use_deterministic_algorithms(True): dense, as cuSPARSE's products with a
    # transposed CSR (the weight gradient) may differ in the last bits from run to run.
    if (x.requires_grad or x.dim() != 2 or x.layout != torch.strided or x.dtype not in (torch.float32, torch.float64)
            or autocast_on(x.device.type) or tracing() or x.is_inference()
            or _backend.transforms_active() or x.is_meta  # (meta tensors have no values to count)
            or (x.is_cuda and torch.are_deterministic_algorithms_enabled())):
        return x
    key = id(x)
    hit = _CACHE.get(key)
    if hit is None or hit[0]() is not x or hit[1] != _stamp(x):
        # count_nonzero: no float copy of x (424 MB for Facebook's features) just to measure it
        sparse = x.numel() > 0 and int(torch.count_nonzero(x)) < SPARSE_DENSITY * x.numel()
        quiet_sparse_csr()
        with cache_mode():
            csr = x.to_sparse_csr() if sparse else None  # outside inference mode: later training uses it
            if csr is not None:
                _with_transpose(csr, _CsrTranspose(csr))
        ref = weakref.ref(x, lambda r, k=key: _forget(k, r))
        hit = _CACHE[key] = (ref, _stamp(x), csr)
    return x if hit[2] is None else hit[2]


class _CsrTranspose:
    """The transposed structure of a cached CSR feature matrix, built once on first use: the weight
    gradient of ``xs @ Wᵀ`` is ``xsᵀ @ g``, and torch rebuilds ``xsᵀ`` (a sort of all ``nnz`` entries)
    on every backward (it keeps no transpose of a CSR tensor, and input dropout makes a new one each
    step anyway).  Dropout changes the values only, so the structure is the cached matrix's:
    ``t_crow`` [F + 1], ``t_col`` [nnz] (the row of each entry, by column) and ``perm`` [nnz] (the
    entry's position in ``xs``'s value array), all in the matrix's index dtype (the ``csr_mm`` op's
    transposed structure, ``docs/ops.md``)."""

    __slots__ = ("crow", "col", "shape", "_t")

    def __init__(self, csr: Tensor):
        self.crow, self.col, self.shape = csr.crow_indices(), csr.col_indices(), tuple(csr.shape)
        self._t: Optional[Tuple[Tensor, Tensor, Tensor]] = None

    def transposed(self) -> Tuple[Tensor, Tensor, Tensor]:
        if self._t is None:
            # (Two threads' first backward may both build it: the same tensors, one kept.)
            with cache_mode():  # as the CSR copy: a first backward under inference mode must not make it
                col = self.col  # inference tensors for the features' lifetime (helper 126)
                perm = torch.argsort(col, stable=True)  # by column, rows ascending inside one: torch's order
                rows = segment_ids(self.crow.diff(), col.numel())
                t_crow = torch.zeros(self.shape[1] + 1, dtype=self.crow.dtype, device=col.device)
                t_crow[1:] = torch.cumsum(torch.bincount(col, minlength=self.shape[1]), 0)
                self._t = (t_crow, rows[perm].to(col.dtype), perm.to(col.dtype))
        return self._t


def _with_transpose(csr: Tensor, structure: Optional[_CsrTranspose]) -> Tensor:
    if structure is not None:
        csr._gkdfast_csr_t = structure  # (a Python attribute: the CSR tensor object carries it)
    return csr


class _CsrLinearWeightGrad(torch.autograd.Function):
    """``CSR(values) @ weightᵀ``, differentiable in ``weight`` only, whose backward multiplies by the
    cached transposed structure instead of letting torch transpose the CSR matrix again."""

    @staticmethod
    def forward(ctx, values: Tensor, weight: Tensor, structure: _CsrTranspose) -> Tensor:
        ctx.structure = structure
        ctx.save_for_backward(values)
        return torch.sparse.mm(torch.sparse_csr_tensor(structure.crow, structure.col, values, structure.shape),
                               weight.T)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (values,) = ctx.saved_tensors
        st = ctx.structure
        t_crow, t_col, perm = st.transposed()
        xt = torch.sparse_csr_tensor(t_crow, t_col, values.index_select(0, perm), (st.shape[1], st.shape[0]))
        return None, torch.sparse.mm(xt, grad_out).T, None


def _sparse_mm(xs: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``xs @ weightᵀ + bias`` for a sparse CSR ``xs``.  A cached feature matrix (or its dropped-out
    copy) carries its transposed structure, which the weight gradient reuses (:class:`_CsrTranspose`;
    Cora's first layer, 1,433 -> 64, dropout 0.5, forward + backward, one thread: 3.3 -> 1.8-2.0 ms).
    On the CPU the products are the native ``csr_mm`` (torch's bits in half its time, docs/ops.md)."""
    quiet_sparse_csr()
    structure = getattr(xs, "_gkdfast_csr_t", None)
    values = xs.values()
    learns = weight.requires_grad and torch.is_grad_enabled() and not _backend.transforms_active()
    if (not values.requires_grad and (structure is not None or not learns)
            and _native_csr_mm(xs, weight)):
        out = _native_product(xs, structure.transposed() if learns else None, weight)
    elif structure is not None and learns and not values.requires_grad:
        out = _CsrLinearWeightGrad.apply(values, weight, structure)
    else:
        out = torch.sparse.mm(xs, weight.T)
    return out + bias if bias is not None else out


def _native_product(xs: Tensor, transposed: Optional[Tuple[Tensor, Tensor, Tensor]], weight: Tensor) -> Tensor:
    """``xs @ weightᵀ`` by the native ``csr_mm``, differentiable in ``weight`` when given ``xs``'s
    ``transposed`` structure (:meth:`_CsrTranspose.transposed`)."""
    none = xs.crow_indices().new_empty(0)
    t = transposed if transposed is not None else (none, none, none)
    return torch.ops.gkdfast.csr_mm(xs.crow_indices(), xs.col_indices(), *t, xs.values(), weight.T)


def _native_csr_mm(xs: Tensor, weight: Tensor) -> bool:
    """Whether the native ``csr_mm`` runs ``xs @ weightᵀ``: on the CPU (CUDA keeps torch's cuSPARSE
    product until a GPU run has compared them), for float32 / float64 matching the weight's, with the
    extension loaded and not ``GKDFAST_BACKEND=reference`` (then torch's product, the fallback)."""
    if (xs.device.type != "cpu" or xs.dtype != weight.dtype or xs.dtype not in (torch.float32, torch.float64)
            or not _backend.has_kernel("csr_mm", "CPU")):  # (an extension built before the op: torch's product)
        return False
    return _backend.choose("csr_mm", xs.device, xs.dtype) == "cpu"


def sparse_operand(x: Tensor) -> Optional[Tensor]:
    """``x``'s cached sparse CSR copy when products with it should go sparse (fewer than
    :data:`SPARSE_DENSITY` non-zeros, plain float32/float64, no grad, outside autocast and
    torch.compile), ``x`` itself when it already is CSR, else ``None``.

    Lets a layer decide its order of operations: with a sparse input, a linear map applied *before*
    the aggregation costs ``nnz·out``, whatever the input width.

    Example:
        >>> x = torch.zeros(4, 100); x[1, 7] = 1.0
        >>> sparse_operand(x).layout, sparse_operand(torch.ones(4, 3)) is None
        (torch.sparse_csr, True)
    """
    xs = _operand(x)
    return xs if xs.layout == torch.sparse_csr else None


def wants_sparse(x: Tensor, sparse_input: bool) -> bool:
    """Whether a layer called with ``sparse_input`` multiplies ``x`` sparsely: ``x`` is CSR already,
    or the caller flagged it as a reused feature matrix and :func:`sparse_operand` gives a CSR copy.

    Example:
        >>> x = torch.zeros(4, 100); x[1, 7] = 1.0
        >>> wants_sparse(x, True), wants_sparse(x, False), wants_sparse(torch.ones(4, 3), True)
        (True, False, False)
    """
    return (sparse_input or x.layout == torch.sparse_csr) and sparse_operand(x) is not None


def input_product(x: Tensor, weight: Tensor, sparse: bool = True) -> Tensor:
    """``x @ weightᵀ`` without a bias, through ``x``'s cached CSR copy when ``sparse`` and
    :func:`sparse_operand` gives one; a CSR ``x`` is multiplied as it is.  For layers that aggregate
    after their linear map, where the bias must be added after the aggregation.

    Shapes: ``x`` ``[N, F]`` (dense or CSR), ``weight`` ``[out, F]`` -> ``[N, out]``.

    Example:
        >>> x = torch.zeros(6, 50); x[0, 3] = 1.0
        >>> w = torch.randn(4, 50)
        >>> torch.allclose(input_product(x, w), x @ w.T)
        True
    """
    xs = sparse_operand(x) if sparse or x.layout == torch.sparse_csr else None
    return _sparse_mm(xs, weight, None) if xs is not None else F.linear(x, weight)


def sparse_linear(lin: nn.Linear, x: Tensor) -> Tensor:
    """``lin(x)``, through a cached CSR copy of ``x`` when fewer than :data:`SPARSE_DENSITY` of its
    entries are non-zero (decided and converted once per tensor object, so pass the same feature
    tensor every epoch; the copy lives as long as ``x`` and is redone when ``x`` is written in place).
    An ``x`` that requires grad, or a ``lin`` with forward hooks, always takes the dense path.

    Shapes: ``x`` ``[N, F]`` -> ``[N, lin.out_features]``; gradients flow to ``lin``'s parameters.

    Example:
        >>> lin = torch.nn.Linear(3, 2)
        >>> sparse_linear(lin, torch.eye(3)).shape
        torch.Size([3, 2])
    """
    if has_forward_hooks(lin):  # reading lin.weight directly would skip its hooks (pruning, weight norm ...)
        return lin(x.to_dense() if x.layout == torch.sparse_csr else x)
    return _linear_body(lin, x)


def _linear_body(lin: nn.Linear, x: Tensor) -> Tensor:
    """:func:`sparse_linear` once ``lin``'s hooks have run (inside its own ``forward``)."""
    xs = _operand(x)  # a CSR x (dropout_sparse_input's output) comes back as it is
    if xs.layout == torch.sparse_csr:
        return _sparse_mm(xs, lin.weight, lin.bias)
    return F.linear(x, lin.weight, lin.bias)


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has forward (pre-)hooks, which only its own ``__call__`` runs: code that reads
    its weights directly (a sparse or reordered product) must call it instead.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> has_forward_hooks(lin), has_forward_hooks(lin.register_forward_hook(lambda *a: None) and lin)
        (False, True)
    """
    return bool(module._forward_hooks or module._forward_pre_hooks)


def dropout_sparse_input(x: Tensor, drop: Callable[[Tensor], Tensor]) -> Optional[Tensor]:
    """Input dropout at ``nnz`` cost: ``x``'s cached CSR copy with ``drop`` (a dropout) applied to its
    stored values, or ``None`` when ``x`` takes the dense path.  Dropping out a zero leaves it zero,
    so this has the distribution of dropout on the dense ``x``; only which random number goes to
    which entry differs.

    Shapes: ``x`` ``[N, F]`` -> sparse CSR ``[N, F]`` (feed it to :func:`sparse_linear`).

    Example:
        >>> x = torch.zeros(4, 100); x[1, 7] = 1.0; x[2, 9] = 3.0
        >>> out = dropout_sparse_input(x, lambda v: v * 2)
        >>> out.layout, out.to_dense()[2, 9].item()
        (torch.sparse_csr, 6.0)
    """
    xs = sparse_operand(x)  # a CSR x (a batch's sparse rows) is dropped as it is
    if xs is None:
        return None
    quiet_sparse_csr()
    dropped = torch.sparse_csr_tensor(xs.crow_indices(), xs.col_indices(), drop(xs.values()), xs.shape)
    return _with_transpose(dropped, getattr(xs, "_gkdfast_csr_t", None))  # same structure, other values


def dropped_linear(lin: nn.Linear, x: Tensor, drop: Optional[Callable[[Tensor], Tensor]]) -> Tensor:
    """``lin(drop(x))`` on a model's own input: through the cached sparse copy of mostly-zero
    (bag-of-words) features, ``drop`` (a dropout, or ``None`` for none) applied to its stored non-zeros
    (:func:`dropout_sparse_input`: the distribution of dropout on the dense ``x``), else dense.

    Shapes: ``x`` ``[N, F]`` -> ``[N, lin.out_features]``.

    Example:
        >>> lin = torch.nn.Linear(100, 4)
        >>> x = torch.zeros(3, 100); x[0, 5] = 1.0
        >>> torch.allclose(dropped_linear(lin, x, None), lin(x))
        True
    """
    if drop is not None:
        dropped = None if has_forward_hooks(lin) else dropout_sparse_input(x, drop)
        if dropped is not None:
            return sparse_linear(lin, dropped)
        x = drop(x)  # dense: x takes the dense path (or lin has hooks, which the dense call runs)
    return sparse_linear(lin, x)


class SparseInputLinear(nn.Linear):
    """``nn.Linear`` whose ``forward(x, sparse_input=True)`` goes through :func:`sparse_linear` (the
    first layer of :class:`gkdfast.nn.MLP`, which passes the flag for the model's raw input only).
    Same parameters and state dict as ``nn.Linear``.

    Example:
        >>> lin = SparseInputLinear(50, 4)
        >>> x = torch.zeros(6, 50); x[0, 3] = 1.0
        >>> torch.allclose(lin(x, sparse_input=True), lin(x), atol=1e-6)
        True
    """

    def forward(self, x: Tensor, sparse_input: bool = False) -> Tensor:
        return _linear_body(self, x) if sparse_input else super().forward(x)  # (hooks ran in __call__)


def csr_row_positions(rowptr: Tensor, rows: Tensor) -> Tuple[Tensor, Tensor]:
    """Where the entries of ``rows`` sit in a CSR matrix's ``col`` / ``values`` arrays.

    Args:
        rowptr: ``[R + 1]`` CSR row pointers.  rows: ``[B]`` row ids (any order, repeats allowed).

    Returns:
        ``(positions, counts)``: ``[sum(counts)]`` int64 positions, row by row in the order of
        ``rows``, and ``[B]`` entries per row.

    Example:
        >>> csr_row_positions(torch.tensor([0, 2, 2, 5]), torch.tensor([2, 0]))
        (tensor([2, 3, 4, 0, 1]), tensor([3, 2]))
    """
    rowptr, rows = rowptr.long(), rows.long()
    start = rowptr[rows]
    counts = rowptr[rows + 1] - start
    return concat_ranges(start, counts), counts


def linear_rows(x: Tensor, rows: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x[rows], weight, bias)`` without the dense ``[B, F]`` gather when ``x`` is mostly
    zero: the rows are sliced out of ``x``'s cached CSR copy (see :func:`sparse_linear`), so the cost is
    ``nnz(rows)·out`` instead of ``B·F·out``.  Gradients reach ``weight`` and ``bias``.

    Shapes: ``x`` ``[N, F]``, ``rows`` ``[B]``, ``weight`` ``[out, F]`` -> ``[B, out]``.

    Example:
        >>> x = torch.zeros(5, 40); x[3, 7] = 2.0
        >>> w = torch.randn(4, 40)
        >>> torch.allclose(linear_rows(x, torch.tensor([3, 3, 0]), w), x[[3, 3, 0]] @ w.T)
        True
    """
    sub = sparse_rows(x, rows)
    return F.linear(x[rows], weight, bias) if sub is None else _sparse_mm(sub, weight, bias)


def sparse_rows(x: Tensor, rows: Tensor) -> Optional[Tensor]:
    """``x[rows]`` as a sparse CSR ``[B, F]`` sliced from ``x``'s cached CSR copy (see
    :func:`sparse_operand`), or ``None`` when ``x`` takes the dense path.  A mini-batch's feature rows
    of bag-of-words data at ``nnz`` cost instead of a dense ``[B, F]`` gather.

    Example:
        >>> x = torch.zeros(5, 40); x[3, 7] = 2.0
        >>> sparse_rows(x, torch.tensor([3, 0])).to_dense()[0, 7].item()
        2.0
    """
    xs = sparse_operand(x)
    if xs is None:
        return None
    rows = rows.to(xs.device)
    pos, counts = csr_row_positions(xs.crow_indices(), rows)
    crow = torch.zeros(rows.numel() + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    quiet_sparse_csr()
    return torch.sparse_csr_tensor(crow, xs.col_indices()[pos], xs.values()[pos], (rows.numel(), x.size(1)))


def csr_head(x: Tensor, rows: int) -> Tensor:
    """The first ``rows`` rows of ``x``: ``x[:rows]``, also for a sparse CSR ``x`` (which has no
    slicing; a block's destinations are the first rows of its sources).

    Example:
        >>> x = torch.eye(4).to_sparse_csr()
        >>> csr_head(x, 2).to_dense().tolist()
        [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    """
    if x.layout != torch.sparse_csr:
        return x[:rows]
    crow = x.crow_indices()[:rows + 1]
    end = int(crow[-1])
    quiet_sparse_csr()
    return torch.sparse_csr_tensor(crow, x.col_indices()[:end], x.values()[:end], (rows, x.size(1)))
