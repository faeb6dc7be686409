#pragma once
// Deterministic "formula" weights and images, filled the same way by the
// reference scripts that produced the timm/MAE numbers the tests compare with.
#include <cmath>
#include <vector>

#include "engine/nn/module.h"
#include "engine/ops.h"
#include "models/torch_state.h"

namespace bissl::testing {

// Parameter j (in named_parameters order), flat element i in PyTorch's layout:
// 0.5·sin(0.37·i + 1.1·j + 0.3).
inline void formula_fill(nn::Module& m) {
  io::NamedTensors sd;
  int64_t j = 0;
  for (auto& [name, p] : m.named_parameters()) {
    Shape s = p.dim() == 4 ? Shape{p.shape()[0], p.shape()[3], p.shape()[1], p.shape()[2]} : p.shape();
    std::vector<double> v(size_t(numel(s)));
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * std::sin(0.37 * double(i) + 1.1 * double(j) + 0.3);
    sd.emplace_back(name, from_vector(v, s, p.dtype()));
    ++j;
  }
  models::load_torch_state_dict(m, sd, /*strict=*/false);
}

// NCHW formula images, returned NHWC.
inline Tensor formula_images(int64_t n, int64_t c, int64_t h, int64_t w, DType t) {
  std::vector<double> v(size_t(n * c * h * w));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.8 * std::sin(0.05 * double(i) + 0.2) + 0.1 * std::cos(0.9 * double(i));
  return permute(from_vector(v, {n, c, h, w}, t), {0, 2, 3, 1});
}

}  // namespace bissl::testing
