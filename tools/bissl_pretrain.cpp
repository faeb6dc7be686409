// bissl-pretrain: SimCLR, BYOL or MAE pretraining from a TOML config plus
// flag overrides. Prints the resolved config, shows progress (loss, images/s,
// ETA), writes metrics.jsonl, checkpoints atomically, resumes exactly.
//   bissl-pretrain --config configs/pretrain_fashion_mnist.toml
//   bissl-pretrain --config ... --set train.lr=0.5 --set method.name=byol --out runs/x
//   bissl-pretrain --resume runs/x/checkpoint.safetensors --out runs/x
#include <CLI/CLI.hpp>

#include <cstdio>

#include "engine/backend.h"
#include "tools/pretrain/run.h"

int main(int argc, char** argv) {
  CLI::App app{"bissl-pretrain: self-supervised pretraining (SimCLR, BYOL, MAE)"};
  std::string config_path, out, device, resume;
  std::vector<std::string> sets;
  int64_t steps = 0, stop_after = 0;
  app.add_option("--config", config_path, "TOML config (see configs/)");
  app.add_option("--set", sets, "override: section.key=value (repeatable)");
  app.add_option("--out", out, "output directory (overrides output.dir)");
  app.add_option("--steps", steps, "total optimiser steps (overrides train.steps)");
  app.add_option("--device", device, "cpu, cuda or auto (overrides train.device)");
  app.add_option("--resume", resume, "continue from this checkpoint (its config is used)");
  app.add_option("--stop-after", stop_after, "stop after this many steps of this run (tests resume)");
  bool deterministic = false;
  app.add_flag("--deterministic", deterministic,
               "on CUDA: bit-reproducible steps (cuDNN's deterministic algorithms, no timed convolution choice)");
  CLI11_PARSE(app, argc, argv);
  try {
    bissl::pretrain::Config cfg;
    if (!config_path.empty()) cfg.load_toml(config_path);
    for (auto& s : sets) cfg.set(s);
    if (!out.empty()) cfg.out = out;
    if (steps > 0) cfg.steps = steps;
    if (!device.empty()) cfg.device = device;
    if (deterministic) bissl::cuda_set_deterministic(true);
    auto s = bissl::pretrain::run(cfg, resume, stop_after);
    std::printf("done: %lld steps, final loss %.4f, %.1f images/s, %.1f s\n", (long long)s.steps, s.final_loss,
                s.images_per_s, s.seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-pretrain: %s\n", e.what());
    return 1;
  }
  return 0;
}
