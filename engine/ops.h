#pragma once
// The engine's ops as C++ functions. Each is a registered op (see
// engine/ops/*.cpp) or a short composite of registered ops, so every one of
// them has a forward, a VJP and a JVP.
#include <string>
#include <utility>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace bissl {

// ---- elementwise (numpy broadcasting; operands share a dtype) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
// g where x > 0, else 0: ReLU's VJP (and JVP) as one fused op.
Tensor relu_backward(const Tensor& g, const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approx = false);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor sign(const Tensor& x);  // not differentiable (zero derivative)
// 1 where `x cmp s` holds, else 0, in x's dtype; cmp one of gt ge lt le eq ne.
Tensor compare(const Tensor& x, const std::string& cmp, double s);
// where(cond != 0, a, b), all three broadcast; cond is not differentiated.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
Tensor cast(const Tensor& x, DType t);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return add(neg(a), s); }

// ---- reductions (axes may be negative; empty axes = all) ----
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor var(const Tensor& x, std::vector<int64_t> axes = {}, int64_t correction = 1, bool keepdim = false);
// Max along one axis: values and i64 indices (first maximum wins).
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor logsumexp(const Tensor& x, std::vector<int64_t> axes, bool keepdim = false);
// Broadcast-materialise to `shape`, and its adjoint (sum down to `shape`).
Tensor expand(const Tensor& x, const Shape& shape);
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- movement ----
Tensor reshape(const Tensor& x, const Shape& shape);  // a view; one dim may be -1
Tensor flatten(const Tensor& x, int64_t start_axis = 0);
Tensor permute(const Tensor& x, const std::vector<int64_t>& perm);
Tensor transpose(const Tensor& x, int64_t a, int64_t b);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step = 1);
Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
// pads[2*i], pads[2*i+1]: before/after of dim i (non-negative); constant value.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);
Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);
// Per-row index_select: index has x's dims before axis, then K;
// out[o, j, ...] = x[o, index[o, j], ...] (o: the dims before axis).
Tensor gather_rows(const Tensor& x, int64_t axis, const Tensor& index);
// torch.gather: out[..i..] = x[..index[..i..]..] along axis.
Tensor gather(const Tensor& x, int64_t axis, const Tensor& index);
Tensor unsqueeze(const Tensor& x, int64_t axis);
Tensor squeeze(const Tensor& x, int64_t axis);

// ---- linear algebra ----
// a [..., M, K] (or [..., K, M] with trans_a) times b [..., K, N] (or
// [..., N, K] with trans_b); batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x [..., in] · w[out, in]ᵀ + b[out]; b may be undefined.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// ---- convolution and pooling (NHWC activations, OHWI weights) ----
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
  static Conv2dParams make(int64_t stride, int64_t pad, int64_t dilation = 1, int64_t groups = 1) {
    return {stride, stride, pad, pad, dilation, dilation, groups};
  }
};
Tensor conv2d(const Tensor& x, const Tensor& w, const Conv2dParams& p = {});
Tensor conv2d_input_grad(const Tensor& gy, const Tensor& w, const Shape& x_shape, const Conv2dParams& p);
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& gy, const Shape& w_shape, const Conv2dParams& p);
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t pad = 0);
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t pad = 0, bool count_include_pad = true);
Tensor global_avg_pool(const Tensor& x);  // [N,H,W,C] -> [N,C]

// ---- normalisation ----
struct BatchNormOut {
  Tensor y, mean, invstd;
};
// Train mode over all axes but the last (channels); updates running stats
// (if defined) in place with momentum and the unbiased batch variance.
BatchNormOut batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, double momentum, double eps);
Tensor batch_norm_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, double eps);
// batch_norm_train's running-statistics update alone (no output, no tape):
// the same kernels, so the same bits. Replays of forward effects use it.
void batch_norm_update_running(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                               double momentum, double eps);
// Fused VJP of batch_norm_train: (dx, dgamma, dbeta).
std::vector<Tensor> batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& mean,
                                        const Tensor& invstd, const Tensor& gamma);
// Over the last dim; gamma/beta may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);

// ---- softmax and losses ----
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);
// Mean over the batch of -log p[target]; logits [N, C], target i64 [N].
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);
// Soft (multi-hot or probability) targets [N, C]: mean of -Σ t·log p.
Tensor cross_entropy_soft(const Tensor& logits, const Tensor& target);
Tensor one_hot(const Tensor& index, int64_t classes, DType t = DType::F32);
Tensor l2_normalize(const Tensor& x, int64_t axis = -1, double eps = 1e-12);

// ---- randomness ----
// Bernoulli(keep = 1-p) mask scaled by 1/(1-p), from the generator.
Tensor dropout_mask(const Shape& s, double p, Generator& g, DType t = DType::F32, Device d = Device::CPU);
Tensor dropout(const Tensor& x, double p, Generator& g, bool training = true);
// Drops whole samples (dim 0) with probability p (stochastic depth). On
// several ranks (the current group) each rank takes its rows of the whole
// job's draw (dist::row_window), so the draw does not depend on N.
Tensor drop_path(const Tensor& x, double p, Generator& g, bool training = true);

// ---- attention ----
// q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv]; scale default 1/sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                    double scale = 0.0);

// ---- collectives across ranks (engine/dist/comm.h) ----
// Differentiable: each rank's copy of an output is its own variable, so a
// VJP sums over ranks (the transposes: all_gather <-> reduce_scatter_sum,
// all_reduce_sum <-> itself, broadcast <-> a sum onto the root) and a JVP
// moves tangents as the forward moves values; forward-over-reverse issues
// the tangent collectives by itself. group -1: dist::current_group(), taken
// when the op is called. Every rank must call them in the same order.
Tensor all_reduce_sum(const Tensor& x, int group = -1);
// [n, ...] on every rank -> [size·n, ...], the ranks' blocks in rank order.
Tensor all_gather(const Tensor& x, int group = -1);
// [size·n, ...] -> [n, ...]: rank r gets the sum over ranks of block r.
Tensor reduce_scatter_sum(const Tensor& x, int group = -1);
// The root's x on every rank (same shape and dtype on all).
Tensor broadcast(const Tensor& x, int root = 0, int group = -1);

}  // namespace bissl
