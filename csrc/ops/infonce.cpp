// Device-agnostic all-N InfoNCE and streaming top-k (see infonce.h).  Tiles are large enough for
// BLAS / cuBLAS to run at full speed and small enough that memory stays O(N * d): the N x N logit
// matrix is never formed.  Both the CPU and the CUDA registrations call these for num_negatives == 0.
#include "ops/infonce.h"

#include "common/philox.h"
#include "ops/lse_tiles.h"

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/isneginf.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace gkdfast {
namespace {

// The k best columns of each row of `tile` [rows, cols] (1 <= k < cols) as (values, column indices in
// increasing order), ties at the k-th score `kth` [rows, 1] going to the smaller columns, as the reference's
// stable sort does.  at::topk alone keeps an arbitrary subset of the tied columns (all-zero key rows tie on
// every score), so it only supplies each row's k-th score v: a row keeps every column above v and its first
// (k - that many) columns equal to v, and the r-th kept column is where the running count of kept columns
// first reaches r.  No sort of the tile, no atomics.  NaN ranks above +inf, as in topk and the reference's
// sort (NaN scores tie with each other).
std::tuple<at::Tensor, at::Tensor> tile_topk_first_ties(const at::Tensor& tile, const at::Tensor& kth, int64_t k) {
  const at::Tensor nan = tile.isnan(), kth_nan = kth.isnan();
  const at::Tensor above = tile.gt(kth).logical_or_(nan.logical_and(kth_nan.logical_not()));
  const at::Tensor tied = tile.eq(kth).logical_or_(nan.logical_and(kth_nan));
  const at::Tensor room = above.sum(1, true).neg_().add_(k);  // slots left for tied columns
  const at::Tensor kept = above.logical_or_(tied.logical_and_(tied.cumsum(1).le(room))).cumsum(1);
  const at::Tensor rank = at::arange(1, k + 1, kept.options()).expand({tile.size(0), k}).contiguous();
  const at::Tensor idx = at::searchsorted(kept, rank);
  return {tile.gather(1, idx), idx};
}

// at::topk of each row of `tile` (1 <= k <= cols), with ties at the k-th score going to the smaller
// columns.  One column more than asked shows whether a row has a tie across its k-th slot (its k-th and
// (k+1)-th scores equal; random scores almost never do); only those rows are redone by
// tile_topk_first_ties, whose extra passes over every tile made a whole call 3.5x slower (CPU, d = 64:
// 1839 against 530 ms).  Checking for such rows costs one synchronisation per tile on a GPU.
std::tuple<at::Tensor, at::Tensor> tile_topk(const at::Tensor& tile, int64_t k) {
  if (k >= tile.size(1)) return at::topk(tile, k, 1, /*largest=*/true, /*sorted=*/false);  // every column
  const auto top = at::topk(tile, k + 1, 1, /*largest=*/true, /*sorted=*/true);
  const at::Tensor last = std::get<0>(top).select(1, k - 1), next = std::get<0>(top).select(1, k);
  const at::Tensor tie = last.eq(next).logical_or_(last.isnan().logical_and_(next.isnan()));
  at::Tensor values = std::get<0>(top).narrow(1, 0, k).contiguous();
  at::Tensor indices = std::get<1>(top).narrow(1, 0, k).contiguous();
  if (tie.any().item<bool>()) {
    const at::Tensor rows = tie.nonzero().squeeze(1);
    const auto fixed = tile_topk_first_ties(tile.index_select(0, rows), last.index_select(0, rows).unsqueeze(1), k);
    values.index_copy_(0, rows, std::get<0>(fixed));
    indices.index_copy_(0, rows, std::get<1>(fixed));
  }
  return {values, indices};
}

}  // namespace

at::ScalarType infonce_acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

void check_infonce(const at::Tensor& a, const at::Tensor& c, int64_t pos_offset, int64_t num_negatives,
                   int64_t row_begin, const char* op) {
  TORCH_CHECK(a.dim() == 2 && c.dim() == 2, "gkdfast.", op, ": anchors and candidates must be 2-D, got ",
              a.sizes(), " and ", c.sizes());
  TORCH_CHECK(row_begin >= 0 && row_begin <= c.size(0) - a.size(0), "gkdfast.", op, ": the ", a.size(0),
              " anchors are rows [row_begin, row_begin + R) of the ", c.size(0),
              " candidates, so need 0 <= row_begin <= N - R; got row_begin = ", row_begin);
  TORCH_CHECK(a.size(1) == c.size(1), "gkdfast.", op, ": anchors and candidates need the same width, got ",
              a.size(1), " and ", c.size(1));
  TORCH_CHECK(a.scalar_type() == c.scalar_type(), "gkdfast.", op,
              ": anchors and candidates must share one dtype, got ", a.scalar_type(), " (anchors) and ",
              c.scalar_type(), " (candidates)");
  TORCH_CHECK(at::isFloatingType(a.scalar_type()), "gkdfast.", op, ": anchors and candidates must be floating, got ",
              a.scalar_type());
  TORCH_CHECK(a.device() == c.device(), "gkdfast.", op, ": anchors on ", a.device(), ", candidates on ", c.device());
  TORCH_CHECK(num_negatives >= 0, "gkdfast.", op, ": num_negatives must be >= 0, got ", num_negatives);
  if (num_negatives > 0) {
    TORCH_CHECK(c.size(0) >= 2, "gkdfast.", op, ": sampled negatives need at least 2 rows of candidates");
    // (the draw maps a 32-bit word onto the candidates: beyond 2^32 rows it would not be uniform)
    TORCH_CHECK_VALUE(c.size(0) < philox::kRangeLimit, "gkdfast.", op,
                      ": sampled negatives support fewer than 2^32 candidate rows, got ", c.size(0));
    TORCH_CHECK(pos_offset <= 0, "gkdfast.", op, ": with sampled negatives the positive must be row i itself "
                "(pos_offset 0) or absent (-1), got ", pos_offset);
  }
}

void check_infonce_backward(const at::Tensor& a, const at::Tensor& c, const at::Tensor& lse, const at::Tensor& g,
                            const at::Tensor& gl, const char* op) {
  const int64_t n = a.size(0);
  for (const at::Tensor* t : {&lse, &g, &gl}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == n, "gkdfast.", op, ": per-row tensors must have shape [", n,
                "], got ", t->sizes());
    TORCH_CHECK(t->device() == a.device(), "gkdfast.", op, ": per-row tensor on ", t->device(), ", inputs on ",
                a.device());
  }
  (void)c;
}

void check_sample_negatives(const at::Tensor& rows, int64_t num_nodes, int64_t k_neg) {
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == at::kLong,
              "gkdfast.sample_negatives: rows must be a 1-D int64 tensor");
  TORCH_CHECK(num_nodes >= 2 && k_neg >= 0, "gkdfast.sample_negatives: need num_nodes >= 2 and num_negatives >= 0");
  TORCH_CHECK_VALUE(num_nodes < philox::kRangeLimit, "gkdfast.sample_negatives: num_nodes must be below 2^32, got ",
                    num_nodes);
}

// Global candidate index of each anchor's positive, (row_begin + r + pos_offset) mod N, as int64.
static at::Tensor positive_index(const at::Tensor& a, int64_t n_c, int64_t pos_offset, int64_t row_begin) {
  const int64_t start = (row_begin + pos_offset % n_c) % n_c;
  return at::arange(a.size(0), a.options().dtype(at::kLong)).add_(start).remainder_(n_c);
}

std::tuple<at::Tensor, at::Tensor> infonce_tiled_forward(const at::Tensor& a_in, const at::Tensor& c_in,
                                                         double inv_tau, int64_t pos_offset, bool exclude_self,
                                                         int64_t row_begin, const LseTileOps& ops) {
  const auto acc = infonce_acc_type(a_in.scalar_type());
  const at::Tensor a = a_in.to(acc).contiguous();
  const at::Tensor c = c_in.to(acc).contiguous();
  const at::Tensor as = a * inv_tau;  // 1/tau once on the input, not once per tile
  const int64_t n = a.size(0), n_c = c.size(0);
  const LseTileShape shape = lse_tile_shape(a, n, n_c, false);
  at::Tensor lse = at::full({n}, -std::numeric_limits<double>::infinity(), a.options());
  at::Tensor buf = at::empty({std::min(shape.rows, n), std::min(shape.cols, n_c)}, a.options());
  for (int64_t i0 = 0; i0 < n; i0 += shape.rows) {
    const int64_t bi = std::min(shape.rows, n - i0);
    for (int64_t j0 = 0; j0 < n_c; j0 += shape.cols) {
      const int64_t bj = std::min(shape.cols, n_c - j0);
      at::Tensor tile = buf.narrow(0, 0, bi).narrow(1, 0, bj);
      at::mm_out(tile, as.narrow(0, i0, bi), c.narrow(0, j0, bj).t());
      ops.merge_rows(tile, lse.narrow(0, i0, bi), row_begin + i0, j0, exclude_self);
    }
  }
  at::Tensor loss = lse.clone();
  if (pos_offset >= 0 && n > 0) {
    const at::Tensor cpos = c.index_select(0, positive_index(a, n_c, pos_offset, row_begin));
    loss.sub_((as * cpos).sum(1));
  }
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor> infonce_tiled_backward(const at::Tensor& a_in, const at::Tensor& c_in,
                                                          const at::Tensor& lse_in, const at::Tensor& grad_loss,
                                                          const at::Tensor& grad_lse, double inv_tau,
                                                          int64_t pos_offset, bool exclude_self, int64_t row_begin,
                                                          const LseTileOps& ops) {
  const auto acc = infonce_acc_type(a_in.scalar_type());
  const at::Tensor a = a_in.to(acc).contiguous();
  const at::Tensor c = c_in.to(acc).contiguous();
  const at::Tensor as = a * inv_tau;
  const int64_t n = a.size(0), n_c = c.size(0);
  const at::Tensor g = grad_loss.to(acc);
  // d lse_i / d l_ij = p_ij; both the loss and the lse output carry that term.
  const at::Tensor g_p = (g + grad_lse.to(acc)).mul_(inv_tau).contiguous();
  // An empty set (lse = -inf) has no probabilities: use +inf so exp(l - lse) = 0 there.
  const at::Tensor l = lse_in.to(acc);
  const at::Tensor lse = at::where(at::isneginf(l), at::full_like(l, std::numeric_limits<double>::infinity()), l)
                             .contiguous();
  at::Tensor da = at::zeros_like(a), dc = at::zeros_like(c);
  // The positive's weight, g_p p_pos - g / tau, stays out of the tiles and is added once at the end as
  // minus the other probabilities (plus the lse term).  In a row whose positive dominates, p_pos - 1 is
  // -1e-5: inside a tile it left a weight of ~g / tau whose product with c_pos the GEMM then had to cancel
  // against the rest, and p_pos itself carried the rounding of lse at the scale of 1 / tau (the float32
  // gradient was 7% off in norm, a dense float32 cross_entropy 0.8%).
  const at::Tensor pos_idx = pos_offset >= 0 && n > 0 ? positive_index(a, n_c, pos_offset, row_begin) : at::Tensor();
  at::Tensor others = at::zeros({n}, a.options().dtype(at::kDouble));  // sum over j != pos of g_p p_ij
  const LseTileShape shape = lse_tile_shape(a, n, n_c, false);
  at::Tensor buf = at::empty({std::min(shape.rows, n), std::min(shape.cols, n_c)}, a.options());
  for (int64_t i0 = 0; i0 < n; i0 += shape.rows) {
    const int64_t bi = std::min(shape.rows, n - i0);
    const at::Tensor ai = a.narrow(0, i0, bi);
    at::Tensor dai = da.narrow(0, i0, bi);
    for (int64_t j0 = 0; j0 < n_c; j0 += shape.cols) {
      const int64_t bj = std::min(shape.cols, n_c - j0);
      const at::Tensor cj = c.narrow(0, j0, bj);
      at::Tensor tile = buf.narrow(0, 0, bi).narrow(1, 0, bj);
      at::mm_out(tile, as.narrow(0, i0, bi), cj.t());
      // (g_i + gl_i) * p_ij / tau
      ops.softmax_weights(tile, lse.narrow(0, i0, bi), g_p.narrow(0, i0, bi), at::Tensor(), at::Tensor(),
                          row_begin + i0, j0, exclude_self);
      if (pos_idx.defined()) {
        // zero each row's positive column where it falls in this tile; gather / where / scatter rather
        // than masked_select, whose data-dependent size would synchronise a GPU twice per tile
        const at::Tensor col = pos_idx.narrow(0, i0, bi) - j0;
        const at::Tensor in = (col >= 0).logical_and_(col < bj).unsqueeze(1);
        const at::Tensor cc = col.clamp(0, bj - 1).unsqueeze(1);
        tile.scatter_(1, cc, at::where(in, at::zeros({}, tile.options()), tile.gather(1, cc)));
        others.narrow(0, i0, bi).add_(tile.sum(at::IntArrayRef{1}, false, at::kDouble));
      }
      dai.addmm_(tile, cj);
      dc.narrow(0, j0, bj).addmm_(tile.t(), ai);
    }
  }
  if (pos_idx.defined()) {
    // weight g (p_pos - 1) / tau + gl p_pos / tau, with p_pos - 1 = - sum_{j != pos} p_ij read from the tiles
    // (others / g_p); a row with g_p = 0 has no weights to read it from: 1 - p_pos there
    const at::Tensor cpos = c.index_select(0, pos_idx);
    const at::Tensor p_pos = ((as * cpos).sum(1) - lse).exp_().to(at::kDouble);
    const at::Tensor gp64 = g_p.to(at::kDouble), g64 = g.to(at::kDouble) * inv_tau;
    const at::Tensor rest = at::where(gp64 != 0, others / gp64, 1 - p_pos);
    const at::Tensor w = (-g64 * rest + (gp64 - g64) * p_pos).to(acc).unsqueeze(1);
    da.add_(cpos * w);
    dc.index_add_(0, pos_idx, a * w);
  }
  return {da.to(a_in.scalar_type()), dc.to(c_in.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor> topk_similar_tiled(const at::Tensor& query, const at::Tensor& keys, int64_t k) {
  TORCH_CHECK(query.dim() == 2 && keys.dim() == 2 && query.size(1) == keys.size(1),
              "gkdfast.topk_similar: query [Q, d] and keys [N, d] must share d, got ", query.sizes(), " and ",
              keys.sizes());
  TORCH_CHECK(query.scalar_type() == keys.scalar_type() && query.device() == keys.device(),
              "gkdfast.topk_similar: query and keys must have the same dtype and device");
  TORCH_CHECK(k >= 0 && k <= keys.size(0), "gkdfast.topk_similar: k must be in [0, ", keys.size(0), "], got ", k);
  const auto acc = infonce_acc_type(query.scalar_type());
  const at::Tensor q = query.to(acc).contiguous();
  const at::Tensor kk = keys.to(acc).contiguous();
  const int64_t nq = q.size(0), n = kk.size(0);
  const LseTileShape shape = lse_tile_shape(q, nq, n, false);
  const int64_t br = shape.rows, bc = std::max(shape.cols, k);
  at::Tensor values = at::empty({nq, k}, q.options());
  at::Tensor indices = at::empty({nq, k}, q.options().dtype(at::kLong));
  if (k == 0) return {values.to(query.scalar_type()), indices};
  for (int64_t i0 = 0; i0 < nq; i0 += br) {
    const int64_t bi = std::min(br, nq - i0);
    const at::Tensor qi = q.narrow(0, i0, bi);
    at::Tensor best_v = at::empty({bi, 0}, q.options());
    at::Tensor best_i = at::empty({bi, 0}, indices.options());
    for (int64_t j0 = 0; j0 < n; j0 += bc) {
      const int64_t bj = std::min(bc, n - j0);
      const at::Tensor tile = at::mm(qi, kk.narrow(0, j0, bj).t());
      // Partial top-k of this tile, merged with the running best and ordered by (score descending,
      // index ascending): sort by index, then a stable sort by score.
      const auto part = tile_topk(tile, std::min(k, bj));
      at::Tensor cand_v = at::cat({best_v, std::get<0>(part)}, 1);
      at::Tensor cand_i = at::cat({best_i, std::get<1>(part).add_(j0)}, 1);
      const at::Tensor by_index = std::get<1>(at::sort(cand_i, /*stable=*/true, /*dim=*/1, /*descending=*/false));
      cand_v = cand_v.gather(1, by_index);
      cand_i = cand_i.gather(1, by_index);
      const auto sorted = at::sort(cand_v, /*stable=*/true, /*dim=*/1, /*descending=*/true);
      const int64_t keep = std::min<int64_t>(k, cand_v.size(1));
      best_v = std::get<0>(sorted).narrow(1, 0, keep).contiguous();
      best_i = cand_i.gather(1, std::get<1>(sorted).narrow(1, 0, keep)).contiguous();
    }
    values.narrow(0, i0, bi).copy_(best_v);
    indices.narrow(0, i0, bi).copy_(best_i);
  }
  return {values.to(query.scalar_type()), indices};
}

}  // namespace gkdfast
