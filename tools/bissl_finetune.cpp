// bissl-finetune: a new random linear head on a backbone, all weights
// trained; random search over lr / weight decay on the validation split (or
// --lr/--wd), then finetune.seeds runs at the chosen values, each keeping its
// best-validation epoch and tested once (top-1 / top-k).
//   bissl-finetune --config configs/pipeline_fashion_mnist.toml --backbone runs/x/train/bissl/backbone.safetensors --out runs/x/ft_bissl
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>

#include "tools/stages/evaluate.h"
#include "tools/stages/finetune.h"

int main(int argc, char** argv) {
  CLI::App app{"bissl-finetune: fine-tuning with random search and several seeds"};
  std::string config_path, backbone, out, arm = "ft";
  std::vector<std::string> sets;
  double lr = -1, wd = -1;
  app.add_option("--config", config_path, "pipeline TOML config ([finetune], [task], [pretrain.model])");
  app.add_option("--set", sets, "override: section.key=value (repeatable)");
  app.add_option("--backbone", backbone, "backbone.safetensors (empty with --arm random_init)");
  app.add_option("--arm", arm, "ft | linear_probe | zero_head | noisytune | random_init | any name (plain FT)");
  app.add_option("--lr", lr, "use this learning rate (skips the search; needs --wd)");
  app.add_option("--wd", wd, "use this weight decay (skips the search; needs --lr)");
  app.add_option("--out", out, "output directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    auto cfg = bissl::stages::load_config(config_path, sets);
    auto task = bissl::stages::load_task(cfg.task);
    std::fprintf(stderr, "task: %s\n", task.describe().c_str());
    BISSL_CHECK((lr < 0) == (wd < 0), "bissl-finetune: give both --lr and --wd, or neither");
    BISSL_CHECK(arm == "random_init" || !backbone.empty(), "bissl-finetune: --backbone is required for arm ", arm);
    auto spec = bissl::stages::spec_for_arm(cfg, arm, backbone);
    bissl::stages::Hyper h;
    h.lr = lr, h.weight_decay = wd, h.val_score = std::nan(""), h.source = "command line";
    h.multi_label = task.multi_label;
    auto a = bissl::stages::finetune_arm(cfg, task, spec, out, lr >= 0 ? &h : nullptr);
    auto s = bissl::stages::summarize(a);
    const std::string extra = s.multi_label ? std::string() : bissl::str(" (top-", s.k, " ", 100 * s.topk.mean, " %)");
    std::printf("%s: lr %.4g, wd %.4g: test %s %.2f ± %.2f %% over %zu seeds%s; %s/result.json\n", arm.c_str(),
                a.hyper.lr, a.hyper.weight_decay, bissl::stages::metric_label(s.multi_label), 100 * s.score.mean,
                100 * s.score.std, a.runs.size(), extra.c_str(), out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-finetune: %s\n", e.what());
    return 1;
  }
  return 0;
}
