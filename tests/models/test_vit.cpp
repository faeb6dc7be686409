// ViT: timm's names and shapes, presets, shapes of every option, the logits
// and tokens of timm's VisionTransformer on the same weights (f64), the
// encoder on a subset of tokens, drop path, init, sin-cos embeddings.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/torch_state.h"
#include "models/vit.h"

#include "tests/models/formula.h"

using namespace bissl;
using namespace bissl::models;

namespace {

using testing::formula_fill;
using testing::formula_images;

double max_abs_diff(const Tensor& a, const std::vector<double>& b) {
  auto x = a.to_vector();
  REQUIRE(x.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - b[i]));
  return m;
}
double max_abs_diff(const Tensor& a, const Tensor& b) { return max_abs_diff(a, b.to_vector()); }

double stddev(const Tensor& t) {
  auto v = t.to_vector();
  double s = 0, s2 = 0;
  for (double x : v) s += x, s2 += x * x;
  double m = s / double(v.size());
  return std::sqrt(s2 / double(v.size()) - m * m);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

ViTConfig tiny_cfg(int64_t depth = 2, int64_t classes = 3) {
  ViTConfig c;
  c.image_size = 8;
  c.patch_size = 4;
  c.in_channels = 2;
  c.embed_dim = 8;
  c.depth = depth;
  c.num_heads = 2;
  c.num_classes = classes;
  return c;
}

}  // namespace

TEST_SUITE("vit") {
  TEST_CASE("timm's names, order and shapes (torch layout)") {
    Generator g(1);
    ViT m(tiny_cfg(), g);
    std::vector<std::pair<std::string, Shape>> expected = {
        {"cls_token", {1, 1, 8}}, {"pos_embed", {1, 5, 8}}, {"patch_embed.proj.weight", {8, 2, 4, 4}},
        {"patch_embed.proj.bias", {8}}};
    for (int b = 0; b < 2; ++b) {
      std::string p = "blocks." + std::to_string(b) + ".";
      for (auto& e : std::vector<std::pair<std::string, Shape>>{
               {"norm1.weight", {8}}, {"norm1.bias", {8}}, {"attn.qkv.weight", {24, 8}}, {"attn.qkv.bias", {24}},
               {"attn.proj.weight", {8, 8}}, {"attn.proj.bias", {8}}, {"norm2.weight", {8}}, {"norm2.bias", {8}},
               {"mlp.fc1.weight", {32, 8}}, {"mlp.fc1.bias", {32}}, {"mlp.fc2.weight", {8, 32}}, {"mlp.fc2.bias", {8}}})
        expected.emplace_back(p + e.first, e.second);
    }
    for (auto& e : std::vector<std::pair<std::string, Shape>>{
             {"norm.weight", {8}}, {"norm.bias", {8}}, {"head.weight", {3, 8}}, {"head.bias", {3}}})
      expected.push_back(e);
    auto sd = torch_state_dict(m);
    REQUIRE(sd.size() == expected.size());
    for (size_t i = 0; i < sd.size(); ++i) {
      INFO(i, ": ", sd[i].first, " vs ", expected[i].first);
      CHECK(sd[i].first == expected[i].first);
      CHECK(sd[i].second.shape() == expected[i].second);
    }
    // Our patch projection is OHWI.
    CHECK(m.patch_embed->proj->weight.shape() == Shape{8, 4, 4, 2});
    // Without a qkv bias there is no attn.qkv.bias.
    ViTConfig c = tiny_cfg();
    c.qkv_bias = false;
    ViT nb(c, g);
    for (auto& [k, t] : nb.state_dict()) CHECK(k.find("qkv.bias") == std::string::npos);
  }

  TEST_CASE("logits and tokens equal timm's VisionTransformer on the same weights (f64)") {
    Generator g(2);
    ViT m(tiny_cfg(), g);
    m.to(DType::F64);
    formula_fill(m);
    m.eval();
    Tensor x = formula_images(2, 2, 8, 8, DType::F64);
    // From timm 1.0.31: VisionTransformer(img_size=8, patch_size=4, in_chans=2, embed_dim=8, depth=2,
    // num_heads=2, num_classes=3), every parameter set by formula_fill's formula, in float64.
    const std::vector<double> logits = {
      0.97896399020080427, -1.2315889710246011, 1.0396802688006934, 0.98395562781659462, -1.2364680891358635,
      1.0442864157838807
    };
    const std::vector<double> tokens = {
      0.53468565678491986, 0.456886905874895, 0.73886544163275292, 0.79361984605930991, 0.9764057403326879,
      -0.042034058474282925, 0.059470580828142369, -0.71692843268896789, 0.18651983451183574, 0.47618367734012557,
      0.49356656145716499, 0.031576253291603566, -0.11090829119382803, -0.41468582289602912, 0.39335446714965844,
      0.34360260793253994, 0.34670896193820261, 0.45472657818093626, 0.46882581802377715, -0.015632479074820439,
      0.37682379112936798, -0.36521501621860386, 1.0030549370539301, 0.20108244894851315, 0.56033060869124429,
      0.42184248946614622, 0.35479930209278915, 0.38216546472861723, 0.82390921093871772, 0.59711387006852723,
      0.79591361250158077, 0.036927345688683041, 0.453349942185309, 0.42911153444895972, 0.30230020181018119,
      0.1406801472114397, 0.56257398854399865, 0.42976310870829665, 0.95865341226393186, 0.24069067781162881,
      0.53670936900272281, 0.45752314718556186, 0.73710726281169514, 0.80235021355381309, 0.96938659747867584,
      -0.036302132787396059, 0.048075963048460214, -0.71636524456364759, 0.29046594564652956, 0.45155957667615476,
      0.33989287300379439, -0.026066354824297332, 0.099025192876160545, 0.022570372467502257, 0.77643895404465169,
      0.47550010941366205, 0.19032157318691903, 0.49200993413730176, 0.69711442643722887, 0.29304992726591772,
      0.052526088486955946, -0.69368295241496403, -0.0060997314176570215, -0.12770840811965348, 0.46685677294992195,
      0.42928877876131943, 0.31220955464649314, 0.15561544871872693, 0.54987070278116701, 0.39020773056991909,
      0.94225238475275364, 0.290984649146381, 0.59603391720005849, 0.42308226153287365, 0.41355280492305457,
      0.53546712481601533, 0.96827900571353698, 0.63966724294940891, 0.64096963021761721, -0.19308526205680945
    };
    double dl = max_abs_diff(m.forward(x), logits), dt = max_abs_diff(m.forward_features(x), tokens);
    MESSAGE("ViT vs timm, max |diff|: logits ", dl, ", tokens ", dt);
    CHECK(dl < 1e-12);
    CHECK(dt < 1e-12);
  }

  TEST_CASE("presets: ViT-Tiny and ViT-S widths, heads and timm's parameter counts") {
    Generator g(3);
    ViTConfig t = ViTConfig::tiny(), s = ViTConfig::small();
    CHECK(t.embed_dim == 192);
    CHECK(t.num_heads == 3);
    CHECK(t.depth == 12);
    CHECK(s.embed_dim == 384);
    CHECK(s.num_heads == 6);
    CHECK(s.depth == 12);
    CHECK(t.mlp_ratio == 4.0);
    CHECK(t.ln_eps == 1e-6);
    auto vt = vit_tiny(g);  // 224 px, patch 16
    CHECK(vt->num_parameters() == 5524416);  // timm vit_tiny_patch16_224, num_classes=0
    CHECK(vt->num_patches() == 196);
    CHECK(vt->feature_dim() == 192);
  }

  TEST_CASE("output shapes: presets on small images, grey 28x28, head, mean pool") {
    Generator g(4);
    {
      auto m = vit_tiny(g, 32, 8);
      Tensor x = randn({2, 32, 32, 3}, g);
      CHECK(m->forward(x).shape() == Shape{2, 192});
      CHECK(m->forward_features(x).shape() == Shape{2, 17, 192});
    }
    {
      ViTConfig c = ViTConfig::small(32, 16);
      c.depth = 2;  // the width and heads of ViT-S, fewer blocks to keep the test fast
      ViT m(c, g);
      CHECK(m.forward(randn({1, 32, 32, 3}, g)).shape() == Shape{1, 384});
    }
    ViTConfig c;
    c.image_size = 28;
    c.patch_size = 7;
    c.in_channels = 1;
    c.embed_dim = 24;
    c.depth = 2;
    c.num_heads = 4;
    c.mlp_ratio = 2.0;
    c.num_classes = 10;
    ViT m(c, g);
    CHECK(m.blocks->at<Block>(0)->mlp->fc1->out_features == 48);
    Tensor x = randn({3, 28, 28, 1}, g);
    CHECK(m.forward_features(x).shape() == Shape{3, 17, 24});
    CHECK(m.forward(x).shape() == Shape{3, 10});
    c.num_classes = 0;
    c.pool = ViTPool::Mean;
    ViT mp(c, g);
    Tensor tok = mp.forward_features(x);
    Tensor f = mp.forward(x);
    CHECK(f.shape() == Shape{3, 24});
    CHECK(max_abs_diff(f, mean(slice(tok, 1, 1, 17), {1})) < 1e-6);
    c.pool = ViTPool::Cls;
    ViT mc(c, g);
    CHECK(max_abs_diff(mc.forward(x), squeeze(slice(mc.forward_features(x), 1, 0, 1), 1)) == 0.0);
    CHECK(error_of([&] { mc.forward(randn({1, 32, 32, 1}, g)); }).find("PatchEmbed: expected NHWC images [N, 28, 28, 1]") !=
          std::string::npos);
    c.num_heads = 5;
    CHECK(error_of([&] { ViT bad(c, g); }).find("not divisible by 5 heads") != std::string::npos);
  }

  TEST_CASE("forward_features on a subset of patch tokens") {
    Generator g(5);
    ViT m(tiny_cfg(2, 0), g);
    m.to(DType::F64);
    m.eval();
    Tensor x = randn({2, 8, 8, 2}, g, DType::F64);
    Tensor all = m.forward_features(x);
    // Identity index: the same as no index.
    CHECK(max_abs_diff(m.forward_features(x, from_ints({0, 1, 2, 3, 0, 1, 2, 3}, {2, 4})), all) == 0.0);
    // A per-sample permutation permutes the output tokens (position embeddings
    // are added before the selection; attention is permutation-equivariant).
    Tensor perm = from_ints({2, 0, 3, 1, 3, 2, 1, 0}, {2, 4});
    Tensor out = m.forward_features(x, perm);
    const int64_t p[2][4] = {{2, 0, 3, 1}, {3, 2, 1, 0}};
    for (int64_t n = 0; n < 2; ++n) {
      for (int64_t d = 0; d < 8; ++d) CHECK(out.at({n, 0, d}) == doctest::Approx(all.at({n, 0, d})).epsilon(1e-12));
      for (int64_t k = 0; k < 4; ++k)
        for (int64_t d = 0; d < 8; ++d)
          CHECK(out.at({n, 1 + k, d}) == doctest::Approx(all.at({n, 1 + p[n][k], d})).epsilon(1e-12));
    }
    // A subset: one token per sample equals running on that sample's patch alone.
    Tensor sub = m.forward_features(x, from_ints({3, 1}, {2, 1}));
    CHECK(sub.shape() == Shape{2, 2, 8});
    Tensor one = m.forward_features(slice(x, 0, 1, 2), from_ints({1}, {1, 1}));
    CHECK(max_abs_diff(slice(sub, 0, 1, 2), one) < 1e-14);
    CHECK(error_of([&] { m.forward_features(x, from_ints({0, 4}, {2, 1})); }).find("index 4 out of range [0, 4)") !=
          std::string::npos);
    // Gradients reach the selected tokens only through gather_rows: every parameter gets one.
    m.train();
    backward(sum(pow(m.forward_features(x, from_ints({3, 1}, {2, 1})), 2.0)));
    for (auto& [k, t] : m.named_parameters()) {
      const std::string& name = k;  // (a structured binding cannot be captured before C++20: clang)
      INFO(name);
      CHECK(t.grad().defined());
    }
  }

  TEST_CASE("drop path: rates rise linearly, identity in eval, reproducible in train") {
    Generator g(6);
    ViTConfig c = tiny_cfg(3, 0);
    c.drop_path_rate = 0.3;
    ViT m(c, g);
    CHECK(m.blocks->at<Block>(0)->drop_path == 0.0);
    CHECK(m.blocks->at<Block>(1)->drop_path == doctest::Approx(0.15));
    CHECK(m.blocks->at<Block>(2)->drop_path == doctest::Approx(0.3));
    c.drop_path_rate = 0.0;
    ViT ref(c, g);
    ref.load_state_dict(m.state_dict());
    Tensor x = randn({16, 8, 8, 2}, g);
    m.eval();
    ref.eval();
    Tensor y = ref.forward(x);
    CHECK(max_abs_diff(m.forward(x), y) == 0.0);
    ref.train();
    CHECK(max_abs_diff(ref.forward(x), y) == 0.0);  // nothing else depends on the mode
    m.train();
    Generator saved = m.drop_path_rng();
    Tensor a = m.forward(x);
    CHECK(max_abs_diff(a, y) > 1e-3);  // with 16 samples some are dropped
    m.drop_path_rng() = saved;
    CHECK(max_abs_diff(m.forward(x), a) == 0.0);
  }

  TEST_CASE("init: trunc_normal(0.02) transformer, xavier patch projection, LayerNorms (1, 0)") {
    Generator g(7);
    ViTConfig c = ViTConfig::tiny(32, 4);
    c.depth = 2;
    c.num_classes = 10;
    ViT m(c, g);
    CHECK(stddev(m.pos_embed) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(m.blocks->at<Block>(0)->attn->qkv->weight) == doctest::Approx(0.02).epsilon(0.02));
    CHECK(stddev(m.blocks->at<Block>(1)->mlp->fc2->weight) == doctest::Approx(0.02).epsilon(0.02));
    CHECK(stddev(m.head->weight) == doctest::Approx(0.02).epsilon(0.1));
    for (auto& [k, t] : m.named_parameters()) {
      const std::string& name = k;  // (a structured binding cannot be captured before C++20: clang)
      INFO(name);
      bool bias = k.size() > 5 && k.compare(k.size() - 5, 5, ".bias") == 0;
      if (bias) CHECK(t.to_vector() == std::vector<double>(size_t(t.numel()), 0.0));
      if (k.find("norm") != std::string::npos && !bias)
        CHECK(t.to_vector() == std::vector<double>(size_t(t.numel()), 1.0));
    }
    // xavier_uniform over [192, 4·4·3]: bound sqrt(6 / (48 + 192)).
    double bound = std::sqrt(6.0 / (48 + 192));
    double mx = 0;
    for (double v : m.patch_embed->proj->weight.to_vector()) mx = std::max(mx, std::abs(v));
    CHECK(mx <= bound);
    CHECK(mx > 0.9 * bound);
    Generator g1(9), g2(9);
    ViT a(tiny_cfg(), g1), b(tiny_cfg(), g2);
    auto sa = a.state_dict(), sb = b.state_dict();
    for (size_t i = 0; i < sa.size(); ++i) CHECK(sa[i].second.to_vector() == sb[i].second.to_vector());
  }

  TEST_CASE("2-D sin-cos position embeddings equal MAE's; fixed pos_embed is a buffer") {
    // MAE's get_2d_sincos_pos_embed(8, 2, cls_token=True).
    const std::vector<double> expected = {
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0.8414709848078965, 0.0099998333341666645,
      0.54030230586813977, 0.99995000041666526, 0, 0, 1, 1, 0, 0, 1, 1, 0.8414709848078965, 0.0099998333341666645,
      0.54030230586813977, 0.99995000041666526, 0.8414709848078965, 0.0099998333341666645, 0.54030230586813977,
      0.99995000041666526, 0.8414709848078965, 0.0099998333341666645, 0.54030230586813977, 0.99995000041666526
    };
    CHECK(max_abs_diff(sincos_pos_embed_2d(8, 2, true, DType::F64), expected) < 1e-15);
    CHECK(sincos_pos_embed_2d(8, 2, false).shape() == Shape{1, 4, 8});
    ViTConfig c = tiny_cfg(1, 0);
    c.sincos_pos_embed = true;
    Generator g(10);
    ViT m(c, g);
    for (auto& [k, t] : m.named_parameters()) CHECK(k != "pos_embed");
    auto sd = m.state_dict();
    CHECK(sd[1].first == "pos_embed");
    CHECK(max_abs_diff(m.pos_embed, sincos_pos_embed_2d(8, 2, true)) == 0.0);
  }

  TEST_CASE("gather_tokens") {
    Tensor x = reshape(arange(0, 24, 1, DType::F64), {2, 3, 4});
    Tensor y = gather_tokens(x, from_ints({2, 0, 1, 1}, {2, 2}));
    CHECK(y.shape() == Shape{2, 2, 4});
    CHECK(y.at({0, 0, 1}) == 9);
    CHECK(y.at({0, 1, 3}) == 3);
    CHECK(y.at({1, 0, 0}) == 16);
    CHECK(y.at({1, 1, 2}) == 18);
    CHECK(error_of([&] { gather_tokens(x, from_ints({0, 1}, {1, 2})); }).find("i64 index [2, K]") != std::string::npos);
    CHECK(error_of([&] { gather_tokens(x, from_ints({0, 3, 1, 1}, {2, 2})); }).find("index 3 out of range [0, 3)") !=
          std::string::npos);
    // The VJP puts each row's gradient back at its own tokens.
    Tensor xg = x.clone().requires_grad_();
    backward(sum(gather_tokens(xg, from_ints({2, 0, 1, 1}, {2, 2}))));
    CHECK(xg.grad().at({0, 1, 0}) == 0);
    CHECK(xg.grad().at({0, 2, 3}) == 1);
    CHECK(xg.grad().at({1, 1, 2}) == 2);
    CHECK(xg.grad().at({1, 0, 0}) == 0);
  }
}

TEST_SUITE("slow") {
  TEST_CASE("ViT-S/16 at 224 px has timm's parameter count") {
    Generator g(11);
    CHECK(vit_small(g)->num_parameters() == 21665664);  // timm vit_small_patch16_224, num_classes=0
  }

  TEST_CASE("layer-wise lr decay groups as MAE's param_groups_lrd") {
    ViTConfig c = ViTConfig::tiny(16, 8);
    c.depth = 2;
    Generator g(1);
    ViT vit(c, g);
    nn::Linear head(c.embed_dim, 3, g);
    const double d = 0.5;
    auto groups = vit_layer_decay_groups(vit, d, 0.05, head.parameters());
    // Where each named tensor went: (lr_scale, weight decay).
    auto find = [&](const Tensor& t) {
      for (auto& gr : groups)
        for (auto& p : gr.params)
          if (p.data<float>() == t.data<float>()) return std::make_pair(gr.lr_scale, gr.weight_decay);
      return std::make_pair(-1.0, -1.0);
    };
    size_t total = 0;
    for (auto& gr : groups) total += gr.params.size();
    CHECK(total == vit.parameters().size() + 2);  // every tensor once, plus the head's two
    auto named = vit.named_parameters();
    auto get = [&](const std::string& n) {
      for (auto& [k, t] : named)
        if (k == n) return t;
      FAIL("no parameter ", n);
      return Tensor();
    };
    CHECK(find(get("cls_token")) == std::make_pair(d * d * d, 0.0));            // layer 0, no decay
    CHECK(find(get("patch_embed.proj.weight")) == std::make_pair(d * d * d, 0.05));
    CHECK(find(get("patch_embed.proj.bias")) == std::make_pair(d * d * d, 0.0));
    CHECK(find(get("blocks.0.attn.qkv.weight")) == std::make_pair(d * d, 0.05));  // layer 1
    CHECK(find(get("blocks.1.mlp.fc2.weight")) == std::make_pair(d, 0.05));       // layer 2
    CHECK(find(get("blocks.1.norm1.weight")) == std::make_pair(d, 0.0));
    CHECK(find(get("norm.weight")) == std::make_pair(1.0, 0.0));                  // after the blocks
    CHECK(find(head.weight) == std::make_pair(1.0, 0.05));
    CHECK(find(head.bias) == std::make_pair(1.0, 0.0));
    CHECK_THROWS_WITH_AS(vit_layer_decay_groups(vit, 0.0, 0.05), doctest::Contains("layer_decay in (0, 1]"), Error);
  }
}
