// bissl-warmup: a fresh linear head on a frozen backbone (BN statistics still
// updating), constant learning rate — BiSSL's downstream head warm-up.
//   bissl-warmup --config configs/pipeline_fashion_mnist.toml --backbone runs/x/pretrain/backbone.safetensors --out runs/x/warmup
#include "tools/stages/classify.h"
#include "tools/stages/stage_main.h"
#include "tools/stages/task.h"
#include "tools/stages/warmup.h"

using namespace bissl::stages;

int main(int argc, char** argv) {
  std::string backbone, out;
  return stage_main(
      argc, argv, "bissl-warmup", "downstream head warm-up on a frozen backbone",
      [&](CLI::App& app, StageFlags&) {
        app.add_option("--backbone", backbone, "backbone.safetensors (bissl-pretrain's, or torchvision ResNet weights)")
            ->required();
        app.add_option("--out", out, "output directory")->required();
      },
      [&](Config& cfg) {
        auto task = load_task(cfg.task);
        std::fprintf(stderr, "task: %s\n", task.describe().c_str());
        auto r = run_warmup(cfg, task, backbone, out);
        std::printf("warm-up done: final validation %s %.2f%% (%.1f s); head in %s/head.safetensors\n",
                    metric_label(r.multi_label), r.val_score.empty() ? 0.0 : 100 * r.val_score.back(), r.seconds,
                    out.c_str());
      });
}
