#pragma once
// The basic layers. Activations are channels-last: Linear and LayerNorm act
// on the last axis, Conv2d and BatchNorm2d take NHWC, conv weights are OHWI.
// Parameter and buffer names are PyTorch's (weight, bias, running_mean,
// running_var, num_batches_tracked), so state_dicts match torch key for key
// (layouts are converted by the checkpoint code, not here).
//
// Constructors take the Generator right after the required sizes (C++ puts
// defaulted arguments last); defaults otherwise follow PyTorch, except
// Conv2d's bias, which defaults to false (every ResNet conv is bias-free).
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "engine/nn/module.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace bissl::nn {

// y = x·Wᵀ + b over the last axis. weight [out, in], bias [out].
// Init as PyTorch: weight U(±1/√in) (kaiming_uniform_, a = √5), bias U(±1/√in).
class Linear : public Layer {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& g, bool bias = true);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;

  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when bias = false
};

// 2-D convolution, NHWC in/out, weight OHWI [out, k, k, in/groups], bias
// [out] broadcast over the channel (last) axis. Square kernel, stride,
// padding and dilation. fan_in = k·k·in/groups; init as PyTorch.
class Conv2d : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator& g, int64_t stride = 1,
         int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1, bool bias = false);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;
  Conv2dParams params() const { return Conv2dParams::make(stride, padding, dilation, groups); }

  int64_t in_channels, out_channels, kernel, stride, padding, dilation, groups;
  Tensor weight, bias;
};

// Batch normalisation over every axis but the last (channels-last).
// Train mode: batch statistics; running stats updated in place with
// `momentum` and the unbiased batch variance; num_batches_tracked += 1.
// momentum = NaN means PyTorch's momentum=None (cumulative average,
// factor 1/num_batches_tracked). Eval mode: running statistics. Without
// track_running_stats there are no buffers and batch statistics are used in
// both modes (as PyTorch).
class BatchNorm : public Layer {
 public:
  static constexpr double kCumulative = std::numeric_limits<double>::quiet_NaN();
  explicit BatchNorm(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                     bool track_running_stats = true);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "BatchNorm"; }
  std::string extra_repr() const override;

  int64_t num_features;
  double eps, momentum;
  bool affine, track_running_stats;
  Tensor weight, bias;                                     // [C], undefined without affine
  Tensor running_mean, running_var, num_batches_tracked;  // [C], [C], i64 scalar
  // Ghost batch norm: > 0 normalises every consecutive `ghost_batch` rows of
  // a training batch with their own statistics, as data-parallel training
  // without synchronised BN does per device (BISSL_SPEC.md, "BN during
  // BiSSL"). The running statistics follow the first ghost batch. 0 = off.
  // On several ranks (the current group) sizes count rows of the whole
  // job's batch, so N never changes the statistics: a ghost batch within a
  // rank's rows stays on that rank; 0 (the whole batch) or a size of at
  // least the whole batch synchronises as `sync` does; a size in between
  // is an error (groups of ranks are not built).
  int64_t ghost_batch = 0;
  // Synchronised batch norm: in training, the statistics are those of every
  // rank's rows of the current group (dist::current_group()): the whole
  // job's batch, as one process with all of it would compute them (local
  // batches may differ in size). A composite of engine ops and collectives,
  // so its gradient, H·v and Linearization replays include the other ranks'
  // rows (the tangents of the statistics are summed over ranks too). The
  // running statistics move with the global mean and unbiased variance, the
  // same on every rank. On one rank: the plain path, bit for bit. Excludes
  // ghost_batch.
  bool sync = false;

 protected:
  Tensor ghost_forward(const Tensor& x, double factor);
  Tensor sync_forward(const Tensor& x, double factor);
  // Training on several ranks: whether the statistics take other ranks'
  // rows (sync, or a ghost size beyond this rank's rows; see ghost_batch).
  bool statistics_span_ranks(const Tensor& x) const;
  // One more batch counted (num_batches_tracked); the running statistics'
  // update factor that goes with it.
  double count_batch();
  // While a Linearization records forward effects: the running-statistics
  // update of this forward (x: the rows that feed the statistics), to be
  // repeated with every replayed product.
  void record_running_update(const Tensor& x);
  bool optional_on_load(const std::string& local) const override { return local == "num_batches_tracked"; }
  // Rank check of the subclasses (-1 accepts any rank >= 2).
  virtual void check_input(const Tensor& x) const;
};

// Sets ghost_batch on every BatchNorm in `m` (0 = off); returns how many.
int set_ghost_batch(Module& m, int64_t ghost_batch);
// Sets sync on every BatchNorm in `m`; returns how many.
int set_sync_batch_norm(Module& m, bool sync);

// [N, C] or [N, L, C].
class BatchNorm1d : public BatchNorm {
 public:
  using BatchNorm::BatchNorm;
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  void check_input(const Tensor& x) const override;
};

// [N, H, W, C].
class BatchNorm2d : public BatchNorm {
 public:
  using BatchNorm::BatchNorm;
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  void check_input(const Tensor& x) const override;
};

// Normalises the last axis (size `dim`); weight ones, bias zeros.
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;

  int64_t dim;
  double eps;
  Tensor weight, bias;
};

class ReLU : public Layer {
 public:
  Tensor forward_impl(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

class Identity : public Layer {
 public:
  Tensor forward_impl(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

// Layers applied in order, registered as "0", "1", ... (as torch).
class Sequential : public Layer {
 public:
  Sequential() = default;
  explicit Sequential(const std::vector<std::shared_ptr<Layer>>& layers);
  template <class L>
  std::shared_ptr<L> push_back(std::shared_ptr<L> layer) {
    push_back_impl(layer);
    return layer;
  }
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }

  size_t size() const { return layers_.size(); }
  const std::shared_ptr<Layer>& operator[](size_t i) const;
  // The i-th layer as its concrete type; throws if it is not an L.
  template <class L>
  std::shared_ptr<L> at(size_t i) const {
    auto p = std::dynamic_pointer_cast<L>((*this)[i]);
    BISSL_CHECK(p, "Sequential::at: layer ", i, " is a ", (*this)[i]->type_name(), ", not the requested type");
    return p;
  }

 private:
  void push_back_impl(std::shared_ptr<Layer> layer);
  std::vector<std::shared_ptr<Layer>> layers_;
};

}  // namespace bissl::nn
