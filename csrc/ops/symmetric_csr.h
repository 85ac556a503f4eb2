// Building an undirected graph's CSR from an edge list: argument checks shared by every backend.
//
// Op semantics (gkdfast::symmetric_csr(src, dst, num_nodes)):
//   The pairs {src[e], dst[e]} with src[e] != dst[e], each stored in both directions, without
//   duplicates, as a CSR by destination whose rows list their sources in increasing order: row v
//   holds every u with (u, v) or (v, u) among the input pairs, u != v, once.  Self-loops are dropped.
// Returns (rowptr [num_nodes + 1] int64, col [nnz] with src's dtype).  The result depends only on the
// set of pairs: not on their order, their repetitions or the thread count.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// src/dst: 1-D, the same length, the same integer dtype (int32/int64), the same device;
// num_nodes >= 0, and < 2^31 with int32 ids.  The ids' range [0, num_nodes) is the kernel's check
// (it reads them once anyway).
void check_symmetric_csr(const at::Tensor& src, const at::Tensor& dst, int64_t num_nodes);

}  // namespace gkdfast
