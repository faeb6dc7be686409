#include "tools/stages/classify.h"

#include <cmath>

#include "data/augment.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/nn/layers.h"
#include "engine/nn/state_io.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "models/factory.h"
#include "ssl/factory.h"
#include "tools/pretrain/build.h"
#include "tools/stages/task.h"
#include "tools/stats/stats.h"

namespace bissl::stages {

Device resolve_device(const std::string& device, bool deterministic) {
  const Device d = pretrain::device_of(device);
  if (d == Device::CUDA) cuda_set_deterministic(deterministic);
  return d;
}

std::shared_ptr<nn::Layer> build_backbone(const Config& cfg, int64_t channels, const std::string& weights,
                                          uint64_t seed, int64_t& feature_dim, double drop_path) {
  pretrain::Config pc = cfg.pretrain;
  pc.seed = seed;
  if (drop_path >= 0) pc.model.drop_path = drop_path;
  Generator g(seed);
  auto bb = models::make_backbone(pc.model, channels, pc.image_size, g, feature_dim);
  if (!weights.empty()) models::load_backbone(*bb, weights);
  return bb;
}

std::shared_ptr<ssl::Objective> build_objective(const Config& cfg, const nn::Layer& backbone, int64_t channels,
                                                int64_t feature_dim, Generator& g) {
  const auto& pc = cfg.pretrain;
  return ssl::make_objective(pc.method, pc.model, backbone, channels, pc.image_size, feature_dim, g,
                             pretrain::target_seed(pc));
}

Config with_normalization(Config cfg, const std::string& backbone, int64_t channels) {
  if (backbone.empty() && !cfg.pretrain.norm_mean.empty()) return cfg;  // resolved before (the pipeline)
  const data::Normalization n = pretrain::normalization_for(cfg.pretrain, backbone, channels);
  cfg.pretrain.norm_mean = cfg.task.norm_mean = n.mean;
  cfg.pretrain.norm_std = cfg.task.norm_std = n.std;
  return cfg;
}

std::map<std::string, std::string> backbone_metadata(const Config& cfg) {
  return pretrain::normalization_metadata({cfg.pretrain.norm_mean, cfg.pretrain.norm_std});
}

namespace {

// A loader over a set the caller owns: a shared_ptr that does not delete.
std::shared_ptr<const data::ImageSet> borrowed(const data::ImageSet& set) {
  return std::shared_ptr<const data::ImageSet>(&set, [](const data::ImageSet*) {});
}

// The evaluation view, in order, once through `indices` (all when empty).
data::LoaderOptions eval_options(const data::ImageSet& set, const TaskConfig& t, Device dev, int workers,
                                 const std::vector<int64_t>& indices = {}) {
  data::LoaderOptions lo;
  lo.batch_size = 512;
  lo.shuffle = false;
  lo.workers = workers;
  lo.views = {downstream_eval_view(t, set.c)};
  lo.device = dev;
  lo.indices = indices;
  return lo;
}

}  // namespace

int topk_k(int64_t num_classes) { return num_classes > 5 ? 5 : 2; }

const char* metric_key(bool multi_label) { return multi_label ? "map" : "top1"; }
const char* metric_label(bool multi_label) { return multi_label ? "mAP" : "top-1"; }

Tensor rank_share(const Tensor& mean_loss, int64_t rows, double& whole) {
  const double share = dist::row_share(rows);
  Tensor l = share == 1.0 ? mean_loss : mul(mean_loss, share);
  whole = dist::all_reduce_sum(l.item());
  return l;
}

Tensor downstream_loss(const Tensor& logits, const data::Batch& b) {
  return b.targets.defined() ? cross_entropy_soft(logits, b.targets) : cross_entropy(logits, b.labels);
}

Accuracy evaluate(nn::Layer& backbone, nn::Layer& head, const data::ImageSet& set, int64_t num_classes,
                  const TaskConfig& t, Device dev, int workers, bool ignore_difficult) {
  BISSL_CHECK(set.num_classes == num_classes, "evaluate: the set '", set.source, "' has ", set.num_classes,
              " classes, the head ", num_classes);
  data::Loader loader(borrowed(set), eval_options(set, t, dev, workers));
  backbone.eval();
  head.eval();
  NoGradGuard ng;
  std::vector<double> logits;
  std::vector<int64_t> labels, rows;
  double loss_sum = 0;
  data::Batch b;
  while (loader.next(b)) {
    Tensor z = head.forward(backbone.forward(b.views[0]));
    loss_sum += downstream_loss(z, b).item() * double(b.size());
    auto v = z.to(Device::CPU).to_vector();
    logits.insert(logits.end(), v.begin(), v.end());
    auto y = b.labels.to(Device::CPU).to_vector();
    for (double l : y) labels.push_back(int64_t(l));
    rows.insert(rows.end(), b.indices.begin(), b.indices.end());
  }
  Accuracy a;
  a.n = int64_t(labels.size());
  a.k = topk_k(num_classes);
  BISSL_CHECK(a.n > 0, "evaluate: the set '", set.source, "' is empty");
  a.loss = loss_sum / double(a.n);
  if (set.multi_label()) {
    a.multi_label = true;
    std::vector<std::vector<double>> scores(size_t(num_classes), std::vector<double>(size_t(a.n)));
    std::vector<std::vector<int>> pos(size_t(num_classes), std::vector<int>(size_t(a.n)));
    for (int64_t i = 0; i < a.n; ++i) {
      const uint8_t* t = set.target_row(rows[size_t(i)]);
      for (int64_t c = 0; c < num_classes; ++c) {
        scores[size_t(c)][size_t(i)] = logits[size_t(i * num_classes + c)];
        pos[size_t(c)][size_t(i)] =
            t[c] == data::kAbsent ? 0 : (t[c] == data::kDifficult && ignore_difficult ? -1 : 1);
      }
    }
    a.map = evalstats::voc07_map(scores, pos);
    return a;
  }
  a.top1 = evalstats::topk_accuracy(logits, a.n, num_classes, labels, 1);
  a.topk = evalstats::topk_accuracy(logits, a.n, num_classes, labels, a.k);
  return a;
}

Tensor extract_features(nn::Layer& backbone, const data::ImageSet& set, const TaskConfig& t, Device dev, int workers,
                        const std::vector<int64_t>& indices) {
  data::Loader loader(borrowed(set), eval_options(set, t, dev, workers, indices));
  backbone.eval();
  NoGradGuard ng;
  std::vector<Tensor> xs;
  data::Batch b;
  while (loader.next(b)) xs.push_back(backbone.forward(b.views[0]).to(Device::CPU));
  return concat(xs, 0);
}

void recalibrate_bn(nn::Layer& backbone, const data::ImageSet& set, const TaskConfig& t, int64_t batches,
                    int64_t batch_size, uint64_t seed, Device dev, int workers) {
  std::vector<std::pair<nn::BatchNorm*, double>> bns;
  {
    NoGradGuard ng;
    for (auto& [name, m] : backbone.named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm*>(m)) {
        if (!bn->track_running_stats) continue;
        bns.emplace_back(bn, bn->momentum);
        bn->running_mean.copy_(zeros_like(bn->running_mean));
        bn->running_var.copy_(ones_like(bn->running_var));
        bn->num_batches_tracked.copy_(zeros_like(bn->num_batches_tracked));
        bn->momentum = nn::BatchNorm::kCumulative;
      }
  }
  data::LoaderOptions lo = train_loader_options(std::min<int64_t>(batch_size, set.n), seed, workers, dev);
  lo.views = {downstream_train_view(t, set.c)};
  data::Loader loader(borrowed(set), lo);
  backbone.train();
  NoGradGuard ng;
  data::Batch b;
  for (int64_t i = 0; i < batches && loader.next(b); ++i) backbone.forward(b.views[0]);
  for (auto& [bn, m] : bns) bn->momentum = m;
  backbone.eval();
}

}  // namespace bissl::stages
