#pragma once
// CPU kernels: raw buffers and shapes only (no tensors, no tape). Templates
// are instantiated for float and double. These are the reference every other
// backend is checked against.
#include <cstdint>
#include <vector>

#include "kernels/common.h"

namespace bissl::cpu {

using kern::Dims;
using kern::Unary;
using kern::Binary;
using kern::ConvShape;
using kern::PoolShape;

// ---- elementwise ----
template <class T>
void unary(Unary op, const T* x, T* y, int64_t n, double scalar);

// out[shape] = a op b; sa/sb are element strides of a/b viewed at `shape`
// (0 on broadcast dims).
template <class T>
void binary(Binary op, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out, const Dims& shape);
template <class T>
void where(const T* c, const Dims& sc, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out,
           const Dims& shape);

// dst[i] = src[i] over `shape` with arbitrary element strides on both sides
// (permute, slice, expand, pad and concat are all this copy).
void strided_copy(void* dst, const Dims& sdst, const void* src, const Dims& ssrc, const Dims& shape,
                  int64_t elem_size);
template <class T>
void convert(const void* src, int src_kind, T* dst, int64_t n);  // src_kind: 0 f32, 1 f64, 2 i64, 3 bf16
void convert_to_bf16(const void* src, int src_kind, uint16_t* dst, int64_t n);
void convert_to_i64(const void* src, int src_kind, int64_t* dst, int64_t n);

// ---- reductions over x viewed as [outer, n, inner], reducing n ----
template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale);
template <class T>
void max_mid(const T* x, T* out, int64_t* idx, int64_t outer, int64_t n, int64_t inner);
template <class T>
void logsumexp_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner);
template <class T>
void softmax_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool log);

// ---- indexing ----
// x viewed [outer, n, inner]; out [outer, k, inner] with out[o,j,i] = x[o, idx[j], i].
template <class T>
void index_select(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
// out [outer, n, inner] (pre-zeroed) += g [outer, k, inner] at idx.
template <class T>
void index_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
// torch.gather along the middle axis: idx has shape [outer, k, inner].
template <class T>
void gather_mid(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
template <class T>
void scatter_add_mid(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
// Per-row index_select: idx has shape [outer, k]; out[o,j,i] = x[o, idx[o,j], i],
// and its adjoint out[o, idx[o,j], i] += g[o,j,i] (out pre-zeroed).
template <class T>
void gather_rows(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
template <class T>
void scatter_rows_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
// Flat gather/scatter: out[i] = x[idx[i]]; out[idx[i]] += g[i].
template <class T>
void take_flat(const T* x, const int64_t* idx, T* out, int64_t n, int64_t limit);
template <class T>
void scatter_add_flat(const T* g, const int64_t* idx, T* out, int64_t n, int64_t limit);

template <class T>
void one_hot(const int64_t* idx, T* out, int64_t n, int64_t classes);
// Bernoulli(1-p) scaled by 1/(1-p), Philox(seed, offset + i) per element.
template <class T>
void dropout_mask(T* out, int64_t n, double p, uint64_t seed, uint64_t offset);
// Returns false and the first offending value when some idx is outside [0, hi).
bool indices_in_range(const int64_t* idx, int64_t n, int64_t hi, int64_t* bad);

// ---- GEMM (OpenBLAS): C = alpha op(A) op(B) + beta C, row-major ----
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc);

// ---- convolution, NHWC activations, OHWI weights ----
template <class T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y);
template <class T>
void conv2d_input_grad(const ConvShape& s, const T* gy, const T* w, T* gx);
template <class T>
void conv2d_weight_grad(const ConvShape& s, const T* x, const T* gy, T* gw);

// ---- pooling, NHWC ----
// idx holds flat indices into x (for the max-pool VJP).
template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx);
// Max pooling's gradient from the argmax indices, gathered per input element
// (deterministic; no atomics).
template <class T>
void max_pool2d_backward(const PoolShape& s, const T* gy, const int64_t* idx, T* gx);
template <class T>
void avg_pool2d(const PoolShape& s, const T* x, T* y, bool count_include_pad);
template <class T>
void avg_pool2d_backward(const PoolShape& s, const T* gy, T* gx, bool count_include_pad);

// ---- normalisation: x viewed [rows, c]; stats per column (batch norm) ----
template <class T>
void batch_norm_stats(const T* x, int64_t rows, int64_t c, T* mean, T* var_biased);
// invstd = 1/sqrt(var + eps); running stats updated when given (unbiased var).
template <class T>
void batch_norm_finish(const T* mean, const T* var, T* invstd, T* running_mean, T* running_var, int64_t c,
                       double eps, double momentum, int64_t rows);
// y = (x - mean) * invstd * gamma + beta (gamma/beta may be null).
template <class T>
void batch_norm_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y,
                      int64_t rows, int64_t c);
template <class T>
void batch_norm_backward(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c);
// Forward-mode tangents of batch_norm_train, closed form (kernels/norm_math.h):
// ty [rows, c] from the tangents of x, gamma, beta (null = zero; null gamma =
// 1); tmean and tinvstd [c] are written only when tx is given.
template <class T>
void batch_norm_jvp(const T* x, const T* mean, const T* invstd, const T* gamma, const T* tx, const T* tgamma,
                    const T* tbeta, T* ty, T* tmean, T* tinvstd, int64_t rows, int64_t c);
// Tangents of batch_norm_backward's outputs (dx, dgamma, dbeta) from those of
// its inputs (gy, x, mean, invstd, gamma); null tangents are zero, null
// outputs are skipped.
template <class T>
void batch_norm_backward_jvp(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* tinvstd, const T* tgamma, T* tdx, T* tdgamma,
                             T* tdbeta, int64_t rows, int64_t c);
// Layer norm over rows of length c.
template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t c,
                        double eps);
template <class T>
void layer_norm_backward(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c);
// Forward-mode tangents of layer_norm (closed form, kernels/norm_math.h):
// ty [rows, c]; tmean and trstd [rows] written only when tx is given.
template <class T>
void layer_norm_jvp(const T* x, const T* mean, const T* rstd, const T* gamma, const T* tx, const T* tgamma,
                    const T* tbeta, T* ty, T* tmean, T* trstd, int64_t rows, int64_t c);
// Tangents of layer_norm_backward's (dx, dgamma, dbeta) from those of (gy, x,
// mean, rstd, gamma); null tangents are zero, null outputs are skipped.
template <class T>
void layer_norm_backward_jvp(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* trstd, const T* tgamma, T* tdx, T* tdgamma,
                             T* tdbeta, int64_t rows, int64_t c);

// ---- losses ----
// Mean over rows of -((1-ls) log p[t] + ls/C Σ log p), written to *out (a
// device scalar on CUDA: the loss value is not read back).
template <class T>
void cross_entropy(const T* logits, const int64_t* target, int64_t rows, int64_t c, double label_smoothing, T* out);

// ---- optimiser updates (in place) ----
template <class T>
void sgd_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, bool nesterov,
                bool first_step);
// LARS as in BISSL_SPEC: u = (g + wd p)·trust, trust = eta‖p‖/‖g + wd p‖
// (1 if either norm is 0); mu = m mu + u; p -= lr mu.
template <class T>
void lars_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, double eta);
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                  int64_t step);
template <class T>
double sum_squares(const T* x, int64_t n);
template <class T>
void sum_squares_into(const T* x, int64_t n, double* out);  // *out = sum_squares(x, n)
template <class T>
void scale_inplace(T* x, int64_t n, double s);

}  // namespace bissl::cpu
