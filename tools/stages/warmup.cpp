#include "tools/stages/warmup.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "data/augment.h"
#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/dist/reducer.h"
#include "engine/io/safetensors.h"
#include "engine/nn/state_io.h"
#include "engine/ops.h"
#include "engine/optim/optimizer.h"
#include "models/factory.h"
#include "models/heads.h"
#include "tools/common/files.h"
#include "tools/pretrain/build.h"
#include "tools/stages/classify.h"
#include "tools/stages/progress.h"

namespace bissl::stages {

WarmupResult run_warmup(const Config& cfg_in, const Task& task, const std::string& backbone_path, const std::string& dir) {
  const Config cfg = with_normalization(cfg_in, backbone_path, task.train->c);
  auto t0 = std::chrono::steady_clock::now();
  std::filesystem::create_directories(dir);
  const Device dev = resolve_device(cfg.device, cfg.deterministic);
  const auto& w = cfg.warmup;
  int64_t fdim = 0;
  auto backbone = build_backbone(cfg, task.train->c, backbone_path, cfg.seed, fdim);
  Generator g(cfg.seed * 104729 + 5);
  auto head = std::make_shared<models::LinearHead>(fdim, task.num_classes, g);
  backbone->to(dev);
  head->to(dev);
  backbone->requires_grad_(false);

  int64_t bs = std::min(w.batch_size, task.train->n);
  data::LoaderOptions lo = train_loader_options(bs, cfg.seed * 1000 + 3, cfg.workers, dev);
  lo.cycle = false;
  lo.drop_last = task.train->n % bs == 1;
  lo.views = {downstream_train_view(cfg.task, task.train->c)};
  data::Loader loader(task.train, lo);
  optim::SGD opt(head->parameters(), w.lr, w.momentum, w.weight_decay);
  dist::GradReducer reducer(head->parameters());

  WarmupResult r;
  r.multi_label = task.multi_label;
  const std::string key = str("val_", metric_key(task.multi_label));
  std::ofstream metrics;  // rank 0's
  if (dist::is_root()) metrics.open(dir + "/metrics.jsonl");
  Progress progress("warm-up", w.epochs, "epoch");
  for (int64_t e = 0; e < w.epochs; ++e) {
    loader.start_epoch(e);
    backbone->train();  // frozen, but BN statistics update (the spec)
    head->train();
    double sum = 0;
    int64_t nb = 0;
    data::Batch b;
    while (loader.next(b)) {
      Tensor f;
      {
        NoGradGuard ng;
        f = backbone->forward(b.views[0]);
      }
      double lv = 0;
      Tensor loss = rank_share(downstream_loss(head->forward(f), b), b.size(), lv);
      BISSL_CHECK(std::isfinite(lv), "warm-up: the loss is ", lv, " at epoch ", e + 1, ", batch ", nb + 1,
                  " (lr ", w.lr, "); nothing was saved");
      opt.zero_grad();
      reducer.backward(loss);
      opt.step();
      sum += lv, ++nb;
    }
    r.train_loss.push_back(sum / double(std::max<int64_t>(nb, 1)));
    double v = evaluate(*backbone, *head, *task.val, task.num_classes, cfg.task, dev, cfg.workers,
                        cfg.task.ignore_difficult)
                   .score();
    r.val_score.push_back(v);
    if (dist::is_root()) {
      metrics << nlohmann::json{{"epoch", e + 1}, {"train_loss", r.train_loss.back()}, {key, v}}.dump() << "\n";
      metrics.flush();
      BISSL_CHECK(metrics, "warmup: writing ", dir, "/metrics.jsonl failed (disk full?)");
    }
    progress.update(e + 1, str("loss ", fmt(r.train_loss.back(), 4), " | val ", metric_label(task.multi_label), " ",
                               fmt(100 * v, 3), "%"));
  }
  progress.done();
  nn::save_module(*head, dir + "/head.safetensors", {{"stage", "warmup"}});
  models::save_backbone(*backbone, dir + "/backbone.safetensors", backbone_metadata(cfg));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_json_atomic(dir + "/summary.json",
                    nlohmann::json{{"epochs", w.epochs},
                                   {"final_train_loss", r.train_loss.empty() ? 0.0 : r.train_loss.back()},
                                   {"metric", metric_key(task.multi_label)},
                                   {"final_" + key, r.val_score.empty() ? 0.0 : r.val_score.back()},
                                   {"seconds", r.seconds}});
  return r;
}

}  // namespace bissl::stages
