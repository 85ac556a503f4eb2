// Entry points of the CPU kernels, one per schema in csrc/gkdfast.cpp; each is defined in
// csrc/cpu/<family>_cpu.cpp and registered in csrc/cpu/register_cpu.cpp.
#pragma once

#include <torch/types.h>

#include <tuple>

namespace gkdfast {

// edge_softmax_cpu.cpp
at::Tensor edge_softmax_cpu(const at::Tensor& rowptr_in, const at::Tensor& s_in);
at::Tensor edge_softmax_backward_cpu(const at::Tensor& rowptr_in, const at::Tensor& y_in, const at::Tensor& g_in);

// gsp_cpu.cpp
std::tuple<at::Tensor, at::Tensor> gsp_tiled_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                 c10::string_view kname, c10::string_view lname, double gamma,
                                                 double tau, int64_t row_begin, int64_t row_end);
std::tuple<at::Tensor, at::Tensor> gsp_tiled_backward_cpu(const at::Tensor& s_in, const at::Tensor& t_in,
                                                          const at::Tensor& per_row_in, const at::Tensor& stats_in,
                                                          const at::Tensor& grad_in, c10::string_view kname,
                                                          c10::string_view lname, double gamma, double tau,
                                                          bool need_s, bool need_t, int64_t row_begin,
                                                          int64_t row_end);

// infonce_cpu.cpp
std::tuple<at::Tensor, at::Tensor> infonce_cpu(const at::Tensor& a_in, const at::Tensor& c_in, double inv_tau,
                                               int64_t pos_offset, bool exclude_self, int64_t num_negatives,
                                               int64_t seed, int64_t row_begin);
std::tuple<at::Tensor, at::Tensor> infonce_backward_cpu(const at::Tensor& a_in, const at::Tensor& c_in,
                                                        const at::Tensor& lse_in, const at::Tensor& g_in,
                                                        const at::Tensor& gl_in, double inv_tau, int64_t pos_offset,
                                                        bool exclude_self, int64_t num_negatives, int64_t seed,
                                                        int64_t row_begin);
at::Tensor sample_negatives_cpu(const at::Tensor& rows_in, int64_t num_nodes, int64_t k_neg, int64_t seed);
at::Tensor gram_lse_cpu(const at::Tensor& z, double inv_tau, bool exclude_self);
at::Tensor gram_lse_backward_cpu(const at::Tensor& z, const at::Tensor& lse, const at::Tensor& grad, double inv_tau,
                                 bool exclude_self);

// lsp_cpu.cpp
std::tuple<at::Tensor, at::Tensor> lsp_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                           const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                           const at::Tensor& t_eid, const at::Tensor& s_in, const at::Tensor& t_in,
                                           c10::string_view kname, double gamma, double tau);
std::tuple<at::Tensor, at::Tensor> lsp_backward_cpu(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in, const at::Tensor& t_col_in,
    const at::Tensor& t_eid_in, const at::Tensor& s_in, const at::Tensor& t_in, const at::Tensor& per_node_in,
    const at::Tensor& lse_in, const at::Tensor& grad_in, c10::string_view kname, double gamma, double tau,
    bool need_s, bool need_t);

// sample_neighbors_cpu.cpp
std::tuple<at::Tensor, at::Tensor, at::Tensor> sample_neighbors_cpu(const at::Tensor& rowptr_in,
                                                                    const at::Tensor& col_in,
                                                                    const at::Tensor& seeds_in, int64_t fanout,
                                                                    int64_t seed, int64_t hop);

// sddmm_cpu.cpp
at::Tensor sddmm_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr,
                     const at::Tensor& t_col, const at::Tensor& t_eid, const at::Tensor& a_in,
                     const at::Tensor& b_in);

// segment_pool_cpu.cpp
std::tuple<at::Tensor, at::Tensor> segment_pool_cpu(const at::Tensor& x_in, const at::Tensor& ptr_in,
                                                    c10::string_view reduce_name);
at::Tensor segment_pool_backward_cpu(const at::Tensor& ptr_in, const at::Tensor& arg_in, const at::Tensor& grad_in,
                                     int64_t num_nodes, c10::string_view reduce_name);

// spmm_cpu.cpp
std::tuple<at::Tensor, at::Tensor> spmm_cpu(const at::Tensor& rowptr_in, const at::Tensor& col_in,
                                            const at::Tensor& t_rowptr, const at::Tensor& t_col,
                                            const at::Tensor& t_eid, const c10::optional<at::Tensor>& weight_in,
                                            const at::Tensor& x_in, c10::string_view reduce_name);
std::tuple<at::Tensor, at::Tensor> spmm_arg_backward_cpu(
    const at::Tensor& rowptr_in, const at::Tensor& col_in, const at::Tensor& t_rowptr_in,
    const at::Tensor& t_col_in, const at::Tensor& t_eid_in, const c10::optional<at::Tensor>& weight_in,
    const at::Tensor& x_in, const at::Tensor& arg_in, const at::Tensor& grad_in);

}  // namespace gkdfast
