// The host+device formula headers (kernels/*_math.h) on the host: the same
// functions the CUDA kernels run, so their arithmetic is checked here even
// without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <omp.h>

#include <cstdlib>

#include "engine/error.h"
#include "engine/numerics.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/elementwise_math.h"
#include "kernels/norm_math.h"
#include "kernels/optim_math.h"
#include "kernels/pool_math.h"

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

  TEST_CASE("portable numerics: our sums give the same bits at any thread count") {
    Generator g(5);
    const int64_t n = 1 << 20, rows = 8192, c = 64;
    const std::vector<double> xd = randn({n}, g).to_vector();
    std::vector<float> x(xd.begin(), xd.end());
    for (auto& v : x) v = 3.0f + v;  // an offset, so that the order of the additions shows in the last bits
    const int threads_before = omp_get_max_threads();
    // Each of our sums at 1, 2, 3 and 4 threads: squares (det_sum) and the
    // batch-norm statistics (det_column_sums over rows x c).
    auto at = [&](int threads) {
      omp_set_num_threads(threads);
      std::vector<float> mean(static_cast<size_t>(c)), var(static_cast<size_t>(c));
      cpu::batch_norm_stats(x.data(), rows, c, mean.data(), var.data());
      std::vector<double> r{cpu::sum_squares(x.data(), n)};
      r.insert(r.end(), mean.begin(), mean.end());
      r.insert(r.end(), var.begin(), var.end());
      // GEMMs of a convolution's shapes (forward, weight gradient) and a
      // small one, every transpose: C = op(A) op(B) with A, B from x.
      struct Shape { bool ta, tb; int64_t m, n, k; };
      for (Shape sh : {Shape{false, true, 6272, 64, 144}, Shape{true, false, 64, 144, 6272},
                       Shape{false, false, 500, 37, 20}, Shape{true, true, 33, 700, 9}}) {
        std::vector<float> cm(size_t(sh.m * sh.n), 0.f);
        cpu::gemm<float>(sh.ta, sh.tb, sh.m, sh.n, sh.k, 1.f, x.data(), sh.ta ? sh.m : sh.k, x.data() + 7,
                         sh.tb ? sh.k : sh.n, 0.f, cm.data(), sh.n);
        r.insert(r.end(), cm.begin(), cm.end());
      }
      return r;
    };
    cpu::portable_numerics = true;
    const std::vector<double> one = at(1);
    for (int t : {2, 3, 4}) {
      CAPTURE(t);
      CHECK(at(t) == one);
    }
    // The default mode cuts sums and products per thread: they move with the
    // thread count (a message, not a check: it is OpenBLAS's behaviour), by
    // rounding only.
    cpu::portable_numerics = false;
    const std::vector<double> d1 = at(1), d2 = at(2);
    size_t moved = 0;
    for (size_t i = 0; i < d1.size(); ++i) moved += d1[i] != d2[i];
    MESSAGE("default mode: ", moved, " of ", d1.size(), " results differ between 1 and 2 threads");
    REQUIRE(d1.size() == one.size());
    for (size_t i = 0; i < d1.size(); ++i)
      if (std::fabs(d1[i] - one[i]) > 1e-4 * (1 + std::fabs(one[i]))) FAIL_CHECK("result ", i, ": ", d1[i], " vs ", one[i]);
    omp_set_num_threads(threads_before);
  }

  TEST_CASE("portable numerics: the mode's names, its checks, its line") {
    CHECK(parse_numerics("default") == Numerics::Default);
    CHECK(parse_numerics("portable") == Numerics::Portable);
    CHECK_THROWS_WITH_AS(parse_numerics("fast"), doctest::Contains("expected default or portable, found 'fast'"), Error);
    CHECK(numerics() == Numerics::Default);
    CHECK(numerics_summary().rfind("default (OpenBLAS ", 0) == 0);
    std::string core = blas_core();
    for (auto& ch : core) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (core == "haswell") {
      set_numerics(Numerics::Portable);
      CHECK(cpu::portable_numerics);
      CHECK(numerics_summary().find("portable (OpenBLAS") == 0);
      set_numerics(Numerics::Default);
      CHECK_FALSE(cpu::portable_numerics);
    } else {
      // This process's OpenBLAS picked other kernels: portable is refused
      // with what to do (the tools re-execute themselves with it).
      MESSAGE("OpenBLAS core here: ", blas_core());
      CHECK_THROWS_WITH_AS(set_numerics(Numerics::Portable), doctest::Contains("OPENBLAS_CORETYPE=Haswell"), Error);
      CHECK(numerics() == Numerics::Default);
    }
  }

  // Max pooling on the CPU (channel blocks of the shared formula, a scatter
  // VJP) against the definition written out plainly: the first largest tap
  // in row-major order (a NaN only as the first tap), and the gather form
  // of the VJP that CUDA runs; values, indices and gradients bit for bit,
  // on data full of ties (small integers, zeros of both signs), NaN and
  // infinities, with windows hanging over the border and channel counts
  // around the block of 32.
  TEST_CASE_TEMPLATE("max pooling: CPU blocks and scatter VJP = the plain definition, bit for bit", T, float,
                     double) {
    Generator g(17);
    struct Case {
      int64_t n, h, w, c, k, stride, pad;
    };
    for (Case cs : {Case{2, 5, 5, 1, 2, 1, 0}, Case{3, 7, 6, 3, 3, 2, 1}, Case{2, 14, 14, 16, 3, 2, 1},
                    Case{1, 9, 8, 33, 3, 1, 1}, Case{2, 6, 6, 70, 2, 2, 0}, Case{1, 5, 7, 5, 5, 1, 2},
                    Case{1, 4, 4, 32, 3, 3, 1}}) {
      CAPTURE(cs.c);
      CAPTURE(cs.k);
      kern::PoolShape s{cs.n, cs.h, cs.w, cs.c, (cs.h + 2 * cs.pad - cs.k) / cs.stride + 1,
                        (cs.w + 2 * cs.pad - cs.k) / cs.stride + 1, cs.k, cs.stride, cs.pad};
      const int64_t nx = s.n * s.h * s.w * s.c, ny = s.n * s.ho * s.wo * s.c;
      std::vector<T> x(static_cast<size_t>(nx)), gy(static_cast<size_t>(ny));
      std::vector<double> u = rand({nx + ny}, g, DType::F64).to_vector();
      for (int64_t i = 0; i < nx; ++i) {
        const double r = u[size_t(i)];
        x[size_t(i)] = r < 0.02   ? std::numeric_limits<T>::quiet_NaN()
                       : r < 0.04 ? -std::numeric_limits<T>::infinity()
                       : r < 0.3  ? T(0) * T(r < 0.15 ? -1 : 1)
                                  : T(std::floor(r * 6));  // ties everywhere
      }
      for (int64_t i = 0; i < ny; ++i) gy[size_t(i)] = T(u[size_t(nx + i)] < 0.1 ? -0.0 : u[size_t(nx + i)] - 0.5);
      std::vector<T> y(static_cast<size_t>(ny)), want_y(static_cast<size_t>(ny));
      std::vector<int64_t> idx(static_cast<size_t>(ny)), want_idx(static_cast<size_t>(ny));
      cpu::max_pool2d(s, x.data(), y.data(), idx.data());
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow)
            for (int64_t ch = 0; ch < s.c; ++ch) {
              T best = -std::numeric_limits<T>::infinity();
              int64_t at = -1;
              for (int64_t ki = 0; ki < s.k; ++ki)
                for (int64_t kj = 0; kj < s.k; ++kj) {
                  const int64_t ih = oh * s.stride - s.pad + ki, iw = ow * s.stride - s.pad + kj;
                  if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
                  const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c + ch;
                  if (at < 0 || x[size_t(q)] > best) best = x[size_t(q)], at = q;
                }
              const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c + ch;
              want_y[size_t(o)] = best, want_idx[size_t(o)] = at;
            }
      CHECK(std::memcmp(y.data(), want_y.data(), y.size() * sizeof(T)) == 0);
      CHECK(idx == want_idx);
      std::vector<T> gx(static_cast<size_t>(nx)), want_gx(static_cast<size_t>(nx));
      cpu::max_pool2d_backward(s, gy.data(), idx.data(), gx.data());
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t ih = 0; ih < s.h; ++ih)
          for (int64_t iw = 0; iw < s.w; ++iw)
            max_pool_input_grads(s, gy.data(), idx.data(), n, ih, iw, 0, s.c,
                                 want_gx.data() + ((n * s.h + ih) * s.w + iw) * s.c);
      CHECK(std::memcmp(gx.data(), want_gx.data(), gx.size() * sizeof(T)) == 0);
    }
  }
}
