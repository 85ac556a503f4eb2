// The one place where gkdfast's operator schemas are defined, and the pybind11 module _C.
//
// Kernels live in csrc/cpu/*_cpu.cpp and csrc/cuda/*_cuda.cu and are registered per backend in
// one table each: csrc/cpu/register_cpu.cpp and csrc/cuda/register_cuda.cu.  Fake (meta) kernels are
// registered from Python (gkdfast/_native/), and so are the autograd formulas of most ops, next to the
// reference implementation.  The hot ops of a GNN layer (spmm, spmm_gcn, sddmm, edge_softmax, dropout)
// have their autograd in C++ instead (csrc/autograd/, one table for the Autograd key): a Python formula
// cost more per call than a small graph's kernels.
//
// Graph ops take the graph as CSR by destination (rowptr [N+1], col [E] = source of each edge) and,
// where a backward needs it, the transposed CSR (t_rowptr, t_col = destinations, t_eid = position of
// each transposed entry in the forward CSR).  The transpose may be passed as three empty tensors
// when no gradient is needed.
// GKDFAST_NO_PYTHON (set by CMakeLists.txt): the plain C++ library for libtorch users, without
// the pybind11 module and so without Python.
#ifndef GKDFAST_NO_PYTHON
#include <pybind11/pybind11.h>
#endif
#include <torch/library.h>

#include <omp.h>

#include "ops/csr_validation.h"
#include "ops/infonce.h"

TORCH_LIBRARY(gkdfast, m) {
  // ---- message passing --------------------------------------------------------------------
  // out[i] = reduce_{e=(j->i)} w_e * x[j];  arg: [N, d] int64 edge position for max/min, else [0].
  m.def("spmm(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, Tensor? weight, "
        "Tensor x, str reduce) -> (Tensor, Tensor)");
  // GCN propagation D^-1/2 (A + I) D^-1/2 x fused into one pass over the CSR, given dinv = D^-1/2 ([N]):
  // out[i] = dinv[i] * (sum_{e=(j->i)} w_e * (dinv[j] * x[j]) + dinv[i] * x[i]), rounded exactly as
  // spmm(norm="gcn")'s composite dinv * (spmm(x * dinv) + x * dinv).  Differentiable in x only (its
  // gradient is the same op on the transposed CSR).
  m.def("spmm_gcn(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, Tensor? weight, "
        "Tensor dinv, Tensor x) -> Tensor");
  // A rectangular CSR matrix times a dense one: out[i] = sum_{e in row i} values[e] * x[col[e]], [R, d]
  // for x [C, d] (a bag-of-words feature matrix times a weight).  The transposed structure (t_rowptr
  // [C+1], t_col, t_eid, or all empty) is for the gradient of x, the same op on the transpose.
  m.def("csr_mm(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, Tensor values, "
        "Tensor x) -> Tensor");
  // Gradients of max/min spmm through the recorded arg (deterministic, no atomics).
  m.def("spmm_arg_backward(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, "
        "Tensor? weight, Tensor x, Tensor arg, Tensor grad_out) -> (Tensor, Tensor)");
  // out[e] = a[i] . b[j] for e = (j -> i).
  m.def("sddmm(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, Tensor a, Tensor b) -> Tensor");
  // Softmax of per-edge scores ([E] or [E, H]) over each destination's in-edges.
  m.def("edge_softmax(Tensor rowptr, Tensor scores) -> Tensor");
  m.def("edge_softmax_backward(Tensor rowptr, Tensor out, Tensor grad_out) -> Tensor");

  // ---- structure-preserving losses (lsp, gsp) ----------------------------------------------
  // LSP fused per destination row: (per-node KL(alpha^T_i || alpha^S_i) [N], log-sum-exps [N, 2]).
  // The transpose (t_rowptr, t_col, t_eid) is only carried for backward; pass three empty tensors
  // when no gradient is needed.
  m.def("lsp(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, Tensor student, "
        "Tensor teacher, str kernel, float gamma, float tau) -> (Tensor, Tensor)");
  // Gradients of sum_i grad[i] * per_node[i]; source side over the transposed CSR (no atomics).
  // A gradient that is not asked for comes back as an empty [0] tensor.
  m.def("lsp_backward(Tensor rowptr, Tensor col, Tensor t_rowptr, Tensor t_col, Tensor t_eid, Tensor student, "
        "Tensor teacher, Tensor per_node, Tensor lse, Tensor grad, str kernel, float gamma, float tau, "
        "bool need_student, bool need_teacher) -> (Tensor, Tensor)");
  // GSP over all N^2 pairs in tiles: (per-row value [R], per-row stats [R, 2]) for the rows
  // i in [row_begin, row_end) (row_end = -1: N; R = row_end - row_begin), each against all N columns.
  // mse: per_row[i] = sum_j (K^S_ij - K^T_ij)^2, stats = 0; kl: per_row[i] = KL_i, stats = (lse^S_i, lse^T_i).
  // The backward takes those R rows' state and grad and returns the gradients of sum_i grad_i *
  // per_row_i w.r.t. all N rows of student and teacher (row side and column side of every pair).
  m.def("gsp_tiled(Tensor student, Tensor teacher, str kernel, str loss, float gamma, float tau, "
        "int row_begin=0, int row_end=-1) -> (Tensor, Tensor)");
  m.def("gsp_tiled_backward(Tensor student, Tensor teacher, Tensor per_row, Tensor stats, Tensor grad, str kernel, "
        "str loss, float gamma, float tau, bool need_student, bool need_teacher, int row_begin=0, "
        "int row_end=-1) -> (Tensor, Tensor)");

  // ---- contrastive losses (crd, ncontrast, nt_xent, topk) -----------------------------------
  // InfoNCE rows of anchors A [R, d] against candidates C [N, d] (see csrc/ops/infonce.h); anchor r
  // is global row i = row_begin + r (R = N, row_begin = 0: today's square case):
  // loss_i = lse_i - inv_tau * A_i . C_{(i + pos_offset) mod N} (no positive term when pos_offset < 0),
  // lse over all j (minus j = i if exclude_self) or, with num_negatives = K > 0, over the positive
  // and K Philox draws from [N] \ {i} keyed by (seed, i, k).  Returns (loss [R], lse [R]).
  m.def("infonce(Tensor anchors, Tensor candidates, float inv_tau, int pos_offset, bool exclude_self, "
        "int num_negatives, int seed, int row_begin=0) -> (Tensor, Tensor)");
  m.def("infonce_backward(Tensor anchors, Tensor candidates, Tensor lse, Tensor grad_loss, Tensor grad_lse, "
        "float inv_tau, int pos_offset, bool exclude_self, int num_negatives, int seed, int row_begin=0) "
        "-> (Tensor, Tensor)");
  // Row log-sum-exp of the scaled Gram matrix (see csrc/ops/gram_lse.h): lse_i = log sum_j
  // exp(inv_tau * z_i . z_j) over all j (minus j = i if exclude_self), = infonce(z, z)'s lse at half
  // the GEMMs (the logits are symmetric).  The backward returns dz of sum_i grad_i * lse_i.
  m.def("gram_lse(Tensor z, float inv_tau, bool exclude_self) -> Tensor");
  m.def("gram_lse_backward(Tensor z, Tensor lse, Tensor grad, float inv_tau, bool exclude_self) -> Tensor");
  // The Philox negatives the kernels draw: [R, K] int64 for the given rows (tests, debugging).
  m.def("sample_negatives(Tensor rows, int num_nodes, int num_negatives, int seed) -> Tensor");
  // ---- sampling ----------------------------------------------------------------------------
  // Uniform in-neighbour sample of each seed node: min(deg, fanout) distinct in-edges (all when
  // fanout < 0), Philox-keyed by (seed, node, hop); see csrc/ops/sample_neighbors.h.
  // Returns (rowptr [S+1] int64, sampled source ids [nnz], their CSR edge positions [nnz]).
  m.def("sample_neighbors(Tensor rowptr, Tensor col, Tensor seeds, int fanout, int seed, int hop) "
        "-> (Tensor, Tensor, Tensor)");
  // Top-k personalised PageRank of each source by forward push over the CSR by source (out-edges):
  // (index [S, k] int64, value [S, k] float32), k largest estimates other than the source; see
  // csrc/ops/ppr.h.  CUDA tensors: the push runs on the host, the result returns to the device.
  m.def("ppr_topk(Tensor rowptr, Tensor col, Tensor sources, int k, float alpha, float eps) -> (Tensor, Tensor)");
  // An undirected graph's CSR by destination from an edge list: every pair {src, dst} (src != dst)
  // once in each direction, rows sorted, no duplicates; see csrc/ops/symmetric_csr.h.  Returns
  // (rowptr [num_nodes + 1] int64, col [nnz] with src's dtype).  CUDA tensors: built on the host.
  m.def("symmetric_csr(Tensor src, Tensor dst, int num_nodes) -> (Tensor, Tensor)");
  // Inverse-CDF search: cdf_guide indexes a sorted float array by equal-width buckets of its
  // range; cdf_search(cdf, guide, values) = torch.searchsorted(cdf, values) (first i with
  // cdf[i] >= value), found within each value's bucket; see csrc/ops/inverse_cdf.h.
  m.def("cdf_guide(Tensor cdf, int num_buckets) -> Tensor");
  m.def("cdf_search(Tensor cdf, Tensor guide, Tensor values) -> Tensor");
  // ---- data loading ------------------------------------------------------------------------
  // The numbers of a text table: the tokens of `text` (uint8 bytes; separators ASCII whitespace and
  // ',') read as int64 / float32 / float64, as the Python loaders read them; status [2] = (0, -1),
  // (1, byte offset of the first token that is not a number) or (2, offset of a token only Python's
  // parser reads exactly); see csrc/ops/number_table.h.  CUDA text is read on the host.
  m.def("parse_numbers(Tensor text, ScalarType dtype) -> (Tensor, Tensor)");
  // Streaming DeepWalk: [N, dim] float32 skip-gram input vectors trained with negative sampling on
  // walks from `starts` (one per entry, in that order) over the CSR by destination, generated from
  // Philox words keyed by (seed, walk) and never stored; see csrc/ops/deepwalk.h.  CUDA tensors:
  // trained on the host, the result returns to the device.
  m.def("deepwalk(Tensor rowptr, Tensor col, Tensor starts, int dim, int walk_length, int window, int negative, "
        "float lr, int seed, bool deterministic) -> Tensor");
  // ---- graph-level pooling -------------------------------------------------------------------
  // Global sum / mean / max over contiguous node segments (the graphs of a batch, offsets ptr [B+1]);
  // see csrc/ops/segment_pool.h.  arg: [B, d] first maximal node for max, else [0].
  m.def("segment_pool(Tensor x, Tensor ptr, str reduce) -> (Tensor, Tensor)");
  m.def("segment_pool_backward(Tensor ptr, Tensor arg, Tensor grad_out, int num_nodes, str reduce) -> Tensor");
  // ---- dropout -------------------------------------------------------------------------------
  // x / (1 - p) where the Philox word of (seed, flat position) >= floor(p * 2^32), else 0; see
  // csrc/ops/dropout.h.  Its own adjoint: the gradient is dropout(grad_out, p, seed).
  m.def("dropout(Tensor x, float p, int seed) -> Tensor");
  // Streaming top-k of query . key over all keys: (values [Q, k], indices [Q, k]).
  m.def("topk_similar(Tensor query, Tensor keys, int k) -> (Tensor, Tensor)");
}

namespace gkdfast {
// "avx2" or "generic": the Philox words the CPU dropout uses in this process (cpu/dropout_cpu.cpp).
const char* cpu_dropout_words();
}  // namespace gkdfast

namespace {

bool compiled_with_cuda() {
#ifdef GKDFAST_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int openmp_max_threads() { return omp_get_max_threads(); }

}  // namespace

// Device-agnostic paths that a backend runs only in some modes, exposed for the CPU tests (not a
// public API).  infonce_sampled_backward_chunked: what CUDA's infonce_backward runs under
// torch.use_deterministic_algorithms(True) (csrc/ops/infonce.h), compared with the CPU kernel in
// tests/test_deterministic_mode.py.
TORCH_LIBRARY(gkdfast_testing, m) {
  m.def("infonce_sampled_backward_chunked(Tensor anchors, Tensor candidates, Tensor lse, Tensor grad_loss, "
        "Tensor grad_lse, float inv_tau, int pos_offset, int num_negatives, int seed, int row_begin) "
        "-> (Tensor, Tensor)",
        &gkdfast::infonce_sampled_backward_chunked);
}

#ifndef GKDFAST_NO_PYTHON
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gkdfast native kernels (operators live under torch.ops.gkdfast)";
  m.def("compiled_with_cuda", &compiled_with_cuda, "True when the CUDA kernels were compiled in");
  m.def("openmp_max_threads", &openmp_max_threads, "OpenMP's thread limit inside the extension");
  m.def("csr_checks_run", &gkdfast::csr_checks_run,
        "CSR / rowptr / transpose checks run in full (not remembered) so far in this process (for the tests)");
  m.def("cpu_dropout_words", &gkdfast::cpu_dropout_words,
        "'avx2' or 'generic': the Philox words of the CPU dropout in this process (GKDFAST_CPU_PHILOX forces one)");
}
#endif  // GKDFAST_NO_PYTHON
