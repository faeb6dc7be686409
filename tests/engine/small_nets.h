#pragma once
// Small networks shared by the HVP tests (CPU and CUDA).
#include <limits>
#include <vector>

#include "engine/ops.h"

namespace bissl::testnets {

// conv → batch norm (train) → relu → conv → global pool → linear → cross-entropy.
// p = {w1 [4,3,3,2], gamma [4], beta [4], w2 [5,3,3,4], W [3,5], b [3]}; x [N,6,6,2].
inline std::vector<Tensor> convnet_params(Generator& g, DType dt = DType::F64) {
  auto param = [&](const Shape& s, double scale, double shift = 0.0) {
    Tensor t = add(mul(randn(s, g, dt), scale), shift);
    t.requires_grad_();
    return t;
  };
  return {param({4, 3, 3, 2}, 0.4), param({4}, 1.0, 1.0), param({4}, 0.3),
          param({5, 3, 3, 4}, 0.3), param({3, 5}, 0.5),   param({3}, 0.1)};
}

inline Tensor convnet_loss(const std::vector<Tensor>& p, const Tensor& x, const Tensor& y) {
  Tensor rm = zeros({4}, x.dtype(), x.device()), rv = ones({4}, x.dtype(), x.device());
  Tensor h = conv2d(x, p[0], Conv2dParams::make(1, 1));
  h = batch_norm_train(h, p[1], p[2], rm, rv, 0.1, 1e-5).y;
  h = relu(h);
  h = conv2d(h, p[3], Conv2dParams::make(2, 1));
  h = global_avg_pool(h);
  return cross_entropy(linear(h, p[4], p[5]), y);
}

// NT-Xent over two views' projections (cosine similarity / tau → cross-entropy).
inline Tensor nt_xent(const Tensor& h1, const Tensor& h2, double tau) {
  Tensor z = l2_normalize(concat({h1, h2}, 0), 1);
  int64_t n2 = z.shape()[0], n = n2 / 2;
  Tensor sim = mul(matmul(z, z, false, true), 1.0 / tau);
  Tensor eye = zeros({n2, n2}, z.dtype());
  std::vector<int64_t> pos(static_cast<size_t>(n2));
  for (int64_t i = 0; i < n2; ++i) eye.set_flat(i * n2 + i, 1.0), pos[size_t(i)] = (i + n) % n2;
  sim = masked_fill(sim, eye.to(z.device()), -std::numeric_limits<double>::infinity());
  return cross_entropy(sim, from_ints(pos, {n2}).to(z.device()));
}

}  // namespace bissl::testnets
