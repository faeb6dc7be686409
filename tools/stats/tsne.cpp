#include "tools/stats/tsne.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "engine/error.h"

namespace bissl::evalstats {
namespace {

constexpr double kMachineEpsilon = std::numeric_limits<double>::epsilon();
constexpr double kPi = 3.14159265358979323846;

// Conditional p_{j|i} for each row, with β_i = 1/(2σ_i²) found by bisection so
// that the row's entropy is log(perplexity); same steps and tolerances as
// sklearn's _binary_search_perplexity. dist holds squared distances.
std::vector<double> conditional_p(const std::vector<double>& dist, int64_t n, double perplexity) {
  constexpr int kSteps = 100;
  constexpr double kTol = 1e-5, kEpsilonDbl = 1e-8;
  const double target = std::log(perplexity);
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> p(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double beta = 1, beta_min = -inf, beta_max = inf;
    double* pi = p.data() + i * n;
    const double* di = dist.data() + i * n;
    for (int step = 0; step < kSteps; ++step) {
      double sum_p = 0;
      for (int64_t j = 0; j < n; ++j) {
        pi[j] = j == i ? 0.0 : std::exp(-di[j] * beta);
        sum_p += pi[j];
      }
      if (sum_p == 0) sum_p = kEpsilonDbl;
      double sum_dp = 0;
      for (int64_t j = 0; j < n; ++j) {
        pi[j] /= sum_p;
        sum_dp += di[j] * pi[j];
      }
      const double diff = std::log(sum_p) + beta * sum_dp - target;
      if (std::fabs(diff) <= kTol) break;
      if (diff > 0) {
        beta_min = beta;
        beta = beta_max == inf ? beta * 2 : (beta + beta_max) / 2;
      } else {
        beta_max = beta;
        beta = beta_min == -inf ? beta / 2 : (beta + beta_min) / 2;
      }
    }
  }
  return p;
}

// std::normal_distribution differs between standard libraries; Box–Muller on
// the (portable) mt19937_64 stream does not.
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : rng_(seed) {}
  double operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(rng_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * kPi * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace

std::vector<std::array<double, 2>> tsne(const std::vector<float>& x, int64_t n, int64_t d,
                                        const TsneOptions& o) {
  BISSL_CHECK(n >= 3, "tsne: expected at least 3 points, found ", n);
  BISSL_CHECK(d >= 1, "tsne: expected at least 1 feature, found ", d);
  BISSL_CHECK(static_cast<int64_t>(x.size()) == n * d, "tsne: expected ", n, "x", d, " = ", n * d,
              " values, found ", x.size());
  BISSL_CHECK(o.perplexity > 0 && o.perplexity < static_cast<double>(n),
              "tsne: expected perplexity in (0, n = ", n, "), found ", o.perplexity);
  BISSL_CHECK(o.iterations >= 0 && o.exaggeration_iters >= 0 && o.learning_rate > 0 &&
                  o.early_exaggeration > 0,
              "tsne: expected non-negative iteration counts and positive learning rate and "
              "exaggeration, found iterations = ", o.iterations, ", exaggeration_iters = ",
              o.exaggeration_iters, ", learning_rate = ", o.learning_rate,
              ", early_exaggeration = ", o.early_exaggeration);
  for (float v : x) BISSL_CHECK(std::isfinite(v), "tsne: expected finite inputs, found ", v);

  const size_t nn = static_cast<size_t>(n * n);
  std::vector<double> dist(nn, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double t = static_cast<double>(x[i * d + k]) - static_cast<double>(x[j * d + k]);
        s += t * t;
      }
      dist[i * n + j] = dist[j * n + i] = s;
    }

  // Symmetrised joint P, normalised to sum 1 and floored like sklearn.
  std::vector<double> p = conditional_p(dist, n, o.perplexity);
  double psum = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      const double s = p[i * n + j] + p[j * n + i];
      p[i * n + j] = p[j * n + i] = s;
      psum += 2 * s;
    }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      p[i * n + j] = i == j ? 0.0 : std::max(p[i * n + j] / psum, kMachineEpsilon);

  std::vector<std::array<double, 2>> y(static_cast<size_t>(n));
  Gaussian gauss(o.seed);
  for (auto& yi : y) yi = {1e-4 * gauss(), 1e-4 * gauss()};

  std::vector<std::array<double, 2>> update(y.size(), {0.0, 0.0}), gains(y.size(), {1.0, 1.0}),
      grad(y.size());
  std::vector<double> w(nn, 0.0);  // Student-t kernel 1/(1 + |y_i − y_j|²)
  const int exag_iters = std::min(o.exaggeration_iters, o.iterations);
  for (int it = 0; it < o.iterations; ++it) {
    const bool exaggerating = it < exag_iters;
    const double exag = exaggerating ? o.early_exaggeration : 1.0;
    const double momentum = exaggerating ? 0.5 : 0.8;
    // sklearn restarts its optimiser for the second stage: momentum and gains start afresh.
    if (it == exag_iters && it > 0)
      for (size_t i = 0; i < y.size(); ++i) update[i] = {0.0, 0.0}, gains[i] = {1.0, 1.0};
    double wsum = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) {
        const double dx = y[i][0] - y[j][0], dy = y[i][1] - y[j][1];
        const double v = 1.0 / (1.0 + dx * dx + dy * dy);
        w[i * n + j] = w[j * n + i] = v;
        wsum += 2 * v;
      }
    // dC/dy_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j)
    for (int64_t i = 0; i < n; ++i) {
      double gx = 0, gy = 0;
      for (int64_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const double q = std::max(w[i * n + j] / wsum, kMachineEpsilon);
        const double f = (exag * p[i * n + j] - q) * w[i * n + j];
        gx += f * (y[i][0] - y[j][0]);
        gy += f * (y[i][1] - y[j][1]);
      }
      grad[i] = {4 * gx, 4 * gy};
    }
    // Delta-bar-delta gains as in sklearn's _gradient_descent.
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < 2; ++c) {
        double& g = gains[i][c];
        g = update[i][c] * grad[i][c] < 0.0 ? g + 0.2 : g * 0.8;
        g = std::max(g, 0.01);
        update[i][c] = momentum * update[i][c] - o.learning_rate * g * grad[i][c];
        y[i][c] += update[i][c];
      }
  }
  return y;
}

}  // namespace bissl::evalstats
