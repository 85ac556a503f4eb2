// CPU global pooling over contiguous segments (see ops/segment_pool.h): segments in parallel, each
// owns its output row (forward) or its nodes' rows (backward): deterministic, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <limits>
#include <vector>

#include "common/cpu_vec.h"
#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "ops/segment_pool.h"

namespace gkdfast {
namespace {

// Grain: about 16k features of work per task so tiny segments are batched together.
int64_t grain_for(int64_t avg_nodes, int64_t d) {
  const int64_t per = std::max<int64_t>(1, avg_nodes * std::max<int64_t>(1, d));
  return std::max<int64_t>(1, 16384 / per);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> segment_pool_cpu(const at::Tensor& x_in, const at::Tensor& ptr_in,
                                                    c10::string_view reduce_name) {
  const SegmentPoolCall c = prepare_segment_pool(x_in, ptr_in, std::string(reduce_name));
  if (c.empty()) return {c.out, c.arg};
  const PoolReduce reduce = c.reduce;
  const int64_t b = c.segments, d = c.d, n = c.in.size(0);
  const int64_t* pp = c.ptr.data_ptr<int64_t>();
  GKD_DISPATCH_CPU_FLOATS(c.in.scalar_type(), "gkdfast_segment_pool_cpu", [&] {
    const scalar_t* xp = c.in.data_ptr<scalar_t>();
    scalar_t* op = c.out.data_ptr<scalar_t>();
    int64_t* ap = reduce == PoolReduce::Max ? c.arg.data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, b, grain_for(n / std::max<int64_t>(1, b), d), [&](int64_t g0, int64_t g1) {
      std::vector<int32_t> local_arg(ap ? d : 0);
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t i0 = pp[g], i1 = pp[g + 1];
        scalar_t* o = op + g * d;
        if (i0 == i1) {  // empty segment: 0 (and no winner)
          std::fill(o, o + d, scalar_t(0));
          if (ap) std::fill(ap + g * d, ap + (g + 1) * d, int64_t(-1));
          continue;
        }
        std::copy(xp + i0 * d, xp + (i0 + 1) * d, o);
        if (reduce == PoolReduce::Max) {
          // Winner offsets within the segment in an L1-resident int32 row: the compare + blend is
          // same-width as float and vectorises (vec::max_update_local: first max wins, NaN sticks).
          int64_t* a = ap + g * d;
          if (i1 - i0 > std::numeric_limits<int32_t>::max()) {  // a segment too long for int32 offsets
            std::fill(a, a + d, i0);
            for (int64_t i = i0 + 1; i < i1; ++i) vec::max_update(o, a, xp + i * d, scalar_t(1), i, d);
            continue;
          }
          std::fill(local_arg.begin(), local_arg.end(), 0);
          for (int64_t i = i0 + 1; i < i1; ++i)
            vec::max_update_local(o, local_arg.data(), xp + i * d, scalar_t(1), static_cast<int32_t>(i - i0), d);
          for (int64_t f = 0; f < d; ++f) a[f] = i0 + local_arg[f];
        } else {
          for (int64_t i = i0 + 1; i < i1; ++i) vec::add(o, xp + i * d, d);
          if (reduce == PoolReduce::Mean) {
            const scalar_t inv = scalar_t(1) / scalar_t(i1 - i0);
            for (int64_t f = 0; f < d; ++f) o[f] *= inv;
          }
        }
      }
    });
  });
  return {c.out, c.arg};
}

at::Tensor segment_pool_backward_cpu(const at::Tensor& ptr_in, const at::Tensor& arg_in, const at::Tensor& grad_in,
                                     int64_t num_nodes, c10::string_view reduce_name) {
  const SegmentPoolCall c = prepare_segment_pool_backward(ptr_in, arg_in, grad_in, num_nodes, std::string(reduce_name));
  if (c.empty()) return c.out;
  const PoolReduce reduce = c.reduce;
  const int64_t b = c.segments, d = c.d;
  const int64_t* pp = c.ptr.data_ptr<int64_t>();
  GKD_DISPATCH_CPU_FLOATS(c.in.scalar_type(), "gkdfast_segment_pool_backward_cpu", [&] {
    const scalar_t* gp = c.in.data_ptr<scalar_t>();
    scalar_t* xp = c.out.data_ptr<scalar_t>();
    const int64_t* ap = reduce == PoolReduce::Max ? c.arg.data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, b, grain_for(num_nodes / std::max<int64_t>(1, b), d), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t i0 = pp[g], i1 = pp[g + 1];
        const scalar_t* gr = gp + g * d;
        if (reduce == PoolReduce::Max) {
          // arg entries of segment g lie in [i0, i1) (validated): rows owned by this segment only
          for (int64_t f = 0; f < d; ++f) {
            const int64_t i = ap[g * d + f];
            if (i >= 0) xp[i * d + f] = gr[f];
          }
          continue;
        }
        const scalar_t scale = reduce == PoolReduce::Mean && i1 > i0 ? scalar_t(1) / scalar_t(i1 - i0) : scalar_t(1);
        for (int64_t i = i0; i < i1; ++i) vec::scale_copy(xp + i * d, gr, scale, d);
      }
    });
  });
  return c.out;
}

}  // namespace gkdfast
