#include "models/factory.h"

#include "engine/error.h"
#include "engine/io/safetensors.h"
#include "engine/nn/state_io.h"
#include "models/resnet.h"
#include "models/torch_state.h"

namespace bissl::models {

ViTConfig vit_config(const BackboneSpec& s, int64_t channels, int64_t image_size) {
  ViTConfig v = s.arch == "vit_small" ? ViTConfig::small(image_size, s.patch_size) : ViTConfig::tiny(image_size, s.patch_size);
  v.in_channels = channels;
  v.drop_path_rate = s.drop_path;
  if (s.depth > 0) v.depth = s.depth;
  return v;
}

std::shared_ptr<nn::Layer> make_backbone(const BackboneSpec& s, int64_t channels, int64_t image_size, Generator& g,
                                         int64_t& feature_dim) {
  if (s.arch.rfind("resnet", 0) == 0) {
    ResNetConfig rc;
    rc.depth = s.arch == "resnet18" ? 18 : s.arch == "resnet34" ? 34 : s.arch == "resnet50" ? 50 : -1;
    BISSL_CHECK(rc.depth > 0, "config: model.arch must be resnet18, resnet34, resnet50, vit_tiny or vit_small, found '",
                s.arch, "'");
    rc.stem = s.stem == "imagenet" ? ResNetStem::ImageNet : ResNetStem::Cifar;
    rc.width = s.width;
    rc.in_channels = channels;
    auto m = std::make_shared<ResNet>(rc, g);
    feature_dim = m->feature_dim();
    return m;
  }
  BISSL_CHECK(s.arch == "vit_tiny" || s.arch == "vit_small",
              "config: model.arch must be resnet18, resnet34, resnet50, vit_tiny or vit_small, found '", s.arch, "'");
  auto v = std::make_shared<ViT>(vit_config(s, channels, image_size), g);
  feature_dim = v->config().embed_dim;
  return v;
}

void save_backbone(const nn::Layer& backbone, const std::string& path) {
  if (dynamic_cast<const ResNet*>(&backbone)) {
    save_torch_state(backbone, path);  // PyTorch layout: loads into torchvision
    return;
  }
  nn::save_module(backbone, path);
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
