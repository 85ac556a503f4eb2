// CPU SDDMM: out[e] = a[i] . b[j] for every edge e = (j -> i), rows of the destination CSR in
// degree-balanced parallel chunks; a[i] stays in L1 while the row's sources stream through.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "common/cpu_parallel.h"
#include "common/cpu_vec.h"
#include "ops/graph_checks.h"
#include "ops/sddmm.h"

namespace gkdfast {
at::Tensor sddmm_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                     const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& a_in,
                     const at::Tensor& b_in) {
  check_sddmm(rowptr_in, col_in, t_rowptr, t_col, t_eid, a_in, b_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto a = a_in.contiguous();
  const auto b = b_in.contiguous();
  const int64_t n = csr_num_rows(rowptr), d = a.size(1);
  auto out = at::empty({col.size(0)}, a.options());
  GKD_DISPATCH_CPU_FLOATS(a.scalar_type(), "gkdfast_sddmm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_sddmm_cpu_index", [&] {
      const index_t* rp = rowptr.data_ptr<index_t>();
      const index_t* cl = col.data_ptr<index_t>();
      const scalar_t* ap = a.data_ptr<scalar_t>();
      const scalar_t* bp = b.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      parallel_rows(rp, n, d, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const scalar_t* ar = ap + i * d;
          for (int64_t e = rp[i]; e < rp[i + 1]; ++e) op[e] = vec::dot(ar, bp + static_cast<int64_t>(cl[e]) * d, d);
        }
      });
    });
  });
  return out;
}

}  // namespace gkdfast
