#include "cuda/csr_matmul.h"

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_sparse_csr_tensor_unsafe.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <array>

#include "common/tile_workspace.h"
#include "ops/graph_checks.h"

namespace gkdfast {
namespace cuda {

bool csr_matmul_enabled(int64_t num_edges) {
  return !cuda_legacy_impl() && csr_matmul_fits(num_edges) && !at::globalContext().deterministicAlgorithms();
}

at::Tensor csr_matmul(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& values, const at::Tensor& x) {
  const int64_t n = csr_num_rows(rowptr), num_edges = col.size(0);
  if (num_edges == 0 || n == 0) return at::zeros({n, x.size(1)}, x.options());
  // cuSPARSE wants one index dtype for both arrays.
  const bool same = rowptr.scalar_type() == col.scalar_type();
  const at::Tensor crow = same ? rowptr : rowptr.to(at::kLong), cols = same ? col : col.to(at::kLong);
  const at::Tensor vals = values.defined() ? values : at::ones({num_edges}, x.options());
  const std::array<int64_t, 2> size{n, x.size(0)};
  const at::Tensor a = at::_sparse_csr_tensor_unsafe(crow, cols, vals, size, vals.options().layout(at::kSparseCsr));
  return at::mm(a, x);
}

}  // namespace cuda
}  // namespace gkdfast
