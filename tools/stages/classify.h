#pragma once
// What the downstream stages share: building the backbone of the pretraining
// config (loading weights), evaluating a backbone + linear head on a labelled
// set, feature extraction and batch-norm recalibration.
#include <map>
#include <memory>
#include <string>

#include "data/image_set.h"
#include "data/loader.h"
#include "engine/nn/module.h"
#include "ssl/objective.h"
#include "tools/stages/config.h"

namespace bissl::stages {

// The backbone described by cfg.pretrain for images with `channels`
// channels; weights from `weights` (a backbone.safetensors written by any
// stage, or torchvision's ResNet weights), or a random init from `seed`
// when `weights` is empty. feature_dim receives its output width.
// drop_path >= 0 overrides the ViT stochastic depth of the config.
std::shared_ptr<nn::Layer> build_backbone(const Config& cfg, int64_t channels, const std::string& weights,
                                          uint64_t seed, int64_t& feature_dim, double drop_path = -1);
// cfg with the views' normalisation resolved for a stage that starts from
// `backbone` (pretrain::normalization_for: [pretrain.data] normalize, the
// statistics a backbone carries); an empty backbone keeps what cfg already
// holds (the pipeline resolves it once from the pretrained backbone).
Config with_normalization(Config cfg, const std::string& backbone, int64_t channels);
// The metadata every backbone a stage writes carries (that normalisation).
std::map<std::string, std::string> backbone_metadata(const Config& cfg);

// The pretext objective cfg.pretrain describes, for `backbone` (heads from `g`).
std::shared_ptr<ssl::Objective> build_objective(const Config& cfg, const nn::Layer& backbone, int64_t channels,
                                                int64_t feature_dim, Generator& g);

// The k of the "top-k" accuracy reported next to top-1: 5 as the spec, or
// 2 when there are 5 classes or fewer (top-5 would be 100 %).
int topk_k(int64_t num_classes);

// How a set is scored. Single-label: top-1 and top-k accuracy. Multi-label:
// the 11-point mAP (BISSL_SPEC.md, VOC07), over the classes with a positive.
struct Accuracy {
  double top1 = 0, topk = 0, loss = 0;  // loss: mean cross-entropy (soft targets for multi-label)
  int k = 5;
  double map = 0;
  bool multi_label = false;
  int64_t n = 0;
  double score() const { return multi_label ? map : top1; }  // what model selection maximises
};
// The name of that score in result files and reports.
const char* metric_key(bool multi_label);    // "top1" | "map"
const char* metric_label(bool multi_label);  // "top-1" | "mAP"

// Eval mode, the evaluation view (resize to size/0.875, centre crop). Leaves
// the modules in eval mode. Multi-label sets: ignore_difficult leaves a
// difficult class out of that class's ranking (the official VOC devkit);
// false counts it as present (the reference).
Accuracy evaluate(nn::Layer& backbone, nn::Layer& head, const data::ImageSet& set, int64_t num_classes,
                  const TaskConfig& t, Device dev, int workers, bool ignore_difficult = false);

// The downstream loss of a batch: cross-entropy against the labels, or
// against the multi-hot targets of a multi-label set (BISSL_SPEC.md: VOC07
// uses cross-entropy with multi-hot soft labels).
Tensor downstream_loss(const Tensor& logits, const data::Batch& b);
// Data parallel (docs/distributed.md): a mean over this rank's `rows`
// weighed into its share of the whole batch's mean (dist::row_share), and
// in `whole` that mean, summed over the ranks. One rank: the loss itself.
// Gradients of the shares summed over the ranks (dist::GradReducer)
// are the whole batch's.
Tensor rank_share(const Tensor& mean_loss, int64_t rows, double& whole);

// Backbone outputs [N, D] (f32, CPU) of `set` (rows `indices`, all when
// empty), eval mode and view.
Tensor extract_features(nn::Layer& backbone, const data::ImageSet& set, const TaskConfig& t, Device dev, int workers,
                        const std::vector<int64_t>& indices = {});

// Re-estimates every BN layer's running statistics from `batches` training
// batches of `set` (the task's train view, no gradients): statistics reset, then a
// cumulative average (PyTorch's momentum=None) over the batches.
void recalibrate_bn(nn::Layer& backbone, const data::ImageSet& set, const TaskConfig& t, int64_t batches,
                    int64_t batch_size, uint64_t seed, Device dev, int workers);

// The device a config's "cpu | cuda | auto" names; on CUDA also sets
// cuda_set_deterministic(deterministic) (pipeline.deterministic).
Device resolve_device(const std::string& device, bool deterministic);

}  // namespace bissl::stages
