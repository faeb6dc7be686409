#pragma once
// The skeleton every executable of tools/ shares: the --config / --set /
// --print-config flags, loading and validating its config, and one-line
// errors ("<name>: ...", exit status 1). A tool adds its own flags and work:
//
//   return tool_main<pretrain::Config>(argc, argv, "bissl-pretrain", "self-supervised pretraining",
//       pretrain::load_config,
//       [&](CLI::App& app, ToolFlags<pretrain::Config>&) { app.add_option("--resume", resume, "..."); },
//       [&](pretrain::Config& cfg) { ... });
//
// `load(path, sets, quick)` builds the config: defaults, the TOML file, the
// --quick preset where a tool offers one, the --set overrides, validated.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/dist/comm.h"
#include "engine/threads.h"
#include "engine/numerics.h"

namespace bissl {

template <class Config>
struct ToolFlags {
  std::string config_path;
  std::vector<std::string> sets;
  bool print_config = false;
  bool quick = false;  // only where the tool offers --quick
  // Flag overrides of config keys (--out, --device), applied after loading,
  // before --print-config and the run.
  std::function<void(Config&)> adjust;
  // The tool runs on several ranks (mpirun -np N, docs/distributed.md);
  // else a job of more than one rank is refused.
  bool several_ranks = false;
};

// A config with a `numerics` key ("default" | "portable") sets the process's
// mode before the run (engine/numerics.h; portable may re-execute).
template <class Config, class = void>
struct HasNumerics : std::false_type {};
template <class Config>
struct HasNumerics<Config, std::void_t<decltype(std::declval<Config&>().numerics)>> : std::true_type {};

template <class Config>
int tool_main(int argc, char** argv, const std::string& name, const std::string& what,
              const std::function<Config(const std::string&, const std::vector<std::string>&, bool)>& load,
              const std::function<void(CLI::App&, ToolFlags<Config>&)>& add_options,
              const std::function<void(Config&)>& run) {
  CLI::App app{name + ": " + what};
  ToolFlags<Config> f;
  app.add_option("--config", f.config_path, "TOML config (configs/); default: the spec's values");
  app.add_option("--set", f.sets, "override: section.key=value (repeatable)");
  app.add_flag("--print-config", f.print_config,
               "print the resolved config, each key with its doc, range and default, and exit");
  add_options(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::unique_ptr<dist::Session> session;  // ends MPI on return, after any error is printed
  try {
    if (!f.print_config) {
      // The thread count and the wait policy before the config is read: the
      // policy may re-start the process, which then reads it (a config from
      // a pipe, too) only once. dist::Session does not repeat them.
      apply_thread_budget();
      choose_wait_policy(argv, dist::launched_by_mpi());
    }
    Config cfg = load(f.config_path, f.sets, f.quick);
    if (f.adjust) {
      f.adjust(cfg);
      cfg.validate();
    }
    if (f.print_config) {
      std::printf("%s", cfg.to_toml(/*docs=*/true).c_str());
      return 0;
    }
    if constexpr (HasNumerics<Config>::value) enter_numerics(parse_numerics(cfg.numerics), argv);  // may re-execute
    session = std::make_unique<dist::Session>(argc, argv);  // joins the job when mpirun started us
    BISSL_CHECK(f.several_ranks || dist::size() == 1, "started as ", dist::size(), " ranks, but ", name,
                " runs on one rank for now (docs/distributed.md says what runs on several); start it without mpirun "
                "or with -np 1");
    dist::quiet_other_ranks();  // progress and files are rank 0's; errors still print
    run(cfg);
  } catch (const std::exception& e) {
    dist::print_error(name + ": " + e.what());
    if (dist::size() > 1) dist::abort_job(1);  // the other ranks may be waiting in a collective
    return 1;
  }
  return 0;
}

}  // namespace bissl
