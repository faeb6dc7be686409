// BYOL: the symmetric loss by hand, the EMA target update by hand (two
// steps, parameters and buffers), reset_target, and the isolation of the
// target from forward-over-reverse HVPs w.r.t. the online backbone (target
// bit-identical; H·v against central differences in f64).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <functional>
#include <set>

#include "engine/autograd.h"
#include "engine/check/gradcheck.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "ssl/byol.h"

#include "tests/support.h"

using namespace bissl;

namespace {

using testing::TinyConvNet;

// Linear -> BN1d -> ReLU on [N, in]; the smallest backbone with parameters and buffers.
std::shared_ptr<nn::Sequential> tiny_mlp(int64_t in, int64_t out, Generator& g) {
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Linear>(in, out, g));
  s->push_back(std::make_shared<nn::BatchNorm1d>(out));
  s->push_back(std::make_shared<nn::ReLU>());
  return s;
}

using bissl::testing::flat;

// Deep copy of a state dict (values at this moment).
nn::StateDict snapshot(const nn::Module& m) {
  nn::StateDict r;
  for (auto& [k, t] : m.state_dict()) r.emplace_back(k, t.clone());
  return r;
}

bool bit_identical(const nn::StateDict& a, const nn::StateDict& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor &x = a[i].second, &y = b[i].second;
    if (a[i].first != b[i].first || x.shape() != y.shape() || x.dtype() != y.dtype() ||
        std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0)
      return false;
  }
  return true;
}

// Adds s·N(0, 1) noise to every parameter in place (stands in for optimiser steps).
void perturb(nn::Module& m, Generator& g, double s) {
  NoGradGuard ng;
  for (auto& p : m.parameters()) p.copy_(add(p.detach(), mul(randn(p.shape(), g, p.dtype()), s)));
}

}  // namespace

TEST_SUITE("ssl_byol") {
  TEST_CASE("byol_loss by hand: (2 - 2cos(p1, t2)) + (2 - 2cos(p2, t1)), mean over the batch") {
    // Image 0: cos((1,0), (1,1)) = 1/√2, cos((0,1), (0,-3)) = -1 -> (2 - √2) + 4.
    // Image 1: cos((2,0), (3,0)) = 1,    cos((1,1), (1,-1)) = 0  -> 0 + 2.
    Tensor p1 = from_vector({1, 0, 2, 0}, {2, 2}, DType::F64);
    Tensor t2 = from_vector({1, 1, 3, 0}, {2, 2}, DType::F64);
    Tensor p2 = from_vector({0, 1, 1, 1}, {2, 2}, DType::F64);
    Tensor t1 = from_vector({0, -3, 1, -1}, {2, 2}, DType::F64);
    CHECK(ssl::byol_loss(p1, p2, t1, t2).item() == doctest::Approx(4 - std::sqrt(2.0) / 2).epsilon(1e-14));
    // Symmetric in the views; zero when predictions point at the targets.
    CHECK(ssl::byol_loss(p2, p1, t2, t1).item() == doctest::Approx(4 - std::sqrt(2.0) / 2).epsilon(1e-14));
    CHECK(ssl::byol_loss(t2, t1, t1, mul(t2, 5.0)).item() == doctest::Approx(0.0).epsilon(1e-14));
    CHECK_THROWS_AS(ssl::byol_loss(p1, p2, t1, zeros({3, 2}, DType::F64)), Error);
  }

  TEST_CASE("names, construction copies the online network, loss equals the composition") {
    Generator g(1);
    auto online = tiny_mlp(3, 4, g);
    ssl::BYOL obj(*online, [&] { Generator s(99); return tiny_mlp(3, 4, s); }, 4, g, {6, 5, 3, 7, 3, 0.9995});
    std::vector<std::string> keys;
    for (auto& [k, t] : obj.state_dict()) keys.push_back(k);
    CHECK(keys[0] == "head.projector.0.weight");
    CHECK(std::find(keys.begin(), keys.end(), "head.predictor.6.weight") != keys.end());
    CHECK(std::find(keys.begin(), keys.end(), "backbone_target.1.running_var") != keys.end());
    CHECK(keys.back() == "projector_target.6.weight");
    // Trainable head = projector + predictor; the target is frozen.
    CHECK(obj.head_parameters().size() == 18);
    for (auto& p : obj.target_backbone().parameters()) CHECK_FALSE(p.requires_grad());
    for (auto& p : obj.target_projector().parameters()) CHECK_FALSE(p.requires_grad());
    CHECK(bit_identical(snapshot(obj.target_backbone()), snapshot(*online)));
    CHECK(bit_identical(snapshot(obj.target_projector()), snapshot(obj.projector())));
    CHECK_THROWS_AS(ssl::BYOL(*online, [&] { return online; }, 4, g), Error);

    ssl::SslBatch b{randn({5, 3}, g), randn({5, 3}, g)};
    Tensor l = obj.loss(*online, b);
    Tensor p1 = obj.predictor()(obj.projector()(online->forward(b.view1)));
    Tensor p2 = obj.predictor()(obj.projector()(online->forward(b.view2)));
    Tensor t1 = obj.target_projector()(obj.target_backbone()(b.view1));
    Tensor t2 = obj.target_projector()(obj.target_backbone()(b.view2));
    CHECK(l.item() == doctest::Approx(ssl::byol_loss(p1, p2, t1, t2).item()).epsilon(1e-6));
    // No gradient reaches the target; the online side gets one.
    auto gr = grad({obj.loss(*online, b)}, online->parameters());
    double n2 = 0;
    for (auto& x : flat(gr)) n2 += x * x;
    CHECK(n2 > 0);
  }

  TEST_CASE("EMA update by hand (two steps, f64), buffers copied, reset_target") {
    Generator g(2);
    auto online = tiny_mlp(3, 4, g);
    online->to(DType::F64);  // the factory's f32 target is converted to match
    const double tau = 0.75;
    ssl::BYOL obj(*online, [&] { Generator s(7); return tiny_mlp(3, 4, s); }, 4, g, {6, 5, 3, 6, 3, tau});
    CHECK(obj.target_backbone().parameters()[0].dtype() == DType::F64);
    obj.to(DType::F64);  // heads and target projector

    nn::StateDict t0 = snapshot(obj.target_backbone()), pt0 = snapshot(obj.target_projector());
    // Step 1: the online network moves (and its BN sees a batch), then the EMA.
    perturb(*online, g, 0.5);
    perturb(obj.projector(), g, 0.5);
    online->forward(randn({6, 3}, g, DType::F64));
    nn::StateDict o1 = snapshot(*online), po1 = snapshot(obj.projector());
    obj.before_train_step(*online);
    // Step 2.
    perturb(*online, g, 0.5);
    perturb(obj.projector(), g, 0.5);
    online->forward(randn({6, 3}, g, DType::F64));
    nn::StateDict o2 = snapshot(*online), po2 = snapshot(obj.projector());
    obj.update_target(*online);

    auto check_ema = [&](const nn::Module& target, const nn::StateDict& s0, const nn::StateDict& s1,
                         const nn::StateDict& s2, const nn::Module& online_m) {
      auto now = target.state_dict();
      std::set<std::string> params;
      for (auto& [k, t] : target.named_parameters()) params.insert(k);
      for (size_t i = 0; i < now.size(); ++i) {
        const std::string& k = now[i].first;
        auto x0 = s0[i].second.to_vector(), x1 = s1[i].second.to_vector(), x2 = s2[i].second.to_vector();
        auto got = now[i].second.to_vector();
        for (size_t j = 0; j < got.size(); ++j) {
          // Parameters: p = τ(τ p0 + (1-τ) o1) + (1-τ) o2. Buffers: the online ones.
          double want = params.count(k) ? tau * (tau * x0[j] + (1 - tau) * x1[j]) + (1 - tau) * x2[j] : x2[j];
          INFO(k, "[", j, "]");
          CHECK(got[j] == doctest::Approx(want).epsilon(1e-14));
        }
      }
      // The online network itself is untouched by the update.
      CHECK(bit_identical(snapshot(online_m), s2));
    };
    check_ema(obj.target_backbone(), t0, o1, o2, *online);
    check_ema(obj.target_projector(), pt0, po1, po2, obj.projector());
    // num_batches_tracked followed the online network (2 forwards).
    CHECK(obj.target_backbone().state_dict()[6].first == "1.num_batches_tracked");
    CHECK(obj.target_backbone().state_dict()[6].second.item() == 2);

    // Target differs from online now; reset copies it back exactly.
    CHECK_FALSE(bit_identical(snapshot(obj.target_backbone()), snapshot(*online)));
    obj.reset_target(*online);
    CHECK(bit_identical(snapshot(obj.target_backbone()), snapshot(*online)));
    CHECK(bit_identical(snapshot(obj.target_projector()), snapshot(obj.projector())));
    // τ = 1 freezes the target; τ = 0 copies.
    perturb(*online, g, 0.5);
    nn::StateDict before = snapshot(obj.target_backbone());
    obj.options.ema_decay = 1.0;
    obj.update_target(*online);
    for (size_t i = 0; i < before.size(); ++i)
      if (before[i].first.find("running") == std::string::npos && before[i].first.find("num_batches") == std::string::npos)
        CHECK(before[i].second.to_vector() == obj.target_backbone().state_dict()[i].second.to_vector());
    obj.options.ema_decay = 0.0;
    obj.update_target(*online);
    CHECK(bit_identical(snapshot(obj.target_backbone()), snapshot(*online)));
  }

  TEST_CASE("HVPs w.r.t. the online backbone leave the target bit-identical; H·v vs central differences (f64)") {
    Generator g(23);
    TinyConvNet online(2, 3, g);
    online.to(DType::F64);
    ssl::BYOL obj(online, [&] { Generator s(5); return std::make_shared<TinyConvNet>(2, 3, s); }, 3, g,
                  {6, 4, 3, 5, 3, 0.9});
    obj.to(DType::F64);
    // Make the target differ from the online network (a few EMA steps).
    for (int i = 0; i < 3; ++i) {
      perturb(online, g, 0.3);
      perturb(obj.head(), g, 0.3);
      online.forward(randn({4, 5, 5, 2}, g, DType::F64));
      obj.before_train_step(online);
    }
    ssl::SslBatch batch{randn({4, 5, 5, 2}, g, DType::F64), randn({4, 5, 5, 2}, g, DType::F64)};
    auto loss = [&] { return obj.loss(online, batch); };

    nn::StateDict tb = snapshot(obj.target_backbone()), tp = snapshot(obj.target_projector());
    std::vector<Tensor> params = online.parameters(), v;
    for (auto& p : params) v.push_back(randn(p.shape(), g, DType::F64));
    auto r = hvp(loss, params, v);
    CHECK(bit_identical(snapshot(obj.target_backbone()), tb));
    CHECK(bit_identical(snapshot(obj.target_projector()), tp));
    for (auto& p : obj.target_backbone().parameters()) {
      CHECK_FALSE(p.tangent().defined());
      CHECK_FALSE(p.grad().defined());
    }

    // Central differences of the gradient along v.
    const double eps = 1e-6;  // truncation error ~eps² (checked: 1e-4 -> 4e-6, 1e-5 -> 4e-8, 1e-6 -> 4e-10)
    auto grad_at = [&](double s) {
      std::vector<Tensor> saved;
      for (size_t i = 0; i < params.size(); ++i) {
        saved.push_back(params[i].clone());
        params[i].copy_(add(saved.back(), mul(v[i], s)));
      }
      auto gr = flat(grad({loss()}, params));
      for (size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
      return gr;
    };
    auto gp = grad_at(eps), gm = grad_at(-eps);
    for (size_t i = 0; i < gp.size(); ++i) gp[i] = (gp[i] - gm[i]) / (2 * eps);
    double err = check::rel_error(flat(r.hv), gp);
    MESSAGE("BYOL H·v vs central differences of gradients: relative error ", err);
    CHECK(err <= 1e-6);
    CHECK(check::rel_error(flat(r.grad), flat(grad({loss()}, params))) <= 1e-12);
    // A linearization replays the same rules: H·v and H·u bit for bit.
    {
      std::vector<Tensor> u;
      for (auto& p : params) u.push_back(randn(p.shape(), g, DType::F64));
      Linearization lin(loss, params, v);
      CHECK(flat(lin.first().hv) == flat(r.hv));
      CHECK(flat(lin.hvp(u)) == flat(hvp(loss, params, u).hv));
    }
    // Still untouched after all those evaluations.
    CHECK(bit_identical(snapshot(obj.target_backbone()), tb));
    CHECK(bit_identical(snapshot(obj.target_projector()), tp));

    // Gradient w.r.t. the online backbone vs central differences, every element.
    auto an = flat(grad({loss()}, params));
    std::vector<double> fd;
    {
      NoGradGuard ng;
      for (auto& p : params)
        for (int64_t i = 0; i < p.numel(); ++i) {
          double x = p.flat(i);
          p.set_flat(i, x + 1e-6);
          double lp = loss().item();
          p.set_flat(i, x - 1e-6);
          double lm = loss().item();
          p.set_flat(i, x);
          fd.push_back((lp - lm) / 2e-6);
        }
    }
    double gerr = check::rel_error(an, fd);
    MESSAGE("BYOL gradient vs central differences: relative error ", gerr);
    CHECK(gerr <= 1e-6);
  }
}
