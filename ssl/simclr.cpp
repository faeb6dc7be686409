#include "ssl/simclr.h"

#include "engine/ops.h"

namespace bissl::ssl {

namespace {
constexpr double kMaskedLogit = -1e9;
}  // namespace

Tensor nt_xent(const Tensor& z1, const Tensor& z2, double temperature) {
  BISSL_CHECK(temperature > 0, "nt_xent: expected a temperature > 0, found ", temperature);
  BISSL_CHECK(z1.dim() == 2 && z1.shape() == z2.shape() && z1.shape()[0] > 0,
              "nt_xent: expected two projections [N, d] of equal shape with N > 0, found ", shape_str(z1.shape()),
              " and ", shape_str(z2.shape()));
  const int64_t n = z1.shape()[0], n2 = 2 * n;
  Tensor z = l2_normalize(concat({z1, z2}, 0), 1);
  Tensor sim = mul(matmul(z, z, false, true), 1.0 / temperature);  // [2N, 2N]

  // Constants built on the CPU (2N + 2N writes), moved next to the logits.
  Tensor eye = zeros({n2, n2}, sim.dtype());
  std::vector<int64_t> positive(size_t(n2), 0);
  for (int64_t i = 0; i < n2; ++i) {
    eye.set_flat(i * n2 + i, 1.0);
    positive[size_t(i)] = (i + n) % n2;
  }
  Tensor target = from_ints(positive, {n2});
  if (sim.device() != Device::CPU) eye = eye.to(sim.device()), target = target.to(sim.device());
  // −1e9 rather than −∞: exp underflows to exactly 0 either way (the same
  // numbers), and cross_entropy's forward kernel computes its
  // label-smoothing term even when label_smoothing = 0, where −∞ gives
  // 0·∞ = NaN. The reference code uses −1e9 too.
  sim = masked_fill(sim, eye, kMaskedLogit);
  return cross_entropy(sim, target);
}

SimCLR::SimCLR(int64_t feature_dim, Generator& g, const SimclrOptions& opts) : options(opts) {
  BISSL_CHECK(opts.temperature > 0, "SimCLR: expected a temperature > 0, found ", opts.temperature);
  head_ = register_module("head", std::make_shared<models::NamedSequential>());
  projector_ = head_->push_back(
      "projector", std::make_shared<models::MLPHead>(feature_dim, opts.hidden_dim, opts.out_dim, g, opts.proj_layers));
}

Tensor SimCLR::loss(nn::Layer& backbone, const SslBatch& batch) {
  ScopedRange range(range_name().c_str());
  check_two_views(batch, "SimCLR");
  Tensor z1 = head_->forward(backbone.forward(batch.view1));
  Tensor z2 = head_->forward(backbone.forward(batch.view2));
  return nt_xent(z1, z2, options.temperature);
}

std::string SimCLR::extra_repr() const { return str("temperature=", options.temperature); }

}  // namespace bissl::ssl
