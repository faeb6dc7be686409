#pragma once
// tool_main (tools/common/tool_main.h) for the executables over the pipeline
// config (bissl-warmup, -train, -finetune, -eval, -pipeline, -cg-study).
#include "tools/common/tool_main.h"
#include "tools/stages/config.h"

namespace bissl::stages {

using StageFlags = ToolFlags<Config>;

// The stages run on several ranks (mpirun -np N, docs/distributed.md):
// data-parallel training, rank 0's files; several_ranks = false refuses.
inline int stage_main(int argc, char** argv, const std::string& name, const std::string& what,
                      const std::function<void(CLI::App&, StageFlags&)>& add_options,
                      const std::function<void(Config&)>& run, bool several_ranks = true) {
  return tool_main<Config>(
      argc, argv, name, what, load_config,
      [&](CLI::App& app, StageFlags& f) {
        f.several_ranks = several_ranks;
        add_options(app, f);
      },
      run);
}

}  // namespace bissl::stages
