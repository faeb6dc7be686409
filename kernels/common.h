#pragma once
// Types shared by every backend's kernels: op selectors and problem shapes.
// Kernels see raw buffers and these descriptions only.
#include <cstdint>
#include <vector>

namespace bissl::kern {

using Dims = std::vector<int64_t>;

enum class Unary {
  Neg, Exp, Log, Sqrt, Rsqrt, Abs, Relu, GeluErf, GeluTanh, Sigmoid, Tanh, Erf, Sign,
  AddScalar, MulScalar, PowScalar, Gt, Ge, Lt, Le, Eq, Ne
};
// MaskPositive: b > 0 ? a : 0 (ReLU's backward: a = gradient, b = input).
enum class Binary { Add, Sub, Mul, Div, MaskPositive };

// Convolution, NHWC activations, OHWI weights.
struct ConvShape {
  int64_t n, h, w, c;         // input
  int64_t o, kh, kw;          // weight [o, kh, kw, c/groups]
  int64_t ho, wo;             // output
  int64_t sh, sw, ph, pw, dh, dw, groups;
};

// Pooling, NHWC.
struct PoolShape {
  int64_t n, h, w, c, ho, wo, k, stride, pad;
};

}  // namespace bissl::kern
