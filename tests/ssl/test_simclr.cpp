// SimCLR: NT-Xent against values written out from its definition, the
// temperature's effect, invariance to the scale of each projection, and the
// whole objective (tiny conv backbone + BN projector) differentiated in f64:
// gradient and forward-over-reverse H·v against central differences.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "ssl/simclr.h"

#include "tests/support.h"

using namespace bissl;
using ssl::nt_xent;

namespace {

using testing::TinyConvNet;

using bissl::testing::flat;

// Central differences of loss() w.r.t. every element of params (in place, restored).
std::vector<double> fd_gradient(const std::function<Tensor()>& loss, std::vector<Tensor>& params, double eps = 1e-6) {
  NoGradGuard ng;
  std::vector<double> r;
  for (auto& p : params)
    for (int64_t i = 0; i < p.numel(); ++i) {
      double x = p.flat(i);
      p.set_flat(i, x + eps);
      double lp = loss().item();
      p.set_flat(i, x - eps);
      double lm = loss().item();
      p.set_flat(i, x);
      r.push_back((lp - lm) / (2 * eps));
    }
  return r;
}

// (∇L(θ + εv) − ∇L(θ − εv)) / 2ε. Its truncation error scales as ε² here
// (ε = 1e-4, 1e-5, 1e-6 gave 1.3e-5, 1.3e-7, 1.3e-9): H·v itself is exact.
std::vector<double> fd_hvp(const std::function<Tensor()>& loss, std::vector<Tensor>& params,
                           const std::vector<Tensor>& v, double eps = 1e-6) {
  auto grad_at = [&](double s) {
    std::vector<Tensor> saved;
    for (size_t i = 0; i < params.size(); ++i) {
      saved.push_back(params[i].clone());
      params[i].copy_(add(saved.back(), mul(v[i], s)));
    }
    auto g = flat(grad({loss()}, params));
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
    return g;
  };
  auto gp = grad_at(eps), gm = grad_at(-eps);
  for (size_t i = 0; i < gp.size(); ++i) gp[i] = (gp[i] - gm[i]) / (2 * eps);
  return gp;
}

// z1 = [(3,4), (1,0)], z2 = [(0,2), (-1,-1)]: after normalisation the 2N = 4
// rows are a = (.6,.8), b = (1,0), c = (0,1), d = -(s,s) with s = 1/√2;
// positives a<->c, b<->d. Cosines: ab .6, ac .8, ad -1.4s, bc 0, bd -s, cd -s.
double nt_xent_by_hand(double t) {
  const double s = 1 / std::sqrt(2.0);
  double la = -0.8 / t + std::log(std::exp(0.6 / t) + std::exp(0.8 / t) + std::exp(-1.4 * s / t));
  double lb = s / t + std::log(std::exp(0.6 / t) + 1 + std::exp(-s / t));
  double lc = -0.8 / t + std::log(std::exp(0.8 / t) + 1 + std::exp(-s / t));
  double ld = s / t + std::log(std::exp(-1.4 * s / t) + 2 * std::exp(-s / t));
  return (la + lb + lc + ld) / 4;
}

}  // namespace

TEST_SUITE("ssl_simclr") {
  TEST_CASE("nt_xent equals its definition on a 2x2 example (f64)") {
    Tensor z1 = from_vector({3, 4, 1, 0}, {2, 2}, DType::F64);
    Tensor z2 = from_vector({0, 2, -1, -1}, {2, 2}, DType::F64);
    // Numbers from the formula above (evaluated separately in Python).
    CHECK(nt_xent(z1, z2, 0.5).item() == doctest::Approx(1.1572142662859308).epsilon(1e-13));
    CHECK(nt_xent(z1, z2, 0.1).item() == doctest::Approx(3.4807702747685214).epsilon(1e-13));
    for (double t : {0.05, 0.1, 0.5, 1.0, 2.0})
      CHECK(nt_xent(z1, z2, t).item() == doctest::Approx(nt_xent_by_hand(t)).epsilon(1e-13));
    // N = 1: the positive is the only candidate.
    CHECK(nt_xent(slice(z1, 0, 0, 1), slice(z2, 0, 0, 1), 0.5).item() == doctest::Approx(0.0).epsilon(1e-15));
    // f32 agrees to f32 precision.
    CHECK(nt_xent(z1.to(DType::F32), z2.to(DType::F32), 0.5).item() ==
          doctest::Approx(1.1572142662859308).epsilon(1e-6));
  }

  TEST_CASE("temperature: sharper for aligned pairs, uniform in the limit") {
    // Positives identical and negatives orthogonal: a lower temperature
    // separates them more and lowers the loss; -1/t + log(e^{1/t} + 2) per row.
    Tensor e = from_vector({1, 0, 0, 1}, {2, 2}, DType::F64);
    double prev = 1e9;
    for (double t : {2.0, 1.0, 0.5, 0.1}) {
      double l = nt_xent(e, e, t).item();
      CHECK(l == doctest::Approx(-1 / t + std::log(std::exp(1 / t) + 2)).epsilon(1e-13));
      CHECK(l < prev);
      prev = l;
    }
    // t -> infinity: all 2N - 1 candidates equally likely, loss log(2N - 1).
    Generator g(3);
    Tensor a = randn({5, 7}, g, DType::F64), b = randn({5, 7}, g, DType::F64);
    CHECK(nt_xent(a, b, 1e9).item() == doctest::Approx(std::log(9.0)).epsilon(1e-8));
  }

  TEST_CASE("nt_xent is invariant to the scale of each projection") {
    Generator g(11);
    Tensor a = randn({6, 5}, g, DType::F64), b = randn({6, 5}, g, DType::F64);
    Tensor sa = add(mul(rand({6, 1}, g, DType::F64), 9.0), 0.1);  // per-row factors in [0.1, 9.1)
    Tensor sb = add(mul(rand({6, 1}, g, DType::F64), 9.0), 0.1);
    double l = nt_xent(a, b, 0.5).item();
    CHECK(nt_xent(mul(a, sa), mul(b, sb), 0.5).item() == doctest::Approx(l).epsilon(1e-12));
    CHECK(nt_xent(mul(a, 1e3), b, 0.5).item() == doctest::Approx(l).epsilon(1e-12));
  }

  TEST_CASE("nt_xent rejects bad inputs") {
    Tensor a = zeros({3, 4}, DType::F64);
    CHECK_THROWS_AS(nt_xent(a, zeros({2, 4}, DType::F64), 0.5), Error);
    CHECK_THROWS_AS(nt_xent(a, a, 0.0), Error);
    CHECK_THROWS_AS(nt_xent(zeros({3}, DType::F64), zeros({3}, DType::F64), 0.5), Error);
  }

  TEST_CASE("SimCLR objective: names, per-view forward, loss value") {
    Generator g(5);
    TinyConvNet bb(2, 3, g);
    ssl::SimCLR obj(3, g, {6, 4, 3, 0.5});
    std::vector<std::string> keys;
    for (auto& [k, t] : obj.state_dict()) keys.push_back(k);
    CHECK(keys.front() == "head.projector.0.weight");
    CHECK(keys.back() == "head.projector.6.weight");
    CHECK(obj.head_parameters().size() == 9);  // 0.w 0.b 1.w 1.b 3.w 3.b 4.w 4.b 6.w
    ssl::Objective& as_objective = obj;
    CHECK(&as_objective.head() == static_cast<nn::Module*>(&obj.head()));

    ssl::SslBatch batch{randn({4, 5, 5, 2}, g), randn({4, 5, 5, 2}, g)};
    Tensor l = obj.loss(bb, batch);
    CHECK(l.dim() == 0);
    // Same as running each view through backbone and projector by hand.
    Tensor z1 = obj.projector()(bb(batch.view1)), z2 = obj.projector()(bb(batch.view2));
    CHECK(l.item() == doctest::Approx(ssl::nt_xent(z1, z2, 0.5).item()).epsilon(1e-6));
    CHECK_THROWS_AS(obj.loss(bb, {batch.view1, Tensor()}), Error);
    CHECK_THROWS_AS(obj.loss(bb, {batch.view1, randn({3, 5, 5, 2}, g)}), Error);
  }

  TEST_CASE("SimCLR loss: gradient and H·v w.r.t. a tiny backbone vs central differences (f64)") {
    Generator g(17);
    TinyConvNet bb(2, 3, g);
    ssl::SimCLR obj(3, g, {6, 4, 3, 0.5});
    bb.to(DType::F64);
    obj.to(DType::F64);
    ssl::SslBatch batch{randn({4, 5, 5, 2}, g, DType::F64), randn({4, 5, 5, 2}, g, DType::F64)};
    auto loss = [&] { return obj.loss(bb, batch); };

    // Gradient w.r.t. backbone and head, every element.
    std::vector<Tensor> all = bb.parameters();
    for (auto& p : obj.head_parameters()) all.push_back(p);
    auto an = flat(grad({loss()}, all));
    auto fd = fd_gradient(loss, all);
    double gerr = check::rel_error(an, fd);
    MESSAGE("SimCLR gradient vs central differences: relative error ", gerr);
    CHECK(gerr <= 1e-6);

    // H·v w.r.t. the backbone (what BiSSL's CG needs), and symmetry.
    std::vector<Tensor> params = bb.parameters(), v, u;
    for (auto& p : params) v.push_back(randn(p.shape(), g, DType::F64)), u.push_back(randn(p.shape(), g, DType::F64));
    auto r = hvp(loss, params, v);
    double herr = check::rel_error(flat(r.hv), fd_hvp(loss, params, v));
    MESSAGE("SimCLR H·v vs central differences of gradients: relative error ", herr);
    CHECK(herr <= 1e-6);
    CHECK(check::rel_error(flat(r.grad), flat(grad({loss()}, params))) <= 1e-12);
    auto ru = hvp(loss, params, u);
    double uhv = 0, vhu = 0;
    auto hv = flat(r.hv), hu = flat(ru.hv), uf = flat(u), vf = flat(v);
    for (size_t i = 0; i < hv.size(); ++i) uhv += uf[i] * hv[i], vhu += vf[i] * hu[i];
    CHECK(check::rel_error(uhv, vhu) <= 1e-6);
    // The parameters carry no tangent afterwards.
    for (auto& p : params) CHECK_FALSE(p.tangent().defined());
  }
}
