"""Fake kernels give the real kernels' strides on non-contiguous inputs.

The C++ kernels make their inputs contiguous and return contiguous outputs; fake kernels that copied
an input's strides (``torch.empty_like(x)`` of a transposed x) made torch.compile plan views the real
output does not allow (``edge_softmax(...).view(-1)`` failed to compile on a CSR-ordered graph)."""
import pytest
import torch

import gkdfast
from gkdfast.graph import Graph
from gkdfast.ops import graph_tensors

OPS = torch.ops.gkdfast


def _graph():
    return Graph(torch.tensor([[0, 0, 1, 3, 4, 0, 1, 2, 3], [1, 1, 1, 2, 2, 2, 2, 0, 4]]), 6)


def _t(rows, cols):
    """A [rows, cols] float64 tensor stored transposed (strides (1, rows))."""
    return torch.randn(cols, rows, dtype=torch.float64).t()


def _cases():
    g = _graph()
    gt = graph_tensors(g, True)
    e = g.num_edges
    y = OPS.edge_softmax(g.rowptr, torch.randn(e, 2, dtype=torch.float64))
    s, t = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    per_node, lse = OPS.lsp(*gt, s, t, "rbf", 0.5, 1.0)
    per_row, stats = OPS.gsp_tiled(s, t, "rbf", "kl", 0.5, 1.0)
    a, c = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    loss, lse_nce = OPS.infonce(a, c, 0.5, 0, False, 0, 0)
    gram = OPS.gram_lse(a, 0.5, True)
    x = torch.randn(6, 3, dtype=torch.float64)
    _, arg = OPS.spmm(*gt, None, x, "max")
    return {
        "edge_softmax": (OPS.edge_softmax.default, (g.rowptr, _t(e, 2))),
        "edge_softmax_backward": (OPS.edge_softmax_backward.default, (g.rowptr, y.t().contiguous().t(),
                                                                      torch.randn(e, 2, dtype=torch.float64))),
        "spmm_arg_backward": (OPS.spmm_arg_backward.default, (*gt, None, _t(6, 3), arg,
                                                              torch.randn(6, 3, dtype=torch.float64))),
        "lsp_backward": (OPS.lsp_backward.default, (*gt, _t(6, 3), t, per_node, lse, torch.ones_like(per_node),
                                                    "rbf", 0.5, 1.0, True, True)),
        "gsp_tiled_backward": (OPS.gsp_tiled_backward.default, (_t(6, 3), t, per_row, stats, torch.ones_like(per_row),
                                                                "rbf", "kl", 0.5, 1.0, True, True)),
        "infonce_backward": (OPS.infonce_backward.default, (_t(5, 4), c, lse_nce, torch.ones_like(loss),
                                                            torch.zeros_like(lse_nce), 0.5, 0, False, 0, 0)),
        "gram_lse_backward": (OPS.gram_lse_backward.default, (_t(5, 4), gram, torch.ones_like(gram), 0.5, True)),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_fake_kernel_matches_real_strides_on_non_contiguous_inputs(name):
    op, args = _cases()[name]
    torch.library.opcheck(op, args, test_utils=("test_faketensor",))


def test_compiled_edge_softmax_view_of_non_contiguous_scores():
    g = Graph(torch.tensor([[0, 1, 2, 0], [1, 1, 2, 2]]), 3)  # already in CSR order: scores pass through
    scores = torch.randn(2, 4).t()

    def f(s):
        return gkdfast.edge_softmax(g, s).view(-1)

    torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(scores), f(scores))
