// bissl-pretrain: SimCLR, BYOL or MAE pretraining from a TOML config plus
// flag overrides. Prints the resolved config, shows progress (loss, images/s,
// ETA), writes metrics.jsonl, checkpoints atomically, resumes exactly.
//   bissl-pretrain --config configs/pretrain_fashion_mnist.toml
//   bissl-pretrain --config ... --set train.lr=0.5 --set method.name=byol --out runs/x
//   bissl-pretrain --resume runs/x/checkpoint.safetensors --out runs/x
#include "engine/backend.h"
#include "tools/common/tool_main.h"
#include "tools/pretrain/run.h"

using bissl::pretrain::Config;

int main(int argc, char** argv) {
  std::string out, device, resume;
  int64_t steps = 0, stop_after = 0;
  bool deterministic = false;
  return bissl::tool_main<Config>(
      argc, argv, "bissl-pretrain", "self-supervised pretraining (SimCLR, BYOL, MAE)", bissl::pretrain::load_config,
      [&](CLI::App& app, bissl::ToolFlags<Config>& f) {
        app.add_option("--out", out, "output directory (overrides output.dir)");
        app.add_option("--steps", steps, "total optimiser steps (overrides train.steps)");
        app.add_option("--device", device, "cpu, cuda or auto (overrides train.device)");
        app.add_option("--resume", resume, "continue from this checkpoint (its config is used)");
        app.add_option("--stop-after", stop_after, "stop after this many steps of this run (tests resume)");
        app.add_flag("--deterministic", deterministic,
                     "on CUDA: bit-reproducible steps (cuDNN's deterministic algorithms, no timed convolution choice)");
        f.several_ranks = true;  // data parallel (docs/distributed.md)
        f.adjust = [&](Config& cfg) {
          if (!out.empty()) cfg.out = out;
          if (steps > 0) cfg.steps = steps;
          if (!device.empty()) cfg.device = device;
        };
      },
      [&](Config& cfg) {
        if (deterministic) bissl::cuda_set_deterministic(true);
        auto s = bissl::pretrain::run(cfg, resume, stop_after);
        if (bissl::dist::is_root())
          std::printf("done: %lld steps, final loss %.4f, %.1f images/s, %.1f s\n", (long long)s.steps, s.final_loss,
                    s.images_per_s, s.seconds);
      });
}
