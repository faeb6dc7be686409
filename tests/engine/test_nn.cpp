#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <string>

#include "engine/autograd.h"
#include "engine/nn/init.h"
#include "engine/nn/layers.h"
#include "engine/nn/module.h"
#include "engine/ops.h"
#include "engine/optim/optimizer.h"

using namespace bissl;
using namespace bissl::nn;

namespace {

// A torchvision-shaped miniature: conv1, bn1, layer1 (Sequential of
// blocks), fc — enough to check nested names and torch's order.
struct Block : Layer {
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  Block(int64_t c, Generator& g) {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(c, c, 3, g, 1, 1));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(c));
  }
  Tensor forward_impl(const Tensor& x) override { return relu(bn1->forward(conv1->forward(x))); }
  std::string type_name() const override { return "Block"; }
};

struct Net : Module {
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<Sequential> layer1;
  std::shared_ptr<Linear> fc;
  explicit Net(uint64_t seed) {
    Generator g(seed);
    conv1 = register_module("conv1", std::make_shared<Conv2d>(3, 4, 3, g, 1, 1));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(4));
    layer1 = register_module("layer1", std::make_shared<Sequential>());
    layer1->push_back(std::make_shared<Block>(4, g));
    layer1->push_back(std::make_shared<Block>(4, g));
    fc = register_module("fc", std::make_shared<Linear>(4, 3, g));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = relu(bn1->forward(conv1->forward(x)));
    h = layer1->forward(h);
    return fc->forward(global_avg_pool(h));
  }
};

std::vector<std::string> keys(const StateDict& sd) {
  std::vector<std::string> k;
  for (auto& e : sd) k.push_back(e.first);
  return k;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::abs(v));
  return m;
}

double min_value(const Tensor& t) {
  double m = INFINITY;
  for (double v : t.to_vector()) m = std::min(m, v);
  return m;
}

bool same_values(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

}  // namespace

TEST_SUITE("nn") {
  TEST_CASE("NVTX range names: a module's name in its parent and its type; the type for a root") {
    Net net(3);
    CHECK(net.range_name() == "Module");
    CHECK(net.conv1->range_name() == "conv1 (Conv2d)");
    CHECK(net.bn1->range_name() == "bn1 (BatchNorm2d)");
    CHECK(net.layer1->range_name() == "layer1 (Sequential)");
    CHECK(net.layer1->at<Block>(1)->range_name() == "1 (Block)");
    CHECK(net.layer1->at<Block>(1)->conv1->range_name() == "conv1 (Conv2d)");
    // forward() opens the range around forward_impl(): results are unchanged.
    Generator g(5);
    Tensor x = randn({2, 6, 6, 3}, g);
    Tensor a = net.forward(x), b = net.forward(x);
    CHECK(a.to_vector() == b.to_vector());
    Conv2d root(3, 2, 1, g);
    CHECK(root.range_name() == "Conv2d");
  }

  TEST_CASE("nested names follow torch: own params, own buffers, then children") {
    Net net(1);
    std::vector<std::string> bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    std::vector<std::string> expect = {"conv1.weight"};
    for (auto& b : bn) expect.push_back("bn1." + b);
    for (int i = 0; i < 2; ++i) {
      std::string p = "layer1." + std::to_string(i) + ".";
      expect.push_back(p + "conv1.weight");
      for (auto& b : bn) expect.push_back(p + "bn1." + b);
    }
    expect.push_back("fc.weight");
    expect.push_back("fc.bias");
    CHECK(keys(net.state_dict()) == expect);

    std::vector<std::string> params = {"conv1.weight",         "bn1.weight",          "bn1.bias",
                                       "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias",
                                       "layer1.1.conv1.weight", "layer1.1.bn1.weight", "layer1.1.bn1.bias",
                                       "fc.weight",            "fc.bias"};
    CHECK(keys(net.named_parameters()) == params);
    CHECK(net.parameters().size() == params.size());
    for (auto& p : net.parameters()) CHECK(p.requires_grad());
    auto bufs = keys(net.named_buffers());
    CHECK(bufs.size() == 9);
    CHECK(bufs[0] == "bn1.running_mean");
    CHECK(bufs[8] == "layer1.1.bn1.num_batches_tracked");
    CHECK(net.num_parameters() == 3 * 3 * 3 * 4 + 4 + 4 + 2 * (9 * 4 * 4 + 8) + 12 + 3);

    auto mods = net.named_modules();
    std::vector<std::string> mnames;
    for (auto& m : mods) mnames.push_back(m.first);
    CHECK(mnames == std::vector<std::string>{"", "conv1", "bn1", "layer1", "layer1.0", "layer1.0.conv1",
                                             "layer1.0.bn1", "layer1.1", "layer1.1.conv1", "layer1.1.bn1", "fc"});
    CHECK(net.named_children().size() == 4);
    // The member handles are the registered tensors.
    CHECK(net.fc->weight.impl_ptr() == net.named_parameters()[9].second.impl_ptr());
    std::string r = net.repr();
    CHECK(r.find("(layer1): Sequential(") != std::string::npos);
    CHECK(r.find("(fc): Linear(in_features=4, out_features=3, bias=True)") != std::string::npos);
  }

  TEST_CASE("own tensors come before children whatever the registration order") {
    struct M : Module {
      M() {
        Generator g(0);
        register_module("child", std::make_shared<Linear>(2, 2, g));
        register_parameter("scale", ones({1}));
        register_buffer("count", zeros({1}));
        register_buffer("scratch", zeros({1}), /*persistent=*/false);
      }
    } m;
    CHECK(keys(m.state_dict()) == std::vector<std::string>{"scale", "count", "child.weight", "child.bias"});
    CHECK(keys(m.named_buffers()) == std::vector<std::string>{"count", "scratch"});
  }

  TEST_CASE("registration: bad names, replacement, shared parameters") {
    struct M : Module {
      void bad_dot() { register_parameter("a.b", ones({1})); }
      void bad_empty() { register_buffer("", ones({1})); }
      void twice() {
        register_parameter("w", ones({1}));
        register_parameter("v", ones({1}));
        register_parameter("w", zeros({2}));  // replaces, keeps position
      }
      void shared() {
        Tensor t = ones({3});
        register_parameter("a", t);
        register_parameter("b", t);
      }
    };
    M m;
    CHECK_THROWS_AS(m.bad_dot(), Error);
    CHECK_THROWS_AS(m.bad_empty(), Error);
    M r;
    r.twice();
    auto np = r.named_parameters();
    REQUIRE(np.size() == 2);
    CHECK(np[0].first == "w");
    CHECK(np[0].second.numel() == 2);
    M s;
    s.shared();
    CHECK(s.named_parameters().size() == 1);  // deduplicated like torch
    CHECK(s.state_dict().size() == 2);        // but both keys are saved
  }

  TEST_CASE("state_dict round trip") {
    Net a(1), b(2);
    CHECK_FALSE(same_values(a.fc->weight, b.fc->weight));
    // Make a's running stats non-trivial.
    Generator g(5);
    Tensor x = randn({2, 5, 5, 3}, g);
    a.forward(x);
    Tensor held = b.fc->weight;  // handles stay valid across loads
    LoadResult res = b.load_state_dict(a.state_dict());
    CHECK(res.missing_keys.empty());
    CHECK(res.unexpected_keys.empty());
    auto sa = a.state_dict(), sb = b.state_dict();
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) CHECK(same_values(sa[i].second, sb[i].second));
    CHECK(held.impl_ptr() == b.fc->weight.impl_ptr());
    CHECK(b.bn1->num_batches_tracked.item() == 1);
    a.eval(), b.eval();
    CHECK(same_values(a.forward(x), b.forward(x)));
    // A copy, not an alias.
    a.fc->weight.fill_(7.0);
    CHECK(b.fc->weight.flat(0) != 7.0);
    // state_dict shares storage with the module (torch semantics).
    a.state_dict()[0].second.fill_(3.0);
    CHECK(a.conv1->weight.flat(0) == 3.0);
  }

  TEST_CASE("load_state_dict errors are one line and name the key") {
    Net net(1);
    StateDict sd = net.state_dict();

    StateDict missing = sd;
    missing.erase(missing.begin() + 1);  // bn1.weight
    CHECK(error_of([&] { net.load_state_dict(missing); }) ==
          "load_state_dict: missing key bn1.weight (the model has it, the file does not)");

    StateDict extra = sd;
    extra.emplace_back("fc.extra", zeros({1}));
    CHECK(error_of([&] { net.load_state_dict(extra); }) ==
          "load_state_dict: unexpected key fc.extra (the file has it, the model does not)");

    StateDict shape = sd;
    for (auto& e : shape)
      if (e.first == "layer1.0.conv1.weight") e.second = zeros({4, 3, 3, 5});
    CHECK(error_of([&] { net.load_state_dict(shape); }) ==
          "load_state_dict: layer1.0.conv1.weight has shape [4, 3, 3, 5] in the file, the model expects [4, 3, 3, 4]");

    StateDict dtype = sd;
    for (auto& e : dtype)
      if (e.first == "fc.bias") e.second = zeros({3}, DType::F64);
    CHECK(error_of([&] { net.load_state_dict(dtype); }) ==
          "load_state_dict: fc.bias has dtype f64 in the file, the model expects f32");

    StateDict dup = sd;
    dup.push_back(sd[0]);
    CHECK(error_of([&] { net.load_state_dict(dup); }).find("appears twice") != std::string::npos);

    // Non-strict: missing and unexpected keys are reported, not fatal.
    Net other(9);
    StateDict partial = missing;
    partial.emplace_back("fc.extra", zeros({1}));
    LoadResult r = other.load_state_dict(partial, false);
    CHECK(r.missing_keys == std::vector<std::string>{"bn1.weight"});
    CHECK(r.unexpected_keys == std::vector<std::string>{"fc.extra"});
    CHECK(same_values(other.fc->weight, net.fc->weight));
    // ...but a shape mismatch still is.
    CHECK_THROWS_AS(other.load_state_dict(shape, false), Error);

    // A failed load changes nothing.
    Net c(3);
    Tensor before = c.conv1->weight.clone();
    StateDict bad = sd;
    bad.back().second = zeros({7});  // fc.bias, checked after conv1.weight
    CHECK_THROWS_AS(c.load_state_dict(bad), Error);
    CHECK(same_values(c.conv1->weight, before));

    // Old torch BatchNorm checkpoints lack num_batches_tracked: tolerated.
    StateDict old;
    for (auto& e : sd)
      if (e.first.find("num_batches_tracked") == std::string::npos) old.push_back(e);
    CHECK_NOTHROW(c.load_state_dict(old));
  }

  TEST_CASE("BatchNorm1d running statistics match a hand computation") {
    BatchNorm1d bn(2);
    // Column 0: 1 2 3 6 (mean 3, biased var 3.5, unbiased 14/3)
    // Column 1: 0 0 4 4 (mean 2, biased var 4,   unbiased 16/3)
    Tensor x = from_vector({1, 0, 2, 0, 3, 4, 6, 4}, {4, 2});
    CHECK(bn.is_training());
    Tensor y = bn.forward(x);
    CHECK(bn.running_mean.flat(0) == doctest::Approx(0.3));
    CHECK(bn.running_mean.flat(1) == doctest::Approx(0.2));
    CHECK(bn.running_var.flat(0) == doctest::Approx(0.9 + 0.1 * 14.0 / 3.0));
    CHECK(bn.running_var.flat(1) == doctest::Approx(0.9 + 0.1 * 16.0 / 3.0));
    CHECK(bn.num_batches_tracked.dtype() == DType::I64);
    CHECK(bn.num_batches_tracked.item() == 1);
    // Train output uses the biased batch variance.
    CHECK(y.at({0, 0}) == doctest::Approx((1 - 3) / std::sqrt(3.5 + 1e-5)));
    CHECK(y.at({3, 1}) == doctest::Approx((4 - 2) / std::sqrt(4 + 1e-5)));

    bn.forward(x);
    CHECK(bn.num_batches_tracked.item() == 2);
    CHECK(bn.running_mean.flat(0) == doctest::Approx(0.9 * 0.3 + 0.1 * 3));
    CHECK(bn.running_var.flat(0) == doctest::Approx(0.9 * (0.9 + 0.1 * 14.0 / 3.0) + 0.1 * 14.0 / 3.0));

    // Eval: running statistics, no update.
    bn.weight.fill_(2.0);
    bn.bias.fill_(0.5);
    bn.eval();
    CHECK_FALSE(bn.is_training());
    double rm = bn.running_mean.flat(0), rv = bn.running_var.flat(0);
    Tensor ye = bn.forward(x);
    CHECK(ye.at({2, 0}) == doctest::Approx((3 - rm) / std::sqrt(rv + 1e-5) * 2 + 0.5));
    CHECK(bn.running_mean.flat(0) == rm);
    CHECK(bn.num_batches_tracked.item() == 2);
    bn.train();
    CHECK(bn.is_training());
  }

  TEST_CASE("BatchNorm2d on NHWC, cumulative momentum, no running stats, no affine") {
    Generator g(3);
    Tensor x = randn({2, 3, 3, 4}, g), x2 = randn({2, 3, 3, 4}, g);
    BatchNorm2d bn(4, 1e-5, BatchNorm::kCumulative);
    bn.forward(x);
    bn.forward(x2);
    // momentum None: running_mean is the plain average of the batch means.
    Tensor m1 = mean(x, {0, 1, 2}), m2 = mean(x2, {0, 1, 2});
    for (int64_t c = 0; c < 4; ++c) CHECK(bn.running_mean.flat(c) == doctest::Approx((m1.flat(c) + m2.flat(c)) / 2));
    CHECK_THROWS_AS(bn.forward(zeros({2, 4})), Error);        // rank
    CHECK_THROWS_AS(bn.forward(zeros({2, 3, 3, 5})), Error);  // channels

    BatchNorm2d bn_free(4, 1e-5, 0.1, /*affine=*/false, /*track_running_stats=*/false);
    CHECK(bn_free.state_dict().empty());
    bn_free.eval();  // still batch statistics
    Tensor y = bn_free.forward(x);
    CHECK(std::abs(mean(y, {0, 1, 2}).flat(0)) < 1e-5);
    CHECK(var(y, {0, 1, 2}, 0).flat(2) == doctest::Approx(1.0).epsilon(1e-3));
  }

  TEST_CASE("Linear: forward, torch default init statistics, reproducible") {
    Generator g(42);
    Linear lin(256, 128, g);
    CHECK(lin.weight.shape() == Shape{128, 256});
    CHECK(lin.bias.shape() == Shape{128});
    auto w = lin.weight.to_vector();
    double bound = 1.0 / 16.0, m = 0, s = 0;
    for (double v : w) {
      m += v;
      s += v * v;
    }
    CHECK(max_abs(lin.weight) <= bound);
    m /= double(w.size());
    s = s / double(w.size()) - m * m;
    CHECK(std::abs(m) < 0.002);
    CHECK(s == doctest::Approx(bound * bound / 3).epsilon(0.03));
    CHECK(max_abs(lin.bias) <= bound);

    Generator g1(42), g2(42), g3(43);
    Linear a(256, 128, g1), b(256, 128, g2), c(256, 128, g3);
    CHECK(same_values(a.weight, lin.weight));
    CHECK(same_values(a.bias, b.bias));
    CHECK_FALSE(same_values(a.weight, c.weight));

    Linear nb(3, 2, g, /*bias=*/false);
    CHECK_FALSE(nb.bias.defined());
    CHECK(nb.named_parameters().size() == 1);
    Tensor x = from_vector({1, 2, 3, -1, 0, 1}, {2, 3});
    Tensor y = nb.forward(x);
    CHECK(y.at({1, 1}) == doctest::Approx(-nb.weight.at({1, 0}) + nb.weight.at({1, 2})));
    CHECK_THROWS_AS(nb.forward(zeros({2, 4})), Error);
  }

  TEST_CASE("Conv2d: OHWI weight, fan_in with groups, init, bias broadcast") {
    Generator g(7);
    Conv2d conv(16, 32, 3, g, 1, 1);
    CHECK(conv.weight.shape() == Shape{32, 3, 3, 16});
    CHECK_FALSE(conv.bias.defined());
    CHECK(init::fan_in(conv.weight) == 144);
    CHECK(init::fan_out(conv.weight) == 288);
    double bound = 1.0 / 12.0, s = 0;
    auto w = conv.weight.to_vector();
    for (double v : w) s += v * v;
    CHECK(max_abs(conv.weight) <= bound);
    CHECK(s / double(w.size()) == doctest::Approx(bound * bound / 3).epsilon(0.05));

    Conv2d grouped(8, 4, 3, g, 2, 1, 1, /*groups=*/4);
    CHECK(grouped.weight.shape() == Shape{4, 3, 3, 2});
    CHECK(init::fan_in(grouped.weight) == 18);
    CHECK_THROWS_AS(Conv2d(6, 4, 3, g, 1, 0, 1, 4), Error);

    Tensor x = randn({2, 5, 5, 16}, g);
    CHECK(conv.forward(x).shape() == Shape{2, 5, 5, 32});
    CHECK(grouped.forward(randn({1, 6, 6, 8}, g)).shape() == Shape{1, 3, 3, 4});
    CHECK_THROWS_AS(conv.forward(randn({2, 5, 5, 3}, g)), Error);

    Conv2d wb(16, 32, 3, g, 1, 1, 1, 1, /*bias=*/true);
    CHECK(wb.bias.shape() == Shape{32});
    CHECK(max_abs(wb.bias) <= bound);
    Tensor y = wb.forward(x), y0 = conv2d(x, wb.weight, wb.params());
    CHECK(y.at({1, 2, 3, 5}) == doctest::Approx(y0.at({1, 2, 3, 5}) + wb.bias.flat(5)));
  }

  TEST_CASE("init: gains, kaiming, xavier, constants") {
    using namespace init;
    CHECK(calculate_gain(Nonlinearity::Relu) == doctest::Approx(std::sqrt(2.0)));
    CHECK(calculate_gain(Nonlinearity::Tanh) == doctest::Approx(5.0 / 3.0));
    CHECK(calculate_gain(Nonlinearity::LeakyRelu, std::sqrt(5.0)) == doctest::Approx(std::sqrt(1.0 / 3.0)));
    CHECK(calculate_gain(Nonlinearity::Linear) == 1.0);
    CHECK(fan_in(zeros({10, 20})) == 20);
    CHECK(fan_out(zeros({10, 20})) == 10);
    CHECK_THROWS_AS(fan_in(zeros({5})), Error);

    Generator g(11);
    Tensor w = empty({64, 3, 3, 32});  // fan_in 288, fan_out 576
    kaiming_normal_(w, g, 0.0, FanMode::FanOut, Nonlinearity::Relu);
    auto v = w.to_vector();
    double s = 0;
    for (double e : v) s += e * e;
    CHECK(std::sqrt(s / double(v.size())) == doctest::Approx(std::sqrt(2.0 / 576)).epsilon(0.03));
    kaiming_uniform_(w, g);  // a = 0: bound √6/√fan_in
    double mx = max_abs(w);
    CHECK(mx <= std::sqrt(6.0 / 288));
    CHECK(mx > 0.95 * std::sqrt(6.0 / 288));
    xavier_uniform_(w, g);
    CHECK(max_abs(w) <= std::sqrt(6.0 / (288 + 576)));

    Tensor d = empty({3}, DType::F64);
    zeros_(d);
    CHECK(d.to_vector() == std::vector<double>{0, 0, 0});
    ones_(d);
    CHECK(d.to_vector() == std::vector<double>{1, 1, 1});
    constant_(d, 2.5);
    CHECK(d.flat(2) == 2.5);
    uniform_(d, g, 4.0, 5.0);
    CHECK(min_value(d) >= 4.0);
    CHECK(max_abs(d) < 5.0);
    // Init does not record on the tape, even on a parameter.
    Tensor p = zeros({4});
    p.requires_grad_();
    normal_(p, g);
    CHECK(p.is_leaf());
  }

  TEST_CASE("trunc_normal_ stays within [a, b] with the right moments") {
    Generator g(5);
    Tensor t = empty({20000}, DType::F64);
    init::trunc_normal_(t, g);  // N(0,1) on [-2, 2]
    auto v = t.to_vector();
    double m = 0, s = 0;
    for (double e : v) {
      m += e;
      s += e * e;
    }
    CHECK(min_value(t) >= -2.0);
    CHECK(max_abs(t) <= 2.0);
    m /= double(v.size());
    s = s / double(v.size()) - m * m;
    CHECK(std::abs(m) < 0.02);
    // Variance of the standard normal truncated to [-2, 2]: 1 - 4φ(2)/(Φ(2)-Φ(-2)) = 0.7737.
    CHECK(s == doctest::Approx(0.7737).epsilon(0.02));

    // A narrow window far from the mean, in f32.
    Tensor n = empty({5000});
    init::trunc_normal_(n, g, 0.0, 1.0, 2.5, 2.6);
    CHECK(min_value(n) >= 2.5);
    CHECK(max_abs(n) <= double(2.6f));
    // timm's usage: std 0.02 with absolute bounds ±2 is effectively untruncated.
    Tensor w = empty({20000});
    init::trunc_normal_(w, g, 0.0, 0.02);
    s = 0;
    for (double e : w.to_vector()) s += e * e;
    CHECK(std::sqrt(s / 20000) == doctest::Approx(0.02).epsilon(0.03));
    // Reproducible.
    Generator g1(9), g2(9);
    Tensor a = empty({100}), b = empty({100});
    init::trunc_normal_(a, g1);
    init::trunc_normal_(b, g2);
    CHECK(same_values(a, b));
    CHECK_THROWS_AS(init::trunc_normal_(a, g1, 0, 1, 1, -1), Error);
  }

  TEST_CASE("LayerNorm, ReLU, Identity, Sequential") {
    Generator g(2);
    LayerNorm ln(4);
    Tensor x = from_vector({1, 2, 3, 4, -1, 0, 0, 1}, {2, 4});
    Tensor y = ln.forward(x);
    CHECK(y.at({0, 0}) == doctest::Approx((1 - 2.5) / std::sqrt(1.25 + 1e-5)));
    CHECK(keys(ln.state_dict()) == std::vector<std::string>{"weight", "bias"});
    CHECK(LayerNorm(4, 1e-6, false).state_dict().empty());
    CHECK_THROWS_AS(ln.forward(zeros({2, 3})), Error);

    auto lin1 = std::make_shared<Linear>(4, 8, g);
    auto lin2 = std::make_shared<Linear>(8, 2, g);
    Sequential seq({lin1, std::make_shared<ReLU>(), lin2});
    seq.push_back(std::make_shared<Identity>());
    CHECK(seq.size() == 4);
    CHECK(keys(seq.state_dict()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
    Tensor out = seq.forward(x), ref = lin2->forward(relu(lin1->forward(x)));
    CHECK(same_values(out, ref));
    CHECK(seq(x).shape() == Shape{2, 2});
    CHECK(seq.at<Linear>(2) == lin2);
    CHECK_THROWS_AS(seq.at<Linear>(1), Error);
    CHECK_THROWS_AS(seq[4], Error);
  }

  TEST_CASE("train/eval recurse; zero_grad; requires_grad_") {
    Net net(1);
    net.eval();
    CHECK_FALSE(net.is_training());
    CHECK_FALSE(net.layer1->at<Block>(1)->bn1->is_training());
    net.train();
    CHECK(net.layer1->at<Block>(0)->conv1->is_training());

    Generator g(4);
    Tensor loss = net.forward(randn({2, 4, 4, 3}, g)).sum();
    backward(loss);
    for (auto& p : net.parameters()) CHECK(p.grad().defined());
    net.zero_grad();
    for (auto& p : net.parameters()) CHECK_FALSE(p.grad().defined());
    net.requires_grad_(false);
    for (auto& p : net.parameters()) CHECK_FALSE(p.requires_grad());
    net.requires_grad_(true);
    CHECK(net.fc->bias.requires_grad());
  }

  TEST_CASE("to(f64) converts in place; handles and optimisers stay valid") {
    Net net(1);
    Tensor w32 = net.fc->weight.clone();
    optim::SGD opt(net.parameters(), 0.1);
    Tensor handle = net.fc->weight;
    net.to(DType::F64);
    CHECK(net.fc->weight.dtype() == DType::F64);
    CHECK(handle.dtype() == DType::F64);
    CHECK(handle.impl_ptr() == net.fc->weight.impl_ptr());
    CHECK(net.bn1->running_var.dtype() == DType::F64);
    CHECK(net.bn1->num_batches_tracked.dtype() == DType::I64);
    CHECK(net.fc->weight.requires_grad());
    CHECK(net.fc->weight.to_vector() == w32.to_vector());  // f32 -> f64 is exact

    Generator g(4);
    Tensor x = randn({2, 4, 4, 3}, g, DType::F64);
    Tensor loss = net.forward(x).sum();
    CHECK(loss.dtype() == DType::F64);
    backward(loss);
    CHECK(opt.param_groups()[0].params.back().dtype() == DType::F64);
    Tensor before = net.fc->bias.clone();
    opt.step();
    CHECK(net.fc->bias.flat(0) == doctest::Approx(before.flat(0) - 0.1 * net.fc->bias.grad().flat(0)));
    net.to(DType::F32);
    CHECK(net.conv1->weight.dtype() == DType::F32);
    CHECK_FALSE(net.conv1->weight.grad().defined());
    CHECK_THROWS_AS(net.to(DType::I64), Error);
  }

  TEST_CASE("ghost batch norm: statistics per ghost batch, running statistics from the first") {
    Generator g(5);
    nn::BatchNorm2d a(3), first(3), second(3);
    for (nn::Module* m : {static_cast<nn::Module*>(&a), static_cast<nn::Module*>(&first), static_cast<nn::Module*>(&second)})
      m->to(DType::F64);
    Tensor x = add(mul(randn({4, 2, 2, 3}, g, DType::F64), 2.0), 0.5);
    x.requires_grad_();
    CHECK(nn::set_ghost_batch(a, 2) == 1);
    Tensor y = a.forward(x);
    Tensor want = concat({first.forward(slice(x, 0, 0, 2)), second.forward(slice(x, 0, 2, 4))}, 0);
    double err = 0;
    auto vy = y.to_vector(), vw = want.to_vector();
    for (size_t i = 0; i < vy.size(); ++i) err = std::max(err, std::abs(vy[i] - vw[i]));
    CHECK(err <= 1e-14);
    auto rm = a.running_mean.to_vector(), rf = first.running_mean.to_vector();
    auto vm = a.running_var.to_vector(), vf = first.running_var.to_vector();
    for (size_t i = 0; i < rm.size(); ++i) {
      CHECK(rm[i] == rf[i]);
      CHECK(vm[i] == vf[i]);
    }
    backward(sum(mul(y, y)));
    CHECK(x.grad().defined());
    // Batches no larger than the ghost size use their own statistics.
    Tensor small = slice(x.detach(), 0, 0, 2);
    CHECK_NOTHROW(a.forward(small));
    nn::set_ghost_batch(a, 3);
    CHECK_THROWS_WITH_AS(a.forward(x.detach()), doctest::Contains("ghost batches of 3 divide evenly, found a batch of 4"),
                         Error);
    a.eval();  // evaluation ignores ghost batches
    CHECK_NOTHROW(a.forward(x.detach()));
  }

  TEST_CASE("a Linearization repeats batch norm's running-statistics updates with every replay, bit for bit") {
    // Two copies of a conv/BN/ReLU/conv/BN net: one takes fresh H·v, the
    // other one recorded linearization and its replays; after each product
    // every buffer (running statistics, batch counters) is the same bits.
    // Covers momentum 0.1, cumulative momentum and ghost batches.
    for (int mode = 0; mode < 3; ++mode) {
      CAPTURE(mode);
      auto build = [&] {
        Generator g(31);
        auto net = std::make_shared<nn::Sequential>();
        net->push_back(std::make_shared<nn::Conv2d>(2, 4, 3, g, 1, 1));
        auto bn1 = net->push_back(std::make_shared<nn::BatchNorm2d>(4, 1e-5, mode == 1 ? nn::BatchNorm::kCumulative : 0.1));
        net->push_back(std::make_shared<nn::ReLU>());
        net->push_back(std::make_shared<nn::Conv2d>(4, 3, 3, g, 1, 1));
        net->push_back(std::make_shared<nn::BatchNorm2d>(3));
        net->to(DType::F64);
        if (mode == 2) nn::set_ghost_batch(*net, 2);
        return net;
      };
      auto fresh = build(), lin = build();
      Generator gx(4);
      Tensor x = randn({4, 5, 5, 2}, gx, DType::F64);
      auto loss_of = [&](nn::Sequential& m) { return [&m, &x] { return sum(mul(tanh(m.forward(x)), 1.5)); }; };
      std::vector<Tensor> pf = fresh->parameters(), pl = lin->parameters(), v, u;
      for (auto& p : pf) v.push_back(randn(p.shape(), gx, DType::F64)), u.push_back(randn(p.shape(), gx, DType::F64));
      auto buffers_equal = [&] {
        auto bf = fresh->named_buffers(), bl = lin->named_buffers();
        REQUIRE(bf.size() == bl.size());
        for (size_t i = 0; i < bf.size(); ++i) {
          CAPTURE(bf[i].first);
          CHECK(bf[i].second.to_vector() == bl[i].second.to_vector());
        }
      };
      auto hf = hvp(loss_of(*fresh), pf, v).hv;
      Linearization rec(loss_of(*lin), pl, v, /*replay_forward_effects=*/true);
      CHECK(rec.forward_effects() == 2);
      buffers_equal();
      for (int k = 0; k < 3; ++k) {
        const auto& d = k % 2 ? v : u;
        auto a = hvp(loss_of(*fresh), pf, d).hv, b = rec.hvp(d);
        for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].to_vector() == b[i].to_vector());
        buffers_equal();
      }
      CHECK(fresh->named_buffers()[2].second.to_vector()[0] == 4.0);  // num_batches_tracked after 4 products
      // Without replay_forward_effects a replay leaves the buffers alone.
      Linearization quiet(loss_of(*lin), pl, v);
      CHECK(quiet.forward_effects() == 0);
      auto before = lin->named_buffers()[0].second.to_vector();
      quiet.hvp(u);
      CHECK(lin->named_buffers()[0].second.to_vector() == before);
    }
  }
}
