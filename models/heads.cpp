#include "models/heads.h"

#include "engine/nn/init.h"

namespace bissl::models {

LinearHead::LinearHead(int64_t in, int64_t classes, Generator& g, bool zero_init)
    : nn::Linear(in, classes, g, /*bias=*/true) {
  if (zero_init) {
    // The default init above still draws from g, so a zero-init head leaves
    // the generator where a default head would: runs stay comparable.
    nn::init::zeros_(weight);
    nn::init::zeros_(bias);
  }
}

MLPHead::MLPHead(int64_t in, int64_t hidden, int64_t out, Generator& g, int layers, bool last_bias_, bool last_bn_)
    : in_features(in),
      hidden_features(hidden),
      out_features(out),
      num_layers(layers),
      last_bias(last_bias_),
      last_bn(last_bn_) {
  BISSL_CHECK(layers >= 1, "MLPHead: expected layers >= 1, found ", layers);
  BISSL_CHECK(in > 0 && out > 0 && (layers == 1 || hidden > 0), "MLPHead: expected positive sizes, found in ", in,
              ", hidden ", hidden, ", out ", out);
  int64_t prev = in;
  for (int i = 0; i + 1 < layers; ++i) {
    push_back(std::make_shared<nn::Linear>(prev, hidden, g, /*bias=*/true));
    push_back(std::make_shared<nn::BatchNorm1d>(hidden));
    push_back(std::make_shared<nn::ReLU>());
    prev = hidden;
  }
  push_back(std::make_shared<nn::Linear>(prev, out, g, last_bias));
  if (last_bn) push_back(std::make_shared<nn::BatchNorm1d>(out));
}

std::string MLPHead::extra_repr() const {
  return str("in=", in_features, ", hidden=", hidden_features, ", out=", out_features, ", layers=", num_layers,
             ", last_bias=", last_bias ? "True" : "False", ", last_bn=", last_bn ? "True" : "False");
}

void NamedSequential::push_back_impl(const std::string& name, std::shared_ptr<nn::Layer> layer) {
  BISSL_CHECK(layer, "NamedSequential: expected a layer for \"", name, "\", found a null pointer");
  for (auto& [n, m] : named_children())
    BISSL_CHECK(n != name, "NamedSequential: a child named \"", name, "\" already exists");
  register_module(name, layer);
  layers_.push_back(std::move(layer));
}

Tensor NamedSequential::forward_impl(const Tensor& x) {
  Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

}  // namespace bissl::models
