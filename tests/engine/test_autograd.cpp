#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/op_registry.h"
#include "engine/ops.h"

using namespace bissl;

namespace {
Tensor vec(std::vector<double> v) { return from_vector(v, {int64_t(v.size())}, DType::F64); }
}  // namespace

TEST_SUITE("autograd") {
  TEST_CASE("backward accumulates into leaves; no-grad records nothing") {
    Tensor x = vec({1, 2, 3});
    x.requires_grad_();
    Tensor y = sum(mul(x, x));  // dy/dx = 2x
    CHECK(y.requires_grad());
    CHECK(y.grad_fn() != nullptr);
    backward(y);
    CHECK(x.grad().to_vector() == std::vector<double>{2, 4, 6});
    backward(sum(mul(x, x)));  // accumulates
    CHECK(x.grad().to_vector() == std::vector<double>{4, 8, 12});
    x.zero_grad();
    CHECK(!x.grad().defined());
    {
      NoGradGuard ng;
      Tensor z = sum(mul(x, x));
      CHECK(!z.requires_grad());
      CHECK(z.grad_fn() == nullptr);
    }
  }

  TEST_CASE("grad w.r.t. leaves and intermediates, shared subexpressions, unused inputs") {
    Tensor x = vec({0.5, -1.0}), w = vec({2.0, 3.0}), unused = vec({1.0});
    x.requires_grad_();
    w.requires_grad_();
    unused.requires_grad_();
    Tensor h = mul(x, w);              // intermediate
    Tensor L = sum(add(mul(h, h), h));  // Σ h² + h
    auto g = grad({L}, {x, h, unused});
    // dL/dh = 2h + 1; dL/dx = (2h + 1) w
    CHECK(g[1].to_vector() == std::vector<double>{3.0, -5.0});
    CHECK(g[0].to_vector() == std::vector<double>{6.0, -15.0});
    CHECK(g[2].to_vector() == std::vector<double>{0.0});
    CHECK_THROWS_AS(grad({L}, {unused}, {}, false, false), Error);
    CHECK(!x.grad().defined());  // grad() does not accumulate
  }

  TEST_CASE("grad w.r.t. an intermediate alone") {
    Tensor w = vec({1.0, 2.0, 3.0});
    w.requires_grad_();
    Tensor h = mul(w, 2.0);
    Tensor L = sum(mul(h, h));
    auto g = grad({L}, {h});  // dL/dh = 2h, with no leaf requested
    CHECK(g[0].to_vector() == std::vector<double>{4.0, 8.0, 12.0});
  }

  TEST_CASE("seeds for non-scalar outputs") {
    Tensor x = vec({1, 2});
    x.requires_grad_();
    Tensor y = mul(x, 3.0);
    CHECK_THROWS_AS(backward(y), Error);  // non-scalar without a seed
    auto g = grad({y}, {x}, {vec({1, -1})});
    CHECK(g[0].to_vector() == std::vector<double>{3, -3});
  }

  TEST_CASE("jvp: forward-mode tangents") {
    auto f = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{mul(exp(in[0]), in[1])}; };
    auto [out, tan] = jvp(f, {vec({0.0, 1.0}), vec({2.0, 3.0})}, {vec({1.0, 1.0}), Tensor()});
    CHECK(out[0].to_vector()[0] == doctest::Approx(2.0));
    // d/dt exp(x + t)·y = exp(x)·y
    CHECK(tan[0].to_vector()[0] == doctest::Approx(2.0));
    CHECK(tan[0].to_vector()[1] == doctest::Approx(3.0 * std::exp(1.0)));
  }

  TEST_CASE("hvp: forward-over-reverse equals the analytic Hessian") {
    // L = Σ x_i³ + x0·x1  ->  H = diag(6x) + [[0,1],[1,0]]
    Tensor x = vec({1.0, 2.0});
    x.requires_grad_();
    auto r = hvp([&] { return add(sum(pow(x, 3.0)), sum(mul(slice(x, 0, 0, 1), slice(x, 0, 1, 2)))); }, {x},
                 {vec({1.0, -1.0})});
    CHECK(r.loss.item() == doctest::Approx(11.0));
    CHECK(r.grad[0].to_vector()[0] == doctest::Approx(3.0 + 2.0));
    CHECK(r.grad[0].to_vector()[1] == doctest::Approx(12.0 + 1.0));
    CHECK(r.hv[0].to_vector()[0] == doctest::Approx(6.0 - 1.0));
    CHECK(r.hv[0].to_vector()[1] == doctest::Approx(1.0 - 12.0));
    CHECK(!x.tangent().defined());  // tangents are removed afterwards
    CHECK(!x.grad().defined());
  }

  TEST_CASE("second-order reverse mode (create_graph)") {
    Tensor x = vec({0.3, -0.7});
    x.requires_grad_();
    Tensor L = sum(tanh(x));
    auto g = grad({L}, {x}, {}, true);  // 1 - tanh²
    CHECK(g[0].requires_grad());
    auto g2 = grad({sum(g[0])}, {x});  // -2 tanh (1 - tanh²)
    for (int i = 0; i < 2; ++i) {
      double xi = x.flat(i), t = std::tanh(xi);
      CHECK(g2[0].flat(i) == doctest::Approx(-2 * t * (1 - t * t)));
    }
  }

  TEST_CASE("a differentiable input reaching an op without rules is a hard error") {
    OpDef op;
    op.name = "test_no_rules";
    op.num_inputs = 1;
    op.forward[0] = [](const std::vector<Tensor>& in, const Attrs&) { return std::vector<Tensor>{in[0].clone()}; };
    Tensor x = vec({1.0});
    x.requires_grad_();
    CHECK_THROWS_AS(call_op(op, {x}), Error);
    Tensor y = vec({1.0});
    y.set_tangent(vec({1.0}));
    CHECK_THROWS_AS(call_op(op, {y}), Error);
    NoGradGuard ng;
    CHECK_NOTHROW(call_op(op, {vec({1.0})}));
  }

  TEST_CASE("backward passes carry tangents without recording a tape") {
    Tensor x = vec({0.2, 0.4});
    x.requires_grad_();
    x.set_tangent(vec({1.0, 0.0}));
    Tensor L = sum(exp(x));
    auto g = grad({L}, {x});
    CHECK(!g[0].requires_grad());                 // no graph of the graph
    REQUIRE(g[0].tangent().defined());            // but the tangent came through
    CHECK(g[0].tangent().flat(0) == doctest::Approx(std::exp(0.2)));
    CHECK(g[0].tangent().flat(1) == doctest::Approx(0.0));
    x.set_tangent(Tensor());
  }

  TEST_CASE("batch norm: running statistics never carry tangents") {
    Tensor x = from_vector({1, 2, 4, 7, 3, 1}, {3, 2}, DType::F64);
    Tensor rm = zeros({2}, DType::F64), rv = ones({2}, DType::F64);
    x.set_tangent(ones_like(x));
    auto r = batch_norm_train(x, Tensor(), Tensor(), rm, rv, 0.1, 1e-5);
    CHECK(r.mean.tangent().defined());
    CHECK(!rm.tangent().defined());
    CHECK(rm.flat(0) == doctest::Approx(0.1 * (1 + 4 + 3) / 3.0));
  }
}
