// CUDA epilogue of GSP's GEMM-tile driver (csrc/ops/gsp_tiles.h): the driver gets each tile's dot
// products from cuBLAS (tensor cores; TF32 when the user allows it), then launches ONE fused kernel
// per tile here.  A block owns one tile row: forward turns the dots into kernel values / tau (kept
// in place for the second pass), reduces row max and sum-exp with fixed-order block reductions and
// merges them into the row's fp32/fp64 online log-sum-exp state; backward overwrites the tile with
// the pair coefficients C * other (the driver's addmm multiplies them back) and sums C * self.
// Every row has one writer per tile and tiles run in a fixed order: bitwise deterministic, no
// atomics.  The per-element formulas are common/gsp_tile_math.h, shared with the host epilogue
// that the CPU tests run.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>

#include "common/gsp_tile_math.h"
#include "common/pairwise_tiles.h"
#include "cuda/cuda_utils.cuh"
#include "cuda/gsp_tiles_cuda.h"

namespace gkdfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T>
__global__ void gsp_kl_forward_tile(T* __restrict__ gs, int64_t lds, T* __restrict__ gt, int64_t ldt, int64_t bj,
                                    int64_t i0, int64_t j0, const T* __restrict__ ns, const T* __restrict__ nt,
                                    SimKernel kind, T gamma, T inv_tau, T* __restrict__ state, int64_t ld_state) {
  __shared__ T smem[33];
  const int64_t r = blockIdx.x, a = i0 + r;
  T* rs = gs + r * lds;
  T* rt = gt + r * ldt;
  const T nas = ns ? ns[a] : T(0), nat = nt ? nt[a] : T(0);
  T ms = -std::numeric_limits<T>::infinity(), mt = ms;
  for (int64_t c = threadIdx.x; c < bj; c += blockDim.x) {
    const int64_t b = j0 + c;
    const T xs = mul_rn(gsp_tile::kernel_from_dot<T>(kind, rs[c], nas, ns ? ns[b] : T(0), a == b, gamma), inv_tau);
    const T xt = mul_rn(gsp_tile::kernel_from_dot<T>(kind, rt[c], nat, nt ? nt[b] : T(0), a == b, gamma), inv_tau);
    rs[c] = xs;  // this thread reads them back in the second pass
    rt[c] = xt;
    ms = xs > ms ? xs : ms;
    mt = xt > mt ? xt : mt;
  }
  ms = block_max(ms, smem);
  mt = block_max(mt, smem);
  T ss = 0, st = 0, wt = 0;
  for (int64_t c = threadIdx.x; c < bj; c += blockDim.x) {
    const T xs = rs[c], xt = rt[c];
    ss += exp(xs - ms);
    const T e = exp(xt - mt);
    st += e;
    wt += e * ((xt - mt) - (xs - ms));  // against the tile maxima, as tiles::OnlineKL keeps it
  }
  ss = block_sum(ss, smem);
  st = block_sum(st, smem);
  wt = block_sum(wt, smem);
  if (threadIdx.x == 0) {
    T* row = state + r * ld_state;
    tiles::OnlineKL<T> acc = tiles::OnlineKL<T>::load(row);
    acc.merge(tiles::OnlineKL<T>::of(ms, ss, mt, st, wt));
    acc.save(row);
  }
}

template <typename T>
__global__ void gsp_mse_forward_tile(const T* __restrict__ gs, int64_t lds, const T* __restrict__ gt, int64_t ldt,
                                     int64_t bj, int64_t i0, int64_t j0, const T* __restrict__ ns,
                                     const T* __restrict__ nt, SimKernel kind, T gamma, double* __restrict__ state,
                                     int64_t ld_state) {
  __shared__ double smem[33];
  const int64_t r = blockIdx.x, a = i0 + r;
  const T nas = ns ? ns[a] : T(0), nat = nt ? nt[a] : T(0);
  double sq = 0;  // all terms >= 0: accumulated wide
  for (int64_t c = threadIdx.x; c < bj; c += blockDim.x) {
    const int64_t b = j0 + c;
    const T ks = gsp_tile::kernel_from_dot<T>(kind, gs[r * lds + c], nas, ns ? ns[b] : T(0), a == b, gamma);
    const T kt = gsp_tile::kernel_from_dot<T>(kind, gt[r * ldt + c], nat, nt ? nt[b] : T(0), a == b, gamma);
    const double d = double(ks) - double(kt);
    sq += d * d;
  }
  sq = block_sum(sq, smem);
  if (threadIdx.x == 0) state[r * ld_state] += sq;
}

template <typename T>
__global__ void gsp_backward_tile(T* __restrict__ gs, int64_t lds, T* __restrict__ gt, int64_t ldt, int64_t bj,
                                  int64_t i0, int64_t j0, const T* __restrict__ ns, const T* __restrict__ nt,
                                  const T* __restrict__ lse_s, const T* __restrict__ lse_t, const T* __restrict__ kl,
                                  const T* __restrict__ w, SimKernel kind, bool kl_loss, bool need_t, T gamma,
                                  T inv_tau, T* __restrict__ self_rows, int64_t ld_self) {
  __shared__ T smem[33];
  const int64_t r = blockIdx.x, a = i0 + r;
  const gsp_tile::RowStats<T> ra{lse_s[a], lse_t[a], kl[a], w[a]};
  const T nas = ns ? ns[a] : T(0), nat = nt ? nt[a] : T(0);
  T self_s = 0, self_t = 0;
  for (int64_t c = threadIdx.x; c < bj; c += blockDim.x) {
    const int64_t b = j0 + c;
    const gsp_tile::RowStats<T> rb{lse_s[b], lse_t[b], kl[b], w[b]};
    const T g_s = gs[r * lds + c], g_t = gt[r * ldt + c];
    const T ks = gsp_tile::kernel_from_dot<T>(kind, g_s, nas, ns ? ns[b] : T(0), a == b, gamma);
    const T kt = gsp_tile::kernel_from_dot<T>(kind, g_t, nat, nt ? nt[b] : T(0), a == b, gamma);
    T cs, ct, other, self;
    gsp_tile::pair_coef<T>(kl_loss, ks, kt, inv_tau, ra, rb, need_t, cs, ct);
    gsp_tile::kernel_grad_from_dot<T>(kind, g_s, ks, gamma, other, self);
    gs[r * lds + c] = cs * other;
    self_s += cs * self;
    gsp_tile::kernel_grad_from_dot<T>(kind, g_t, kt, gamma, other, self);
    gt[r * ldt + c] = ct * other;
    self_t += ct * self;
  }
  self_s = block_sum(self_s, smem);
  self_t = block_sum(self_t, smem);
  if (threadIdx.x == 0) {
    self_rows[r * ld_self] += self_s;
    self_rows[r * ld_self + 1] += self_t;
  }
}

class CudaGspEpilogue final : public GspTileEpilogue {
 public:
  void forward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, at::Tensor state) const override {
    const int64_t bi = tile.gs.size(0), bj = tile.gs.size(1);
    if (bi == 0 || bj == 0) return;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(tile.gs.get_device()).stream();
    AT_DISPATCH_FLOATING_TYPES(tile.gs.scalar_type(), "gkdfast_gsp_tile_forward_cuda", [&] {
      using T = scalar_t;
      if (k.kl) {
        gsp_kl_forward_tile<T><<<static_cast<unsigned>(bi), kThreads, 0, stream>>>(
            tile.gs.data_ptr<T>(), tile.gs.stride(0), tile.gt.data_ptr<T>(), tile.gt.stride(0), bj, tile.i0, tile.j0,
            ptr_or_null<T>(norms.s), ptr_or_null<T>(norms.t), k.kind, static_cast<T>(k.gamma),
            static_cast<T>(k.inv_tau), state.data_ptr<T>(), state.stride(0));
      } else {
        gsp_mse_forward_tile<T><<<static_cast<unsigned>(bi), kThreads, 0, stream>>>(
            tile.gs.data_ptr<T>(), tile.gs.stride(0), tile.gt.data_ptr<T>(), tile.gt.stride(0), bj, tile.i0, tile.j0,
            ptr_or_null<T>(norms.s), ptr_or_null<T>(norms.t), k.kind, static_cast<T>(k.gamma),
            state.data_ptr<double>(), state.stride(0));
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  void backward(const GspTileConsts& k, const GspTile& tile, const GspNorms& norms, const GspRowState& rows, bool,
                bool need_t, at::Tensor self_rows) const override {
    const int64_t bi = tile.gs.size(0), bj = tile.gs.size(1);
    if (bi == 0 || bj == 0) return;
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(tile.gs.get_device()).stream();
    AT_DISPATCH_FLOATING_TYPES(tile.gs.scalar_type(), "gkdfast_gsp_tile_backward_cuda", [&] {
      using T = scalar_t;
      gsp_backward_tile<T><<<static_cast<unsigned>(bi), kThreads, 0, stream>>>(
          tile.gs.data_ptr<T>(), tile.gs.stride(0), tile.gt.data_ptr<T>(), tile.gt.stride(0), bj, tile.i0, tile.j0,
          ptr_or_null<T>(norms.s), ptr_or_null<T>(norms.t), rows.lse_s.data_ptr<T>(), rows.lse_t.data_ptr<T>(),
          rows.kl.data_ptr<T>(), rows.w.data_ptr<T>(), k.kind, k.kl, need_t, static_cast<T>(k.gamma),
          static_cast<T>(k.inv_tau), self_rows.data_ptr<T>(), self_rows.stride(0));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace

const GspTileEpilogue& cuda_gsp_epilogue() {
  static const CudaGspEpilogue epi;
  return epi;
}

}  // namespace cuda
}  // namespace gkdfast
