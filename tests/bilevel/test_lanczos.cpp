// Lanczos (bilevel/lanczos.h) on dense symmetric matrices with a known,
// indefinite spectrum, split across two tensors; the Jacobi eigen-solver on
// its own; and Lanczos on a real network's Hessian through a Linearization
// against the dense Hessian built column by column.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "bilevel/lanczos.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/bilevel/dense.h"
#include "tests/engine/small_nets.h"

using namespace bissl;
using namespace bissl::bilevel;
using namespace bissl::testdense;

namespace {

// Q diag(ev) Qᵀ with Q orthogonal (Gram–Schmidt of a random matrix).
Mat with_spectrum(const Vec& ev, Generator& g) {
  const size_t n = ev.size();
  Mat q(n, Vec(n));
  for (size_t j = 0; j < n; ++j) {
    Vec v = randn({int64_t(n)}, g, DType::F64).to_vector();
    for (size_t k = 0; k < j; ++k) {
      double d = 0;
      for (size_t i = 0; i < n; ++i) d += v[i] * q[i][k];
      for (size_t i = 0; i < n; ++i) v[i] -= d * q[i][k];
    }
    double nv = 0;
    for (double x : v) nv += x * x;
    for (size_t i = 0; i < n; ++i) q[i][j] = v[i] / std::sqrt(nv);
  }
  Mat a(n, Vec(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      for (size_t k = 0; k < n; ++k) a[i][j] += q[i][k] * ev[k] * q[j][k];
  return a;
}

}  // namespace

TEST_SUITE("lanczos") {
  TEST_CASE("the Jacobi eigen-solver recovers a known spectrum") {
    Generator g(5);
    Vec ev = {-3.5, -1, 0, 0.25, 2, 7};
    Mat a = with_spectrum(ev, g);
    Vec flat_a;
    for (auto& row : a) flat_a.insert(flat_a.end(), row.begin(), row.end());
    auto got = symmetric_eigenvalues(flat_a, 6);
    for (size_t i = 0; i < ev.size(); ++i) CHECK(got[i] == doctest::Approx(ev[i]).epsilon(1e-12));
    CHECK(symmetric_eigenvalues({4.0}, 1) == Vec{4.0});
    CHECK_THROWS_AS(symmetric_eigenvalues({1, 2, 3}, 2), Error);
  }

  TEST_CASE("Lanczos over two tensors: the whole spectrum at k = n, the extremes early") {
    Generator g(9);
    Vec ev;
    for (int i = 0; i < 24; ++i) ev.push_back(-4.0 + 0.5 * i);  // -4 .. 7.5, indefinite
    ev.back() = 20;                                              // a separated top eigenvalue
    Mat a = with_spectrum(ev, g);
    const std::vector<Shape> shapes = {{4, 5}, {4}};
    MatVec A = [&](const TensorList& x) { return unflat(matvec(a, flat(x)), shapes); };
    TensorList start = {randn({4, 5}, g, DType::F64), randn({4}, g, DType::F64)};
    LanczosResult full = lanczos(A, start, 24);
    REQUIRE(full.steps == 24);
    for (size_t i = 0; i < ev.size(); ++i) CHECK(full.ritz[i] == doctest::Approx(ev[i]).epsilon(1e-8));
    LanczosResult few = lanczos(A, start, 10);
    CHECK(few.steps == 10);
    CHECK(few.ritz.back() == doctest::Approx(20).epsilon(1e-6));  // separated: converges first
    CHECK(few.ritz.front() >= -4 - 1e-9);                         // Ritz values lie inside the spectrum
    CHECK(few.ritz.front() < -3);                                 // and near its ends
    // A start vector in an invariant subspace stops early, exactly.
    Mat d(6, Vec(6, 0.0));
    for (int i = 0; i < 6; ++i) d[size_t(i)][size_t(i)] = double(i + 1);
    MatVec D = [&](const TensorList& x) { return unflat(matvec(d, flat(x)), {{6}}); };
    LanczosResult two = lanczos(D, {from_vector({1, 1, 0, 0, 0, 0}, {6}, DType::F64)}, 6);
    CHECK(two.steps == 2);
    CHECK(two.ritz[0] == doctest::Approx(1));
    CHECK(two.ritz[1] == doctest::Approx(2));
  }

  TEST_CASE("Lanczos on a conv/BN network's Hessian through a Linearization = the dense Hessian's extremes") {
    Generator g(2024);
    Tensor x = randn({4, 6, 6, 2}, g, DType::F64);
    Tensor y = from_ints({0, 2, 1, 2}, {4});
    std::vector<Tensor> p = testnets::convnet_params(g);
    auto loss = [&] { return testnets::convnet_loss(p, x, y); };
    std::vector<Tensor> v0;
    std::vector<Shape> shapes;
    for (auto& t : p) v0.push_back(randn(t.shape(), g, DType::F64)), shapes.push_back(t.shape());
    Linearization lin(loss, p, v0);
    MatVec H = [&](const TensorList& v) { return lin.hvp(v); };
    // The dense Hessian, column by column.
    const size_t n = flat(v0).size();
    Vec dense(n * n);
    for (size_t j = 0; j < n; ++j) {
      Vec e(n, 0.0);
      e[j] = 1;
      Vec col = flat(lin.hvp(unflat(e, shapes)));
      for (size_t i = 0; i < n; ++i) dense[i * n + j] = col[i];
    }
    Vec ev = symmetric_eigenvalues(dense, int(n));
    LanczosResult r = lanczos(H, v0, 40);
    MESSAGE("network Hessian (", n, " parameters): eigenvalues ", ev.front(), " .. ", ev.back(), "; Lanczos(40) ",
            r.ritz.front(), " .. ", r.ritz.back());
    CHECK(r.ritz.back() == doctest::Approx(ev.back()).epsilon(1e-6));
    CHECK(r.ritz.front() >= ev.front() - 1e-9 * std::abs(ev.front()));
    CHECK(r.ritz.front() == doctest::Approx(ev.front()).epsilon(1e-3));
  }
}
