#pragma once
// One model factory: the backbone a spec describes (ResNet-18/34/50/101/152
// with either stem and a width multiplier, ViT-Tiny/Small/Base with patch
// size, depth, drop path, pooling and position embeddings), optionally with
// a classifier, built the same way for pretraining, every stage, the CG
// study, the probe, bissl-inspect and bissl-bench; and a backbone's weights
// to and from safetensors (ResNets in PyTorch's layout, loadable into
// torchvision; ViTs under their own timm-style names).
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "engine/nn/module.h"
#include "engine/random.h"
#include "engine/schema.h"
#include "models/resnet.h"
#include "models/vit.h"

namespace bissl::models {

struct BackboneSpec {  // [model] of a pretraining config
  std::string arch = "resnet18";
  std::string stem = "cifar";
  double width = 1.0;
  int64_t patch_size = 4;
  double drop_path = 0.0;
  int64_t depth = 0;
  std::string pool = "cls";
  std::string pos_embed = "learned";

  template <class V>
  void fields(V& v) {
    v("arch", arch,
      schema::one_of({"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vit_tiny", "vit_small", "vit_base"}),
      "the backbone");
    v("stem", stem, schema::one_of({"cifar", "imagenet"}), "ResNet stem: cifar (3x3, no pooling) or imagenet (7x7 + pool)");
    v("width", width, schema::gt(0), "ResNet channel multiplier");
    v("patch_size", patch_size, schema::ge(1), "ViT patch size in pixels");
    v("drop_path", drop_path, schema::in_open_hi(0, 1), "ViT stochastic depth, rising linearly to this over the blocks");
    v("depth", depth, schema::ge(0), "ViT blocks; 0 = the architecture's (12)");
    v("pool", pool, schema::one_of({"cls", "mean"}), "ViT features: the class token or the mean of the patch tokens");
    v("pos_embed", pos_embed, schema::one_of({"learned", "sincos"}),
      "ViT position embeddings: learned, or fixed 2-D sine-cosine (MAE's)");
  }
  bool is_vit() const { return arch.rfind("vit", 0) == 0; }
};

// The ResNet / ViT configuration a spec names, for images of `channels` x
// image_size², with a classifier of `num_classes` outputs (0: none; the
// backbone returns its pooled features).
ResNetConfig resnet_config(const BackboneSpec& s, int64_t channels, int64_t num_classes = 0);
ViTConfig vit_config(const BackboneSpec& s, int64_t channels, int64_t image_size, int64_t num_classes = 0);

// The backbone (random init from `g`) on the CPU; feature_dim receives the
// size of its pooled output. With num_classes > 0 it ends in a classifier
// under torchvision's / timm's name (`fc` / `head`) and returns logits.
std::shared_ptr<nn::Layer> make_backbone(const BackboneSpec& s, int64_t channels, int64_t image_size, Generator& g,
                                         int64_t& feature_dim, int64_t num_classes = 0);

// A backbone's weights, and back: a ResNet file may be torchvision's (its
// ImageNet classifier is ignored); unknown or missing keys are errors naming
// them and the file.
// `meta`: safetensors metadata entries to store with it (the views' normalisation).
void save_backbone(const nn::Layer& backbone, const std::string& path, const std::map<std::string, std::string>& meta = {});
void load_backbone(nn::Layer& backbone, const std::string& path);

}  // namespace bissl::models
