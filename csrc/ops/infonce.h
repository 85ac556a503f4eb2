// InfoNCE-style losses over two embedding matrices (crd, nt_xent and the ncontrast denominator):
// argument checks shared by every backend, and the device-agnostic all-N path.
//
// Op semantics (rows of `anchors` A [R, d] against rows of `candidates` C [N, d]; anchor r is the
// global row i = row_begin + r, 0 <= row_begin, row_begin + R <= N; R = N, row_begin = 0 is the
// square case, and a row shard of a distributed loss passes its own rows and offset):
//   l_ij = inv_tau * A_i . C_j
//   set(i) = all j (minus j = i when exclude_self)            if num_negatives == 0
//          = {pos(i)} u {K draws from [N] \ {i}} (Philox)        otherwise (pos only when pos_offset >= 0)
//   lse_i  = log sum_{j in set(i)} exp(l_ij)     (-inf for an empty set)
//   loss_i = lse_i - l_{i,pos(i)} with pos(i) = (i + pos_offset) mod N, or lse_i when pos_offset < 0.
// loss and lse come back in the accumulation dtype (float64 for float64 input, else float32).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "ops/lse_tiles.h"

namespace gkdfast {

void check_infonce(const at::Tensor& a, const at::Tensor& c, int64_t pos_offset, int64_t num_negatives,
                   int64_t row_begin, const char* op);
void check_infonce_backward(const at::Tensor& a, const at::Tensor& c, const at::Tensor& lse, const at::Tensor& g,
                            const at::Tensor& gl, const char* op);
at::ScalarType infonce_acc_type(at::ScalarType t);
// sample_negatives: rows is a 1-D int64 tensor, num_nodes >= 2, k_neg >= 0 (the range of the rows
// themselves is checked by each backend: a plain loop on CPU, one min/max reduction on CUDA).
void check_sample_negatives(const at::Tensor& rows, int64_t num_nodes, int64_t k_neg);

// All-N forward / backward by BLAS tiles of logits (lse_tile_shape) with a streaming log-sum-exp:
// extra memory O(tile + N * d) whatever N is; the backward recomputes each tile and accumulates
// both gradients from it (tiles are visited in a fixed order, so the result is deterministic).
// Works for CPU and CUDA tensors alike; `ops` does the elementwise part of each tile
// (ops/lse_tiles.h: ATen ops by default, the fused CUDA kernels from the CUDA registration).
std::tuple<at::Tensor, at::Tensor> infonce_tiled_forward(const at::Tensor& a, const at::Tensor& c, double inv_tau,
                                                         int64_t pos_offset, bool exclude_self, int64_t row_begin,
                                                         const LseTileOps& ops = aten_lse_tile_ops());
std::tuple<at::Tensor, at::Tensor> infonce_tiled_backward(const at::Tensor& a, const at::Tensor& c,
                                                          const at::Tensor& lse, const at::Tensor& grad_loss,
                                                          const at::Tensor& grad_lse, double inv_tau,
                                                          int64_t pos_offset, bool exclude_self, int64_t row_begin,
                                                         const LseTileOps& ops = aten_lse_tile_ops());

// The sampled-negative backward (num_negatives > 0) from ATen ops, chunked over anchor rows: the
// negatives re-drawn by the sample_negatives op, the candidate gradient added with index_add_.  Same
// result as the kernels up to float rounding; deterministic on CUDA under
// torch.use_deterministic_algorithms(True), where the CUDA registration runs it instead of the
// atomicAdd kernel (infonce_sampled_aten.cpp).
std::tuple<at::Tensor, at::Tensor> infonce_sampled_backward_chunked(const at::Tensor& a, const at::Tensor& c,
                                                                    const at::Tensor& lse, const at::Tensor& grad_loss,
                                                                    const at::Tensor& grad_lse, double inv_tau,
                                                                    int64_t pos_offset, int64_t num_negatives,
                                                                    int64_t seed, int64_t row_begin);

// Streaming top-k of query . key over all keys: (values [Q, k], indices [Q, k] int64), best first.
std::tuple<at::Tensor, at::Tensor> topk_similar_tiled(const at::Tensor& query, const at::Tensor& keys, int64_t k);

}  // namespace gkdfast
