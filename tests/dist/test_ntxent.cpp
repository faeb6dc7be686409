// SimCLR's NT-Xent with negatives gathered from every rank
// (ssl::nt_xent_gathered) on N ranks × B/N images against nt_xent of one
// process × B: loss, gradient and H·v (fresh and replayed) of a small
// projection z = tanh(x·Wᵀ), in f64.
#include <doctest/doctest.h>

#include "ssl/simclr.h"
#include "tests/dist/dist_support.h"

using namespace bissl;
using namespace bissl::dist_test;

TEST_CASE("nt_xent_gathered on N ranks equals nt_xent of the whole batch") {
  constexpr int64_t kB = 12, kD = 5, kK = 4;
  Generator g(21);  // the same on every rank
  Tensor X1 = randn({kB, kD}, g, DType::F64), X2 = randn({kB, kD}, g, DType::F64);
  Tensor W0 = randn({kK, kD}, g, DType::F64, 0.0, 0.8);
  Tensor v = randn({kK, kD}, g, DType::F64), v2 = randn({kK, kD}, g, DType::F64);
  auto z = [](const Tensor& X, const Tensor& W) { return tanh(matmul(X, W, false, true)); };
  for (double tau : {0.5, 0.1}) {
    CAPTURE(tau);
    Result ref;
    {
      dist::CommScope self(dist::kSelf);
      ref = evaluate(W0, v, v2, [&](const Tensor& W) { return ssl::nt_xent(z(X1, W), z(X2, W), tau); });
    }
    const int64_t b = kB / N();
    Tensor x1 = slice(X1, 0, R() * b, (R() + 1) * b), x2 = slice(X2, 0, R() * b, (R() + 1) * b);
    const Result got =
        evaluate(W0, v, v2, [&](const Tensor& W) { return ssl::nt_xent_gathered(z(x1, W), z(x2, W), tau); });
    CHECK(std::abs(got.loss - ref.loss) <= 1e-12 * std::abs(ref.loss));
    CHECK(rel(got.grad, ref.grad) <= 1e-12);
    CHECK(rel(got.hv, ref.hv) <= 1e-12);
    CHECK(rel(got.hv2, ref.hv2) <= 1e-12);
    CHECK(rel(got.replayed, ref.hv2) <= 1e-12);
    if (R() == 0) MESSAGE("np " << N() << ", tau " << tau << ": loss " << std::abs(got.loss - ref.loss) / std::abs(ref.loss)
                  << ", gradient " << rel(got.grad, ref.grad) << ", H·v " << rel(got.hv, ref.hv) << ", replayed "
                  << rel(got.replayed, ref.hv2));
  }
}

TEST_CASE("nt_xent_gathered on one rank is nt_xent, bit for bit") {
  Generator g(3);
  Tensor z1 = randn({6, 3}, g, DType::F64), z2 = randn({6, 3}, g, DType::F64);
  dist::CommScope self(dist::kSelf);
  CHECK(ssl::nt_xent_gathered(z1, z2, 0.5).item() == ssl::nt_xent(z1, z2, 0.5).item());
}
