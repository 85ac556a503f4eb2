// Structural validation of the CSR arrays every graph op receives, so that a malformed graph passed
// straight to torch.ops.gkdfast raises a ValueError instead of reading or writing out of bounds.
//
// What is checked (docs/ops.md, "Graph arguments"):
//  * rowptr [R+1]: rowptr[0] == 0, never decreasing, rowptr[R] == E (the length of col);
//  * col [E]: every entry in [0, num_cols);
//  * a transposed CSR (t_rowptr, t_col, t_eid), when given: itself a valid CSR over the same nodes,
//    t_eid a permutation of [0, E), and every entry consistent with the forward CSR
//    (col[t_eid[k]] == the transposed row of k, and t_eid[k] lies in row t_col[k] of the forward CSR).
//
// CPU: one parallel O(R + E) pass without temporaries (a byte per edge for the permutation check).
// Other devices: the same conditions as ATen reductions, read back with one synchronisation.
// A successful check is remembered for the exact storages and version counters involved, so a
// Graph whose arrays do not change pays it once (an in-place write through torch bumps the version
// and re-validates; writes that bypass torch's version counter, e.g. through a NumPy view, are not
// seen — documented).
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

void validate_csr(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_cols, const char* op,
                  const char* what);

// rowptr alone (ops whose per-edge arrays are values, e.g. edge_softmax): starts at 0, never
// decreases, ends at num_entries.
void validate_rowptr(const at::Tensor& rowptr, int64_t num_entries, const char* op, const char* what);

void validate_transpose(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                        const at::Tensor& t_col, const at::Tensor& t_eid, const char* op);

// How many CSR / rowptr / transpose checks ran in full (not remembered) in this process: for the tests
// of what is remembered (exposed as gkdfast._C.csr_checks_run; not a public API).
int64_t csr_checks_run();

// spmm's winning edges arg [R, d] (int64): every arg[i, f] is -1 (row i has no edge) or an edge of
// row i, i.e. in [rowptr[i], rowptr[i+1]).  The max/min backward reads col[arg] and writes
// grad_w[arg], so anything else would read or write out of bounds (or race between rows).
// `producer` names the op whose arg the caller expects (for the error message).
void validate_arg_edges(const at::Tensor& arg, const at::Tensor& rowptr, const char* op,
                        const char* producer = "spmm");

}  // namespace gkdfast
