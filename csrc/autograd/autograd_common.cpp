#include "autograd/autograd_common.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

namespace gkdfast {
namespace autograd {

const c10::TypedOperatorHandle<SpmmSignature>& spmm_op() {
  static const auto op = find_op<SpmmSignature>("gkdfast::spmm");
  return op;
}

const c10::TypedOperatorHandle<SddmmSignature>& sddmm_op() {
  static const auto op = find_op<SddmmSignature>("gkdfast::sddmm");
  return op;
}

bool needs_autograd(const at::Tensor& t) {
  return (c10::GradMode::is_enabled() && t.requires_grad()) || t._fw_grad(0).defined();
}

bool has_value(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

bool needs_autograd(const c10::optional<at::Tensor>& t) { return has_value(t) && needs_autograd(*t); }

namespace {

// inv with inv[perm[k]] = k: maps transposed-CSR positions back (t_eid's inverse).  The size is read
// as sym_numel(): under torch.compile with dynamic shapes a backward is traced with symbolic sizes,
// which numel() refuses.
at::Tensor inverse_permutation(const at::Tensor& perm) {
  at::Tensor inv = at::empty_like(perm);
  inv.scatter_(0, perm.to(at::kLong), at::arange(c10::Scalar(perm.sym_numel()), perm.options()));
  return inv;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> transpose_of_transpose(const at::Tensor& rowptr, const at::Tensor& col,
                                                                      const at::Tensor& t_eid) {
  if (c10::GradMode::is_enabled()) return {rowptr, col, inverse_permutation(t_eid)};
  at::Tensor none = col.new_empty({0});
  return {none, none, none};
}

void needs_transpose_error(const char* op) {
  TORCH_CHECK(false, "gkdfast.", op, ": backward needs the transposed CSR, which was not passed to the op");
}

}  // namespace autograd
}  // namespace gkdfast
