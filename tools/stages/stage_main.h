#pragma once
// The skeleton every stage executable shares (bissl-warmup, -train,
// -finetune, -eval, -pipeline): the --config / --set / --print-config flags,
// loading and validating the config, and one-line errors ("<name>: ...",
// exit status 1). A stage adds its own flags and its work:
//
//   return stages::stage_main(argc, argv, "bissl-warmup", "downstream head warm-up",
//       [&](CLI::App& app) { app.add_option("--backbone", backbone)->required(); },
//       [&](stages::Config& cfg) { ... });
#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "tools/stages/config.h"

namespace bissl::stages {

struct StageFlags {
  std::string config_path;
  std::vector<std::string> sets;
  bool print_config = false;
  bool quick = false;  // only where the stage offers --quick
  // Flag overrides of config keys (--out, --device), applied after loading,
  // before --print-config and the run.
  std::function<void(Config&)> adjust;
};

inline int stage_main(int argc, char** argv, const std::string& name, const std::string& what,
                      const std::function<void(CLI::App&, StageFlags&)>& add_options,
                      const std::function<void(Config&)>& run) {
  CLI::App app{name + ": " + what};
  StageFlags f;
  app.add_option("--config", f.config_path, "pipeline TOML config (configs/pipeline_*.toml); default: the spec's values");
  app.add_option("--set", f.sets, "override: section.key=value (repeatable; pretrain.<section>.<key> for pretraining)");
  app.add_flag("--print-config", f.print_config,
               "print the resolved config, each key with its doc, range and default, and exit");
  add_options(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    Config cfg = load_config(f.config_path, f.sets, f.quick);
    if (f.adjust) {
      f.adjust(cfg);
      cfg.validate();
    }
    if (f.print_config) {
      std::printf("%s", cfg.to_toml(/*docs=*/true).c_str());
      return 0;
    }
    run(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
    return 1;
  }
  return 0;
}

}  // namespace bissl::stages
