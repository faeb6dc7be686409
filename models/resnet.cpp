#include "models/resnet.h"

#include <cmath>

#include "engine/nn/init.h"
#include "engine/ops.h"

namespace bissl::models {

namespace {

std::shared_ptr<nn::Conv2d> conv3x3(int64_t in, int64_t out, int64_t stride, Generator& g) {
  return std::make_shared<nn::Conv2d>(in, out, 3, g, stride, 1);
}

std::shared_ptr<nn::Conv2d> conv1x1(int64_t in, int64_t out, int64_t stride, Generator& g) {
  return std::make_shared<nn::Conv2d>(in, out, 1, g, stride, 0);
}

// torchvision's shortcut projection when the shape changes.
std::shared_ptr<nn::Sequential> make_downsample(int64_t in, int64_t out, int64_t stride, Generator& g) {
  if (stride == 1 && in == out) return nullptr;
  auto ds = std::make_shared<nn::Sequential>();
  ds->push_back(conv1x1(in, out, stride, g));
  ds->push_back(std::make_shared<nn::BatchNorm2d>(out));
  return ds;
}

}  // namespace

std::vector<int64_t> resnet_stage_blocks(int depth) {
  switch (depth) {
    case 18: return {2, 2, 2, 2};
    case 34: return {3, 4, 6, 3};
    case 50: return {3, 4, 6, 3};
    case 101: return {3, 4, 23, 3};
    case 152: return {3, 8, 36, 3};
  }
  throw Error(str("ResNet: expected depth 18, 34, 50, 101 or 152, found ", depth));
}

// ---- blocks ----

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride, Generator& g) {
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride, g));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, 1, g));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  downsample = make_downsample(in_planes, planes * kExpansion, stride, g);
  if (downsample) register_module("downsample", downsample);
}

Tensor BasicBlock::forward_impl(const Tensor& x) {
  Tensor h = relu(bn1->forward(conv1->forward(x)));
  h = bn2->forward(conv2->forward(h));
  return relu(add(h, downsample ? downsample->forward(x) : x));
}

Bottleneck::Bottleneck(int64_t in_planes, int64_t planes, int64_t stride, Generator& g) {
  conv1 = register_module("conv1", conv1x1(in_planes, planes, 1, g));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride, g));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * kExpansion, 1, g));
  bn3 = register_module("bn3", std::make_shared<nn::BatchNorm2d>(planes * kExpansion));
  downsample = make_downsample(in_planes, planes * kExpansion, stride, g);
  if (downsample) register_module("downsample", downsample);
}

Tensor Bottleneck::forward_impl(const Tensor& x) {
  Tensor h = relu(bn1->forward(conv1->forward(x)));
  h = relu(bn2->forward(conv2->forward(h)));
  h = bn3->forward(conv3->forward(h));
  return relu(add(h, downsample ? downsample->forward(x) : x));
}

// ---- network ----

ResNet::ResNet(const ResNetConfig& cfg, Generator& g) : cfg_(cfg) {
  auto blocks = resnet_stage_blocks(cfg.depth);
  BISSL_CHECK(cfg.width > 0, "ResNet: expected width > 0, found ", cfg.width);
  BISSL_CHECK(cfg.in_channels > 0, "ResNet: expected in_channels > 0, found ", cfg.in_channels);
  BISSL_CHECK(cfg.num_classes >= 0, "ResNet: expected num_classes >= 0, found ", cfg.num_classes);
  int64_t base = std::llround(64.0 * cfg.width);
  BISSL_CHECK(base >= 1, "ResNet: width ", cfg.width, " leaves fewer than one channel");
  int64_t expansion = bottleneck() ? Bottleneck::kExpansion : BasicBlock::kExpansion;

  if (cfg.stem == ResNetStem::ImageNet)
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(cfg.in_channels, base, 7, g, 2, 3));
  else
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(cfg.in_channels, base, 3, g, 1, 1));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(base));

  int64_t in_planes = base;
  std::shared_ptr<nn::Sequential>* stages[4] = {&layer1, &layer2, &layer3, &layer4};
  for (int s = 0; s < 4; ++s) {
    int64_t planes = base << s;
    auto stage = std::make_shared<nn::Sequential>();
    for (int64_t b = 0; b < blocks[size_t(s)]; ++b) {
      int64_t stride = (b == 0 && s > 0) ? 2 : 1;
      if (bottleneck())
        stage->push_back(std::make_shared<Bottleneck>(in_planes, planes, stride, g));
      else
        stage->push_back(std::make_shared<BasicBlock>(in_planes, planes, stride, g));
      in_planes = planes * expansion;
    }
    *stages[s] = register_module("layer" + std::to_string(s + 1), stage);
  }
  feature_dim_ = in_planes;
  if (cfg.num_classes > 0) fc = register_module("fc", std::make_shared<nn::Linear>(feature_dim_, cfg.num_classes, g));

  // torchvision's init, in its module order (fc keeps the Linear default).
  for (auto& [name, mod] : named_modules()) {
    if (auto* c = dynamic_cast<nn::Conv2d*>(mod))
      nn::init::kaiming_normal_(c->weight, g, 0.0, nn::init::FanMode::FanOut, nn::init::Nonlinearity::Relu);
    else if (auto* bn = dynamic_cast<nn::BatchNorm*>(mod)) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    }
  }
  if (cfg.zero_init_residual)
    for (auto& [name, mod] : named_modules()) {
      if (auto* b = dynamic_cast<Bottleneck*>(mod)) nn::init::zeros_(b->bn3->weight);
      if (auto* b = dynamic_cast<BasicBlock*>(mod)) nn::init::zeros_(b->bn2->weight);
    }
}

Tensor ResNet::forward_feature_map(const Tensor& x) {
  ScopedRange range((range_name() + " features").c_str());
  BISSL_CHECK(x.dim() == 4 && x.shape()[3] == cfg_.in_channels, "ResNet: expected NHWC input [N, H, W, ",
              cfg_.in_channels, "], found shape ", shape_str(x.shape()));
  Tensor h = relu(bn1->forward(conv1->forward(x)));
  if (cfg_.stem == ResNetStem::ImageNet) h = max_pool2d(h, 3, 2, 1);
  h = layer1->forward(h);
  h = layer2->forward(h);
  h = layer3->forward(h);
  return layer4->forward(h);
}

Tensor ResNet::forward_features(const Tensor& x) { return global_avg_pool(forward_feature_map(x)); }

Tensor ResNet::forward_impl(const Tensor& x) {
  Tensor f = forward_features(x);
  return fc ? fc->forward(f) : f;
}

std::string ResNet::extra_repr() const {
  return str("depth=", cfg_.depth, ", stem=", cfg_.stem == ResNetStem::ImageNet ? "imagenet" : "cifar",
             ", width=", cfg_.width, ", in_channels=", cfg_.in_channels, ", num_classes=", cfg_.num_classes);
}

namespace {
std::shared_ptr<ResNet> preset(int depth, Generator& g, int64_t num_classes, ResNetStem stem) {
  ResNetConfig c;
  c.depth = depth;
  c.num_classes = num_classes;
  c.stem = stem;
  return std::make_shared<ResNet>(c, g);
}
}  // namespace

std::shared_ptr<ResNet> resnet18(Generator& g, int64_t n, ResNetStem s) { return preset(18, g, n, s); }
std::shared_ptr<ResNet> resnet34(Generator& g, int64_t n, ResNetStem s) { return preset(34, g, n, s); }
std::shared_ptr<ResNet> resnet50(Generator& g, int64_t n, ResNetStem s) { return preset(50, g, n, s); }

}  // namespace bissl::models
