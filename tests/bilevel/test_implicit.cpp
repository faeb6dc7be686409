// bilevel::implicit_gradient against closed forms: (c) a quadratic lower
// level, where θP*(θD) and the hypergradient are known exactly, and (d) a
// tiny conv + BN (train) + pool + linear projector + NT-Xent network, whose
// Hessian is assembled column by column from HVPs and the system solved
// densely. All f64.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "bilevel/implicit.h"
#include "engine/autograd.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "ssl/simclr.h"
#include "tests/bilevel/dense.h"

using namespace bissl;
using namespace bissl::bilevel;
using namespace bissl::testdense;

namespace {

Tensor leaf(const Vec& v, const Shape& s) {
  Tensor t = from_vector(v, s, DType::F64);
  t.requires_grad_();
  return t;
}

std::vector<Tensor> leaves(const Vec& v, const std::vector<Shape>& shapes) {
  auto ts = unflat(v, shapes);
  for (auto& t : ts) t.requires_grad_();
  return ts;
}

// θ (a list of tensors) as one column [n, 1].
Tensor column(const std::vector<Tensor>& p) {
  std::vector<Tensor> parts;
  int64_t n = 0;
  for (auto& t : p) parts.push_back(reshape(t, {t.numel()})), n += t.numel();
  return reshape(concat(parts, 0), {n, 1});
}

// ½ θᵀ M θ + mᵀ θ with engine ops (differentiable to second order).
Tensor quadratic(const std::vector<Tensor>& p, const Tensor& M, const Tensor& m) {
  Tensor t = column(p);
  return add(mul(sum(mul(t, matmul(M, t))), 0.5), sum(mul(m, t)));
}

}  // namespace

TEST_SUITE("implicit") {
  TEST_CASE("quadratic lower level: the hypergradient in closed form") {
    // Lower: L_P(θP) = ½ θPᵀQθP + cᵀθP, regulariser λ·½‖θD − θP‖², so
    //   θP*(θD) = (Q + λI)⁻¹(λθD − c),  J = dθP*/dθD = λ(Q + λI)⁻¹.
    // Upper: L_D(θ) = aᵀθ + ½θᵀWθ, ∇L_D(θ) = a + Wθ, and
    //   F(θD) = L_D(θP*(θD)) + L_D(θD),  ∇F = Jᵀ∇L_D(θP*) + ∇L_D(θD) = J(a + WθP*) + a + WθD
    // (J symmetric). implicit_gradient with δ = 0 solves (I + Q/λ)u = ∇L_D(θP*),
    // i.e. u = (I + Q/λ)⁻¹∇L_D(θP*) = λ(Q + λI)⁻¹∇L_D(θP*) = J∇L_D(θP*).
    Generator g(42);
    const std::vector<Shape> shapes = {{2, 2}, {3}};
    const size_t n = 7;
    const Mat Q = random_spd(n, g, 0.3), W = random_spd(n, g, 0.5);
    const Vec c = randn({7}, g, DType::F64).to_vector(), a = randn({7}, g, DType::F64).to_vector();
    const Vec thD = randn({7}, g, DType::F64).to_vector();
    const Tensor Qt = mat_tensor(Q), Wt = mat_tensor(W);
    const Tensor ct = from_vector(c, {7, 1}, DType::F64), at = from_vector(a, {7, 1}, DType::F64);

    for (double lambda : {0.5, 0.001}) {
      CAPTURE(lambda);
      // θP* by a dense solve of (Q + λI) θ = λθD − c.
      Mat Ql = Q;
      Vec rhs_star(n);
      for (size_t i = 0; i < n; ++i) Ql[i][i] += lambda, rhs_star[i] = lambda * thD[i] - c[i];
      const Vec thP = gauss_solve(Ql, rhs_star);

      std::vector<Tensor> pP = leaves(thP, shapes), pD = leaves(thD, shapes);
      // θP* is a stationary point of the lower objective (checks the closed form itself).
      {
        Tensor Ld = leaf(thD, {7, 1});
        Tensor lower = add(quadratic(pP, Qt, ct), mul(sum(pow(sub(column(pP), Ld.detach()), 2.0)), 0.5 * lambda));
        CHECK(norm(flat(grad({lower}, pP))) <= 1e-12);
      }
      auto L_P = [&] { return quadratic(pP, Qt, ct); };
      auto L_D = [&](const std::vector<Tensor>& p) { return quadratic(p, Wt, at); };

      auto rhs = grad({L_D(pP)}, pP);       // ∇θP L_D(θP*)
      auto direct = grad({L_D(pD)}, pD);    // ∇θD L_D(θD)
      CgOptions o;
      o.layerwise = false;
      o.iterations = 2 * int(n);
      o.tolerance = 1e-14;
      auto res = implicit_gradient(L_P, pP, rhs, lambda, 0.0, o);
      Vec hyper = flat(res.u), dterm = flat(direct);
      for (size_t i = 0; i < n; ++i) hyper[i] += dterm[i];

      // Exact: J(a + WθP*) + a + WθD with J = λ(Q + λI)⁻¹.
      Vec gP = matvec(W, thP), gD = matvec(W, thD);
      for (size_t i = 0; i < n; ++i) gP[i] += a[i], gD[i] += a[i];
      Vec Jg = gauss_solve(Ql, gP);
      Vec exact(n);
      for (size_t i = 0; i < n; ++i) exact[i] = lambda * Jg[i] + gD[i];
      double err = max_abs_diff(hyper, exact);
      Vec Jexact(n);
      for (size_t i = 0; i < n; ++i) Jexact[i] = lambda * Jg[i];
      MESSAGE("quadratic, λ = ", lambda, ", δ = 0, global CG (", res.iterations,
              " iterations, ε = 1e-12): max |hypergradient − exact| = ", err, " (‖exact‖ = ", norm(exact),
              "); u alone: ‖u − J∇L_D‖/‖J∇L_D‖ = ", rel_error(flat(res.u), Jexact));
      CHECK(err <= 1e-8);
      CHECK(res.residuals.size() == size_t(res.iterations) + 1);

      // The closed form itself, against central differences of F(θD) evaluated by dense solves.
      auto F = [&](const Vec& d) {
        Vec rs(n);
        for (size_t i = 0; i < n; ++i) rs[i] = lambda * d[i] - c[i];
        Vec p = gauss_solve(Ql, rs);
        auto LD = [&](const Vec& t) {
          Vec Wt_ = matvec(W, t);
          double s = 0;
          for (size_t i = 0; i < n; ++i) s += a[i] * t[i] + 0.5 * t[i] * Wt_[i];
          return s;
        };
        return LD(p) + LD(d);
      };
      Vec fd(n);
      for (size_t i = 0; i < n; ++i) {
        Vec dp = thD, dm = thD;
        dp[i] += 1e-5, dm[i] -= 1e-5;
        fd[i] = (F(dp) - F(dm)) / 2e-5;
      }
      CHECK(max_abs_diff(fd, exact) <= 1e-7);

      // δ > 0: u solves (I + Q/(λ+δ))u = rhs (textbook CG, ε = 0, for full f64 accuracy).
      const double delta = 10.0;
      CgOptions o0 = o;
      o0.epsilon = 0;
      auto damped = implicit_gradient(L_P, pP, rhs, lambda, delta, o0);
      Mat M(n, Vec(n));
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j) M[i][j] = (i == j) + Q[i][j] / (lambda + delta);
      CHECK(max_abs_diff(flat(damped.u), gauss_solve(M, flat(rhs))) <= 1e-10);
    }
  }
}

namespace {

// conv3x3 (2 → 8 channels) -> BatchNorm2d (train) -> ReLU -> global average pool.
class TinyBackbone : public nn::Layer {
 public:
  explicit TinyBackbone(Generator& g) {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(2, 8, 3, g, 1, 1));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(8));
    bn->weight.copy_(add(mul(randn({8}, g), 0.3), 1.0));  // away from γ = 1, β = 0
    bn->bias.copy_(mul(randn({8}, g), 0.2));
  }
  Tensor forward_impl(const Tensor& x) override { return global_avg_pool(relu(bn->forward(conv->forward(x)))); }
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
};

// The tiny backbone (train mode) with a fixed linear projector and two
// views of 6 images, all f64: a SimCLR lower level small enough for dense checks.
struct TinySimclr {
  TinyBackbone bb;
  nn::Linear proj;
  Tensor x1, x2;
  explicit TinySimclr(Generator& g) : bb(g), proj(8, 6, g) {
    bb.to(DType::F64);
    proj.to(DType::F64);
    bb.train();
    x1 = randn({6, 5, 5, 2}, g, DType::F64);
    x2 = randn({6, 5, 5, 2}, g, DType::F64);
  }
};

}  // namespace

TEST_SUITE("implicit") {
  TEST_CASE("tiny SimCLR network: CG against the dense Hessian built from HVPs") {
    Generator g(2025);
    TinySimclr net(g);
    TinyBackbone& bb = net.bb;
    nn::Linear& proj = net.proj;
    const Tensor &x1 = net.x1, &x2 = net.x2;
    auto loss = [&] { return ssl::nt_xent(proj(bb(x1)), proj(bb(x2)), 0.5); };
    std::vector<Tensor> params = bb.parameters();  // backbone only: the projector is held fixed
    std::vector<Shape> shapes;
    for (auto& p : params) shapes.push_back(p.shape());
    const size_t n = size_t(bb.num_parameters());
    REQUIRE(n == 3 * 3 * 2 * 8 + 8 + 8);

    // H column by column: H e_j.
    Mat H(n, Vec(n));
    for (size_t j = 0; j < n; ++j) {
      Vec e(n, 0.0);
      e[j] = 1.0;
      Vec col = flat(hvp(loss, params, unflat(e, shapes)).hv);
      for (size_t i = 0; i < n; ++i) H[i][j] = col[i];
    }
    double asym = 0, hmax = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) asym = std::max(asym, std::abs(H[i][j] - H[j][i])), hmax = std::max(hmax, std::abs(H[i][j]));
    MESSAGE("dense Hessian (", n, "×", n, " from ", n, " HVPs): max |H − Hᵀ| / max |H| = ", asym / hmax,
            ", max |H| = ", hmax);
    CHECK(asym / hmax <= 1e-9);

    const double lambda = kLambda, delta = kDelta;
    Mat M(n, Vec(n));
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) M[i][j] = (i == j) + 0.5 * (H[i][j] + H[j][i]) / (lambda + delta);
    Mat Lc;
    double min_pivot = 0;
    REQUIRE_MESSAGE(cholesky(M, Lc, min_pivot), "I + H/(λ+δ) is not positive definite here");
    const Vec rhs = randn({int64_t(n)}, g, DType::F64).to_vector();
    const Vec exact = cholesky_solve(Lc, rhs);
    MESSAGE("I + H/(λ+δ), λ = ", lambda, ", δ = ", delta, ": Cholesky min pivot ", min_pivot);

    CgOptions o;
    o.layerwise = false;
    o.iterations = int(n);
    auto res = implicit_gradient(loss, params, unflat(rhs, shapes), lambda, delta, o);
    double err = rel_error(flat(res.u), exact);
    MESSAGE("global CG, ", res.iterations, " iterations: ‖u − u_exact‖/‖u_exact‖ = ", err, " (final ‖r‖ ",
            res.residuals.back(), ")");
    CHECK(err <= 1e-8);
    CHECK(res.nan_replaced == 0);

    // The spec's solver: 5 layer-wise iterations (reported, not bounded).
    auto spec = implicit_gradient(loss, params, unflat(rhs, shapes));  // defaults: λ = 0.001, δ = 10, 5 layer-wise
    CHECK(spec.iterations == 5);
    CgOptions g5;
    g5.layerwise = false;
    auto glob5 = implicit_gradient(loss, params, unflat(rhs, shapes), lambda, delta, g5);
    // True relative residual ‖rhs − M u‖/‖rhs‖ (the layer-wise recurrence's r is not b − A x).
    auto true_res = [&](const Vec& u) {
      Vec Mu = matvec(M, u);
      return rel_error(Mu, rhs);
    };
    MESSAGE("5 iterations: layer-wise ‖u − u_exact‖/‖u_exact‖ = ", rel_error(flat(spec.u), exact),
            " (recurrence ‖r₅‖/‖b‖ = ", spec.residuals.back() / spec.residuals[0], ", true ",
            true_res(flat(spec.u)), "); global ", rel_error(flat(glob5.u), exact),
            " (recurrence ‖r₅‖/‖b‖ = ", glob5.residuals.back() / glob5.residuals[0], ", true ",
            true_res(flat(glob5.u)), "); rhs itself (no solve) ", rel_error(rhs, exact));

    // Here H/(λ+δ) is a few-percent correction to I. With δ = 2 it is a large
    // one (H is indefinite: δ = 1.5 is no longer SPD on this batch), so this
    // check sees the HVPs rather than the identity. Textbook CG (ε = 0) to
    // a 1e-13 relative residual, at most n iterations.
    {
      const double d2 = 2.0;
      Mat M2(n, Vec(n));
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j) M2[i][j] = (i == j) + 0.5 * (H[i][j] + H[j][i]) / (lambda + d2);
      Mat L2;
      double mp2 = 0;
      REQUIRE(cholesky(M2, L2, mp2));
      const Vec exact2 = cholesky_solve(L2, rhs);
      CgOptions o2;
      o2.layerwise = false;
      o2.iterations = int(n);
      o2.epsilon = 0;
      o2.tolerance = 1e-13;
      auto r2 = implicit_gradient(loss, params, unflat(rhs, shapes), lambda, d2, o2);
      double err2 = rel_error(flat(r2.u), exact2);
      MESSAGE("δ = 2 (min Cholesky pivot ", mp2, "), global CG ε = 0, ", r2.iterations,
              " iterations: relative error ", err2, "; rhs itself (no solve) ", rel_error(rhs, exact2));
      CHECK(err2 <= 1e-8);
      auto lw5 = implicit_gradient(loss, params, unflat(rhs, shapes), lambda, d2);
      CgOptions gl5;
      gl5.layerwise = false;
      auto gl5r = implicit_gradient(loss, params, unflat(rhs, shapes), lambda, d2, gl5);
      MESSAGE("δ = 2, 5 iterations: layer-wise relative error ", rel_error(flat(lw5.u), exact2), ", global ",
              rel_error(flat(gl5r.u), exact2));
    }
  }

  TEST_CASE("the Gauss-Newton part Jᵀ∇²_zL·J·v against dense J and ∇²_zL; the reference's W-device operator") {
    Generator g(7);
    TinySimclr net(g);
    TinyBackbone& bb = net.bb;
    nn::Linear& proj = net.proj;
    const Tensor &x1 = net.x1, &x2 = net.x2;
    auto split = [&] {
      Tensor z1 = proj(bb(x1)), z2 = proj(bb(x2));
      return ssl::SplitLoss{concat({z1, z2}, 0),
                            [](const Tensor& z) { return ssl::nt_xent(slice(z, 0, 0, 6), slice(z, 0, 6, 12), 0.5); }};
    };
    auto loss = [&] {
      auto sp = split();
      return sp.loss(sp.z);
    };
    std::vector<Tensor> params = bb.parameters();
    std::vector<Shape> shapes;
    for (auto& p : params) shapes.push_back(p.shape());
    const size_t n = size_t(bb.num_parameters()), m = 12 * 6;
    auto z_at = [&] {
      NoGradGuard ng;
      return split().z.to_vector();
    };
    // J by central differences, column by column.
    Mat J(m, Vec(n));
    const double eps = 1e-6;
    for (size_t j = 0; j < n; ++j) {
      Vec e(n, 0.0);
      e[j] = eps;
      auto step = unflat(e, shapes);
      auto shift = [&](double sgn) {
        NoGradGuard ng;
        for (size_t k = 0; k < params.size(); ++k) params[k].copy_(add(params[k], mul(step[k], sgn)));
      };
      shift(1);
      Vec zp = z_at();
      shift(-2);
      Vec zm = z_at();
      shift(1);
      for (size_t i = 0; i < m; ++i) J[i][j] = (zp[i] - zm[i]) / (2 * eps);
    }
    // ∇²_z L column by column (HVPs in z-space).
    Tensor z0;
    {
      NoGradGuard ng;
      z0 = split().z.detach();
    }
    z0.requires_grad_(true);
    auto sp0 = split();
    Mat Hz(m, Vec(m));
    for (size_t j = 0; j < m; ++j) {
      Vec e(m, 0.0);
      e[j] = 1.0;
      Vec col = hvp([&] { return sp0.loss(z0); }, {z0}, {from_vector(e, {12, 6}, DType::F64)}).hv[0].to_vector();
      for (size_t i = 0; i < m; ++i) Hz[i][j] = col[i];
    }
    const Vec v = randn({int64_t(n)}, g, DType::F64).to_vector();
    Vec Jv = matvec(J, v), HJv = matvec(Hz, Jv), want(n, 0.0);
    for (size_t j = 0; j < n; ++j)
      for (size_t i = 0; i < m; ++i) want[j] += J[i][j] * HJv[i];
    const auto gn = gauss_newton_product(split, params, unflat(v, shapes));
    const double err = rel_error(flat(gn), want);
    MESSAGE("Gauss-Newton product against dense J (central differences) and ∇²_zL: relative error ", err);
    CHECK(err <= 1e-6);
    // The network-curvature part is not zero here (BN, ReLU): H·v differs from it.
    const auto hv = hvp(loss, params, unflat(v, shapes)).hv;
    CHECK(rel_error(flat(hv), flat(gn)) > 1e-3);
    // The reference's W-device product: H·v − (1 − 1/W)·GN·v; W = 1 is H·v.
    CHECK(flat(reference_multi_device_hv(hv, gn, 1)) == flat(hv));
    const Vec w4 = flat(reference_multi_device_hv(hv, gn, 4));
    Vec expect = flat(hv);
    const Vec gnf = flat(gn);
    for (size_t i = 0; i < n; ++i) expect[i] -= 0.75 * gnf[i];
    CHECK(max_abs_diff(w4, expect) <= 1e-15 * (1 + norm(expect)));
    CHECK_THROWS_AS(reference_multi_device_hv(hv, gn, 0), Error);
  }
}
