#include "models/factory.h"

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/nn/state_io.h"
#include "models/torch_state.h"

namespace bissl::models {

namespace {

[[noreturn]] void unknown_arch(const BackboneSpec& s) {
  throw Error(str("config: model.arch must be resnet18, resnet34, resnet50, resnet101, resnet152, vit_tiny, vit_small "
                  "or vit_base, found '", s.arch, "'"));
}

}  // namespace

ResNetConfig resnet_config(const BackboneSpec& s, int64_t channels, int64_t num_classes) {
  ResNetConfig rc;
  rc.depth = s.arch == "resnet18"    ? 18
             : s.arch == "resnet34"  ? 34
             : s.arch == "resnet50"  ? 50
             : s.arch == "resnet101" ? 101
             : s.arch == "resnet152" ? 152
                                     : -1;
  if (rc.depth < 0) unknown_arch(s);
  BISSL_CHECK(s.stem == "imagenet" || s.stem == "cifar", "config: model.stem must be cifar or imagenet, found '", s.stem,
              "'");
  rc.stem = s.stem == "imagenet" ? ResNetStem::ImageNet : ResNetStem::Cifar;
  rc.width = s.width;
  rc.in_channels = channels;
  rc.num_classes = num_classes;
  return rc;
}

ViTConfig vit_config(const BackboneSpec& s, int64_t channels, int64_t image_size, int64_t num_classes) {
  ViTConfig v;
  if (s.arch == "vit_tiny") v = ViTConfig::tiny(image_size, s.patch_size);
  else if (s.arch == "vit_small") v = ViTConfig::small(image_size, s.patch_size);
  else if (s.arch == "vit_base") v = ViTConfig::base(image_size, s.patch_size);
  else unknown_arch(s);
  BISSL_CHECK(s.pool == "cls" || s.pool == "mean", "config: model.pool must be cls or mean, found '", s.pool, "'");
  BISSL_CHECK(s.pos_embed == "learned" || s.pos_embed == "sincos",
              "config: model.pos_embed must be learned or sincos, found '", s.pos_embed, "'");
  v.in_channels = channels;
  v.drop_path_rate = s.drop_path;
  if (s.depth > 0) v.depth = s.depth;
  v.pool = s.pool == "mean" ? ViTPool::Mean : ViTPool::Cls;
  v.sincos_pos_embed = s.pos_embed == "sincos";
  v.num_classes = num_classes;
  return v;
}

std::shared_ptr<nn::Layer> make_backbone(const BackboneSpec& s, int64_t channels, int64_t image_size, Generator& g,
                                         int64_t& feature_dim, int64_t num_classes) {
  if (!s.is_vit()) {
    auto m = std::make_shared<ResNet>(resnet_config(s, channels, num_classes), g);
    feature_dim = m->feature_dim();
    return m;
  }
  auto v = std::make_shared<ViT>(vit_config(s, channels, image_size, num_classes), g);
  feature_dim = v->feature_dim();
  return v;
}

void save_backbone(const nn::Layer& backbone, const std::string& path, const std::map<std::string, std::string>& meta) {
  if (dynamic_cast<const ResNet*>(&backbone)) {
    save_torch_state(backbone, path, meta);  // PyTorch layout: loads into torchvision
    return;
  }
  nn::save_module(backbone, path, meta);
}

void load_backbone(nn::Layer& backbone, const std::string& path) {
  io::SafetensorsFile f = io::load_safetensors(path);
  if (auto* r = dynamic_cast<ResNet*>(&backbone)) {
    io::NamedTensors sd;
    for (auto& kv : f.tensors)  // a torchvision checkpoint carries its ImageNet classifier: not part of a backbone
      if (r->fc || kv.first.rfind("fc.", 0) != 0) sd.push_back(kv);
    try {
      load_torch_state_dict(backbone, sd);
    } catch (const Error& e) {
      throw Error(str("loading backbone '", path, "': ", e.what()));
    }
    return;
  }
  nn::load_module(backbone, f, "backbone");
}

}  // namespace bissl::models
