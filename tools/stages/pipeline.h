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

// The `--quick` preset: the same pipeline scaled down to about a minute on a
// 2-core CPU (smoke tests); applied after the config file (the main job's,
// configs/pipeline_fashion_mnist.toml, when none is given) and before the
// user's --set overrides. quick_preset_help() says what it changes.
void apply_quick_preset(Config& cfg);
const std::string& quick_preset_help();
// The main job's config (configs/pipeline_fashion_mnist.toml, built into the
// executables so --quick works from anywhere).
const std::string& main_job_config_text();

// Runs the pipeline; returns the report text.
std::string run_pipeline(const Config& cfg);

}  // namespace bissl::stages
