// GSP (global structure preserving loss over all N^2 pairs): argument checks shared by the CPU
// and CUDA kernels.  The Python layer (gkdfast.losses.gsp) validates first; these guard direct
// torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "common/similarity_kernels.h"

namespace gkdfast {

enum class GspLoss { Mse, Kl };

// "mse" or "kl"; anything else is a ValueError naming both.  `op` prefixes the message.
GspLoss parse_gsp_loss(const std::string& name, const char* op);

// dtype of gsp_tiled's per-row sums and statistics, and of the GEMM operands: float32 for half
// inputs (an mse row sum of N squared differences overflows half), otherwise the input's own.
inline at::ScalarType gsp_output_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// student s [N, ds] and teacher t [N, dt]: 2-D, same row count, one floating dtype, one device;
// tau > 0.
void check_gsp_pair(const at::Tensor& s, const at::Tensor& t, double tau, const char* op);

// Everything a gsp_tiled kernel entry point checks first: the pair (check_gsp_pair), the kernel
// and loss names, then the row range (resolve_gsp_rows), in that order; returns the parsed names,
// N and the resolved range [r0, r1).
struct GspArgs {
  SimKernel kind;
  GspLoss loss;
  int64_t n, r0, r1;
};
GspArgs check_gsp(const at::Tensor& s, const at::Tensor& t, double tau, c10::string_view kernel,
                  c10::string_view loss, int64_t row_begin, int64_t row_end, const char* op = "gsp");

// gsp_tiled_backward's checks: check_gsp, then the forward state (check_gsp_backward_state).
GspArgs check_gsp_backward(const at::Tensor& s, const at::Tensor& t, const at::Tensor& per_row,
                           const at::Tensor& stats, const at::Tensor& grad, double tau, c10::string_view kernel,
                           c10::string_view loss, int64_t row_begin, int64_t row_end);

// What gsp_tiled_backward needs from its forward: per_row [R], stats [R, 2] and grad [R] for the
// R rows of the range.
void check_gsp_backward_state(int64_t rows, const at::Tensor& per_row, const at::Tensor& stats,
                              const at::Tensor& grad, const at::Tensor& like);

// Row range of a gsp_tiled call: row_end = -1 means N; needs 0 <= row_begin <= row_end <= N.
// Returns the resolved row_end.
int64_t resolve_gsp_rows(int64_t n, int64_t row_begin, int64_t row_end, const char* op);

// The backward of a row range [r0, r1) as a full-N problem: per_row, stats and grad extended to N
// rows in float64, with the rows outside the range given weight 0, KL 0 and log-sum-exps
// kOutsideLse.  A pair term is (weight of its row) x (probability from that row's lse); outside
// the range the weight is 0 and exp(x - kOutsideLse) is exactly 0 (finite, so no 0 * inf), hence
// the full-N backward formulas give exactly the range's gradients, for every row of both sides.
constexpr double kOutsideLse = 1e30;
struct GspFullState {
  at::Tensor per_row, stats, grad;  // [N], [N, 2], [N], float64
};
GspFullState gsp_full_state(int64_t n, int64_t r0, int64_t r1, const at::Tensor& per_row, const at::Tensor& stats,
                            const at::Tensor& grad);

}  // namespace gkdfast
