// The model factory (models/factory.h, ssl/factory.h): every architecture a
// BackboneSpec names builds, with the classifier under torchvision's / timm's
// name when asked; pooling and position embeddings reach the ViT; the
// ObjectiveSpec's head widths and layer counts reach SimCLR, BYOL and MAE;
// and the factory draws exactly what direct construction draws.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "models/factory.h"
#include "models/heads.h"
#include "models/resnet.h"
#include "models/torch_state.h"
#include "models/vit.h"
#include "ssl/factory.h"

using namespace bissl;

namespace {

models::BackboneSpec spec(const std::string& arch) {
  models::BackboneSpec s;
  s.arch = arch;
  s.width = 0.0625;  // ResNets: 4 base channels
  s.depth = 1;       // ViTs: one block
  s.patch_size = 8;
  return s;
}

std::set<std::string> keys(const nn::Module& m) {
  std::set<std::string> r;
  for (auto& kv : models::torch_state_dict(m)) r.insert(kv.first);
  return r;
}

bool same_state(const nn::Module& a, const nn::Module& b) {
  auto sa = a.state_dict(), sb = b.state_dict();
  if (sa.size() != sb.size()) return false;
  for (size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].first != sb[i].first || sa[i].second.shape() != sb[i].second.shape()) return false;
    for (int64_t j = 0; j < sa[i].second.numel(); ++j)
      if (sa[i].second.flat(j) != sb[i].second.flat(j)) return false;
  }
  return true;
}

// The number of choices of `arch`, read from the spec's description.
size_t arch_choices = 0;
struct CountArch {
  template <class T>
  void operator()(const std::string& k, T&, const schema::Rule& r, const char*) {
    if (k == "arch") arch_choices = r.choices.size();
  }
} count_arch;

}  // namespace

TEST_SUITE("model factory") {
  TEST_CASE("every arch of BackboneSpec builds; a classifier only when asked, under its torchvision / timm name") {
    const std::map<std::string, int64_t> features = {{"resnet18", 32},  {"resnet34", 32},   {"resnet50", 128},
                                                     {"resnet101", 128}, {"resnet152", 128}, {"vit_tiny", 192},
                                                     {"vit_small", 384}, {"vit_base", 768}};
    models::BackboneSpec all;
    all.fields(count_arch);
    CHECK(arch_choices == features.size());  // the test covers every choice
    for (auto& [arch_name, fdim] : features) {
      const std::string& arch = arch_name;  // (a structured binding cannot be captured before C++20: clang)
      CAPTURE(arch);
      Generator g(1);
      int64_t d = 0;
      auto bb = models::make_backbone(spec(arch), 3, 16, g, d);
      CHECK(d == fdim);
      const bool vit = spec(arch).is_vit();
      CHECK_FALSE(keys(*bb).count(vit ? "head.weight" : "fc.weight"));
      Tensor x = randn({2, 16, 16, 3}, g);
      CHECK(bb->forward(x).shape() == Shape{2, fdim});
      auto clf = models::make_backbone(spec(arch), 3, 16, g, d, 5);
      CHECK(keys(*clf).count(vit ? "head.weight" : "fc.weight"));
      CHECK(clf->forward(x).shape() == Shape{2, 5});
    }
    // ResNet depths and stems as torchvision's.
    CHECK(models::resnet_config(spec("resnet101"), 1).depth == 101);
    models::BackboneSpec in = spec("resnet50");
    in.stem = "imagenet";
    CHECK(models::resnet_config(in, 3, 100).stem == models::ResNetStem::ImageNet);
    CHECK(models::resnet_config(in, 3, 100).num_classes == 100);
    in.arch = "resnet99";
    CHECK_THROWS_WITH_AS(models::resnet_config(in, 3), doctest::Contains("found 'resnet99'"), Error);
  }

  TEST_CASE("ViT pooling and position embeddings come from the spec") {
    models::BackboneSpec s = spec("vit_tiny");
    CHECK(models::vit_config(s, 3, 16).pool == models::ViTPool::Cls);
    CHECK_FALSE(models::vit_config(s, 3, 16).sincos_pos_embed);
    s.pool = "mean", s.pos_embed = "sincos";
    auto c = models::vit_config(s, 1, 32, 7);
    CHECK(c.pool == models::ViTPool::Mean);
    CHECK(c.sincos_pos_embed);
    CHECK(c.num_classes == 7);
    CHECK(c.in_channels == 1);
    CHECK(c.image_size == 32);
    CHECK(c.depth == 1);
    Generator g(2);
    int64_t d = 0;
    auto vit = models::make_backbone(s, 3, 16, g, d);
    bool pos_is_param = false;
    for (auto& [k, p] : vit->named_parameters()) pos_is_param |= k == "pos_embed";
    CHECK_FALSE(pos_is_param);  // fixed sin-cos: a buffer
    s.pos_embed = "learned";
    auto learned = models::make_backbone(s, 3, 16, g, d);
    for (auto& [k, p] : learned->named_parameters()) pos_is_param |= k == "pos_embed";
    CHECK(pos_is_param);
  }

  TEST_CASE("ObjectiveSpec's heads reach SimCLR, BYOL and MAE; the factory draws what direct construction draws") {
    const models::BackboneSpec r = spec("resnet18");
    ssl::ObjectiveSpec o;
    o.proj_hidden = 24, o.proj_out = 12, o.proj_layers = 2;
    {
      Generator g(3);
      int64_t d = 0;
      auto bb = models::make_backbone(r, 3, 16, g, d);
      auto obj = ssl::make_objective(o, r, *bb, 3, 16, d, g, 0);
      auto* sim = dynamic_cast<ssl::SimCLR*>(obj.get());
      REQUIRE(sim);
      CHECK(keys(*obj) == std::set<std::string>{"head.projector.0.weight", "head.projector.0.bias",
                                                "head.projector.1.weight", "head.projector.1.bias",
                                                "head.projector.1.running_mean", "head.projector.1.running_var",
                                                "head.projector.1.num_batches_tracked", "head.projector.3.weight"});
      Generator g2(3);
      auto bb2 = models::make_backbone(r, 3, 16, g2, d);
      ssl::SimclrOptions so;
      so.hidden_dim = 24, so.out_dim = 12, so.proj_layers = 2;
      ssl::SimCLR direct(d, g2, so);
      CHECK(same_state(*obj, direct));
      CHECK(same_state(*bb, *bb2));
    }
    {
      o.name = "byol";
      o.pred_layers = 3;  // pred_hidden 0: the projector's hidden width
      CHECK(o.byol().pred_hidden_dim == 24);
      o.pred_hidden = 6;
      CHECK(o.byol().pred_hidden_dim == 6);
      Generator g(4);
      int64_t d = 0;
      auto bb = models::make_backbone(r, 3, 16, g, d);
      auto obj = ssl::make_objective(o, r, *bb, 3, 16, d, g, 0);
      auto* byol = dynamic_cast<ssl::BYOL*>(obj.get());
      REQUIRE(byol);
      CHECK(keys(byol->predictor()).count("6.weight"));  // three Linear layers: 0, 3, 6
      CHECK(byol->predictor().state_dict()[0].second.shape() == Shape{6, 12});
    }
    {
      const models::BackboneSpec v = spec("vit_tiny");
      ssl::ObjectiveSpec m;
      m.name = "mae";
      m.decoder_dim = 16, m.decoder_depth = 1, m.decoder_heads = 4, m.decoder_pos_embed = "learned";
      Generator g(5);
      int64_t d = 0;
      auto bb = models::make_backbone(v, 3, 16, g, d);
      auto obj = ssl::make_objective(m, v, *bb, 3, 16, d, g, 0);
      auto* mae = dynamic_cast<ssl::MaeObjective*>(obj.get());
      REQUIRE(mae);
      CHECK(&obj->head() == static_cast<nn::Module*>(&mae->decoder()));
      bool learned = false;
      for (auto& [k, p] : mae->decoder().named_parameters()) learned |= k == "decoder_pos_embed";
      CHECK(learned);
      CHECK(m.mae().decoder_heads == 4);
      CHECK_FALSE(m.mae().sincos_pos_embed);
      ssl::SslBatch b;
      b.view1 = randn({2, 16, 16, 3}, g);
      b.seed = 9;
      Tensor l1 = obj->loss(*bb, b), l2 = obj->loss(*bb, b);
      CHECK(l1.item() == l2.item());  // the batch seed fixes the mask
    }
  }
}
