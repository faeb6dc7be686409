#pragma once
// ResNet-18/34 (BasicBlock) and ResNet-50/101/152 (Bottleneck, stride on the
// 3x3 conv: torchvision's "v1.5"), NHWC activations, OHWI conv weights.
//
// Parameter and buffer names and state_dict order are torchvision's
// (conv1.weight, bn1.running_mean, layer1.0.conv1.weight,
// layer1.0.downsample.0.weight, ..., fc.weight), so with
// models/torch_state.h a torchvision state dict loads unchanged.
//
// Options beyond torchvision: a CIFAR stem (3x3/1 conv1, no max-pool) for
// 32x32 or 28x28 images, a channel `width` multiplier (base 64·width
// channels; width 1 is torchvision), any number of input channels, and no
// classifier (num_classes = 0: forward returns the pooled features).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layers.h"
#include "engine/random.h"
#include "models/torch_state.h"

namespace bissl::models {

enum class ResNetStem {
  ImageNet,  // 7x7/2 conv (padding 3) + BN + ReLU + 3x3/2 max-pool (padding 1)
  Cifar,     // 3x3/1 conv (padding 1) + BN + ReLU, no max-pool
};

struct ResNetConfig {
  int depth = 18;  // 18, 34 (BasicBlock); 50, 101, 152 (Bottleneck)
  ResNetStem stem = ResNetStem::ImageNet;
  double width = 1.0;        // channel multiplier: stage widths 64, 128, 256, 512 times this
  int64_t in_channels = 3;   // 1 for grey images
  int64_t num_classes = 0;   // 0: no fc; forward returns pooled features [N, feature_dim]
  bool zero_init_residual = false;  // last BN of each block starts at gamma 0 (torchvision's flag)
};

// conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the identity or a 1x1
// projection (downsample: Sequential(conv1x1, BN)), then ReLU.
class BasicBlock : public nn::Layer {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride, Generator& g);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "BasicBlock"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::Sequential> downsample;  // null when the shortcut is the identity
};

// conv1x1 -> BN -> ReLU -> conv3x3 (stride) -> BN -> ReLU -> conv1x1 (4x) -> BN,
// plus the shortcut, then ReLU.
class Bottleneck : public nn::Layer {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(int64_t in_planes, int64_t planes, int64_t stride, Generator& g);
  Tensor forward_impl(const Tensor& x) override;
  std::string type_name() const override { return "Bottleneck"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::Sequential> downsample;
};

class ResNet : public nn::Layer {
 public:
  // Init as torchvision: convs kaiming_normal (fan_out, relu), BN weight 1
  // and bias 0, fc PyTorch's Linear default; with zero_init_residual the
  // last BN weight of every block is 0.
  ResNet(const ResNetConfig& cfg, Generator& g);

  // x NHWC [N, H, W, in_channels] -> logits [N, num_classes], or the pooled
  // features [N, feature_dim()] when there is no classifier.
  Tensor forward_impl(const Tensor& x) override;
  // Stem + stages + global average pool: [N, feature_dim()].
  Tensor forward_features(const Tensor& x);
  // Stem + stages, before pooling: [N, h, w, feature_dim()].
  Tensor forward_feature_map(const Tensor& x);

  int64_t feature_dim() const { return feature_dim_; }
  const ResNetConfig& config() const { return cfg_; }
  bool bottleneck() const { return cfg_.depth >= 50; }
  std::string type_name() const override { return "ResNet"; }
  std::string extra_repr() const override;

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<nn::Linear> fc;  // null when num_classes == 0

 private:
  ResNetConfig cfg_;
  int64_t feature_dim_ = 0;
};

// Presets (ImageNet stem unless `stem` says otherwise).
std::shared_ptr<ResNet> resnet18(Generator& g, int64_t num_classes = 0, ResNetStem stem = ResNetStem::ImageNet);
std::shared_ptr<ResNet> resnet34(Generator& g, int64_t num_classes = 0, ResNetStem stem = ResNetStem::ImageNet);
std::shared_ptr<ResNet> resnet50(Generator& g, int64_t num_classes = 0, ResNetStem stem = ResNetStem::ImageNet);

// Blocks per stage for a depth ({2,2,2,2} for 18, ...); throws for others.
std::vector<int64_t> resnet_stage_blocks(int depth);

}  // namespace bissl::models
