// GSP's GEMM-tile driver, shared by every device (the dot-product kernels: linear, cosine, poly,
// l2, rbf; laplace keeps its per-pair paths).
//
// The driver owns the orchestration: operands prepared once (cosine rows normalised, squared norms
// for l2/rbf, in the accumulation dtype), tiles sized from the workspace budget
// (common/tile_workspace.h; two [bi x bj] buffers: student and teacher), each tile's dot products
// from one at::mm per model (cuBLAS on CUDA, honouring torch.backends.cuda.matmul.allow_tf32),
// tiles visited in a fixed order (deterministic), per-row state finished with a few ATen ops.
// A GspTileEpilogue turns a tile of dots into kernel values and merges them into per-row state
// (forward), or into the coefficient tile the driver multiplies back with one addmm (backward).
// Two epilogues exist: the host one here (scalar loops, rows in parallel) and the CUDA one
// (csrc/cuda/gsp_tiles_cuda.cu, one fused kernel per tile); both use common/gsp_tile_math.h.
//
// On the CPU the default GSP path stays the SIMD tile loops of csrc/cpu/gsp_cpu.cpp;
// GKDFAST_CPU_GSP_IMPL=portable runs this driver with the host epilogue instead, which is how the
// CPU test suite exercises the orchestration the GPU runs.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "common/similarity_kernels.h"
#include "ops/gsp.h"

namespace gkdfast {

struct GspTileConsts {
  SimKernel kind;
  bool kl;
  double gamma, inv_tau;
};

// Dot products of rows [i0, i0 + bi) against columns [j0, j0 + bj) for both models; row stride
// is stride(0), column stride 1.
struct GspTile {
  at::Tensor gs, gt;
  int64_t i0, j0;
};

// Squared row norms of all N rows (l2 / rbf; undefined tensors otherwise), accumulation dtype.
struct GspNorms {
  at::Tensor s, t;
};

// What the backward reads per row, all N rows, accumulation dtype (rows outside the forward's
// range: w = 0, kl = 0, lse = kOutsideLse, see gsp_full_state).
struct GspRowState {
  at::Tensor lse_s, lse_t, kl, w;
};

class GspTileEpilogue {
 public:
  virtual ~GspTileEpilogue() = default;
  // kl : state [bi, 5] of the tile's rows in the accumulation dtype, the slots of tiles::OnlineKL
  //      (max_s, sum_s, max_t, sum_t, w), merged with this tile's x = k / tau formed by mul_rn;
  // mse: state [bi] float64 += sum over the tile's columns of (K^S - K^T)^2.
  virtual void forward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms,
                       at::Tensor state) const = 0;
  // Overwrites tile.gs / tile.gt with C * other per pair and adds sum over the tile's columns of
  // C * self into self_rows [bi, 2] (student, teacher), accumulation dtype.
  virtual void backward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, const GspRowState& rows,
                        bool need_s, bool need_t, at::Tensor self_rows) const = 0;
};

const GspTileEpilogue& host_gsp_epilogue();

// True when GKDFAST_CPU_GSP_IMPL=portable (see above); "" or "simd" is the default; anything else
// is a ValueError.
bool cpu_gsp_portable();

// Rows [r0, r1) against all N columns: (per_row [R], stats [R, 2]) in the input dtype, as the
// gsp_tiled op returns them.  Arguments already checked; kind must be GEMM-friendly.
std::tuple<at::Tensor, at::Tensor> gsp_tiles_forward(const at::Tensor& s, const at::Tensor& t, SimKernel kind,
                                                     GspLoss loss, double gamma, double tau, int64_t r0, int64_t r1,
                                                     const GspTileEpilogue& epi);

// Gradients of all N rows from full-N state (gsp_full_state for a partial range [r0, r1)); an
// unwanted gradient comes back as an empty [0] tensor.
std::tuple<at::Tensor, at::Tensor> gsp_tiles_backward(const at::Tensor& s, const at::Tensor& t,
                                                      const at::Tensor& per_row_n, const at::Tensor& stats_n,
                                                      const at::Tensor& grad_n, SimKernel kind, GspLoss loss,
                                                      double gamma, double tau, bool need_s, bool need_t, int64_t r0,
                                                      int64_t r1, const GspTileEpilogue& epi);

}  // namespace gkdfast
