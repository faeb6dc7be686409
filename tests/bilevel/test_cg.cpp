// bilevel::conjugate_gradient: iterates computed by hand (layer-wise and
// global), convergence to the direct solve, the layer-wise variant on a
// block-diagonal system, early stopping, and NaN replacement. All f64.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "bilevel/cg.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/bilevel/dense.h"

using namespace bissl;
using namespace bissl::bilevel;
using namespace bissl::testdense;

namespace {

constexpr double kHandTol = 1e-12;

// The hand example: x = (x₁ ∈ ℝ², x₂ ∈ ℝ¹) and
//       | 4 1 | 0 |           | 1 |
//   A = | 1 3 | 1 |,     b =  | 2 |
//       | 0 1 | 2 |           | 3 |
// A is SPD (leading minors 4, 11, 18); the exact solution is (2/9, 1/9 | 13/9).
// The block (1 | 1) couples the two tensors, so layer-wise and global differ.
const Mat kA = {{4, 1, 0}, {1, 3, 1}, {0, 1, 2}};
const std::vector<Shape> kShapes = {{2}, {1}};

CgResult run_hand(bool layerwise, int iterations) {
  Tensor A = mat_tensor(kA);
  auto b = unflat({1, 2, 3}, kShapes);
  CgOptions o;
  o.layerwise = layerwise;
  o.iterations = iterations;
  return conjugate_gradient([&](const TensorList& v) { return block_product(A, v); }, b, o);
}

void check_vec(const Vec& got, const Vec& want, double tol) {
  INFO("got ", got[0], " ", got[1], " ", got[2], ", want ", want[0], " ", want[1], " ", want[2]);
  CHECK(max_abs_diff(got, want) <= tol);
}

}  // namespace

TEST_SUITE("cg") {
  TEST_CASE("hand-computed iterates, layer-wise step sizes") {
    // r₀ = d₀ = b = (1, 2 | 3), ‖r₀‖ = √14.
    // Iteration 1: A d₀ = (6, 10 | 8).
    //   tensor 1: r·r = 5, d·Ad = 6 + 20 = 26, α₁ = 5/26
    //             x = (5/26, 10/26) = (5/26, 5/13)
    //             r' = (1 − 30/26, 2 − 50/26) = (−2/13, 1/13), r'·r' = 5/169
    //             β₁ = (5/169)/5 = 1/169, d = (−2/13 + 1/169, 1/13 + 2/169) = (−25/169, 15/169)
    //   tensor 2: r·r = 9, d·Ad = 24, α₂ = 3/8, x = 9/8, r' = 3 − 3 = 0 (a 1-element
    //             tensor is solved for its own diagonal in one step), β₂ = 0, d = 0
    //   ‖r₁‖² = 5/169 + 0 → ‖r₁‖ = √5/13.
    // Iteration 2: A d₁ = (4·(−25) + 15, −25 + 3·15 + 0, 15 + 0)/169 = (−85, 20 | 15)/169.
    //   tensor 1: r·r = 5/169, d·Ad = (2125 + 300)/169² = 2425/28561, α₁ = 169/485
    //             x = (5/26 − (169/485)(25/169), 5/13 + (169/485)(15/169))
    //               = (5/26 − 5/97, 5/13 + 3/97) = (355/2522, 524/1261)
    //             r' = (−2/13 + (169/485)(85/169), 1/13 − (169/485)(20/169))
    //               = (−2/13 + 17/97, 1/13 − 4/97) = (27/1261, 45/1261)
    //   tensor 2: r·r = 0 and d·Ad = 0: α₂ = 0/(0 + 1e-12) = 0, x stays 9/8, r stays 0
    //             (the ε guard; in floating point r₂ ≈ 1e-13 after iteration 1
    //             because α₂ = 9/(24 + 1e-12), which moves nothing at 1e-12)
    //   ‖r₂‖² = (27² + 45²)/1261² = 2754/1590121 → ‖r₂‖ = √2754/1261.
    // Note the coupling is ignored for tensor 2: its true residual 3 − x₁[1] − 2x₂ ≠ 0.
    auto r1 = run_hand(true, 1);
    auto r2 = run_hand(true, 2);
    REQUIRE(r1.iterations == 1);
    REQUIRE(r2.iterations == 2);
    REQUIRE(r2.residuals.size() == 3);
    check_vec(flat(r1.x), {5.0 / 26, 5.0 / 13, 9.0 / 8}, kHandTol);
    check_vec(flat(r2.x), {355.0 / 2522, 524.0 / 1261, 9.0 / 8}, kHandTol);
    CHECK(std::abs(r2.residuals[0] - std::sqrt(14.0)) <= kHandTol);
    CHECK(std::abs(r2.residuals[1] - std::sqrt(5.0) / 13) <= kHandTol);
    CHECK(std::abs(r2.residuals[2] - std::sqrt(2754.0) / 1261) <= kHandTol);
    CHECK(r1.residuals[1] == doctest::Approx(r2.residuals[1]).epsilon(1e-15));
    CHECK(r2.nan_replaced == 0);
    // Rayleigh quotients along d₀ = (1, 2 | 3): 50/14; along d₁ = (−25, 15 | 0)/169: 2425/850.
    REQUIRE(r2.curvature.size() == 2);
    CHECK(std::abs(r2.curvature[0] - 50.0 / 14) <= kHandTol);
    CHECK(std::abs(r2.curvature[1] - 2425.0 / 850) <= kHandTol);
    CHECK(r2.x[0].shape() == Shape{2});
    CHECK(r2.x[1].shape() == Shape{1});
  }

  TEST_CASE("hand-computed iterates, global step sizes (textbook CG)") {
    // r₀ = d₀ = b = (1, 2, 3), r·r = 14.
    // Iteration 1: A d₀ = (6, 10, 8), d·Ad = 6 + 20 + 24 = 50, α = 14/50 = 7/25
    //   x = (7, 14, 21)/25, r' = (1 − 42/25, 2 − 70/25, 3 − 56/25) = (−17, −20, 19)/25
    //   r'·r' = (289 + 400 + 361)/625 = 42/25, β = (42/25)/14 = 3/25
    //   d = (−17 + 3, −20 + 6, 19 + 9)/25 = (−14, −14, 28)/25;  ‖r₁‖ = √(42/25) = √42/5.
    // Iteration 2: A d₁ = (4·(−14) − 14, −14 − 42 + 28, −14 + 56)/25 = (−70, −28, 42)/25,
    //   d·Ad = (980 + 392 + 1176)/625 = 2548/625, α = (42/25)/(2548/625) = 75/182
    //   x = (7/25 − (75/182)(14/25), 14/25 − (75/182)(14/25), 21/25 + (75/182)(28/25))
    //     = (7/25 − 3/13, 14/25 − 3/13, 21/25 + 6/13) = (16, 107, 423)/325
    //   r' = r − α Ad = (−17/25 + (75/182)(70/25), −20/25 + (75/182)(28/25), 19/25 − (75/182)(42/25))
    //      = (−17/25 + 15/13, −4/5 + 6/13, 19/25 − 9/13) = (154, −110, 22)/325
    //   ‖r₂‖² = (154² + 110² + 22²)/325² = 36300/105625 = 1452/4225 → ‖r₂‖ = √1452/65.
    // Iteration 3 (n = 3) reaches the exact solution (2/9, 1/9, 13/9).
    auto r1 = run_hand(false, 1);
    auto r3 = run_hand(false, 3);
    REQUIRE(r3.iterations == 3);
    auto r2 = run_hand(false, 2);
    check_vec(flat(r1.x), {7.0 / 25, 14.0 / 25, 21.0 / 25}, kHandTol);
    check_vec(flat(r2.x), {16.0 / 325, 107.0 / 325, 423.0 / 325}, kHandTol);
    CHECK(std::abs(r2.residuals[0] - std::sqrt(14.0)) <= kHandTol);
    CHECK(std::abs(r2.residuals[1] - std::sqrt(42.0) / 5) <= kHandTol);
    CHECK(std::abs(r2.residuals[2] - std::sqrt(1452.0) / 65) <= kHandTol);
    check_vec(flat(r3.x), {2.0 / 9, 1.0 / 9, 13.0 / 9}, kHandTol);
    CHECK(r3.residuals[3] <= kHandTol);
  }

  TEST_CASE("global CG with n iterations equals the direct solve") {
    Generator g(11);
    const std::vector<Shape> shapes = {{3}, {2, 2}, {2}};  // n = 9
    const size_t n = 9;
    Mat A = random_spd(n, g, 0.5);
    Vec b = randn({int64_t(n)}, g, DType::F64).to_vector();
    Tensor At = mat_tensor(A);
    auto Af = [&](const TensorList& v) { return block_product(At, v); };
    const Vec want = gauss_solve(A, b);
    CgOptions o;
    o.layerwise = false;
    o.iterations = int(n);
    o.epsilon = 0;  // textbook CG: the reference's ε = 1e-12 floors the accuracy (below)
    auto r = conjugate_gradient(Af, unflat(b, shapes), o);
    double err = max_abs_diff(flat(r.x), want);
    MESSAGE("global CG (ε = 0), n = 9 iterations vs Gaussian elimination: max |Δx| = ", err, ", final ‖r‖ = ",
            r.residuals.back());
    CHECK(err <= 1e-10);
    CHECK(r.x[1].shape() == Shape{2, 2});
    // The recurrence's residual is the true one.
    Vec Ax = matvec(A, flat(r.x));
    for (size_t i = 0; i < n; ++i) Ax[i] -= b[i];
    CHECK(norm(Ax) <= 1e-10);
    CHECK(std::abs(norm(Ax) - r.residuals.back()) <= 1e-10);

    // With the reference's ε the steps shrink once d·Ad ~ 1e-12: same answer to ~1e-8.
    o.epsilon = kCgEps;
    auto re = conjugate_gradient(Af, unflat(b, shapes), o);
    double err_eps = max_abs_diff(flat(re.x), want);
    o.iterations = 4 * int(n);
    double err_eps4 = max_abs_diff(flat(conjugate_gradient(Af, unflat(b, shapes), o).x), want);
    MESSAGE("same with ε = 1e-12: max |Δx| = ", err_eps, " after n iterations, ", err_eps4, " after 4n");
    CHECK(err_eps <= 1e-6);
  }

  TEST_CASE("layer-wise CG on a block-diagonal system is CG per block") {
    // With no coupling, α_l, β_l are exactly textbook CG on block l, so
    // max(block size) iterations solve the system; afterwards the ε guard
    // keeps converged blocks still (the 1-element block is solved in one step
    // and then divides 0/(0 + ε)). Bound: the ε floor (measured 1.4e-10).
    Generator g(5);
    const std::vector<Shape> shapes = {{3}, {4}, {1}};
    Mat A(8, Vec(8, 0.0));
    size_t o = 0;
    for (auto& s : shapes) {
      size_t m = size_t(numel(s));
      Mat B = random_spd(m, g, 0.3);
      for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < m; ++j) A[o + i][o + j] = B[i][j];
      o += m;
    }
    Vec b = randn({8}, g, DType::F64).to_vector();
    Tensor At = mat_tensor(A);
    CgOptions opt;  // layer-wise
    opt.iterations = 6;
    auto r = conjugate_gradient([&](const TensorList& v) { return block_product(At, v); }, unflat(b, shapes), opt);
    double err = max_abs_diff(flat(r.x), gauss_solve(A, b));
    MESSAGE("layer-wise CG on block-diagonal A, 6 iterations: max |Δx| = ", err);
    CHECK(err <= 1e-9);
    CHECK(r.nan_replaced == 0);
  }

  TEST_CASE("tolerance stops early; default runs every iteration") {
    Generator g(3);
    const size_t n = 12;
    Mat A = random_spd(n, g, 1.0);
    Vec b = randn({int64_t(n)}, g, DType::F64).to_vector();
    Tensor At = mat_tensor(A);
    auto Af = [&](const TensorList& v) { return block_product(At, v); };
    CgOptions o;
    o.layerwise = false;
    o.iterations = 50;
    o.tolerance = 1e-6;
    auto r = conjugate_gradient(Af, unflat(b, {{int64_t(n)}}), o);
    CHECK(r.iterations < 50);
    CHECK(r.residuals.size() == size_t(r.iterations) + 1);
    CHECK(r.residuals.back() <= 1e-6 * norm(b));
    CHECK(r.residuals[r.residuals.size() - 2] > 1e-6 * norm(b));
    o.tolerance = 0;
    o.iterations = 7;
    CHECK(conjugate_gradient(Af, unflat(b, {{int64_t(n)}}), o).iterations == 7);
    // b = 0: x = 0 without 0/0 (the ε guard), no NaN.
    auto z = conjugate_gradient(Af, {zeros({int64_t(n)}, DType::F64)}, o);
    CHECK(max_abs_diff(flat(z.x), Vec(n, 0.0)) == 0);
    CHECK(z.nan_replaced == 0);
  }

  TEST_CASE("NaN from the matrix-vector product gives zeros and a count") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    auto b = unflat({1, 2, 3, 4, 5}, {{2, 2}, {1}});
    // Every product NaN: all of x is NaN before replacement.
    auto all_nan = [&](const TensorList& v) {
      TensorList o;
      for (auto& t : v) o.push_back(mul(t, nan));
      return o;
    };
    for (bool lw : {true, false}) {
      CgOptions o;
      o.layerwise = lw;
      auto r = conjugate_gradient(all_nan, b, o);
      CHECK(r.nan_replaced == 5);
      CHECK(max_abs_diff(flat(r.x), Vec(5, 0.0)) == 0);
      CHECK(std::isnan(r.residuals.back()));
    }
    // Layer-wise, NaN in tensor 0 only: tensor 1 (A = 2 there) is still solved.
    auto half_nan = [&](const TensorList& v) { return TensorList{mul(v[0], nan), mul(v[1], 2.0)}; };
    auto r = conjugate_gradient(half_nan, b, {});
    CHECK(r.nan_replaced == 4);
    CHECK(max_abs_diff(flat(r.x), {0, 0, 0, 0, 2.5}) <= 1e-12);
  }

  TEST_CASE("nan_to_num: ±inf in the solution become ±max finite (the reference's torch.nan_to_num)") {
    // rr overflows to inf, so α = inf and x = ±inf after one iteration.
    auto b = unflat({1e300, 2e300, 3e300, 4e300, -5e300}, {{2, 2}, {1}});
    auto tiny = [](const TensorList& v) {
      TensorList o;
      for (auto& t : v) o.push_back(mul(t, 1e-300));
      return o;
    };
    CgOptions o;
    o.iterations = 1;
    auto kept = conjugate_gradient(tiny, b, o);
    CHECK(kept.inf_replaced == 0);
    for (double x : flat(kept.x)) CHECK(std::isinf(x));
    o.nan_to_num = true;
    auto r = conjugate_gradient(tiny, b, o);
    const double big = std::numeric_limits<double>::max();
    CHECK(r.inf_replaced == 5);
    CHECK(r.nan_replaced == 0);
    CHECK(flat(r.x) == Vec{big, big, big, big, -big});
  }

  TEST_CASE("shape mismatch from the product is an error") {
    auto b = unflat({1, 2, 3}, kShapes);
    CHECK_THROWS_WITH_AS(conjugate_gradient([&](const TensorList& v) { return TensorList{v[0]}; }, b, {}),
                         doctest::Contains("returned 1 tensors, expected 2"), Error);
  }
}
