#pragma once
// Downstream head warm-up (BISSL_SPEC.md, pipeline step 2): a fresh linear
// head φD trained on the frozen backbone with a constant learning rate; the
// backbone stays in train mode, so its BN running statistics keep updating.
#include <string>
#include <vector>

#include "tools/stages/config.h"
#include "tools/stages/task.h"

namespace bissl::stages {

struct WarmupResult {
  std::vector<double> train_loss, val_score;  // per epoch; score: top-1, or mAP for a multi-label task
  bool multi_label = false;
  double seconds = 0;
};

// Reads the backbone from `backbone_path`; writes dir/head.safetensors,
// dir/backbone.safetensors (the backbone with its updated BN buffers),
// dir/metrics.jsonl and dir/summary.json (validation score under
// "val_top1", or "val_map" for a multi-label task).
WarmupResult run_warmup(const Config& cfg, const Task& task, const std::string& backbone_path, const std::string& dir);

}  // namespace bissl::stages
