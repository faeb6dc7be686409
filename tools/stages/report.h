#pragma once
// The pipeline's Markdown report: task, machine, stage times, the FT vs
// BiSSL+FT table with permutation-test p-values, training curves and t-SNE
// plots (SVG files beside the report), alignment, and the resolved config.
#include <string>
#include <utility>
#include <vector>

#include "tools/stages/config.h"
#include "tools/stages/evaluate.h"
#include "tools/stages/task.h"

namespace bissl::stages {

struct StageTime {
  std::string stage, detail;
  double seconds = 0;
  bool reused = false;       // its stamp matched: outputs loaded, not rerun
  std::string made_at, code; // when reused: when and by which code version it was made
};

struct ReportInputs {
  const Config* cfg = nullptr;
  const Task* task = nullptr;
  std::vector<StageTime> times;
  EvalResult eval;
  std::vector<ArmResult> arms;
  // Training-stage runs with their metrics.jsonl (arm, path).
  std::vector<std::pair<std::string, std::string>> train_metrics;
  std::string warmup_metrics;  // warm-up metrics.jsonl ("" = none)
  std::string eval_dir_rel;    // the eval directory relative to the report
  double total_seconds = 0;       // all stages, from when each one ran
  double invocation_seconds = 0;  // this invocation (less when stages were reused)
  std::vector<std::string> notes;
};

// One line describing this machine: CPU model and cores, GPU and backend.
std::string machine_description();

// Writes `path` (Markdown) and the curve plots beside it; returns the text.
std::string write_report(const ReportInputs& in, const std::string& path);

}  // namespace bissl::stages
