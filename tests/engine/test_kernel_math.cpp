// The host+device formula headers (kernels/*_math.h) on the host: the same
// functions the CUDA kernels run, so their arithmetic is checked here even
// without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/elementwise_math.h"
#include "kernels/norm_math.h"
#include "kernels/optim_math.h"

using namespace bissl;
using namespace bissl::kern_math;

TEST_SUITE("kernel_math") {
  TEST_CASE("Welford within chunks + Chan's merge across them = two-pass statistics") {
    Generator g(3);
    for (int64_t rows : {1, 7, 256, 1000, 70001}) {
      CAPTURE(rows);
      // A large offset: where one-pass sums of squares would cancel.
      std::vector<double> x = randn({rows}, g, DType::F64).to_vector();
      for (auto& v : x) v = 1e4 + 0.5 * v;
      long double s = 0;
      for (double v : x) s += v;
      const long double mean = s / rows;
      long double ss = 0;
      for (double v : x) ss += (v - mean) * (v - mean);
      const double var = double(ss / rows);
      for (int64_t chunk : {int64_t(1), int64_t(5), int64_t(256), rows}) {
        CAPTURE(chunk);
        Moments all;
        for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
          Moments part;
          for (int64_t r = r0; r < std::min(rows, r0 + chunk); ++r) welford_add(part, x[size_t(r)]);
          chan_merge(all, part.n, part.mean, part.m2);
        }
        CHECK(all.n == double(rows));
        CHECK(all.mean == doctest::Approx(double(mean)).epsilon(1e-14));
        CHECK(all.m2 / rows == doctest::Approx(var).epsilon(1e-9));
      }
    }
    Moments a;
    chan_merge(a, 0, 5, 1);  // an empty group changes nothing
    CHECK(a.n == 0);
    CHECK(a.mean == 0);
  }

  TEST_CASE("optimiser element updates by hand") {
    double p[1] = {2.0}, g[1] = {0.5}, mom[1] = {0.0};
    sgd_element(p, g, mom, 0, 0.1, 0.9, 0.01, false, true);  // d = 0.5 + 0.02 = 0.52; buf = d; p = 2 − 0.052
    CHECK(mom[0] == doctest::Approx(0.52));
    CHECK(p[0] == doctest::Approx(1.948));
    sgd_element(p, g, mom, 0, 0.1, 0.9, 0.0, true, false);  // d = 0.5; buf = 0.468 + 0.5; nesterov d + 0.9 buf
    CHECK(mom[0] == doctest::Approx(0.968));
    CHECK(p[0] == doctest::Approx(1.948 - 0.1 * (0.5 + 0.9 * 0.968)));
    double* none = nullptr;
    double q[1] = {1.0};
    sgd_element(q, g, none, 0, 0.1, 0.0, 0.0, false, true);  // no momentum: the buffer is never touched
    CHECK(q[0] == doctest::Approx(0.95));
    CHECK(lars_trust(4.0, 1.0, 0.001) == doctest::Approx(0.002));  // η‖p‖/‖u‖ = 0.001·2/1
    CHECK(lars_trust(0.0, 1.0, 0.001) == 1.0);
    CHECK(lars_trust(4.0, 0.0, 0.001) == 1.0);
    double lp[1] = {1.0}, lg[1] = {2.0}, lm[1] = {1.0};
    lars_element(lp, lg, lm, 0, 0.5, 0.9, 0.0, 0.25);  // u = 0.5; buf = 0.9 + 0.5; p = 1 − 0.7
    CHECK(lm[0] == doctest::Approx(1.4));
    CHECK(lp[0] == doctest::Approx(0.3));
    double ap[1] = {1.0}, ag[1] = {0.1}, am[1] = {0.0}, av[1] = {0.0};
    adamw_element(ap, ag, am, av, 0, 0.01, 0.9, 0.999, 1e-8, 0.1, 1 - 0.9, 1 - 0.999);
    // step 1: m̂ = g, v̂ = g², update = lr·g/(|g| + eps) ≈ lr; decay first: p·(1 − lr·wd)
    CHECK(ap[0] == doctest::Approx(1.0 * (1 - 0.001) - 0.01 * 0.1 / (0.1 + 1e-8)));
  }

  TEST_CASE("unary maps equal the std:: functions they name") {
    using kern::Unary;
    for (double x : {-2.5, -0.3, 0.0, 0.7, 3.0}) {
      CHECK(unary_element(Unary::Exp, x, 0.0) == std::exp(x));
      CHECK(unary_element(Unary::Tanh, x, 0.0) == std::tanh(x));
      CHECK(unary_element(Unary::Relu, x, 0.0) == (x > 0 ? x : 0.0));
      CHECK(unary_element(Unary::Abs, x, 0.0) == std::abs(x));
      CHECK(unary_element(Unary::Sign, x, 0.0) == double((x > 0) - (x < 0)));
      CHECK(unary_element(Unary::GeluErf, x, 0.0) == doctest::Approx(0.5 * x * (1 + std::erf(x / std::sqrt(2.0)))));
      CHECK(unary_element(Unary::Ge, x, 0.0) == double(x >= 0));
      float xf = float(x);
      CHECK(unary_element(Unary::Exp, xf, 0.0f) == std::exp(xf));  // float overloads on the host
    }
    CHECK(unary_element(Unary::PowScalar, 3.0, 2.0) == 9.0);
    CHECK(unary_element(Unary::Rsqrt, 4.0, 0.0) == 0.5);
  }
}
