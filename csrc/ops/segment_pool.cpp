#include "ops/segment_pool.h"

#include "ops/csr_validation.h"
#include "ops/graph_checks.h"
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

namespace gkdfast {
namespace {

PoolReduce parse_pool_reduce(const std::string& name, const char* op) {
  if (name == "sum") return PoolReduce::Sum;
  if (name == "mean") return PoolReduce::Mean;
  if (name == "max") return PoolReduce::Max;
  TORCH_CHECK_VALUE(false, "gkdfast.", op, ": unknown reduce '", name, "'; expected sum, mean or max");
}

}  // namespace

PoolReduce check_segment_pool(const at::Tensor& x, const at::Tensor& ptr, const std::string& reduce, const char* op) {
  const PoolReduce r = parse_pool_reduce(reduce, op);
  TORCH_CHECK_VALUE(x.dim() == 2, "gkdfast.", op, ": x must be 2-D [N, d], got ", x.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), "gkdfast.", op, ": x must be floating, got ",
                   x.scalar_type());
  check_rowptr(ptr, op, "ptr");
  check_same_device(ptr, x, op, "ptr");
  TORCH_CHECK_VALUE(ptr.numel() >= 1, "gkdfast.", op, ": ptr needs B + 1 >= 1 offsets");
  validate_rowptr(ptr, x.size(0), op, "ptr");
  return r;
}

PoolReduce check_segment_pool_backward(const at::Tensor& ptr, const at::Tensor& arg, const at::Tensor& grad,
                                       int64_t num_nodes, const std::string& reduce, const char* op) {
  const PoolReduce r = parse_pool_reduce(reduce, op);
  check_rowptr(ptr, op, "ptr");
  TORCH_CHECK_VALUE(ptr.numel() >= 1, "gkdfast.", op, ": ptr needs B + 1 >= 1 offsets");
  TORCH_CHECK_VALUE(num_nodes >= 0, "gkdfast.", op, ": num_nodes must be >= 0, got ", num_nodes);
  validate_rowptr(ptr, num_nodes, op, "ptr");
  const int64_t b = ptr.numel() - 1;
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == b, "gkdfast.", op, ": grad_out must be [B = ", b,
                    ", d], got ", grad.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(grad.scalar_type()), "gkdfast.", op, ": grad_out must be floating, got ",
                   grad.scalar_type());
  check_same_device(grad, ptr, op, "grad_out");
  if (r == PoolReduce::Max) {
    TORCH_CHECK_VALUE(arg.scalar_type() == at::kLong && arg.sizes() == grad.sizes(), "gkdfast.", op,
                      ": arg must be the forward's int64 [B, d] winners, got ", arg.scalar_type(), " ", arg.sizes());
    check_same_device(arg, ptr, op, "arg");
    // the kernels write grad_x[arg[b, f], f]: each entry must be -1 or a node of segment b
    validate_arg_edges(arg, ptr, op, "segment_pool");
  }
  return r;
}

SegmentPoolCall prepare_segment_pool(const at::Tensor& x, const at::Tensor& ptr, const std::string& reduce) {
  SegmentPoolCall c;
  c.reduce = check_segment_pool(x, ptr, reduce, "segment_pool");
  c.in = x.contiguous();
  c.ptr = ptr.contiguous().to(at::kLong);
  c.segments = c.ptr.numel() - 1;
  c.d = x.size(1);
  c.out = at::empty({c.segments, c.d}, x.options());
  c.arg = c.reduce == PoolReduce::Max ? at::empty({c.segments, c.d}, x.options().dtype(at::kLong))
                                      : at::empty({0}, x.options().dtype(at::kLong));
  return c;
}

SegmentPoolCall prepare_segment_pool_backward(const at::Tensor& ptr, const at::Tensor& arg, const at::Tensor& grad,
                                              int64_t num_nodes, const std::string& reduce) {
  SegmentPoolCall c;
  c.reduce = check_segment_pool_backward(ptr, arg, grad, num_nodes, reduce, "segment_pool_backward");
  c.in = grad.contiguous();
  c.ptr = ptr.contiguous().to(at::kLong);
  c.segments = c.ptr.numel() - 1;
  c.d = grad.size(1);
  c.arg = c.reduce == PoolReduce::Max ? arg.contiguous() : arg;
  c.out = c.reduce == PoolReduce::Max ? at::zeros({num_nodes, c.d}, grad.options())
                                      : at::empty({num_nodes, c.d}, grad.options());
  return c;
}

}  // namespace gkdfast
