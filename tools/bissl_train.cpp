// bissl-train: the BiSSL stage (Algorithm 1) or a training-stage baseline;
// writes θP with its BN buffers as <out>/backbone.safetensors. Resumes from
// <out>/checkpoint.safetensors when it exists and was made with today's
// settings and inputs.
//   bissl-train --config configs/pipeline_fashion_mnist.toml --backbone runs/x/pretrain/backbone.safetensors \
//               --objective runs/x/pretrain/objective.safetensors --head runs/x/warmup/head.safetensors --out runs/x/train/bissl
#include "tools/stages/bissl_stage.h"
#include "tools/stages/stage_main.h"

using namespace bissl::stages;

int main(int argc, char** argv) {
  std::string out, variant;
  BisslInputs in;
  bool mix = false, fresh = false;
  int64_t stop_after = 0;
  return stage_main(
      argc, argv, "bissl-train", "BiSSL (Algorithm 1) and the training-stage baselines",
      [&](CLI::App& app, StageFlags&) {
        app.add_option("--backbone", in.backbone, "pretrained backbone.safetensors")->required();
        app.add_option("--objective", in.objective, "pretrained objective.safetensors (pretext heads)")->required();
        app.add_option("--head", in.head, "warm-up head.safetensors (not needed by pretext_only)");
        app.add_option("--out", out, "output directory")->required();
        app.add_option("--variant", variant, "bissl | ij_discarded | weighted_sum | pretext_only (overrides bissl.variant)");
        app.add_flag("--mix", mix, "lower stream = pretext images + downstream training images (the mix baseline)");
        app.add_flag("--fresh", fresh, "ignore an existing checkpoint in --out");
        app.add_option("--stop-after", stop_after, "stop after this many alternations of this run (tests resume)");
      },
      [&](Config& cfg) {
        auto task = load_task(cfg.task);
        std::fprintf(stderr, "task: %s\n", task.describe().c_str());
        auto r = run_bissl(cfg, task, in, out, variant, mix, !fresh, stop_after);
        std::printf("bissl-train: %zu alternations in %.1f s; θP in %s/backbone.safetensors\n", r.stats.size(), r.seconds,
                    out.c_str());
      });
}
