// bissl-warmup: a fresh linear head on a frozen backbone (BN statistics still
// updating), constant learning rate — BiSSL's downstream head warm-up.
//   bissl-warmup --config configs/pipeline_fashion_mnist.toml --backbone runs/x/pretrain/backbone.safetensors --out runs/x/warmup
#include <CLI/CLI.hpp>

#include <cstdio>

#include "tools/stages/classify.h"
#include "tools/stages/task.h"
#include "tools/stages/warmup.h"

int main(int argc, char** argv) {
  CLI::App app{"bissl-warmup: downstream head warm-up on a frozen backbone"};
  std::string config_path, backbone, out;
  std::vector<std::string> sets;
  app.add_option("--config", config_path, "pipeline TOML config ([task], [warmup], [pretrain.model])");
  app.add_option("--set", sets, "override: section.key=value (repeatable)");
  app.add_option("--backbone", backbone, "backbone.safetensors (bissl-pretrain's, or torchvision ResNet weights)")
      ->required();
  app.add_option("--out", out, "output directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    auto cfg = bissl::stages::load_config(config_path, sets);
    auto task = bissl::stages::load_task(cfg.task);
    std::fprintf(stderr, "task: %s\n", task.describe().c_str());
    auto r = bissl::stages::run_warmup(cfg, task, backbone, out);
    std::printf("warm-up done: final validation %s %.2f%% (%.1f s); head in %s/head.safetensors\n",
                bissl::stages::metric_label(r.multi_label), r.val_score.empty() ? 0.0 : 100 * r.val_score.back(),
                r.seconds, out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-warmup: %s\n", e.what());
    return 1;
  }
  return 0;
}
