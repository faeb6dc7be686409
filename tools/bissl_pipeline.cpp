// bissl-pipeline: pretraining, head warm-up, BiSSL, fine-tuning and
// evaluation from one config, reusing each stage whose stamp matches today's
// settings and inputs (tools/stages/stamp.h), ending with a Markdown report
// (printed, and saved as <out>/report.md).
//   bissl-pipeline --config configs/pipeline_fashion_mnist.toml
//   bissl-pipeline --quick                              # the main job scaled to about a minute
//   bissl-pipeline --config ... --set bissl.alternations=50 --out runs/x
#include "tools/stages/pipeline.h"
#include "tools/stages/stage_main.h"

using namespace bissl::stages;

int main(int argc, char** argv) {
  std::string out, device;
  bool no_recompute = false;
  return stage_main(
      argc, argv, "bissl-pipeline", "every BiSSL stage from one config, with a report",
      [&](CLI::App& app, StageFlags& f) {
        app.add_option("--out", out, "output directory (overrides pipeline.out)");
        app.add_option("--device", device, "cpu, cuda or auto (overrides pipeline.device)");
        app.add_flag("--quick", f.quick, quick_preset_help());
        app.add_flag("--no-recompute", no_recompute,
                     "never recompute: a stage whose stamp differs from today's settings is an error naming the key");
        f.adjust = [&](Config& cfg) {
          if (!out.empty()) cfg.out = out;
          if (!device.empty()) cfg.device = device;
        };
      },
      [&](Config& cfg) {
        cfg.no_recompute = no_recompute;
        std::printf("%s", run_pipeline(cfg).c_str());
      });
}
