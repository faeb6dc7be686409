#pragma once
// CUDA kernels: the same problems as kernels/cpu/kernels.h on device
// pointers, on one compute stream. Every CUDA, cuBLAS and cuDNN status is
// checked and reported with the kernel's name. Declared without CUDA types so
// the engine includes this from plain C++.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/common.h"

namespace bissl::cuda {

using kern::Binary;
using kern::ConvShape;
using kern::Dims;
using kern::PoolShape;
using kern::Unary;

// ---- memory: the stream-ordered pool (cudaMallocAsync) ----
void* alloc(size_t bytes);
void release(void* p);
size_t bytes_in_use();
size_t peak_bytes();
void reset_peak_bytes();
// Fill new allocations with 0xFF bytes (NaN for floats) to catch reads of
// unwritten outputs (parity tests turn this on).
void set_poison(bool on);
// From pageable host memory: waits for the stream (the source may be freed
// or rewritten as soon as this returns).
void copy_h2d(void* dst, const void* src, size_t bytes);
// From page-locked host memory (host_alloc): queued on the stream, no wait.
// `keep` (the source's owner) is held until the copy has passed; the caller
// must not write the source before then.
void copy_h2d_async(void* dst, const void* src, size_t bytes, std::shared_ptr<void> keep);
size_t copies_in_flight();  // asynchronous copies whose sources are still held
void copy_d2h(void* dst, const void* src, size_t bytes);  // waits for the stream
void copy_d2d(void* dst, const void* src, size_t bytes);
void memset_zero(void* p, size_t bytes);
// n elements of elem_size bytes (2, 4 or 8), each set to the low bytes of
// `pattern` (a value's bit pattern), on the stream: no host wait.
void fill_pattern(void* p, size_t elem_size, int64_t n, uint64_t pattern);
// Page-locked host memory for staging copies, from a cache of blocks by size
// (blocks are reused, never unlocked: cudaFreeHost would wait for the device).
void* host_alloc(size_t bytes);
void host_release(void* p);
size_t host_pinned_bytes();  // page-locked bytes made so far (cached + in use)
void synchronize();
// How many times the host has waited for the stream (copies to or from the
// host, synchronize) since the start: what a training step should not do.
int64_t host_syncs();
// TF32 for f32 GEMM/conv (off by default: f32 means f32).
void set_tf32(bool on);
bool tf32();
// cuDNN for f32 convolutions (on by default; off = im2col + cuBLAS).
void set_cudnn(bool on);
bool cudnn_enabled();
// cuDNN: only algorithms it marks deterministic (off by default: the
// fastest; some of its backward algorithms accumulate with atomics).
// Forgets earlier choices.
void set_cudnn_deterministic(bool on);
// f32 convolutions: on the first call with a shape, time cuDNN against
// im2col + cuBLAS and keep the faster for that shape (on by default; off =
// cuDNN whenever it takes the shape). Setting it forgets earlier choices.
void set_conv_autotune(bool on);
bool conv_autotune();
// "forward: 40 cuDNN, 13 GEMM; data grad: ...; filter grad: ..." (choices made so far).
std::string conv_choices();

// ---- elementwise ----
template <class T>
void unary(Unary op, const T* x, T* y, int64_t n, double scalar);
template <class T>
void binary(Binary op, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out, const Dims& shape);
template <class T>
void where(const T* c, const Dims& sc, const T* a, const Dims& sa, const T* b, const Dims& sb, T* out,
           const Dims& shape);
void strided_copy(void* dst, const Dims& sdst, const void* src, const Dims& ssrc, const Dims& shape,
                  int64_t elem_size);
template <class T>
void convert(const void* src, int src_kind, T* dst, int64_t n);
void convert_to_bf16(const void* src, int src_kind, uint16_t* dst, int64_t n);
void convert_to_i64(const void* src, int src_kind, int64_t* dst, int64_t n);

// ---- reductions over [outer, n, inner] ----
template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale);
template <class T>
void max_mid(const T* x, T* out, int64_t* idx, int64_t outer, int64_t n, int64_t inner);
template <class T>
void logsumexp_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner);
template <class T>
void softmax_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool log);
template <class T>
void cross_entropy(const T* logits, const int64_t* target, int64_t rows, int64_t c, double label_smoothing, T* out);

// ---- indexing ----
template <class T>
void index_select(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
template <class T>
void index_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
template <class T>
void gather_mid(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
template <class T>
void scatter_add_mid(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
// Per-row index_select (idx [outer, k]) and its adjoint (atomic adds:
// bit-reproducible where each row's indices are distinct, as MAE's are).
template <class T>
void gather_rows(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
template <class T>
void scatter_rows_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner);
// `limit`: the number of elements indexed into (x for take, out for put_add).
// Every kernel here skips indices out of range (gathers read 0) instead of
// faulting: a deferred check reports them.
template <class T>
void take_flat(const T* x, const int64_t* idx, T* out, int64_t n, int64_t limit);
template <class T>
void scatter_add_flat(const T* g, const int64_t* idx, T* out, int64_t n, int64_t limit);
// Eager check: 0 <= idx < hi, waiting for the stream; false with *bad = the
// first bad index otherwise.
bool indices_in_range(const int64_t* idx, int64_t n, int64_t hi, int64_t* bad);
// Deferred check (the default for ops): queued on the stream, no wait. A bad
// index is thrown (std::runtime_error; bissl::Error once through the engine's
// copies and synchronize) as "what: index v out of range [0, hi) at position
// p ..." — the lowest bad position of the first failing check — at the
// host's next wait for the stream (a copy to the host, synchronize).
// `what` must outlive that (a string literal). GPU work is assumed to be
// queued from one thread at a time (the training loop's).
void check_indices_deferred(const int64_t* idx, int64_t n, int64_t hi, const char* what);
// Eager checks for every op (debugging: the error at the op that made it).
void set_eager_index_checks(bool on);
bool eager_index_checks();
template <class T>
void one_hot(const int64_t* idx, T* out, int64_t n, int64_t classes);
template <class T>
void dropout_mask(T* out, int64_t n, double p, uint64_t seed, uint64_t offset);

// ---- GEMM (cuBLAS), row-major like the CPU wrapper ----
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc);
// Batched with fixed strides between matrices (stride 0 = broadcast).
template <class T>
void gemm_strided_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, int64_t sa,
                          const T* b, int64_t ldb, int64_t sb, T* c, int64_t ldc, int64_t sc, int64_t batch);

// ---- convolution (NHWC / OHWI) ----
template <class T>
void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y);
template <class T>
void conv2d_input_grad(const ConvShape& s, const T* gy, const T* w, T* gx);
template <class T>
void conv2d_weight_grad(const ConvShape& s, const T* x, const T* gy, T* gw);

// ---- pooling ----
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

// ---- normalisation ----
template <class T>
void batch_norm_stats(const T* x, int64_t rows, int64_t c, T* mean, T* var_biased);
// invstd = 1/sqrt(var + eps); running stats updated when given (unbiased var).
template <class T>
void batch_norm_finish(const T* mean, const T* var, T* invstd, T* running_mean, T* running_var, int64_t c,
                       double eps, double momentum, int64_t rows);
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

// ---- optimisers ----
template <class T>
void sgd_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, bool nesterov,
                bool first_step);
template <class T>
void lars_update(T* p, const T* g, T* mom, int64_t n, double lr, double momentum, double wd, double eta);
template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                  int64_t step);
template <class T>
double sum_squares(const T* x, int64_t n);
// Σx² into one double in device memory (no host wait).
template <class T>
void sum_squares_into(const T* x, int64_t n, double* out);
// out[0] = Σp², out[1] = Σ(g + wd·p)² on the device (LARS's trust ratio).
template <class T>
void lars_sums(const T* p, const T* g, int64_t n, double wd, double* out);
template <class T>
void scale_inplace(T* x, int64_t n, double s);

}  // namespace bissl::cuda
