// CPU spmm_gcn: GCN propagation D^-1/2 (A + I) D^-1/2 x in one pass over the destination CSR.
//
// spmm(norm="gcn") used to be a composite of five passes over [N, d] tensors (x * dinv, the spmm,
// + h, * dinv, plus their temporaries); here each row's neighbours are scaled by their dinv as they
// are gathered and the self term and the row's dinv are applied when the row is stored, so one
// [N, d] output is written and nothing else is allocated.  Every product and sum rounds as in the
// composite, in the same order, so the result is bitwise the composite's (tests/test_spmm_gcn.py).
// Rows are owned by one thread each (no atomics): bitwise reproducible for any thread count.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "common/cpu_parallel.h"
#include "common/cpu_vec.h"
#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "cpu/spmm_sum_simd.h"
#include "ops/graph_checks.h"
#include "ops/spmm.h"

#include <type_traits>
#include <vector>

namespace gkdfast {
namespace {

// The portable rows (float64, or a CPU without AVX2): the gathered row dinv[j] * x[j] goes through a
// per-thread buffer into the same vec::scale_copy / axpy / add calls spmm's generic kernel makes.
template <typename scalar_t, typename index_t>
void gcn_rows_generic(const index_t* rowptr, const index_t* col, const scalar_t* w, const scalar_t* dinv,
                      const scalar_t* x, scalar_t* out, int64_t begin, int64_t end, int64_t d) {
  std::vector<scalar_t> h(d);
  for (int64_t i = begin; i < end; ++i) {
    const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
    scalar_t* o = out + i * d;
    const scalar_t* xi = x + i * d;
    const scalar_t di = dinv[i];
    if (e0 == e1) {
      for (int64_t f = 0; f < d; ++f) o[f] = di * (scalar_t(0) + xi[f] * di);
      continue;
    }
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t j = static_cast<int64_t>(col[e]);
      const scalar_t* xj = x + j * d;
      const scalar_t dj = dinv[j];
      for (int64_t f = 0; f < d; ++f) h[f] = xj[f] * dj;
      const scalar_t we = w ? w[e] : scalar_t(1);
      if (e == e0) vec::scale_copy(o, h.data(), we, d);
      else if (w) vec::axpy(o, h.data(), we, d);
      else vec::add(o, h.data(), d);
    }
    for (int64_t f = 0; f < d; ++f) o[f] = di * (o[f] + xi[f] * di);
  }
}

template <typename scalar_t, typename index_t>
void spmm_gcn_rows(const index_t* rowptr, const index_t* col, const scalar_t* w, const scalar_t* dinv,
                   const scalar_t* x, scalar_t* out, int64_t num_rows, int64_t d) {
  if constexpr (std::is_same<scalar_t, float>::value) {
    const int isa = d == 0 ? 0 : spmm_simd::isa_level();
#ifdef GKD_SPMM_SIMD
    if (isa > 0) {
      parallel_rows(rowptr, num_rows, d, [&](int64_t begin, int64_t end) {
        if (isa == 2) spmm_simd::rows<true, true>(rowptr, col, w, x, out, begin, end, d, false, dinv);
        else spmm_simd::rows<false, true>(rowptr, col, w, x, out, begin, end, d, false, dinv);
      });
      return;
    }
#else
    (void)isa;
#endif
  }
  parallel_rows(rowptr, num_rows, d, [&](int64_t begin, int64_t end) {
    gcn_rows_generic<scalar_t, index_t>(rowptr, col, w, dinv, x, out, begin, end, d);
  });
}

}  // namespace

at::Tensor spmm_gcn_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                        const at::Tensor& t_col, const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight_in,
                        const at::Tensor& dinv_in, const at::Tensor& x_in) {
  check_spmm_gcn(rowptr_in, col_in, t_rowptr, t_col, t_eid, dinv_in, x_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto x = x_in.contiguous();
  const auto dinv = dinv_in.contiguous();
  const at::Tensor weight = spmm_edge_weight(weight_in, col, x, "spmm_gcn");
  const int64_t n = csr_num_rows(rowptr), d = x.size(1);
  auto out = at::empty({n, d}, x.options());
  GKD_DISPATCH_CPU_FLOATS(x.scalar_type(), "gkdfast_spmm_gcn_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_spmm_gcn_cpu_index", [&] {
      spmm_gcn_rows<scalar_t, index_t>(rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(),
                                       weight.defined() ? weight.data_ptr<scalar_t>() : nullptr,
                                       dinv.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                       n, d);
    });
  });
  return out;
}

}  // namespace gkdfast
