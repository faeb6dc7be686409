#pragma once
// The BiSSL stage (BISSL_SPEC.md, pipeline step 3) and the training-stage
// baselines that share its trainer (bilevel/trainer.h): builds θD and θP from
// the pretrained backbone, the pretext objective from the pretraining config
// and weights, φD from the warm-up, the two batch streams, and runs the
// alternations with progress, per-alternation metrics, checkpoints and
// exact resume.
#include <string>
#include <vector>

#include "bilevel/trainer.h"
#include "tools/stages/config.h"
#include "tools/stages/stamp.h"
#include "tools/stages/task.h"

namespace bissl::stages {

struct BisslInputs {
  std::string backbone;   // pretrained backbone.safetensors
  std::string objective;  // pretrained objective.safetensors (pretext heads, BYOL target)
  std::string head;       // warm-up head.safetensors (not needed by pretext_only)
};

struct BisslStageResult {
  std::vector<bilevel::AlternationStats> stats;  // this invocation's alternations (metrics.jsonl has them all)
  double seconds = 0;
  bool resumed = false;
};

// What the stage reads (settings and input digests): its reuse stamp and its
// checkpoints' resume signature. `variant` as in run_bissl.
// `pretext_data`: the content digest of the pretraining images the lower
// stream reads (pretrain::load_data(cfg.pretrain)->content_digest()).
// `stage_seed` (pipeline.stage_seeds): 0 is the stage as it always ran; k > 0
// draws both streams (order, augmentations, MAE's masks, the CG batch) from
// other seeds, so that the stage's own variance can be measured.
Stamp bissl_stamp(const Config& cfg, const Task& task, const BisslInputs& in, const std::string& pretext_data,
                  const std::string& variant = "", bool mix = false, uint64_t stage_seed = 0);

// Runs cfg.bissl.variant (or `variant` when non-empty) into `dir`:
// dir/backbone.safetensors (θP with BN buffers: the stage's output),
// backbone_d.safetensors, head_d.safetensors, objective.safetensors,
// checkpoint.safetensors, metrics.jsonl, summary.json, config.toml.
// `mix_with_downstream`: the lower stream serves the pretext images plus the
// downstream training images (the "mix" baseline). With `resume` and an
// existing dir/checkpoint.safetensors the run continues from it exactly.
// stop_after > 0 stops after that many alternations of this invocation
// (tests of resume).
BisslStageResult run_bissl(const Config& cfg, const Task& task, const BisslInputs& in, const std::string& dir,
                           const std::string& variant = "", bool mix_with_downstream = false, bool resume = true,
                           int64_t stop_after = 0, uint64_t stage_seed = 0);
// The seed of a stream at stage seed k: `base` itself for k = 0.
uint64_t stage_stream_seed(uint64_t base, uint64_t k);

}  // namespace bissl::stages
