// bissl-pipeline: pretraining, head warm-up, BiSSL, fine-tuning and
// evaluation from one config, skipping stages whose outputs exist, ending
// with a Markdown report (printed, and saved as <out>/report.md).
//   bissl-pipeline --config configs/pipeline_fashion_mnist.toml
//   bissl-pipeline --config ... --quick                 # minutes-long smoke run
//   bissl-pipeline --config ... --set bissl.alternations=50 --out runs/x
#include <CLI/CLI.hpp>

#include <cstdio>

#include "tools/stages/pipeline.h"

int main(int argc, char** argv) {
  CLI::App app{"bissl-pipeline: every BiSSL stage from one config, with a report"};
  std::string config_path, out, device;
  std::vector<std::string> sets;
  bool quick = false, print_config = false;
  app.add_option("--config", config_path, "pipeline TOML config (configs/pipeline_*.toml)");
  app.add_option("--set", sets, "override: section.key=value (repeatable; pretrain.<section>.<key> for pretraining)");
  app.add_option("--out", out, "output directory (overrides pipeline.out)");
  app.add_option("--device", device, "cpu, cuda or auto (overrides pipeline.device)");
  app.add_flag("--quick", quick, "a scaled-down smoke run (minutes on a 2-core CPU), into runs/pipeline_quick");
  app.add_flag("--print-config", print_config, "print the resolved config and exit");
  CLI11_PARSE(app, argc, argv);
  try {
    bissl::stages::Config cfg = bissl::stages::load_config(config_path, sets, quick);
    if (!out.empty()) cfg.out = out;
    if (!device.empty()) cfg.device = device;
    if (print_config) {
      std::printf("%s", cfg.to_toml().c_str());
      return 0;
    }
    std::string report = bissl::stages::run_pipeline(cfg);
    std::printf("%s", report.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bissl-pipeline: %s\n", e.what());
    return 1;
  }
  return 0;
}
