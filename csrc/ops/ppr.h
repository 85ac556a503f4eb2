// Top-k personalised PageRank by forward push (Andersen, Chung & Lang 2006): argument checks shared
// by every backend.
//
// Op semantics (gkdfast::ppr_topk(rowptr, col, sources, k, alpha, eps)):
//   rowptr/col is the CSR by *source*: node u's out-neighbours are col[rowptr[u] .. rowptr[u+1]).
//   A walk restarts at its source with probability alpha and otherwise moves to a uniformly chosen
//   out-neighbour (a node without out-edges loses the mass).  For each source s, with estimates
//   p = 0 and residuals r = e_s, a FIFO queue starting at s repeats: pop u; if r[u] > eps * max(deg u, 1):
//   p[u] += alpha * r[u], every out-neighbour v gets r[v] += (1 - alpha) * r[u] / deg u (and joins
//   the queue when r[v] crosses its own threshold and is not queued), r[u] = 0.  On return
//   0 <= pi_s(v) - p[v], and on an undirected graph pi_s(v) - p[v] <= eps * deg v.  Arithmetic in
//   double; a source's result never depends on the thread count or the other sources.
// Returns (index [S, k] int64, value [S, k] float32): the k largest p[v], v != s, in decreasing order
// (ties: smaller v first); rows with fewer than k positive estimates are padded with (s, 0).
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// rowptr/col a valid CSR (int32/int64); sources 1-D int32/int64 on the same device (their
// range is checked by the kernel); k >= 1; 0 < alpha < 1; eps > 0.
void check_ppr_topk(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& sources, int64_t k,
                    double alpha, double eps);

}  // namespace gkdfast
