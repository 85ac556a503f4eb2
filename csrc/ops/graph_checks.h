// Argument checks shared by every backend of the graph ops.  They guard direct torch.ops.gkdfast
// calls against shape, dtype and device mistakes and malformed CSR structure, which would otherwise
// read or write out of bounds; a graph whose arrays do not change is validated once.
#pragma once

#include <ATen/core/Tensor.h>

namespace gkdfast {

// rowptr [N+1] and col [E]: 1-D, same integer dtype (int32/int64), same device, and a valid
// structure (ops/csr_validation.h: rowptr from 0 to E, never decreasing; col in [0, N)).
void check_csr(const at::Tensor& rowptr, const at::Tensor& col, const char* op, const char* what = "graph");

// A rectangular CSR matrix: rowptr [R+1], col [E] as above, col in [0, num_cols).
void check_csr_matrix(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_cols, const char* op,
                      const char* what);

// rowptr alone: 1-D, int32/int64 (its values are validated against the per-edge array's length by
// the caller, see validate_rowptr).
void check_rowptr(const at::Tensor& rowptr, const char* op, const char* what = "graph");

// `t` on the same device as `like` (saved state passed back to a backward op).
void check_same_device(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name);

// The transposed CSR: t_rowptr [N+1], t_col [E], t_eid [E] (positions in the forward CSR) on the
// graph's device with its index dtype and consistent with it, or all three empty when the caller
// does not need gradients.
void check_transpose(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                     const at::Tensor& t_col, const at::Tensor& t_eid, const char* op);

// The same for a rectangular CSR with num_cols columns: t_rowptr [num_cols + 1].
void check_transpose_matrix(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                            const at::Tensor& t_col, const at::Tensor& t_eid, int64_t num_cols, const char* op);

// Node ids (seeds, sources): 1-D int32/int64 on the graph's device (their range is the kernel's check).
void check_node_ids(const at::Tensor& ids, const at::Tensor& rowptr, const char* op, const char* name);

// Node features: 2-D floating tensor on the graph's device.
void check_node_features(const at::Tensor& x, const at::Tensor& rowptr, const char* op, const char* name);

// Per-edge values: shape [E] (or [E, H] when allow_heads), floating, matching dtype and device.
void check_edge_values(const at::Tensor& w, const at::Tensor& col, const at::Tensor& like, const char* op,
                       const char* name, bool allow_heads = false);

int64_t csr_num_rows(const at::Tensor& rowptr);

}  // namespace gkdfast
