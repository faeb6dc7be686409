#pragma once
// The per-element unary maps, one definition for the CPU loops
// (kernels/cpu/elementwise.cpp) and the CUDA kernels (kernels/cuda/elementwise.cu).
// Math functions are std:: on the host (float overloads for float) and the
// CUDA device functions on the device.
#include <cmath>

#include "kernels/common.h"  // Unary
#include "kernels/philox.h"  // BISSL_HD

#ifdef __CUDA_ARCH__
#define BISSL_MATH(f) ::f
#else
#define BISSL_MATH(f) std::f
#endif

namespace bissl::kern_math {

template <class T>
BISSL_HD inline T unary_element(kern::Unary op, T x, T s) {
  using kern::Unary;
  const T kSqrt1_2 = T(0.70710678118654752440);
  const T kSqrt2OverPi = T(0.79788456080286535588);
  switch (op) {
    case Unary::Neg: return -x;
    case Unary::Exp: return BISSL_MATH(exp)(x);
    case Unary::Log: return BISSL_MATH(log)(x);
    case Unary::Sqrt: return BISSL_MATH(sqrt)(x);
    case Unary::Rsqrt: return T(1) / BISSL_MATH(sqrt)(x);
    case Unary::Abs: return BISSL_MATH(fabs)(x);
    case Unary::Relu: return x > T(0) ? x : T(0);
    case Unary::GeluErf: return T(0.5) * x * (T(1) + BISSL_MATH(erf)(x * kSqrt1_2));
    case Unary::GeluTanh:
      return T(0.5) * x * (T(1) + BISSL_MATH(tanh)(kSqrt2OverPi * (x + T(0.044715) * x * x * x)));
    case Unary::Sigmoid: return T(1) / (T(1) + BISSL_MATH(exp)(-x));
    case Unary::Tanh: return BISSL_MATH(tanh)(x);
    case Unary::Erf: return BISSL_MATH(erf)(x);
    case Unary::Sign: return T((x > T(0)) - (x < T(0)));
    case Unary::AddScalar: return x + s;
    case Unary::MulScalar: return x * s;
    case Unary::PowScalar: return BISSL_MATH(pow)(x, s);
    case Unary::Gt: return T(x > s);
    case Unary::Ge: return T(x >= s);
    case Unary::Lt: return T(x < s);
    case Unary::Le: return T(x <= s);
    case Unary::Eq: return T(x == s);
    case Unary::Ne: return T(x != s);
  }
  return x;
}

}  // namespace bissl::kern_math
