#pragma once
// bissl-pipeline: every stage from one config, each reading the previous
// stage's files, skipping stages whose outputs exist (so an interrupted run
// continues, and a user can drop in a checkpoint from elsewhere):
//   out/pretrain/       bissl-pretrain (backbone.safetensors, objective.safetensors)
//   out/task/           the split files (train.txt, val.txt, test.txt)
//   out/finetune/search the random search for lr / weight decay (on the pretrained backbone)
//   out/warmup/         the downstream head on the frozen backbone
//   out/train/<arm>/    BiSSL (and the training-stage baselines): θP = backbone.safetensors
//   out/finetune/<arm>/ fine-tuning seeds: seed<k>/{backbone,head}.safetensors, result.json
//   out/eval/           eval.json, t-SNE plots
//   out/report.md       the report (printed at the end), curve plots beside it
#include <string>

#include "tools/stages/config.h"

namespace bissl::stages {

// The `--quick` preset: the same pipeline scaled down to a few minutes on a
// 2-core CPU (smoke tests); applied before the user's --set overrides.
void apply_quick_preset(Config& cfg);

// Runs the pipeline; returns the report text.
std::string run_pipeline(const Config& cfg);

}  // namespace bissl::stages
