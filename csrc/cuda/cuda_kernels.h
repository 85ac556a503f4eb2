// Entry points of the CUDA kernels, one per schema in csrc/gkdfast.cpp; each is defined in
// csrc/cuda/<family>_cuda.cu and registered in csrc/cuda/register_cuda.cu.
#pragma once

#include <torch/types.h>

#include <tuple>

namespace gkdfast {
namespace cuda {

// edge_softmax_cuda.cu
at::Tensor edge_softmax_cuda(const at::Tensor& rowptr_in, const at::Tensor& s_in);
at::Tensor edge_softmax_backward_cuda(const at::Tensor& rowptr_in, const at::Tensor& y_in, const at::Tensor& g_in);

// gsp_cuda.cu
std::tuple<at::Tensor, at::Tensor> gsp_tiled_cuda(const at::Tensor& s_in, const at::Tensor& t_in,
                                                  c10::string_view kname, c10::string_view lname, double gamma,
                                                  double tau, int64_t row_begin, int64_t row_end);
std::tuple<at::Tensor, at::Tensor> gsp_tiled_backward_cuda(const at::Tensor& s_in, const at::Tensor& t_in,
                                                           const at::Tensor& per_row_in, const at::Tensor& stats_in,
                                                           const at::Tensor& grad_in, c10::string_view kname,
                                                           c10::string_view lname, double gamma, double tau,
                                                           bool need_s, bool need_t, int64_t row_begin,
                                                           int64_t row_end);

// infonce_cuda.cu
std::tuple<at::Tensor, at::Tensor> infonce_cuda(const at::Tensor& a_in, const at::Tensor& c_in, double inv_tau,
                                                int64_t pos_offset, bool exclude_self, int64_t num_negatives,
                                                int64_t seed, int64_t row_begin);
std::tuple<at::Tensor, at::Tensor> infonce_backward_cuda(const at::Tensor& a_in, const at::Tensor& c_in,
                                                         const at::Tensor& lse_in, const at::Tensor& g_in,
                                                         const at::Tensor& gl_in, double inv_tau, int64_t pos_offset,
                                                         bool exclude_self, int64_t num_negatives, int64_t seed,
                                                         int64_t row_begin);
at::Tensor sample_negatives_cuda(const at::Tensor& rows_in, int64_t num_nodes, int64_t k_neg, int64_t seed);
std::tuple<at::Tensor, at::Tensor> topk_similar_cuda(const at::Tensor& query, const at::Tensor& keys, int64_t k);
at::Tensor gram_lse_cuda(const at::Tensor& z, double inv_tau, bool exclude_self);
at::Tensor gram_lse_backward_cuda(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, double inv_tau,
                                  bool exclude_self);

// lsp_cuda.cu
std::tuple<at::Tensor, at::Tensor> lsp_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                            const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                            const at::Tensor& t_eid, const at::Tensor& s_in, const at::Tensor& t_in,
                                            c10::string_view kname, double gamma, double tau);
std::tuple<at::Tensor, at::Tensor> lsp_backward_cuda(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in, const at::Tensor& t_col_in,
    const at::Tensor& t_eid_in, const at::Tensor& s_in, const at::Tensor& t_in, const at::Tensor& per_node_in,
    const at::Tensor& lse_in, const at::Tensor& grad_in, c10::string_view kname, double gamma, double tau,
    bool need_s, bool need_t);

// sample_neighbors_cuda.cu
std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_neighbors_cuda(const at::Tensor& rowptr_in,
                                                                     const at::Tensor& col_in,
                                                                     const at::Tensor& seeds_in, int64_t fanout,
                                                                     int64_t seed, int64_t hop);

// sddmm_cuda.cu
at::Tensor sddmm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                      const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& a_in,
                      const at::Tensor& b_in);

// segment_pool_cuda.cu
std::tuple<at::Tensor, at::Tensor> segment_pool_cuda(const at::Tensor& x_in, const at::Tensor& ptr_in,
                                                     c10::string_view reduce_name);
at::Tensor segment_pool_backward_cuda(const at::Tensor& ptr_in, const at::Tensor& arg_in, const at::Tensor& grad_in,
                                      int64_t num_nodes, c10::string_view reduce_name);

// spmm_cuda.cu
std::tuple<at::Tensor, at::Tensor> spmm_cuda(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                             const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                             const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight_in,
                                             const at::Tensor& x_in, c10::string_view reduce_name);
std::tuple<at::Tensor, at::Tensor> spmm_arg_backward_cuda(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in,
    const at::Tensor& t_col_in, const at::Tensor& t_eid_in, const c10::optional<at::Tensor>& weight_in,
    const at::Tensor& x_in, const at::Tensor& arg_in, const at::Tensor& grad_in);

}  // namespace cuda
}  // namespace gkdfast
