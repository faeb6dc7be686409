// bissl-eval: statistics over fine-tuned arms (mean ± std over seeds, exact
// permutation test of each arm against ft), alignment (parameter and feature
// cosine similarity, BN recalibration) and t-SNE plots.
//   bissl-eval --config configs/pipeline_fashion_mnist.toml --finetune-dir runs/x/finetune \
//              --arm ft=runs/x/pretrain/backbone.safetensors --arm bissl=runs/x/train/bissl/backbone.safetensors --out runs/x/eval
#include "tools/stages/evaluate.h"
#include "tools/common/files.h"
#include "tools/stages/stage_main.h"

using namespace bissl::stages;

int main(int argc, char** argv) {
  std::string ft_dir, out;
  std::vector<std::string> arm_specs;
  return stage_main(
      argc, argv, "bissl-eval", "accuracy statistics, permutation tests, alignment and t-SNE",
      [&](CLI::App& app, StageFlags&) {
        app.add_option("--finetune-dir", ft_dir, "folder with <arm>/result.json and <arm>/seed0/backbone.safetensors")
            ->required();
        app.add_option("--arm", arm_specs, "arm=starting backbone (repeatable; 'ft' is the reference)")->required();
        app.add_option("--out", out, "output directory")->required();
      },
      [&](Config& cfg) {
        auto task = load_task(cfg.task);
        std::vector<ArmResult> arms;
        std::map<std::string, std::string> starts;
        for (auto& s : arm_specs) {
          auto eq = s.find('=');
          std::string arm = s.substr(0, eq);
          starts[arm] = eq == std::string::npos ? "" : s.substr(eq + 1);
          arms.push_back(arm_from_json(read_json(ft_dir + "/" + arm + "/result.json")));
        }
        auto r = run_eval(cfg, task, arms, starts, ft_dir, out);
        std::printf("%s\n", r.to_json().dump(1).c_str());
      });
}
