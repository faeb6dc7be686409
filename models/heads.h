#pragma once
// Heads that sit on a backbone's pooled features [N, in]: the linear
// classifier of the downstream stages, the MLP projector/predictor of the
// self-supervised objectives, and a named Sequential to stack them.
//
// Names follow the BiSSL reference code (PyTorch) key for key:
//   LinearHead        weight [classes, in], bias [classes]
//   MLPHead           a torch nn.Sequential, children "0", "1", ...:
//                       layers = 3 -> 0 Linear(in, hidden)   0.weight, 0.bias
//                                     1 BatchNorm1d(hidden)   1.weight, 1.bias,
//                                                             1.running_mean, 1.running_var,
//                                                             1.num_batches_tracked
//                                     2 ReLU
//                                     3 Linear(hidden, hidden) 3.weight, 3.bias
//                                     4 BatchNorm1d(hidden)   4.*
//                                     5 ReLU
//                                     6 Linear(hidden, out, bias = last_bias)   6.weight
//                                    [7 BatchNorm1d(out)      7.*   only with last_bn]
//                     i.e. the reference's MLPProjector("hidden-hidden-out", in):
//                     hidden Linears keep their bias (torch's default) even
//                     though a BN follows; the last Linear has none.
//   NamedSequential   torch's nn.Sequential(OrderedDict(...)): children by name
//                     ("projector", "predictor"), applied in order.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/random.h"

namespace bissl::models {

// Linear classifier y = x·Wᵀ + b. Init: PyTorch's Linear default, or all
// zeros with zero_init (the "FT with zero-initialised head" baseline).
// Prints as "Linear" (it is one).
class LinearHead : public nn::Linear {
 public:
  LinearHead(int64_t in_features, int64_t num_classes, Generator& g, bool zero_init = false);
};

// The spec's projector (and BYOL's predictor): `layers` Linear layers, every
// one but the last followed by BatchNorm1d + ReLU. layers = 1 is a single
// Linear(in, out). Input [N, in] (or [N, L, in]); output [..., out].
class MLPHead : public nn::Sequential {
 public:
  MLPHead(int64_t in_features, int64_t hidden_features, int64_t out_features, Generator& g, int layers = 3,
          bool last_bias = false, bool last_bn = false);
  std::string type_name() const override { return "MLPHead"; }
  std::string extra_repr() const override;

  int64_t in_features, hidden_features, out_features;
  int num_layers;
  bool last_bias, last_bn;
};

// Layers applied in order under the names given (torch's
// nn.Sequential(OrderedDict)), so state_dict keys read "projector.0.weight".
class NamedSequential : public nn::Layer {
 public:
  NamedSequential() = default;
  template <class L>
  std::shared_ptr<L> push_back(const std::string& name, std::shared_ptr<L> layer) {
    push_back_impl(name, layer);
    return layer;
  }
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return layers_.size(); }

 private:
  void push_back_impl(const std::string& name, std::shared_ptr<nn::Layer> layer);
  std::vector<std::shared_ptr<nn::Layer>> layers_;
};

}  // namespace bissl::models
