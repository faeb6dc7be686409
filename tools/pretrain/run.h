#pragma once
// One pretraining run: builds data, backbone, objective and optimiser from a
// Config, trains with progress and metrics, checkpoints atomically, resumes
// exactly.
#include <memory>
#include <string>

#include "tools/pretrain/config.h"

namespace bissl::pretrain {

struct Summary {
  int64_t steps = 0;
  double final_loss = 0, images_per_s = 0, seconds = 0;
};

// Trains per `cfg`; with `resume_from` (a checkpoint file) continues that run
// exactly where it stopped (its saved config wins over `cfg`, except the
// output directory and the step budget). `stop_after` > 0 stops early after
// that many steps of this invocation (used to test resume).
Summary run(Config cfg, const std::string& resume_from = "", int64_t stop_after = 0);

}  // namespace bissl::pretrain
