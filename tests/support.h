#pragma once
// Helpers shared by several test suites.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"

namespace bissl::testing {

// Every element of a list of tensors, in order, as one f64 vector.
inline std::vector<double> flat(const std::vector<Tensor>& ts) {
  std::vector<double> r;
  for (auto& t : ts) {
    auto v = t.to_vector();
    r.insert(r.end(), v.begin(), v.end());
  }
  return r;
}

// f() must throw a bissl::Error whose message is one line and contains
// every needle.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    FAIL("expected a bissl::Error, nothing was thrown");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find('\n') == std::string::npos);
    for (const auto& n : needles) CHECK_MESSAGE(msg.find(n) != std::string::npos, "missing '" << n << "'");
  }
}

// A fresh directory per test case, removed afterwards.
struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    dir = std::filesystem::temp_directory_path() /
          ("bissl_test_" + std::to_string(::getpid()) + "_" + tag + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

// conv3x3 -> BN2d (train) -> ReLU -> global average pool: [N, H, W, cin] -> [N, c].
class TinyConvNet : public nn::Layer {
 public:
  TinyConvNet(int64_t cin, int64_t c, Generator& g) {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(cin, c, 3, g, 1, 1));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(c));
    // Away from gamma = 1, beta = 0 so that their derivatives are generic.
    bn->weight.copy_(add(mul(randn({c}, g), 0.3), 1.0));
    bn->bias.copy_(mul(randn({c}, g), 0.2));
  }
  Tensor forward_impl(const Tensor& x) override { return global_avg_pool(relu(bn->forward(conv->forward(x)))); }
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
};

}  // namespace bissl::testing
