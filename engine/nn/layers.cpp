#include "engine/nn/layers.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/nn/init.h"

namespace bissl::nn {

namespace {

void check_positive(int64_t v, const char* layer, const char* what) {
  BISSL_CHECK(v > 0, layer, ": expected ", what, " > 0, found ", v);
}

void check_last_axis(const Tensor& x, int64_t c, const char* layer, const char* what) {
  BISSL_CHECK(x.dim() >= 1 && x.shape().back() == c, layer, ": expected input with ", c, " ", what,
              " on the last axis, found shape ", shape_str(x.shape()));
}

}  // namespace

// ---- Linear ----

Linear::Linear(int64_t in, int64_t out, Generator& g, bool has_bias) : in_features(in), out_features(out) {
  check_positive(in, "Linear", "in_features");
  check_positive(out, "Linear", "out_features");
  weight = register_parameter("weight", empty({out, in}));
  if (has_bias) bias = register_parameter("bias", empty({out}));
  init::torch_default_init_(weight, bias, g);
}

Tensor Linear::forward_impl(const Tensor& x) {
  check_last_axis(x, in_features, "Linear", "features");
  return linear(x, weight, bias);
}

std::string Linear::extra_repr() const {
  return str("in_features=", in_features, ", out_features=", out_features, ", bias=", bias.defined() ? "True" : "False");
}

// ---- Conv2d ----

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, Generator& g, int64_t stride_, int64_t padding_,
               int64_t dilation_, int64_t groups_, bool has_bias)
    : in_channels(in),
      out_channels(out),
      kernel(k),
      stride(stride_),
      padding(padding_),
      dilation(dilation_),
      groups(groups_) {
  check_positive(in, "Conv2d", "in_channels");
  check_positive(out, "Conv2d", "out_channels");
  check_positive(k, "Conv2d", "kernel");
  check_positive(stride, "Conv2d", "stride");
  check_positive(dilation, "Conv2d", "dilation");
  check_positive(groups, "Conv2d", "groups");
  BISSL_CHECK(padding >= 0, "Conv2d: expected padding >= 0, found ", padding);
  BISSL_CHECK(in % groups == 0 && out % groups == 0, "Conv2d: in_channels ", in, " and out_channels ", out,
              " must both be divisible by groups ", groups);
  weight = register_parameter("weight", empty({out, k, k, in / groups}));
  if (has_bias) bias = register_parameter("bias", empty({out}));
  init::torch_default_init_(weight, bias, g);
}

Tensor Conv2d::forward_impl(const Tensor& x) {
  BISSL_CHECK(x.dim() == 4, "Conv2d: expected NHWC input [N, H, W, ", in_channels, "], found shape ",
              shape_str(x.shape()));
  check_last_axis(x, in_channels, "Conv2d", "channels");
  Tensor y = conv2d(x, weight, params());
  return bias.defined() ? add(y, bias) : y;
}

std::string Conv2d::extra_repr() const {
  std::string s = str(in_channels, ", ", out_channels, ", kernel_size=(", kernel, ", ", kernel, "), stride=(", stride,
                      ", ", stride, ")");
  if (padding) s += str(", padding=(", padding, ", ", padding, ")");
  if (dilation != 1) s += str(", dilation=(", dilation, ", ", dilation, ")");
  if (groups != 1) s += str(", groups=", groups);
  if (!bias.defined()) s += ", bias=False";
  return s;
}

// ---- BatchNorm ----

BatchNorm::BatchNorm(int64_t c, double eps_, double momentum_, bool affine_, bool track)
    : num_features(c), eps(eps_), momentum(momentum_), affine(affine_), track_running_stats(track) {
  check_positive(c, "BatchNorm", "num_features");
  BISSL_CHECK(eps > 0, "BatchNorm: expected eps > 0, found ", eps);
  BISSL_CHECK(std::isnan(momentum) || (momentum >= 0 && momentum <= 1),
              "BatchNorm: expected momentum in [0, 1] (or NaN for a cumulative average), found ", momentum);
  if (affine) {
    weight = register_parameter("weight", ones({c}));
    bias = register_parameter("bias", zeros({c}));
  }
  if (track) {
    running_mean = register_buffer("running_mean", zeros({c}));
    running_var = register_buffer("running_var", ones({c}));
    // Host-resident: train-mode forwards count on the CPU, never waiting for a GPU.
    num_batches_tracked = register_buffer("num_batches_tracked", from_ints({0}, {}), true, /*host_resident=*/true);
  }
}

void BatchNorm::check_input(const Tensor& x) const {
  BISSL_CHECK(x.dim() >= 2, type_name(), ": expected input of rank >= 2 with channels last, found shape ",
              shape_str(x.shape()));
}

void BatchNorm1d::check_input(const Tensor& x) const {
  BISSL_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1d: expected [N, C] or [N, L, C], found shape ",
              shape_str(x.shape()));
}

void BatchNorm2d::check_input(const Tensor& x) const {
  BISSL_CHECK(x.dim() == 4, "BatchNorm2d: expected NHWC input [N, H, W, C], found shape ", shape_str(x.shape()));
}

Tensor BatchNorm::forward_impl(const Tensor& x) {
  check_input(x);
  check_last_axis(x, num_features, type_name().c_str(), "channels");
  BISSL_CHECK(!(sync && ghost_batch > 0), type_name(), ": synchronised statistics (sync) and ghost batches of ",
              ghost_batch, " exclude each other; set one of them");
  if (!is_training() && track_running_stats) return batch_norm_eval(x, weight, bias, running_mean, running_var, eps);
  const bool synced = is_training() && statistics_span_ranks(x);
  if (!is_training() || !track_running_stats) {
    if (synced && is_training()) return sync_forward(x, -1.0);  // no running statistics
    return batch_norm_train(x, weight, bias, Tensor(), Tensor(), 0.0, eps).y;
  }
  double factor = count_batch();
  if (synced) return sync_forward(x, factor);
  if (ghost_batch > 0 && x.shape()[0] > ghost_batch) return ghost_forward(x, factor);
  record_running_update(x);
  return batch_norm_train(x, weight, bias, running_mean, running_var, factor, eps).y;
}

bool BatchNorm::statistics_span_ranks(const Tensor& x) const {
  dist::Comm& c = dist::group(dist::current_group());
  if (c.size() == 1) return false;
  if (sync) return true;
  // Ghost sizes count rows of the whole job's batch, whatever the ranks:
  // 0 (the whole batch) and sizes beyond this rank's rows take every rank's
  // rows; sizes within them stay on the rank.
  const int64_t n = x.shape()[0], total = dist::row_window(n).total;  // every rank asks
  if (ghost_batch > 0 && ghost_batch <= n) return false;
  if (ghost_batch == 0 || ghost_batch >= total) return true;
  throw Error(str(type_name(), ": ghost batches of ", ghost_batch, " rows span some of the ", c.size(),
                  " ranks (", n, " rows each, ", total, " in all); use a ghost size of at most ", n,
                  " rows or of the whole batch (0)"));
}

double BatchNorm::count_batch() {
  int64_t n = 0;
  if (num_batches_tracked.device() == Device::CPU) {
    n = ++*num_batches_tracked.data<int64_t>();
  } else {
    n = int64_t(num_batches_tracked.to(Device::CPU).item()) + 1;
    num_batches_tracked.copy_(from_ints({n}, {}).to(num_batches_tracked.device()));
  }
  return std::isnan(momentum) ? 1.0 / double(n) : momentum;
}

void BatchNorm::record_running_update(const Tensor& x) {
  if (!forward_effects_recording()) return;
  // A replayed H·v (Linearization) moves the running statistics as this
  // forward did: the same count, the same kernels on the same values, so
  // the same bits.
  record_forward_effect([this, xs = x.detach()] {
    const double factor = count_batch();
    batch_norm_update_running(xs, running_mean, running_var, factor, eps);
  });
}

Tensor BatchNorm::ghost_forward(const Tensor& x, double factor) {
  int64_t n = x.shape()[0];
  BISSL_CHECK(n % ghost_batch == 0, type_name(), ": expected a batch that ghost batches of ", ghost_batch,
              " divide evenly, found a batch of ", n);
  std::vector<Tensor> parts;
  for (int64_t s = 0; s < n; s += ghost_batch) {
    // Running statistics from the first ghost batch only: device 0's, whose
    // buffers are the ones a data-parallel run saves.
    bool first = s == 0;
    Tensor part = slice(x, 0, s, s + ghost_batch);
    if (first) record_running_update(part);
    parts.push_back(batch_norm_train(part, weight, bias, first ? running_mean : Tensor(),
                                     first ? running_var : Tensor(), first ? factor : 0.0, eps)
                        .y);
  }
  return concat(parts, 0);
}

Tensor BatchNorm::sync_forward(const Tensor& x, double factor) {
  const int gid = dist::current_group();
  const int64_t c = num_features;
  Tensor rows = reshape(x, {-1, c});
  // The whole job's row count (local batches may differ), then two passes
  // over it: the mean, then the centred squares (no cancellation).
  const double m = dist::all_reduce_sum(double(rows.shape()[0]), gid);
  BISSL_CHECK(m > 1, type_name(), ": expected more than one row over all ranks for batch statistics, found ", m);
  Tensor mean = mul(all_reduce_sum(sum(rows, {0}), gid), 1.0 / m);
  Tensor d = sub(rows, mean);
  Tensor var = mul(all_reduce_sum(sum(mul(d, d), {0}), gid), 1.0 / m);
  Tensor y = mul(d, rsqrt(add(var, eps)));
  if (affine) y = add(mul(y, weight), bias);
  if (factor >= 0) {  // running statistics tracked (factor < 0: not)
    // The same global statistics on every rank; a replayed H·v repeats the
    // update with these values (no collective in a replay's effects).
    Tensor gm = mean.detach().clone(), gv = mul(var.detach(), m / (m - 1)).clone();
    auto update = [this, gm, gv](double f) {
      NoGradGuard ng;
      running_mean.copy_(add(mul(running_mean, 1.0 - f), mul(gm.to(running_mean.dtype()), f)));
      running_var.copy_(add(mul(running_var, 1.0 - f), mul(gv.to(running_var.dtype()), f)));
    };
    update(factor);
    if (forward_effects_recording()) record_forward_effect([this, update] { update(count_batch()); });
  }
  return reshape(y, x.shape());
}

int set_sync_batch_norm(Module& m, bool sync) {
  int count = 0;
  for (auto& [name, mod] : m.named_modules())
    if (auto* bn = dynamic_cast<BatchNorm*>(mod)) bn->sync = sync, ++count;
  return count;
}

int set_ghost_batch(Module& m, int64_t ghost_batch) {
  BISSL_CHECK(ghost_batch >= 0, "set_ghost_batch: expected a size >= 0 (0 = off), found ", ghost_batch);
  int count = 0;
  for (auto& [name, mod] : m.named_modules())
    if (auto* bn = dynamic_cast<BatchNorm*>(mod)) bn->ghost_batch = ghost_batch, ++count;
  return count;
}

std::string BatchNorm::extra_repr() const {
  return str(num_features, ", eps=", eps, ", momentum=", momentum, ", affine=", affine ? "True" : "False",
             ", track_running_stats=", track_running_stats ? "True" : "False");
}

// ---- LayerNorm ----

LayerNorm::LayerNorm(int64_t d, double eps_, bool affine) : dim(d), eps(eps_) {
  check_positive(d, "LayerNorm", "dim");
  BISSL_CHECK(eps > 0, "LayerNorm: expected eps > 0, found ", eps);
  if (affine) {
    weight = register_parameter("weight", ones({d}));
    bias = register_parameter("bias", zeros({d}));
  }
}

Tensor LayerNorm::forward_impl(const Tensor& x) {
  check_last_axis(x, dim, "LayerNorm", "features");
  return layer_norm(x, weight, bias, eps);
}

std::string LayerNorm::extra_repr() const {
  return str("(", dim, ",), eps=", eps, ", elementwise_affine=", weight.defined() ? "True" : "False");
}

// ---- Sequential ----

Sequential::Sequential(const std::vector<std::shared_ptr<Layer>>& layers) {
  for (auto& l : layers) push_back_impl(l);
}

void Sequential::push_back_impl(std::shared_ptr<Layer> layer) {
  BISSL_CHECK(layer, "Sequential: expected a layer, found a null pointer at position ", layers_.size());
  register_module(std::to_string(layers_.size()), layer);
  layers_.push_back(std::move(layer));
}

const std::shared_ptr<Layer>& Sequential::operator[](size_t i) const {
  BISSL_CHECK(i < layers_.size(), "Sequential: index ", i, " out of range for ", layers_.size(), " layers");
  return layers_[i];
}

Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

}  // namespace bissl::nn
