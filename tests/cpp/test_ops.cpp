// C++-level test of the CMake library: the operators are reachable through the dispatcher from a
// program that links only libgkdfast + libtorch (no Python), every gkdfast op has a CPU kernel (and a
// CUDA kernel when built with CUDA), the message-passing ops give hand-checked results on a 3-node
// graph, and spmm differentiates from C++.  Exit status 0 = pass.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  if (!ok) ++failures;
}

bool close(const at::Tensor& a, const at::Tensor& b) { return a.sizes() == b.sizes() && at::allclose(a, b, 1e-6, 1e-6); }

at::Tensor f32(std::initializer_list<float> v, at::IntArrayRef shape) {
  return at::tensor(std::vector<float>(v), at::kFloat).reshape(shape);
}
at::Tensor i64(std::initializer_list<int64_t> v) { return at::tensor(std::vector<int64_t>(v), at::kLong); }

using SpmmFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, const at::Tensor&,
                                                  const std::optional<at::Tensor>&, const at::Tensor&,
                                                  c10::string_view);
using SddmmFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const at::Tensor&, const at::Tensor&);
using SoftmaxFn = at::Tensor(const at::Tensor&, const at::Tensor&);

}  // namespace

int main() {
  auto& dispatcher = c10::Dispatcher::singleton();

  // Every operator of the namespace has a kernel for each backend this library was built with.
  int num_ops = 0;
  for (const auto& name : dispatcher.getAllOpNames()) {
    if (name.name.rfind("gkdfast::", 0) != 0) continue;
    ++num_ops;
    auto op = dispatcher.findOp(name);
    expect(op.has_value() && op->hasKernelForDispatchKey(c10::DispatchKey::CPU), name.name + " has a CPU kernel");
#ifdef GKDFAST_WITH_CUDA
    expect(op.has_value() && op->hasKernelForDispatchKey(c10::DispatchKey::CUDA), name.name + " has a CUDA kernel");
#endif
  }
  expect(num_ops >= 5, "gkdfast registers its operators (" + std::to_string(num_ops) + " found)");

  // Graph (messages j -> i): 0->1, 2->1, 1->2; node 0 has no in-edge.  CSR by destination and its
  // transpose (t_eid = position of each transposed entry in the forward CSR).
  const auto rowptr = i64({0, 0, 2, 3}), col = i64({0, 2, 1});
  const auto t_rowptr = i64({0, 1, 2, 3}), t_col = i64({1, 2, 1}), t_eid = i64({0, 2, 1});
  const auto x = f32({1, 2, 3, -1, 0, 5}, {3, 2});

  auto spmm = dispatcher.findSchemaOrThrow("gkdfast::spmm", "").typed<SpmmFn>();
  auto [sum, no_arg] = spmm.call(rowptr, col, t_rowptr, t_col, t_eid, std::nullopt, x, "sum");
  expect(close(sum, f32({0, 0, 1, 7, 3, -1}, {3, 2})) && no_arg.numel() == 0, "spmm sum");
  auto [mean, unused] = spmm.call(rowptr, col, t_rowptr, t_col, t_eid, std::nullopt, x, "mean");
  expect(close(mean, f32({0, 0, 0.5, 3.5, 3, -1}, {3, 2})), "spmm mean");
  auto [mx, arg] = spmm.call(rowptr, col, t_rowptr, t_col, t_eid, std::nullopt, x, "max");
  expect(close(mx, f32({0, 0, 1, 5, 3, -1}, {3, 2})) && at::equal(arg, i64({-1, -1, 0, 1, 2, 2}).reshape({3, 2})),
         "spmm max (values and arg; empty row gives 0 / -1)");
  const auto w = f32({2, 1, -1}, {3});
  auto [wsum, unused2] = spmm.call(rowptr, col, t_rowptr, t_col, t_eid, w, x, "sum");
  expect(close(wsum, f32({0, 0, 2, 9, -3, 1}, {3, 2})), "spmm weighted sum");

  {  // Gradients without Python: spmm's autograd kernel is C++ (csrc/autograd/).  With upstream ones,
     // grad x[j] = the weights of j's out-edges, summed; grad w_e = the row sum of x[source of e].
    at::Tensor xg = x.clone(), wg = w.clone();
    xg.set_requires_grad(true);
    wg.set_requires_grad(true);
    auto [out, no_arg2] = spmm.call(rowptr, col, t_rowptr, t_col, t_eid, wg, xg, "sum");
    out.sum().backward();
    expect(xg.grad().defined() && close(xg.grad(), f32({2, 2, -1, -1, 1, 1}, {3, 2})) && wg.grad().defined() &&
               close(wg.grad(), f32({3, 5, 2}, {3})),
           "spmm backward from C++ (x and edge weights)");
  }

  auto sddmm = dispatcher.findSchemaOrThrow("gkdfast::sddmm", "").typed<SddmmFn>();
  expect(close(sddmm.call(rowptr, col, t_rowptr, t_col, t_eid, x, x), f32({1, -5, -5}, {3})), "sddmm");

  auto softmax = dispatcher.findSchemaOrThrow("gkdfast::edge_softmax", "").typed<SoftmaxFn>();
  expect(close(softmax.call(rowptr, f32({0, std::log(3.0f), 7}, {3})), f32({0.25, 0.75, 1}, {3})), "edge_softmax");

  bool threw = false;
  try {
    spmm.call(rowptr, col, t_rowptr, t_col, t_eid, std::nullopt, x, "median");
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "unknown reduce raises");

  std::cout << (failures ? "FAILED: " : "passed: ") << failures << " failure(s)\n";
  return failures ? 1 : 0;
}
