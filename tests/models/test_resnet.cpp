// ResNet: shapes of every variant and stem, torchvision's exact key list and
// shapes, init, OHWI <-> OIHW, torch-layout save/load, and (when
// BISSL_TORCHVISION_REF names a folder made by the script in
// models/README.md) the logits of a real torchvision resnet18.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>

#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"
#include "models/resnet.h"
#include "models/torch_state.h"

using namespace bissl;
using namespace bissl::models;

namespace bissl_test {
const char* torchvision_resnet18_keys();
const char* torchvision_resnet50_keys();
}  // namespace bissl_test

namespace {

struct KeyShape {
  std::string name;
  Shape shape;
};

std::vector<KeyShape> parse_keys(const char* text) {
  std::vector<KeyShape> r;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    KeyShape k;
    if (!(ls >> k.name)) continue;
    std::string dims;
    if (ls >> dims) {
      std::istringstream ds(dims);
      std::string d;
      while (std::getline(ds, d, ',')) k.shape.push_back(std::stoll(d));
    }
    r.push_back(k);
  }
  return r;
}

void check_torchvision_keys(const ResNet& m, const char* expected_text) {
  auto expected = parse_keys(expected_text);
  auto ours = torch_state_dict(m);
  REQUIRE(ours.size() == expected.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    INFO("entry ", i, ": ours ", ours[i].first, " ", shape_str(ours[i].second.shape()), ", torchvision ",
         expected[i].name, " ", shape_str(expected[i].shape));
    CHECK(ours[i].first == expected[i].name);
    CHECK(ours[i].second.shape() == expected[i].shape);
    bool nbt = expected[i].name.size() > 19 &&
               expected[i].name.compare(expected[i].name.size() - 19, 19, "num_batches_tracked") == 0;
    CHECK(ours[i].second.dtype() == (nbt ? DType::I64 : DType::F32));
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector(), y = b.to_vector();
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

double stddev(const Tensor& t) {
  auto v = t.to_vector();
  double s = 0, s2 = 0;
  for (double x : v) s += x, s2 += x * x;
  double m = s / double(v.size());
  return std::sqrt(s2 / double(v.size()) - m * m);
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("bissl_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

// Width-1 torchvision-sized models take seconds to initialise: build each once.
ResNet& shared_resnet(int depth) {
  static std::map<int, std::shared_ptr<ResNet>> cache;
  auto& m = cache[depth];
  if (!m) {
    Generator g{uint64_t(depth)};
    m = depth == 18 ? resnet18(g, 1000) : depth == 34 ? resnet34(g, 1000) : resnet50(g, 1000);
  }
  return *m;
}

ResNetConfig cfg(int depth, ResNetStem stem, double width, int64_t in_ch, int64_t classes) {
  ResNetConfig c;
  c.depth = depth;
  c.stem = stem;
  c.width = width;
  c.in_channels = in_ch;
  c.num_classes = classes;
  return c;
}

}  // namespace

TEST_SUITE("resnet") {
  TEST_CASE("output shapes of every depth and stem, grey 28x28 and width 0.25") {
    Generator g(1);
    struct Case {
      int depth;
      ResNetStem stem;
      double width;
      int64_t in_ch, hw, classes, feat, map_hw;
    };
    const Case cases[] = {
        {18, ResNetStem::Cifar, 0.25, 3, 32, 10, 128, 4},   {18, ResNetStem::Cifar, 0.25, 1, 28, 0, 128, 4},
        {18, ResNetStem::ImageNet, 0.25, 1, 28, 7, 128, 1}, {34, ResNetStem::ImageNet, 0.25, 3, 64, 0, 128, 2},
        {34, ResNetStem::Cifar, 0.25, 1, 28, 10, 128, 4},   {50, ResNetStem::ImageNet, 0.25, 3, 64, 5, 512, 2},
        {50, ResNetStem::Cifar, 0.25, 1, 28, 0, 512, 4},
    };
    for (const Case& c : cases) {
      INFO("resnet", c.depth, c.stem == ResNetStem::ImageNet ? " imagenet" : " cifar", " width ", c.width, " in ",
           c.in_ch, " size ", c.hw);
      ResNet m(cfg(c.depth, c.stem, c.width, c.in_ch, c.classes), g);
      CHECK(m.feature_dim() == c.feat);
      CHECK(bool(m.fc) == (c.classes > 0));
      Tensor x = randn({2, c.hw, c.hw, c.in_ch}, g);
      Tensor map = m.forward_feature_map(x);
      CHECK(map.shape() == Shape{2, c.map_hw, c.map_hw, c.feat});
      CHECK(m.forward_features(x).shape() == Shape{2, c.feat});
      CHECK(m.forward(x).shape() == Shape{2, c.classes > 0 ? c.classes : c.feat});
      // conv1 follows the stem and the input channels.
      CHECK(m.conv1->weight.shape() == (c.stem == ResNetStem::ImageNet ? Shape{m.conv1->out_channels, 7, 7, c.in_ch}
                                                                       : Shape{m.conv1->out_channels, 3, 3, c.in_ch}));
    }
  }

  TEST_CASE("width-1 resnet18 and resnet50 (ImageNet stem) on a small image") {
    Generator g(2);
    for (int depth : {18, 50}) {
      ResNet& m = shared_resnet(depth);
      m.eval();
      Tensor x = randn({1, 32, 32, 3}, g);
      CHECK(m.forward_feature_map(x).shape() == Shape{1, 1, 1, depth == 18 ? 512 : 2048});
      CHECK(m.forward(x).shape() == Shape{1, 1000});
      CHECK(m.feature_dim() == (depth == 18 ? 512 : 2048));
    }
  }

  TEST_CASE("resnet18: torchvision's exact keys, order and shapes (torch layout)") {
    ResNet& m = shared_resnet(18);
    check_torchvision_keys(m, bissl_test::torchvision_resnet18_keys());
    CHECK(m.num_parameters() == 11689512);  // torchvision's count
    // Our own layout is OHWI.
    CHECK(m.conv1->weight.shape() == Shape{64, 7, 7, 3});
    CHECK(m.layer2->at<BasicBlock>(0)->downsample->at<nn::Conv2d>(0)->weight.shape() == Shape{128, 1, 1, 64});
  }

  TEST_CASE("resnet50: torchvision's exact keys, order and shapes (torch layout)") {
    ResNet& m = shared_resnet(50);
    check_torchvision_keys(m, bissl_test::torchvision_resnet50_keys());
    CHECK(m.num_parameters() == 25557032);
    // v1.5: the stride sits on the 3x3 conv.
    auto b = m.layer2->at<Bottleneck>(0);
    CHECK(b->conv1->stride == 1);
    CHECK(b->conv2->stride == 2);
    CHECK(b->downsample->at<nn::Conv2d>(0)->stride == 2);
  }

  TEST_CASE("backbone without fc") {
    Generator g(5);
    ResNet bb(cfg(18, ResNetStem::ImageNet, 0.25, 3, 0), g), cls(cfg(18, ResNetStem::ImageNet, 0.25, 3, 1000), g);
    CHECK_FALSE(bb.fc);
    CHECK(bb.num_parameters() == cls.num_parameters() - 128 * 1000 - 1000);
    for (auto& [k, t] : bb.state_dict()) CHECK(k.rfind("fc.", 0) != 0);
    CHECK(cls.state_dict().back().first == "fc.bias");
  }

  TEST_CASE("init as torchvision; zero_init_residual") {
    Generator g(6);
    ResNet& m = shared_resnet(18);
    // kaiming_normal fan_out relu: std = sqrt(2 / (out·k·k)).
    auto w = m.layer3->at<BasicBlock>(0)->conv2->weight;  // [256, 3, 3, 256]
    CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / (256 * 9))).epsilon(0.01));
    CHECK(stddev(m.conv1->weight) == doctest::Approx(std::sqrt(2.0 / (64 * 49))).epsilon(0.02));
    for (auto& [k, t] : m.state_dict()) {
      if (k.find("bn") == std::string::npos && k.find("downsample.1") == std::string::npos) continue;
      if (k.size() > 7 && k.compare(k.size() - 7, 7, ".weight") == 0) CHECK(t.to_vector() == std::vector<double>(size_t(t.numel()), 1.0));
      if (k.size() > 5 && k.compare(k.size() - 5, 5, ".bias") == 0) CHECK(t.to_vector() == std::vector<double>(size_t(t.numel()), 0.0));
    }
    // fc: PyTorch's Linear default U(±1/sqrt(512)).
    double bound = 1.0 / std::sqrt(512.0);
    double mx = 0;
    for (double v : m.fc->weight.to_vector()) mx = std::max(mx, std::abs(v));
    CHECK(mx <= bound);
    CHECK(mx > 0.99 * bound);

    ResNetConfig c = cfg(18, ResNetStem::Cifar, 0.25, 3, 10);
    c.zero_init_residual = true;
    ResNet z(c, g);
    for (size_t i = 0; i < 2; ++i) {
      CHECK(z.layer1->at<BasicBlock>(i)->bn2->weight.to_vector() == std::vector<double>(16, 0.0));
      CHECK(z.layer1->at<BasicBlock>(i)->bn1->weight.to_vector() == std::vector<double>(16, 1.0));
    }
    ResNetConfig c50 = cfg(50, ResNetStem::Cifar, 0.25, 3, 0);
    c50.zero_init_residual = true;
    ResNet z50(c50, g);
    CHECK(z50.layer4->at<Bottleneck>(2)->bn3->weight.to_vector() == std::vector<double>(512, 0.0));
    CHECK(z50.layer4->at<Bottleneck>(2)->bn2->weight.to_vector() == std::vector<double>(128, 1.0));
    // Same seed, same weights.
    Generator g1(77), g2(77);
    ResNet a(cfg(18, ResNetStem::Cifar, 0.25, 1, 10), g1), b(cfg(18, ResNetStem::Cifar, 0.25, 1, 10), g2);
    auto sa = a.state_dict(), sb = b.state_dict();
    for (size_t i = 0; i < sa.size(); ++i) CHECK(sa[i].second.to_vector() == sb[i].second.to_vector());
  }

  TEST_CASE("OHWI <-> OIHW on a known tensor") {
    Shape ohwi = {2, 3, 4, 5};
    std::vector<double> v(size_t(numel(ohwi)));
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t w = 0; w < 4; ++w)
          for (int64_t i = 0; i < 5; ++i) v[size_t(((o * 3 + h) * 4 + w) * 5 + i)] = 1000 * o + 100 * h + 10 * w + i;
    Tensor t = from_vector(v, ohwi);
    Tensor p = ohwi_to_oihw(t);
    REQUIRE(p.shape() == Shape{2, 5, 3, 4});
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t h = 0; h < 3; ++h)
          for (int64_t w = 0; w < 4; ++w) CHECK(p.at({o, i, h, w}) == 1000 * o + 100 * h + 10 * w + i);
    CHECK(oihw_to_ohwi(p).to_vector() == v);
    CHECK(error_of([&] { ohwi_to_oihw(zeros({2, 3})); }).find("4-D") != std::string::npos);
  }

  TEST_CASE("save_torch_state -> load_torch_state round trip; the file is in torch layout") {
    Generator g(8);
    ResNetConfig c = cfg(18, ResNetStem::Cifar, 0.25, 1, 10);
    ResNet a(c, g), b(c, g);
    // Non-trivial BN buffers, so they are checked too.
    Tensor x = randn({4, 28, 28, 1}, g);
    a.forward(x);
    std::string path = tmp_path("resnet_rt.safetensors");
    save_torch_state(a, path);
    auto f = io::load_safetensors(path);
    CHECK(f.metadata.at("format") == "pt");
    CHECK(f.get("conv1.weight").shape() == Shape{16, 1, 3, 3});
    CHECK(f.get("layer2.0.downsample.0.weight").shape() == Shape{32, 16, 1, 1});
    CHECK(f.get("bn1.num_batches_tracked").item() == 1);
    CHECK(f.get("layer1.0.conv1.weight").to_vector() == ohwi_to_oihw(a.layer1->at<BasicBlock>(0)->conv1->weight).to_vector());

    auto res = load_torch_state(b, path);
    CHECK(res.missing_keys.empty());
    CHECK(res.unexpected_keys.empty());
    auto sa = a.state_dict(), sb = b.state_dict();
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      INFO(sa[i].first);
      CHECK(sa[i].second.to_vector() == sb[i].second.to_vector());
    }
    a.eval();
    b.eval();
    CHECK(max_abs_diff(a.forward(x), b.forward(x)) == 0.0);

    // Into an f64 model: floating tensors are cast.
    ResNet d(c, g);
    d.to(DType::F64);
    load_torch_state(d, path);
    d.eval();
    CHECK(max_abs_diff(a.forward(x), d.forward(x.to(DType::F64))) < 1e-5);
    std::remove(path.c_str());
  }

  TEST_CASE("load_torch_state errors name the key; a classifier file into a backbone") {
    Generator g(9);
    ResNet cls(cfg(18, ResNetStem::Cifar, 0.25, 3, 10), g);
    ResNet bb(cfg(18, ResNetStem::Cifar, 0.25, 3, 0), g);
    ResNet wide(cfg(18, ResNetStem::Cifar, 0.5, 3, 0), g);
    ResNet grey(cfg(18, ResNetStem::Cifar, 0.25, 1, 0), g);
    auto sd = torch_state_dict(cls);
    std::string e = error_of([&] { load_torch_state_dict(bb, sd); });
    CHECK(e.find("unexpected key fc.weight") != std::string::npos);
    auto r = load_torch_state_dict(bb, sd, /*strict=*/false);
    CHECK(r.unexpected_keys == std::vector<std::string>{"fc.weight", "fc.bias"});
    CHECK(r.missing_keys.empty());
    CHECK(bb.layer4->at<BasicBlock>(1)->conv2->weight.to_vector() ==
          cls.layer4->at<BasicBlock>(1)->conv2->weight.to_vector());
    e = error_of([&] { load_torch_state_dict(grey, sd, false); });
    INFO(e);
    CHECK(e.find("conv1.weight has shape [16, 3, 3, 3] in the file, the model expects OIHW [16, 1, 3, 3]") !=
          std::string::npos);
    e = error_of([&] { load_torch_state_dict(wide, torch_state_dict(bb)); });
    CHECK(e.find("conv1.weight") != std::string::npos);
    e = error_of([&] { load_torch_state(bb, tmp_path("does_not_exist.safetensors")); });
    CHECK(e.find("does_not_exist") != std::string::npos);
  }

  TEST_CASE("train mode: BN statistics update and every parameter gets a gradient") {
    Generator g(10);
    ResNet m(cfg(18, ResNetStem::Cifar, 0.25, 1, 10), g);
    Tensor x = randn({4, 28, 28, 1}, g);
    Tensor loss = cross_entropy(m.forward(x), from_ints({0, 3, 9, 1}, {4}));
    backward(loss);
    for (auto& [k, p] : m.named_parameters()) {
      const std::string& name = k;  // (a structured binding cannot be captured before C++20: clang)
      INFO(name);
      REQUIRE(p.grad().defined());
      CHECK(p.grad().shape() == p.shape());
    }
    CHECK(m.bn1->num_batches_tracked.item() == 1);
    CHECK(stddev(m.bn1->running_mean) > 0);
  }

  TEST_CASE("torchvision resnet18 logits (BISSL_TORCHVISION_REF)") {
    const char* dir = std::getenv("BISSL_TORCHVISION_REF");
    if (!dir) {
      MESSAGE("skipped: set BISSL_TORCHVISION_REF to a folder made by the script in models/README.md");
      return;
    }
    std::string d = dir;
    Generator g(11);
    auto m = resnet18(g, 1000);  // its own instance: the load below changes it
    auto res = load_torch_state(*m, d + "/resnet18.safetensors");
    CHECK(res.missing_keys.empty());
    auto ref = io::load_safetensors(d + "/reference.safetensors");
    Tensor x = permute(ref.get("input_nchw"), {0, 2, 3, 1});
    m->eval();
    double eval_diff = max_abs_diff(m->forward(x), ref.get("logits_eval"));
    m->train();
    double train_diff = max_abs_diff(m->forward(x), ref.get("logits_train"));
    double rm_diff = max_abs_diff(m->layer3->at<BasicBlock>(1)->bn2->running_mean,
                                  ref.get("layer3.1.bn2.running_mean_after_train"));
    MESSAGE("torchvision resnet18 vs ours: max |logits diff| eval ", eval_diff, ", train ", train_diff,
            ", running_mean after one train step ", rm_diff);
    CHECK(eval_diff < 1e-3);
    CHECK(train_diff < 1e-3);
    CHECK(rm_diff < 1e-5);
    save_torch_state(*m, d + "/ours.safetensors");
  }
}

TEST_SUITE("slow") {
  TEST_CASE("resnet34 (width 1) parameter count equals torchvision's") {
    CHECK(shared_resnet(34).num_parameters() == 21797672);
  }
}
