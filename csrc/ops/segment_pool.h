// Global pooling over contiguous node segments (the graphs of a batch): argument checks shared by
// the CPU and CUDA kernels.
//
//   segment_pool(x [N, d], ptr [B+1], reduce) -> (out [B, d], arg)
//     out[b] = sum / mean / max over i in [ptr[b], ptr[b+1]) of x[i]; 0 for an empty segment;
//     arg [B, d] int64: the first maximal node per (segment, feature), -1 for an empty segment
//     (max only; [0] otherwise).
//   segment_pool_backward(ptr, arg, grad_out [B, d], num_nodes, reduce) -> grad_x [N, d]
//     sum: grad_out[b] on every node of b; mean: divided by the segment's size; max: grad_out[b, f]
//     at node arg[b, f] only.  Every (node, feature) has one writer: deterministic, no atomics.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace gkdfast {

enum class PoolReduce { Sum, Mean, Max };

// x 2-D floating; ptr 1-D int32/int64 on x's device, a valid offset array from 0 to N (validated,
// remembered per storage and version like a CSR rowptr); returns the parsed reduce.
PoolReduce check_segment_pool(const at::Tensor& x, const at::Tensor& ptr, const std::string& reduce, const char* op);

// ptr as above (ending at num_nodes), grad_out [B, d] floating on ptr's device, and for max the
// forward's arg [B, d] int64 with every entry -1 or a node of its segment.
PoolReduce check_segment_pool_backward(const at::Tensor& ptr, const at::Tensor& arg, const at::Tensor& grad,
                                       int64_t num_nodes, const std::string& reduce, const char* op);

// A checked call laid out for the kernels: int64 contiguous offsets, the contiguous input (x or
// grad_out), the forward's arg (max only), and the output buffers: forward out [B, d] and arg [B, d]
// (max) or [0]; backward out = grad_x [N, d], zero-filled for max (only the winners are written).
struct SegmentPoolCall {
  PoolReduce reduce;
  at::Tensor ptr, in, arg, out;
  int64_t segments, d;
  bool empty() const { return segments == 0 || d == 0 || out.numel() == 0; }
};
SegmentPoolCall prepare_segment_pool(const at::Tensor& x, const at::Tensor& ptr, const std::string& reduce);
SegmentPoolCall prepare_segment_pool_backward(const at::Tensor& ptr, const at::Tensor& arg, const at::Tensor& grad,
                                              int64_t num_nodes, const std::string& reduce);

}  // namespace gkdfast
