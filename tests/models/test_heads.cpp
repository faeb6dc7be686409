// Heads: shapes, torch/reference names, init options, and the MLP head's
// forward against the same computation written with ops.
#include <doctest/doctest.h>

#include "engine/ops.h"
#include "models/heads.h"

using namespace bissl;

namespace {
std::vector<std::string> keys(const nn::Module& m) {
  std::vector<std::string> r;
  for (auto& [k, t] : m.state_dict()) r.push_back(k);
  return r;
}
}  // namespace

TEST_SUITE("models_heads") {
  TEST_CASE("LinearHead: shapes, names, zero init") {
    Generator g(1);
    models::LinearHead h(8, 5, g);
    CHECK(keys(h) == std::vector<std::string>{"weight", "bias"});
    CHECK(h.weight.shape() == Shape{5, 8});
    CHECK(h.bias.shape() == Shape{5});
    CHECK(h(randn({3, 8}, g)).shape() == Shape{3, 5});
    CHECK(h.type_name() == "Linear");

    Generator g1(4), g2(4);
    models::LinearHead z(8, 5, g1, true);
    models::LinearHead d(8, 5, g2);
    for (double x : z.weight.to_vector()) CHECK(x == 0.0);
    for (double x : z.bias.to_vector()) CHECK(x == 0.0);
    CHECK(z(randn({2, 8}, g)).to_vector() == std::vector<double>(10, 0.0));
    CHECK(g1.offset() == g2.offset());  // zero init consumes the same draws
  }

  TEST_CASE("MLPHead: the spec's projector, names and sizes") {
    Generator g(2);
    models::MLPHead p(2048, 256, 256, g);
    CHECK(keys(p) == std::vector<std::string>{
                         "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                         "1.num_batches_tracked", "3.weight", "3.bias", "4.weight", "4.bias", "4.running_mean",
                         "4.running_var", "4.num_batches_tracked", "6.weight"});
    CHECK(p.size() == 7);
    CHECK(p.at<nn::Linear>(0)->weight.shape() == Shape{256, 2048});
    CHECK(p.at<nn::Linear>(3)->weight.shape() == Shape{256, 256});
    CHECK(p.at<nn::Linear>(6)->weight.shape() == Shape{256, 256});
    CHECK_FALSE(p.at<nn::Linear>(6)->bias.defined());
    p.at<nn::BatchNorm1d>(1);
    p.at<nn::ReLU>(5);
    CHECK(p.num_parameters() == (2048 * 256 + 256) + 2 * 256 + (256 * 256 + 256) + 2 * 256 + 256 * 256);
    CHECK(p(randn({4, 2048}, g)).shape() == Shape{4, 256});
  }

  TEST_CASE("MLPHead options: depth, last bias, last BN") {
    Generator g(3);
    models::MLPHead one(6, 0, 3, g, 1);
    CHECK(keys(one) == std::vector<std::string>{"0.weight"});
    CHECK(one(randn({2, 6}, g)).shape() == Shape{2, 3});

    models::MLPHead two(6, 5, 3, g, 2, /*last_bias=*/true, /*last_bn=*/true);
    CHECK(keys(two) == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                                "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias",
                                                "4.weight", "4.bias", "4.running_mean", "4.running_var",
                                                "4.num_batches_tracked"});
    CHECK(two.at<nn::BatchNorm1d>(4)->num_features == 3);
    CHECK(two(randn({4, 6}, g)).shape() == Shape{4, 3});
    CHECK_THROWS_AS(models::MLPHead(6, 5, 3, g, 0), Error);
    CHECK_THROWS_AS(models::MLPHead(6, 0, 3, g, 2), Error);
    // The predictor: same class on the projection size.
    models::MLPHead pred(256, 4096, 256, g);
    CHECK(pred.at<nn::Linear>(0)->weight.shape() == Shape{4096, 256});
  }

  TEST_CASE("MLPHead forward (train mode) equals the ops it stands for; eval uses running stats") {
    Generator g(4);
    models::MLPHead h(5, 7, 3, g);
    h.to(DType::F64);
    Tensor x = randn({6, 5}, g, DType::F64);
    auto l0 = h.at<nn::Linear>(0), l3 = h.at<nn::Linear>(3), l6 = h.at<nn::Linear>(6);
    auto b1 = h.at<nn::BatchNorm1d>(1), b4 = h.at<nn::BatchNorm1d>(4);
    Tensor want = linear(x, l0->weight, l0->bias);
    want = relu(batch_norm_train(want, b1->weight, b1->bias, Tensor(), Tensor(), 0.1, 1e-5).y);
    want = linear(want, l3->weight, l3->bias);
    want = relu(batch_norm_train(want, b4->weight, b4->bias, Tensor(), Tensor(), 0.1, 1e-5).y);
    want = linear(want, l6->weight);
    Tensor got = h(x);
    auto a = got.to_vector(), b = want.to_vector();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-12));
    CHECK(b1->num_batches_tracked.item() == 1);
    h.eval();
    Tensor e = h(x);
    CHECK(b1->num_batches_tracked.item() == 1);
    CHECK(e.shape() == Shape{6, 3});
  }

  TEST_CASE("NamedSequential: names by key, applied in order") {
    Generator g(5);
    models::NamedSequential s;
    auto a = s.push_back("projector", std::make_shared<models::MLPHead>(4, 6, 3, g));
    auto b = s.push_back("predictor", std::make_shared<models::MLPHead>(3, 5, 3, g));
    CHECK(keys(s).front() == "projector.0.weight");
    CHECK(keys(s).back() == "predictor.6.weight");
    CHECK(s.size() == 2);
    s.eval();  // deterministic: running statistics
    Tensor x = randn({2, 4}, g);
    CHECK(s(x).to_vector() == (*b)((*a)(x)).to_vector());
    CHECK_THROWS_AS(s.push_back("projector", std::make_shared<nn::ReLU>()), Error);
    CHECK(s.repr().find("(projector): MLPHead") != std::string::npos);
  }
}
