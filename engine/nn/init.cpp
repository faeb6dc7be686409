#include "engine/nn/init.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"

namespace bissl::nn::init {

namespace {

void check_target(const Tensor& t, const char* what) {
  BISSL_CHECK(t.defined(), what, ": expected a defined tensor, found an empty handle");
  BISSL_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64 || t.dtype() == DType::BF16, what,
              ": expected a floating tensor, found ", dtype_name(t.dtype()));
}

// Writes `src` (any floating dtype, same shape) into t without recording.
Tensor write(const Tensor& t, const Tensor& src) {
  NoGradGuard ng;
  Tensor dst = t;
  dst.copy_(src.dtype() == t.dtype() ? src : src.to(t.dtype()));
  return t;
}

double fan(const Tensor& t, FanMode mode) { return double(mode == FanMode::FanIn ? fan_in(t) : fan_out(t)); }

// Standard normal CDF and its inverse. The inverse starts from Acklam's
// rational approximation (relative error 1.2e-9) and takes one Halley step
// against erfc, which brings it to double precision.
double norm_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

double norm_icdf(double p) {
  if (p <= 0.0) return -INFINITY;
  if (p >= 1.0) return INFINITY;
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double plow = 0.02425, phigh = 1 - plow;
  double x;
  if (p < plow) {
    double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= phigh) {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  double e = norm_cdf(x) - p;
  double u = e * 2.5066282746310002 * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

}  // namespace

int64_t fan_in(const Tensor& w) {
  BISSL_CHECK(w.dim() >= 2, "fan_in: expected a weight of rank >= 2 ([out, ..., in]), found shape ",
              shape_str(w.shape()));
  return w.shape()[0] == 0 ? 0 : w.numel() / w.shape()[0];
}

int64_t fan_out(const Tensor& w) {
  BISSL_CHECK(w.dim() >= 2, "fan_out: expected a weight of rank >= 2 ([out, ..., in]), found shape ",
              shape_str(w.shape()));
  int64_t r = w.shape()[0];
  for (int64_t i = 1; i + 1 < w.dim(); ++i) r *= w.shape()[size_t(i)];
  return r;
}

double calculate_gain(Nonlinearity nl, double param) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Conv:
    case Nonlinearity::Sigmoid: return 1.0;
    case Nonlinearity::Tanh: return 5.0 / 3.0;
    case Nonlinearity::Relu: return std::sqrt(2.0);
    case Nonlinearity::LeakyRelu: return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::Selu: return 0.75;
  }
  return 1.0;
}

Tensor uniform_(const Tensor& t, Generator& g, double lo, double hi) {
  check_target(t, "uniform_");
  BISSL_CHECK(lo <= hi, "uniform_: expected lo <= hi, found [", lo, ", ", hi, ")");
  return write(t, rand(t.shape(), g, t.dtype(), lo, hi));
}

Tensor normal_(const Tensor& t, Generator& g, double mean, double std) {
  check_target(t, "normal_");
  BISSL_CHECK(std >= 0, "normal_: expected std >= 0, found ", std);
  return write(t, randn(t.shape(), g, t.dtype(), mean, std));
}

Tensor constant_(const Tensor& t, double v) {
  check_target(t, "constant_");
  NoGradGuard ng;
  t.detach().fill_(v);
  return t;
}
Tensor zeros_(const Tensor& t) { return constant_(t, 0.0); }
Tensor ones_(const Tensor& t) { return constant_(t, 1.0); }

Tensor kaiming_uniform_(const Tensor& t, Generator& g, double a, FanMode mode, Nonlinearity nl) {
  check_target(t, "kaiming_uniform_");
  double f = fan(t, mode);
  BISSL_CHECK(f > 0, "kaiming_uniform_: fan is 0 for shape ", shape_str(t.shape()));
  double bound = std::sqrt(3.0) * calculate_gain(nl, a) / std::sqrt(f);
  return uniform_(t, g, -bound, bound);
}

Tensor kaiming_normal_(const Tensor& t, Generator& g, double a, FanMode mode, Nonlinearity nl) {
  check_target(t, "kaiming_normal_");
  double f = fan(t, mode);
  BISSL_CHECK(f > 0, "kaiming_normal_: fan is 0 for shape ", shape_str(t.shape()));
  return normal_(t, g, 0.0, calculate_gain(nl, a) / std::sqrt(f));
}

Tensor xavier_uniform_(const Tensor& t, Generator& g, double gain) {
  check_target(t, "xavier_uniform_");
  double s = double(fan_in(t) + fan_out(t));
  BISSL_CHECK(s > 0, "xavier_uniform_: fans are 0 for shape ", shape_str(t.shape()));
  double bound = gain * std::sqrt(6.0 / s);
  return uniform_(t, g, -bound, bound);
}

Tensor xavier_normal_(const Tensor& t, Generator& g, double gain) {
  check_target(t, "xavier_normal_");
  double s = double(fan_in(t) + fan_out(t));
  BISSL_CHECK(s > 0, "xavier_normal_: fans are 0 for shape ", shape_str(t.shape()));
  return normal_(t, g, 0.0, gain * std::sqrt(2.0 / s));
}

Tensor trunc_normal_(const Tensor& t, Generator& g, double mean, double std, double a, double b) {
  check_target(t, "trunc_normal_");
  BISSL_CHECK(a < b, "trunc_normal_: expected a < b, found [", a, ", ", b, "]");
  BISSL_CHECK(std >= 0, "trunc_normal_: expected std >= 0, found ", std);
  Tensor u = rand(t.shape(), g, DType::F64);
  double* p = u.data<double>();
  int64_t n = u.numel();
  if (std == 0.0) {
    double v = std::min(std::max(mean, a), b);
    for (int64_t i = 0; i < n; ++i) p[i] = v;
  } else {
    double lo = norm_cdf((a - mean) / std), hi = norm_cdf((b - mean) / std);
    for (int64_t i = 0; i < n; ++i) {
      double x = mean + std * norm_icdf(lo + (hi - lo) * p[i]);
      p[i] = std::isfinite(x) ? std::min(std::max(x, a), b) : (x > 0 ? b : a);
    }
  }
  return write(t, u);
}

void torch_default_init_(const Tensor& weight, const Tensor& bias, Generator& g) {
  kaiming_uniform_(weight, g, std::sqrt(5.0));
  if (bias.defined()) {
    int64_t f = fan_in(weight);
    double bound = f > 0 ? 1.0 / std::sqrt(double(f)) : 0.0;
    uniform_(bias, g, -bound, bound);
  }
}

}  // namespace bissl::nn::init
