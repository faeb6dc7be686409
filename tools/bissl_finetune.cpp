// bissl-finetune: a new random linear head on a backbone, all weights
// trained; random search over lr / weight decay on the validation split (or
// --lr/--wd), then finetune.seeds runs at the chosen values, each keeping its
// best-validation epoch and tested once (top-1 / top-k). Each seed's folder
// is reused when its stamp matches today's settings and backbone.
//   bissl-finetune --config configs/pipeline_fashion_mnist.toml --backbone runs/x/train/bissl/backbone.safetensors --out runs/x/ft_bissl
#include <cmath>

#include "tools/stages/evaluate.h"
#include "tools/stages/finetune.h"
#include "tools/stages/stage_main.h"

using namespace bissl::stages;

int main(int argc, char** argv) {
  std::string backbone, out, arm = "ft";
  double lr = -1, wd = -1;
  return stage_main(
      argc, argv, "bissl-finetune", "fine-tuning with random search and several seeds",
      [&](CLI::App& app, StageFlags&) {
        app.add_option("--backbone", backbone, "backbone.safetensors (empty with --arm random_init)");
        app.add_option("--arm", arm, "ft | linear_probe | zero_head | noisytune | random_init | any name (plain FT)");
        app.add_option("--lr", lr, "use this learning rate (skips the search; needs --wd)");
        app.add_option("--wd", wd, "use this weight decay (skips the search; needs --lr)");
        app.add_option("--out", out, "output directory")->required();
      },
      [&](Config& cfg) {
        auto task = load_task(cfg.task);
        std::fprintf(stderr, "task: %s\n", task.describe().c_str());
        BISSL_CHECK((lr < 0) == (wd < 0), "give both --lr and --wd, or neither");
        BISSL_CHECK(arm == "random_init" || !backbone.empty(), "--backbone is required for arm ", arm);
        auto spec = spec_for_arm(cfg, arm, backbone);
        Hyper h;
        h.lr = lr, h.weight_decay = wd, h.val_score = std::nan(""), h.source = "command line";
        h.multi_label = task.multi_label;
        auto a = finetune_arm(cfg, task, spec, out, lr >= 0 ? &h : nullptr);
        auto s = summarize(a);
        const std::string extra = s.multi_label ? std::string() : bissl::str(" (top-", s.k, " ", 100 * s.topk.mean, " %)");
        std::printf("%s: lr %.4g, wd %.4g: test %s %.2f ± %.2f %% over %zu seeds%s; %s/result.json\n", arm.c_str(),
                    a.hyper.lr, a.hyper.weight_decay, metric_label(s.multi_label), 100 * s.score.mean,
                    100 * s.score.std, a.runs.size(), extra.c_str(), out.c_str());
      });
}
