// Forward-over-reverse H·v on small networks, against central differences of
// gradients (∇L(θ+εv) − ∇L(θ−εv)) / 2ε, in f64. Bound: relative error ≤ 1e-6.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/ops.h"
#include "tests/engine/small_nets.h"
#include "tests/support.h"

using namespace bissl;

namespace {

constexpr double kTol = 1e-6;
constexpr double kEps = 1e-5;

using bissl::testing::flat;

// Gradient of loss(params) at params + s·v (params are replaced in place and restored).
std::vector<Tensor> grad_at(const std::function<Tensor()>& loss, std::vector<Tensor>& params,
                            const std::vector<Tensor>& v, double s) {
  std::vector<Tensor> saved;
  for (size_t i = 0; i < params.size(); ++i) {
    saved.push_back(params[i].clone());
    params[i].copy_(add(saved.back(), mul(v[i], s)));
  }
  Tensor L = loss();
  auto g = grad({L}, params);
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
  return g;
}

void check_hvp(const std::function<Tensor()>& loss, std::vector<Tensor>& params, Generator& gen) {
  std::vector<Tensor> v, u;
  for (auto& p : params) v.push_back(randn(p.shape(), gen, DType::F64)), u.push_back(randn(p.shape(), gen, DType::F64));
  auto r = hvp(loss, params, v);
  auto gp = flat(grad_at(loss, params, v, kEps)), gm = flat(grad_at(loss, params, v, -kEps));
  std::vector<double> fd(gp.size());
  for (size_t i = 0; i < fd.size(); ++i) fd[i] = (gp[i] - gm[i]) / (2 * kEps);
  double err = check::rel_error(fd, flat(r.hv));
  MESSAGE("forward-over-reverse H·v vs central differences of gradients: relative error ", err);
  CHECK(err <= kTol);
  // Gradient from hvp equals the plain gradient.
  CHECK(check::rel_error(flat(r.grad), flat(grad({loss()}, params))) <= 1e-12);
  // Symmetry.
  auto ru = hvp(loss, params, u);
  double uhv = 0, vhu = 0;
  auto hv = flat(r.hv), hu = flat(ru.hv), uf = flat(u), vf = flat(v);
  for (size_t i = 0; i < hv.size(); ++i) uhv += uf[i] * hv[i], vhu += vf[i] * hu[i];
  INFO("<u,Hv> = ", uhv, ", <v,Hu> = ", vhu);
  CHECK(check::rel_error(uhv, vhu) <= kTol);
  // Reverse-over-reverse agrees.
  Tensor L = loss();
  auto g = grad({L}, params, {}, true);
  Tensor s;
  for (size_t i = 0; i < g.size(); ++i) s = s.defined() ? add(s, sum(mul(g[i], v[i]))) : sum(mul(g[i], v[i]));
  auto hv_rev = flat(grad({s}, params));
  CHECK(check::rel_error(hv_rev, hv) <= 1e-9);
  // A linearization recorded with v replays the same tangent rules on the
  // same values: H·v, H·u and H·v again equal hvp's, to the last bit.
  Linearization lin(loss, params, v);
  CHECK(lin.steps() > 0);
  CHECK(flat(lin.first().hv) == hv);
  CHECK(flat(lin.first().grad) == flat(r.grad));
  CHECK(flat(lin.hvp(u)) == hu);
  CHECK(flat(lin.hvp(v)) == hv);
  MESSAGE("linearization: ", lin.steps(), " tangent rules per H·v");
  // Directions must match the parameters: a one-line error otherwise.
  std::vector<Tensor> wrong = v;
  wrong[0] = wrong[0].to(DType::F32);
  CHECK_THROWS_WITH_AS(lin.hvp(wrong), doctest::Contains("direction 0 is f32"), Error);
  wrong.pop_back();
  CHECK_THROWS_WITH_AS(lin.hvp(wrong), doctest::Contains("directions"), Error);
}

Tensor param(const Shape& s, Generator& g, double scale) {
  Tensor t = mul(randn(s, g, DType::F64), scale);
  t.requires_grad_();
  return t;
}

}  // namespace

TEST_SUITE("hvp_network") {
  TEST_CASE("conv -> batch norm (train) -> relu -> conv -> global pool -> linear -> cross-entropy") {
    Generator g(2024);
    Tensor x = randn({4, 6, 6, 2}, g, DType::F64);
    Tensor y = from_ints({0, 2, 1, 2}, {4});
    std::vector<Tensor> p = testnets::convnet_params(g);
    auto loss = [&] { return testnets::convnet_loss(p, x, y); };
    check_hvp(loss, p, g);
  }

  TEST_CASE("NT-Xent on L2-normalised features (SimCLR-style) through a BN projector") {
    Generator g(7);
    Tensor x1 = randn({4, 5}, g, DType::F64), x2 = randn({4, 5}, g, DType::F64);
    std::vector<Tensor> p = {param({6, 5}, g, 0.5), param({6}, g, 1.0), param({6}, g, 0.2), param({3, 6}, g, 0.5)};
    p[1].copy_(add(p[1].detach(), 1.0));
    auto loss = [&] {
      auto proj = [&](const Tensor& x) {
        Tensor h = linear(x, p[0]);
        h = relu(batch_norm_train(h, p[1], p[2], Tensor(), Tensor(), 0.1, 1e-5).y);
        return linear(h, p[3]);
      };
      return testnets::nt_xent(proj(x1), proj(x2), 0.5);
    };
    check_hvp(loss, p, g);
  }
}
