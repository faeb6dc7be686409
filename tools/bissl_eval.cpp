// bissl-eval: statistics over fine-tuned arms (mean ± std over seeds, exact
// permutation test of each arm against ft), alignment (parameter and feature
// cosine similarity, BN recalibration) and t-SNE plots.
//   bissl-eval --config configs/pipeline_fashion_mnist.toml --finetune-dir runs/x/finetune \
//              --arm ft=runs/x/pretrain/backbone.safetensors --arm bissl=runs/x/train/bissl/backbone.safetensors --out runs/x/eval
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>

#include "tools/stages/evaluate.h"

int main(int argc, char** argv) {
  CLI::App app{"bissl-eval: accuracy statistics, permutation tests, alignment and t-SNE"};
  std::string config_path, ft_dir, out;
  std::vector<std::string> sets, arm_specs;
  app.add_option("--config", config_path, "pipeline TOML config");
  app.add_option("--set", sets, "override: section.key=value (repeatable)");
  app.add_option("--finetune-dir", ft_dir, "folder with <arm>/result.json and <arm>/seed0/backbone.safetensors")
      ->required();
  app.add_option("--arm", arm_specs, "arm=starting backbone (repeatable; 'ft' is the reference)")->required();
  app.add_option("--out", out, "output directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    auto cfg = bissl::stages::load_config(config_path, sets);
    auto task = bissl::stages::load_task(cfg.task);
    std::vector<bissl::stages::ArmResult> arms;
    std::map<std::string, std::string> starts;
    for (auto& s : arm_specs) {
      auto eq = s.find('=');
      std::string arm = s.substr(0, eq);
      starts[arm] = eq == std::string::npos ? "" : s.substr(eq + 1);
      std::string path = ft_dir + "/" + arm + "/result.json";
      std::ifstream in(path);
      BISSL_CHECK(in, "bissl-eval: expected the fine-tuning result ", path, ", found none");
      arms.push_back(bissl::stages::arm_from_json(nlohmann::json::parse(in)));
    }
    auto r = bissl::stages::run_eval(cfg, task, arms, starts, ft_dir, out);
    std::printf("%s\n", r.to_json().dump(1).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-eval: %s\n", e.what());
    return 1;
  }
  return 0;
}
