#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim/optimizer.h"
#include "engine/optim/schedule.h"

using namespace bissl;
using namespace bissl::optim;

namespace {

Tensor param(const std::vector<double>& v, DType t = DType::F64) {
  Tensor p = from_vector(v, {int64_t(v.size())}, t);
  p.requires_grad_();
  return p;
}

void set_grad(Tensor& p, const std::vector<double>& g) {
  p.set_grad(from_vector(g, p.shape(), p.dtype()));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_SUITE("optim") {
  TEST_CASE("SGD without momentum") {
    Tensor p = param({1.0, 2.0});
    SGD opt({p}, 0.1);
    set_grad(p, {0.5, -1.0});
    opt.step();
    CHECK(p.flat(0) == doctest::Approx(0.95));
    CHECK(p.flat(1) == doctest::Approx(2.1));
    CHECK(opt.steps() == 1);
    CHECK(opt.state_dict().size() == 3);  // steps, lr, state.0.step (no buffers)
  }

  TEST_CASE("SGD momentum + weight decay, three steps by hand") {
    // lr 0.1, m 0.9, wd 0.1, p0 = 1, g = 0.5 every step:
    // d1 = 0.6,     buf = 0.6,     p = 0.94
    // d2 = 0.594,   buf = 1.134,   p = 0.8266
    // d3 = 0.58266, buf = 1.60326, p = 0.666274
    Tensor p = param({1.0});
    SGD opt({p}, 0.1, 0.9, 0.1);
    const double expect[] = {0.94, 0.8266, 0.666274};
    for (double e : expect) {
      set_grad(p, {0.5});
      opt.step();
      CHECK(p.flat(0) == doctest::Approx(e).epsilon(1e-12));
    }
    auto sd = opt.state_dict();
    bool found = false;
    for (auto& [k, t] : sd)
      if (k == "state.0.momentum_buffer") {
        found = true;
        CHECK(t.flat(0) == doctest::Approx(1.60326).epsilon(1e-12));
      }
    CHECK(found);
  }

  TEST_CASE("SGD nesterov, three steps by hand") {
    // as above, but p -= lr·(d + m·buf): 0.886, 0.725566, 0.525363646
    Tensor p = param({1.0});
    SGD opt({p}, 0.1, 0.9, 0.1, true);
    const double expect[] = {0.886, 0.725566, 0.525363646};
    for (double e : expect) {
      set_grad(p, {0.5});
      opt.step();
      CHECK(p.flat(0) == doctest::Approx(e).epsilon(1e-12));
    }
    CHECK_THROWS_AS(SGD({p}, 0.1, 0.0, 0.0, true), Error);
  }

  TEST_CASE("LARS trust ratio and momentum, by hand") {
    // p = [3, 4] (‖p‖ = 5), g = [0.6, 0.8] (‖g‖ = 1), lr 1, m 0.9, wd 0, eta 1e-3:
    // step 1: trust = 1e-3·5/1 = 0.005, u = [0.003, 0.004], mu = u, p = [2.997, 3.996]
    // step 2: ‖p‖ = 4.995, trust = 0.004995, u = [0.002997, 0.003996],
    //         mu = 0.9·[0.003, 0.004] + u = [0.005697, 0.007596], p = [2.991303, 3.988404]
    Tensor p = param({3.0, 4.0});
    LARS opt({p}, 1.0, 0.9, 0.0, 0.001);
    set_grad(p, {0.6, 0.8});
    opt.step();
    CHECK(p.flat(0) == doctest::Approx(2.997).epsilon(1e-12));
    CHECK(p.flat(1) == doctest::Approx(3.996).epsilon(1e-12));
    opt.step();  // same grad
    CHECK(p.flat(0) == doctest::Approx(2.991303).epsilon(1e-12));
    CHECK(p.flat(1) == doctest::Approx(3.988404).epsilon(1e-12));
    Tensor mu = opt.state_dict().back().second;
    CHECK(mu.flat(0) == doctest::Approx(0.005697).epsilon(1e-12));
    CHECK(mu.flat(1) == doctest::Approx(0.007596).epsilon(1e-12));
  }

  TEST_CASE("LARS with weight decay inside the trust ratio, by hand") {
    // p = [3, 4], g = [0.6, 0.8], lr 0.5, m 0.9, wd 0.1, eta 0.01:
    // step 1: g + wd p = [0.9, 1.2] (norm 1.5), trust = 0.01·5/1.5 = 1/30,
    //         u = [0.03, 0.04], mu = u, p = [2.985, 3.98]
    // step 2: g + wd p = [0.8985, 1.198] (norm 1.4975), ‖p‖ = 4.975,
    //         trust = 0.01·4.975/1.4975 = 0.0332220367..., u = [0.02985, 0.0398],
    //         mu = [0.05685, 0.0758], p = [2.956575, 3.9421]
    Tensor p = param({3.0, 4.0});
    LARS opt({p}, 0.5, 0.9, 0.1, 0.01);
    set_grad(p, {0.6, 0.8});
    opt.step();
    CHECK(p.flat(0) == doctest::Approx(2.985).epsilon(1e-12));
    CHECK(p.flat(1) == doctest::Approx(3.98).epsilon(1e-12));
    opt.step();
    CHECK(p.flat(0) == doctest::Approx(2.956575).epsilon(1e-12));
    CHECK(p.flat(1) == doctest::Approx(3.9421).epsilon(1e-12));
  }

  TEST_CASE("LARS zero norms give trust 1; biases get the trust ratio too") {
    // ‖p‖ = 0: trust = 1, so the step is the plain momentum-SGD step.
    Tensor z = param({0.0, 0.0});
    // ‖g + wd p‖ = 0: trust = 1 and the update is 0.
    Tensor s = param({1.0, -2.0});
    // A one-element "bias": trust = eta·|p|/|g| = 1e-3·2/4 = 5e-4.
    Tensor b = param({2.0});
    LARS opt({z, s, b}, 0.1, 0.9, 0.0, 0.001);
    set_grad(z, {1.0, -2.0});
    set_grad(s, {0.0, 0.0});
    set_grad(b, {4.0});
    opt.step();
    CHECK(z.flat(0) == doctest::Approx(-0.1).epsilon(1e-12));
    CHECK(z.flat(1) == doctest::Approx(0.2).epsilon(1e-12));
    CHECK(s.flat(0) == 1.0);
    CHECK(s.flat(1) == -2.0);
    CHECK(b.flat(0) == doctest::Approx(2.0 - 0.1 * 4.0 * 5e-4).epsilon(1e-12));
    // g = -wd·p exactly: the decayed gradient vanishes, trust 1, no move.
    Tensor q = param({2.0, 4.0});
    LARS opt2({q}, 1.0, 0.9, 0.5, 0.001);
    set_grad(q, {-1.0, -2.0});
    opt2.step();
    CHECK(q.flat(0) == 2.0);
    CHECK(q.flat(1) == 4.0);
  }

  TEST_CASE("AdamW, two steps by hand") {
    // p0 = 1, lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.01; g = 0.5 then -0.25.
    // step 1: p = 0.999 - 0.1·0.5/(0.5 + 1e-8)                 = 0.899000002
    //         m = 0.05, v = 2.5e-4
    // step 2: p = 0.899000002·0.999 - 0.1·(0.02/0.19)/(√(3.1225e-4/1.999e-3) + 1e-8)
    //         m = 0.02, v = 3.1225e-4                            = 0.8714672987058463
    Tensor p = param({1.0});
    AdamW opt({p}, 0.1, 0.9, 0.999, 1e-8, 0.01);
    set_grad(p, {0.5});
    opt.step();
    CHECK(p.flat(0) == doctest::Approx(0.899000002).epsilon(1e-12));
    set_grad(p, {-0.25});
    opt.step();
    CHECK(p.flat(0) == doctest::Approx(0.8714672987058463).epsilon(1e-12));
    auto sd = opt.state_dict();
    REQUIRE(sd.size() == 5);
    CHECK(sd[2].first == "state.0.step");
    CHECK(sd[2].second.item() == 2);
    CHECK(sd[3].first == "state.0.exp_avg");
    CHECK(sd[3].second.flat(0) == doctest::Approx(0.02));
    CHECK(sd[4].first == "state.0.exp_avg_sq");
    CHECK(sd[4].second.flat(0) == doctest::Approx(3.1225e-4));
  }

  TEST_CASE("f32 parameters use the same kernels") {
    Tensor p = param({1.0, 2.0}, DType::F32);
    SGD opt({p}, 0.1, 0.9);
    set_grad(p, {0.5, -1.0});
    opt.step();
    CHECK(p.dtype() == DType::F32);
    CHECK(p.flat(0) == doctest::Approx(0.95));
    Tensor q = param({1.0}, DType::F32);
    q.set_grad(from_vector({1.0}, {1}, DType::F64));
    SGD bad({q}, 0.1);
    CHECK(error_of([&] { bad.step(); }) == "SGD: parameter 0 is f32 but its grad is f64");
    // State made for f32 cannot drive an f64 parameter (kernels read raw buffers).
    TensorImpl& pi = p.impl();
    Tensor p64 = p.detach().to(DType::F64);
    pi.storage = p64.impl().storage, pi.dtype = DType::F64;
    set_grad(p, {0.5, -1.0});
    CHECK(error_of([&] { opt.step(); }).find("the state of parameter 0 is f32") != std::string::npos);
  }

  TEST_CASE("parameters without a grad are skipped and their state does not advance") {
    Tensor a = param({1.0}), b = param({1.0});
    AdamW opt({a, b}, 0.1);
    set_grad(a, {1.0});
    opt.step();
    CHECK(a.flat(0) != 1.0);
    CHECK(b.flat(0) == 1.0);  // no grad: not even weight decay
    for (auto& [k, t] : opt.state_dict()) CHECK(k.rfind("state.1.", 0) != 0);
    opt.zero_grad();
    CHECK_FALSE(a.grad().defined());
    opt.step();  // nothing has a grad
    CHECK(opt.steps() == 2);
  }

  TEST_CASE("per-group lr_scale and weight_decay overrides") {
    Tensor a = param({1.0}), b = param({1.0}), c = param({1.0});
    std::vector<ParamGroup> groups(3);
    groups[0].params = {a};                                   // lr 0.1, wd default 0.5
    groups[1].params = {b}, groups[1].lr_scale = 0.5;         // lr 0.05, wd 0.5
    groups[2].params = {c}, groups[2].weight_decay = 0.0;     // lr 0.1, wd 0
    SGD opt(groups, 0.1, 0.0, 0.5);
    for (Tensor* t : {&a, &b, &c}) set_grad(*t, {1.0});
    opt.step();
    CHECK(a.flat(0) == doctest::Approx(1.0 - 0.1 * 1.5));
    CHECK(b.flat(0) == doctest::Approx(1.0 - 0.05 * 1.5));
    CHECK(c.flat(0) == doctest::Approx(1.0 - 0.1 * 1.0));
    opt.lr = 0.2;  // the schedule's knob
    opt.step();
    CHECK(b.flat(0) == doctest::Approx(0.925 - 0.1 * (1.0 + 0.5 * 0.925)));
    std::vector<ParamGroup> dup(2);
    dup[0].params = {a};
    dup[1].params = {a};
    CHECK_THROWS_AS(SGD(dup, 0.1), Error);
  }

  TEST_CASE("clip_grad_norm") {
    Tensor a = param({0, 0}), b = param({0}), c = param({0});
    set_grad(a, {3.0, 4.0});
    set_grad(b, {12.0});  // c has no grad
    CHECK(clip_grad_norm({a, b, c}, 20.0) == doctest::Approx(13.0));
    CHECK(a.grad().flat(0) == 3.0);  // below the limit: untouched
    double n = clip_grad_norm({a, b, c}, 6.5);
    CHECK(n == doctest::Approx(13.0));
    double coef = 6.5 / (13.0 + 1e-6);
    CHECK(a.grad().flat(1) == doctest::Approx(4.0 * coef).epsilon(1e-14));
    CHECK(b.grad().flat(0) == doctest::Approx(12.0 * coef).epsilon(1e-14));
    CHECK(grad_norm({a, b}) == doctest::Approx(6.5).epsilon(1e-6));

    set_grad(b, {std::numeric_limits<double>::quiet_NaN()});
    CHECK(error_of([&] { clip_grad_norm({a, b}, 1.0); }).find("not finite") != std::string::npos);
    set_grad(b, {std::numeric_limits<double>::infinity()});
    CHECK_THROWS_AS(clip_grad_norm({a, b}, 1.0), Error);

    // backward gives each leaf its own gradient buffer, even where the tape
    // hands both inputs of an add the same tensor.
    Tensor x = param({3.0, 4.0}), y = param({1.0, 1.0});
    backward(sum(mul(add(x, y), 5.0)));  // both grads [5, 5]
    CHECK(x.grad().raw() != y.grad().raw());
    n = clip_grad_norm({x, y}, 1.0);
    CHECK(n == doctest::Approx(10.0));
    CHECK(x.grad().flat(0) == doctest::Approx(5.0 / (10.0 + 1e-6)));
    CHECK(y.grad().flat(1) == doctest::Approx(5.0 / (10.0 + 1e-6)));
    // Grads set by hand to one shared buffer are counted twice but scaled once.
    Tensor shared = from_vector({5.0, 5.0}, {2}, DType::F64);
    x.set_grad(shared);
    y.set_grad(shared);
    n = clip_grad_norm({x, y}, 1.0);
    CHECK(n == doctest::Approx(10.0));
    CHECK(shared.flat(0) == doctest::Approx(5.0 / (10.0 + 1e-6)));
  }

  TEST_CASE("clip_grad_norm: a non-finite norm is an error, or PyTorch's arithmetic when allowed") {
    const double big = std::numeric_limits<double>::max();
    Tensor p = zeros({3}, DType::F64).requires_grad_(true), q = zeros({1}, DType::F64).requires_grad_(true);
    auto set = [&] {
      p.set_grad(from_vector({big, -big, 1.0}, {3}, DType::F64));
      q.set_grad(from_vector({2.0}, {1}, DType::F64));
    };
    set();
    CHECK_THROWS_WITH_AS(clip_grad_norm({p, q}, 10.0), doctest::Contains("not finite"), Error);
    set();
    CHECK(std::isinf(clip_grad_norm({p, q}, 10.0, /*allow_nonfinite=*/true)));
    CHECK(p.grad().to_vector() == std::vector<double>{0, 0, 0});  // 10 / (inf + 1e-6) = 0
    CHECK(q.grad().to_vector() == std::vector<double>{0});
  }

  TEST_CASE("WarmupCosine at the boundaries") {
    WarmupCosine s{1.0, 10, 110, 0.001};
    CHECK(s.lr_at(0) == doctest::Approx(0.1));
    CHECK(s.lr_at(4) == doctest::Approx(0.5));
    CHECK(s.lr_at(9) == doctest::Approx(1.0));
    CHECK(s.lr_at(10) == doctest::Approx(1.0));
    CHECK(s.lr_at(60) == doctest::Approx(0.001 + 0.5 * 0.999));
    CHECK(s.lr_at(109) == doctest::Approx(0.0012464730973170658));
    CHECK(s.lr_at(110) == 0.001);
    CHECK(s.lr_at(100000) == 0.001);
    WarmupCosine plain{0.5, 0, 4};
    CHECK(plain.lr_at(0) == 0.5);
    CHECK(plain.lr_at(2) == doctest::Approx(0.25));
    CHECK(plain.lr_at(4) == 0.0);
    WarmupCosine flat{0.3, 0, 0};
    CHECK(flat.lr_at(0) == 0.0);
    CHECK_THROWS_AS((WarmupCosine{1.0, 10, 5}.lr_at(0)), Error);
    CHECK_THROWS_AS(s.lr_at(-1), Error);
    // Stepped after the optimiser (LambdaLR as BiSSL's reference runs it):
    // step 0 at the base lr, step s >= 1 at f(s), f(t) = base·t/W in the warm-up.
    WarmupCosine after{1.0, 10, 110, 0.001, true};
    CHECK(after.lr_at(0) == 1.0);
    CHECK(after.lr_at(1) == doctest::Approx(0.1));
    CHECK(after.lr_at(9) == doctest::Approx(0.9));
    CHECK(after.lr_at(10) == doctest::Approx(1.0));
    CHECK(after.lr_at(60) == doctest::Approx(0.001 + 0.5 * 0.999));
    CHECK(after.lr_at(110) == 0.001);
    WarmupCosine after_plain{0.5, 0, 4, 0.0005, true};
    CHECK(after_plain.lr_at(0) == 0.5);
    CHECK(after_plain.lr_at(1) == doctest::Approx(0.0005 + 0.5 * 0.4995 * (1 + std::cos(3.14159265358979323846 / 4))));
  }

  TEST_CASE("state_dict round trip continues the exact trajectory") {
    auto make = [](const std::string& kind, std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
      if (kind == "sgd") return std::make_unique<SGD>(std::move(ps), 0.1, 0.9, 1e-2, true);
      if (kind == "lars") return std::make_unique<LARS>(std::move(ps), 0.5);
      return std::make_unique<AdamW>(std::move(ps), 0.01);
    };
    for (std::string kind : {"sgd", "lars", "adamw"}) {
      CAPTURE(kind);
      Generator g(1);
      Tensor w = randn({3, 2}, g, DType::F64), v = randn({4}, g, DType::F64);
      w.requires_grad_(), v.requires_grad_();
      auto grads = [&](int step, Tensor& a, Tensor& b) {
        Generator gg(100 + uint64_t(step));
        a.set_grad(randn(a.shape(), gg, DType::F64));
        if (step % 2 == 0) b.set_grad(randn(b.shape(), gg, DType::F64));
        else b.zero_grad();  // v sometimes has no grad
      };
      WarmupCosine sched{0.1, 2, 8};
      auto opt = make(kind, {w, v});
      for (int s = 0; s < 3; ++s) {
        grads(s, w, v);
        opt->lr = sched.lr_at(opt->steps());
        opt->step();
      }
      // Checkpoint: parameters and optimiser state, cloned.
      Tensor w_ck = w.clone(), v_ck = v.clone();
      StateDict ck;
      for (auto& [k, t] : opt->state_dict()) ck.emplace_back(k, t.clone());
      for (int s = 3; s < 6; ++s) {
        grads(s, w, v);
        opt->lr = sched.lr_at(opt->steps());
        opt->step();
      }
      // Resume into fresh tensors and a fresh optimiser.
      Tensor w2 = w_ck.clone(), v2 = v_ck.clone();
      w2.requires_grad_(), v2.requires_grad_();
      auto opt2 = make(kind, {w2, v2});
      opt2->lr = 123.0;
      opt2->load_state_dict(ck);
      CHECK(opt2->steps() == 3);
      CHECK(opt2->lr == doctest::Approx(sched.lr_at(2)));  // the checkpoint's lr
      for (int s = 3; s < 6; ++s) {
        grads(s, w2, v2);
        opt2->lr = sched.lr_at(opt2->steps());
        opt2->step();
      }
      CHECK(w2.to_vector() == w.to_vector());
      CHECK(v2.to_vector() == v.to_vector());
      // The loaded state is a copy, not an alias of the file's tensors.
      CHECK(ck.back().second.to_vector() != opt2->state_dict().back().second.to_vector());
    }
  }

  TEST_CASE("optimiser load_state_dict errors") {
    Tensor p = param({1.0, 2.0});
    SGD opt({p}, 0.1, 0.9);
    set_grad(p, {1.0, 1.0});
    opt.step();
    StateDict sd = opt.state_dict();
    SGD fresh({param({0.0, 0.0})}, 0.1, 0.9);
    CHECK_NOTHROW(fresh.load_state_dict(sd));

    StateDict unknown = sd;
    unknown.emplace_back("state.0.exp_avg", zeros({2}, DType::F64));
    CHECK(error_of([&] { fresh.load_state_dict(unknown); }) ==
          "SGD::load_state_dict: unexpected key state.0.exp_avg (SGD with this configuration keeps no exp_avg)");
    StateDict range = sd;
    range.emplace_back("state.5.step", from_ints({1}, {}));
    CHECK(error_of([&] { fresh.load_state_dict(range); }).find("names parameter 5") != std::string::npos);
    StateDict shape = sd;
    shape.back().second = zeros({3}, DType::F64);
    CHECK(error_of([&] { fresh.load_state_dict(shape); }).find("has shape [3] in the file") != std::string::npos);
    StateDict nosteps(sd.begin() + 1, sd.end());
    CHECK(error_of([&] { fresh.load_state_dict(nosteps); }) == "SGD::load_state_dict: missing key steps");
    StateDict incomplete = sd;
    incomplete.pop_back();  // momentum_buffer gone, step kept
    CHECK(error_of([&] { fresh.load_state_dict(incomplete); }).find("has 0 of the 1 state buffers") !=
          std::string::npos);
    StateDict junk = sd;
    junk.emplace_back("momentum", zeros({1}));
    CHECK_THROWS_AS(fresh.load_state_dict(junk), Error);
  }
}
