// CPU SpMM over the destination CSR: one thread owns whole rows (degree-balanced chunks), the
// row's output lives in L1 while its in-edges stream through, and features are processed with
// vectorised row primitives.  No atomics anywhere, so results are bitwise reproducible.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "cpu/cpu_dispatch.h"
#include "cpu/cpu_kernels.h"
#include "common/cpu_parallel.h"
#include "common/cpu_vec.h"
#include "common/reducers.h"
#include "ops/graph_checks.h"
#include "ops/spmm.h"
#include "cpu/spmm_sum_simd.h"

#include <algorithm>
#include <type_traits>
#include <vector>

namespace gkdfast {
namespace {

// How many edges ahead of the current one the gather prefetches its feature row: far enough to hide
// a DRAM miss behind a few row updates, near enough that the lines are still in L1/L2 when used.
constexpr int64_t kPrefetchEdges = 4;
// Max/min backward scatters by feature blocks when every thread gets at least this many features.
constexpr int64_t kMinFeaturesPerThread = 16;

template <typename scalar_t, typename index_t>
void spmm_rows(const index_t* rowptr, const index_t* col, const scalar_t* w, const scalar_t* x, scalar_t* out,
               int64_t* arg, int64_t num_rows, int64_t d, Reduce reduce) {
  const int64_t row_bytes = d * static_cast<int64_t>(sizeof(scalar_t));
  const bool selects = reduce == Reduce::Max || reduce == Reduce::Min;
  // float32 sum / mean (weighted or not): register-blocked rows (spmm_sum_simd.h), bitwise the
  // same as the loop below, without a load + store of the output row per edge.
  if constexpr (std::is_same<scalar_t, float>::value) {
    const int isa = selects || d == 0 ? 0 : spmm_simd::isa_level();
#ifdef GKD_SPMM_SIMD
    if (isa > 0) {
      const bool mean = reduce == Reduce::Mean;
      parallel_rows(rowptr, num_rows, d, [&](int64_t begin, int64_t end) {
        if (isa == 2) spmm_simd::rows<true>(rowptr, col, w, x, out, begin, end, d, mean);
        else spmm_simd::rows<false>(rowptr, col, w, x, out, begin, end, d, mean);
      });
      return;
    }
#else
    (void)isa;
#endif
  }
  parallel_rows(rowptr, num_rows, d, [&](int64_t begin, int64_t end) {
    // max/min track the winning edge as an int32 offset within the row (L1-resident, same width as
    // float so the select vectorises) and widen it to the int64 edge id once per row.
    std::vector<int32_t> local(selects ? d : 0);
    // Prefetch runs kPrefetchEdges ahead over the whole chunk (across row boundaries: most rows of a
    // power-law graph are shorter than the prefetch distance).
    const int64_t chunk_end = rowptr[end];
    for (int64_t p = rowptr[begin]; p < std::min(chunk_end, int64_t(rowptr[begin]) + kPrefetchEdges); ++p)
      vec::prefetch_row(x + static_cast<int64_t>(col[p]) * d, row_bytes);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
      scalar_t* o = out + i * d;
      int64_t* a = arg ? arg + i * d : nullptr;
      if (e0 == e1) {  // no in-edge: 0 (and no arg)
        std::fill(o, o + d, scalar_t(0));
        if (a) std::fill(a, a + d, int64_t(-1));
        continue;
      }
      // The first edge initialises the row, so max/min need no "empty" flag in the inner loop.
      if (e0 + kPrefetchEdges < chunk_end)
        vec::prefetch_row(x + static_cast<int64_t>(col[e0 + kPrefetchEdges]) * d, row_bytes);
      vec::scale_copy(o, x + static_cast<int64_t>(col[e0]) * d, w ? w[e0] : scalar_t(1), d);
      if (selects) std::fill(local.begin(), local.end(), int32_t(0));
      for (int64_t e = e0 + 1; e < e1; ++e) {
        if (e + kPrefetchEdges < chunk_end)
          vec::prefetch_row(x + static_cast<int64_t>(col[e + kPrefetchEdges]) * d, row_bytes);
        const scalar_t* xr = x + static_cast<int64_t>(col[e]) * d;
        const scalar_t we = w ? w[e] : scalar_t(1);
        const int32_t k = static_cast<int32_t>(e - e0);  // in-degree < 2^31 (checked in spmm_cpu)
        switch (reduce) {
          case Reduce::Sum:
          case Reduce::Mean:
            if (w) vec::axpy(o, xr, we, d); else vec::add(o, xr, d);
            break;
          case Reduce::Max: vec::max_update_local(o, local.data(), xr, we, k, d); break;
          case Reduce::Min: vec::min_update_local(o, local.data(), xr, we, k, d); break;
        }
      }
      if (selects && a)
        for (int64_t f = 0; f < d; ++f) a[f] = e0 + local[f];
      if (reduce == Reduce::Mean) {
        const scalar_t inv = scalar_t(1) / scalar_t(e1 - e0);
        for (int64_t f = 0; f < d; ++f) o[f] *= inv;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> spmm_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                            const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                            const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight_in,
                                            const at::Tensor& x_in, c10::string_view reduce_name) {
  const Reduce reduce = check_spmm(rowptr_in, col_in, t_rowptr, t_col, t_eid, x_in, std::string(reduce_name));
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto x = x_in.contiguous();
  const at::Tensor weight = spmm_edge_weight(weight_in, col, x, "spmm");
  const int64_t n = csr_num_rows(rowptr), d = x.size(1);
  // The kernel keeps arg offsets within a row as int32; only a graph with >= 2^31 edges can overflow.
  if (reduce_has_arg(reduce) && n > 0 && col.size(0) >= (int64_t(1) << 31)) {
    const auto max_deg = (rowptr.slice(0, 1) - rowptr.slice(0, 0, n)).max().item<int64_t>();
    TORCH_CHECK_VALUE(max_deg < (int64_t(1) << 31), "gkdfast.spmm: a node has ", max_deg,
                      " in-edges; max/min support at most 2^31 - 1 per node");
  }
  auto out = at::empty({n, d}, x.options());
  auto arg = reduce_has_arg(reduce) ? at::empty({n, d}, x.options().dtype(at::kLong))
                                    : at::empty({0}, x.options().dtype(at::kLong));
  GKD_DISPATCH_CPU_FLOATS(x.scalar_type(), "gkdfast_spmm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_spmm_cpu_index", [&] {
      spmm_rows<scalar_t, index_t>(rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(),
                                   weight.defined() ? weight.data_ptr<scalar_t>() : nullptr,
                                   x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                   reduce_has_arg(reduce) ? arg.data_ptr<int64_t>() : nullptr, n, d, reduce);
    });
  });
  return {out, arg};
}

at::Tensor csr_mm_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                      const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& values_in,
                      const at::Tensor& x_in) {
  check_csr_mm(rowptr_in, col_in, t_rowptr, t_col, t_eid, values_in, x_in);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto values = values_in.contiguous();
  const auto x = x_in.contiguous();
  const int64_t rows = csr_num_rows(rowptr), d = x.size(1);
  auto out = at::empty({rows, d}, x.options());
  // spmm's weighted sum, whose rows read x only through col: any number of x rows
  GKD_DISPATCH_CPU_FLOATS(x.scalar_type(), "gkdfast_csr_mm_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_csr_mm_cpu_index", [&] {
      spmm_rows<scalar_t, index_t>(rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), values.data_ptr<scalar_t>(),
                                   x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), nullptr, rows, d, Reduce::Sum);
    });
  });
  return out;
}

// Max/min backward.  grad_x runs over the transposed CSR so each source row has one writer;
// grad_w runs over the forward CSR, where every edge belongs to exactly one destination row.
std::tuple<at::Tensor, at::Tensor> spmm_arg_backward_cpu(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in,
    const at::Tensor& t_col_in, const at::Tensor& t_eid_in, const c10::optional<at::Tensor>& weight_in,
    const at::Tensor& x_in, const at::Tensor& arg_in, const at::Tensor& grad_in) {
  // Only the narrow-feature path below reads the transposed CSR, but it is required on every path: which
  // path runs depends on the thread count, and a call must not pass or fail with OMP_NUM_THREADS.
  check_spmm_arg_backward(rowptr_in, col_in, t_rowptr_in, t_col_in, t_eid_in, x_in, arg_in, grad_in,
                          /*need_transpose=*/true);
  const auto rowptr = rowptr_in.contiguous();
  const auto col = col_in.contiguous();
  const auto x = x_in.contiguous();
  const auto arg = arg_in.contiguous();
  const auto grad = grad_in.contiguous().to(x.scalar_type());
  const at::Tensor weight = spmm_edge_weight(weight_in, col, x, "spmm_arg_backward");
  const int64_t n = csr_num_rows(rowptr), d = x.size(1), num_edges = col.size(0);
  auto grad_x = at::zeros({n, d}, x.options());
  auto grad_w = weight.defined() ? at::zeros({num_edges}, x.options()) : at::empty({0}, x.options());
  if (num_edges == 0 || n == 0) return {grad_x, grad_w};
  const auto t_rowptr = t_rowptr_in.contiguous();
  const auto t_col = t_col_in.contiguous();
  const auto t_eid = t_eid_in.contiguous().to(col.scalar_type());
  GKD_DISPATCH_CPU_FLOATS(x.scalar_type(), "gkdfast_spmm_arg_backward_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "gkdfast_spmm_arg_backward_cpu_index", [&] {
      const index_t* rp = rowptr.data_ptr<index_t>();
      const index_t* cl = col.data_ptr<index_t>();
      const scalar_t* w = weight.defined() ? weight.data_ptr<scalar_t>() : nullptr;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      const int64_t* ap = arg.data_ptr<int64_t>();
      scalar_t* gx = grad_x.data_ptr<scalar_t>();
      const int threads = at::get_num_threads();
      if (d >= kMinFeaturesPerThread * threads) {
        // Feature-owned scatter: thread t owns features [f0, f1) of every node and walks the
        // destinations i in order, adding g[i, f] to the winning source row.  Work is O(N d)
        // instead of O(E d) (each (i, f) has one winner), needs no transposed CSR, and every
        // grad_x[j, f] is summed in ascending i: bitwise the same as the transposed walk below,
        // for any thread count.
        const int64_t blocks = std::min<int64_t>(threads, (d + kMinFeaturesPerThread - 1) / kMinFeaturesPerThread);
        at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t f0 = d * b / blocks, f1 = d * (b + 1) / blocks;
            for (int64_t i = 0; i < n; ++i) {
              const int64_t* ar = ap + i * d;
              const scalar_t* g = gp + i * d;
              for (int64_t f = f0; f < f1; ++f) {
                const int64_t e = ar[f];
                if (e < 0) continue;
                gx[static_cast<int64_t>(cl[e]) * d + f] += (w ? w[e] : scalar_t(1)) * g[f];
              }
            }
          }
        });
      } else {
        // Few features per thread: each thread owns whole source rows and walks their
        // out-edges in the transposed CSR (ascending destination, as above).
        const index_t* trp = t_rowptr.data_ptr<index_t>();
        const index_t* tcl = t_col.data_ptr<index_t>();
        const index_t* teid = t_eid.data_ptr<index_t>();
        const int64_t row_bytes = d * static_cast<int64_t>(sizeof(scalar_t));
        parallel_rows(trp, n, d, [&](int64_t begin, int64_t end) {
          const int64_t chunk_end = trp[end];
          for (int64_t j = begin; j < end; ++j) {
            scalar_t* out = gx + j * d;
            for (int64_t te = trp[j]; te < trp[j + 1]; ++te) {
              if (te + kPrefetchEdges < chunk_end) {  // the arg and grad rows a few edges ahead
                const int64_t ip = tcl[te + kPrefetchEdges];
                vec::prefetch_row(ap + ip * d, d * static_cast<int64_t>(sizeof(int64_t)));
                vec::prefetch_row(gp + ip * d, row_bytes);
              }
              const int64_t i = tcl[te], e = teid[te];
              const scalar_t we = w ? w[e] : scalar_t(1);
              vec::select_axpy(out, ap + i * d, e, gp + i * d, we, d);
            }
          }
        });
      }
      if (w) {
        scalar_t* gw = grad_w.data_ptr<scalar_t>();
        parallel_rows(rp, n, d, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            const int64_t* ar = ap + i * d;
            const scalar_t* g = gp + i * d;
            for (int64_t f = 0; f < d; ++f) {
              const int64_t e = ar[f];
              if (e >= 0) gw[e] += xp[static_cast<int64_t>(cl[e]) * d + f] * g[f];
            }
          }
        });
      }
    });
  });
  return {grad_x, grad_w};
}

}  // namespace gkdfast
