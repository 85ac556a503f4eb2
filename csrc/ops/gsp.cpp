#include "ops/gsp.h"
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

namespace gkdfast {

GspLoss parse_gsp_loss(const std::string& name, const char* op) {
  if (name == "mse") return GspLoss::Mse;
  if (name == "kl") return GspLoss::Kl;
  TORCH_CHECK_VALUE(false, "gkdfast.", op, ": unknown loss '", name, "'; expected 'mse' or 'kl'");
}

void check_gsp_pair(const at::Tensor& s, const at::Tensor& t, double tau, const char* op) {
  TORCH_CHECK_VALUE(s.dim() == 2 && t.dim() == 2, "gkdfast.", op, ": student and teacher must be 2-D, got ",
                    s.sizes(), " and ", t.sizes());
  TORCH_CHECK_VALUE(s.size(0) == t.size(0), "gkdfast.", op, ": student has ", s.size(0), " rows but teacher has ",
                    t.size(0));
  TORCH_CHECK_TYPE(at::isFloatingType(s.scalar_type()) && s.scalar_type() == t.scalar_type(), "gkdfast.", op,
                   ": student and teacher must share one floating dtype, got ", s.scalar_type(), " and ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(s.device() == t.device(), "gkdfast.", op, ": student on ", s.device(), ", teacher on ",
                    t.device());
  TORCH_CHECK_VALUE(tau > 0, "gkdfast.", op, ": tau must be > 0, got ", tau);
}

void check_gsp_backward_state(int64_t rows, const at::Tensor& per_row, const at::Tensor& stats,
                              const at::Tensor& grad, const at::Tensor& like) {
  TORCH_CHECK_VALUE(per_row.numel() == rows && stats.numel() == 2 * rows && grad.numel() == rows,
                    "gkdfast.gsp_backward: per_row, stats and grad must have R, 2R and R entries (R = ", rows,
                    " rows in the range)");
  // The kernels read these as raw pointers on the inputs' device: a CPU tensor in a CUDA call (or
  // the reverse) would be dereferenced on the wrong side.
  TORCH_CHECK_VALUE(per_row.device() == like.device() && stats.device() == like.device() &&
                        grad.device() == like.device(),
                    "gkdfast.gsp_backward: per_row, stats and grad must be on the inputs' device ", like.device(),
                    ", got ", per_row.device(), ", ", stats.device(), ", ", grad.device());
}

int64_t resolve_gsp_rows(int64_t n, int64_t row_begin, int64_t row_end, const char* op) {
  const int64_t end = row_end < 0 ? n : row_end;
  TORCH_CHECK_VALUE(row_begin >= 0 && row_begin <= end && end <= n && row_end >= -1, "gkdfast.", op,
                    ": need 0 <= row_begin <= row_end <= N (row_end = -1 for N), got row_begin = ", row_begin,
                    ", row_end = ", row_end, ", N = ", n);
  return end;
}

GspFullState gsp_full_state(int64_t n, int64_t r0, int64_t r1, const at::Tensor& per_row, const at::Tensor& stats,
                            const at::Tensor& grad) {
  const auto opts = per_row.options().dtype(at::kDouble);
  GspFullState out{at::zeros({n}, opts), at::full({n, 2}, kOutsideLse, opts), at::zeros({n}, opts)};
  const int64_t r = r1 - r0;
  if (r > 0) {
    out.per_row.narrow(0, r0, r).copy_(per_row.detach().reshape({r}));
    out.stats.narrow(0, r0, r).copy_(stats.detach().reshape({r, 2}));
    out.grad.narrow(0, r0, r).copy_(grad.detach().reshape({r}));
  }
  return out;
}

GspArgs check_gsp(const at::Tensor& s, const at::Tensor& t, double tau, c10::string_view kernel,
                  c10::string_view loss, int64_t row_begin, int64_t row_end, const char* op) {
  check_gsp_pair(s, t, tau, op);
  const SimKernel kind = parse_sim_kernel(std::string(kernel), op);
  const GspLoss parsed_loss = parse_gsp_loss(std::string(loss), op);
  const int64_t n = s.size(0);
  return {kind, parsed_loss, n, row_begin, resolve_gsp_rows(n, row_begin, row_end, op)};
}

GspArgs check_gsp_backward(const at::Tensor& s, const at::Tensor& t, const at::Tensor& per_row,
                           const at::Tensor& stats, const at::Tensor& grad, double tau, c10::string_view kernel,
                           c10::string_view loss, int64_t row_begin, int64_t row_end) {
  const GspArgs args = check_gsp(s, t, tau, kernel, loss, row_begin, row_end, "gsp_backward");
  check_gsp_backward_state(args.r1 - args.r0, per_row, stats, grad, s);
  return args;
}

}  // namespace gkdfast
