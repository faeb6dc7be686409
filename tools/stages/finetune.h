#pragma once
// Fine-tuning (BISSL_SPEC.md, "Fine-tuning and the baseline protocol"): a new
// linear head on the backbone, all weights trained with SGD + momentum and a
// cosine schedule without warm-up on the train view; validation accuracy
// after every epoch and the model of the best validation epoch kept (the
// score: top-1 accuracy, or mAP for a multi-label task); a random
// search over lr and weight decay (log-uniform) on the validation split, then
// several seeds at the chosen values, each tested once on the test split.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tools/stages/classify.h"
#include "tools/stages/config.h"
#include "tools/stages/stamp.h"
#include "tools/stages/task.h"

namespace bissl::stages {

// One arm's fine-tuning setup.
struct FinetuneSpec {
  std::string arm = "ft";
  std::string backbone;         // backbone weights; empty = random init (random_init arm)
  bool train_backbone = true;   // false: linear probe (backbone frozen, eval mode)
  bool zero_head = false;       // zero-initialised head
  double noisytune = 0;         // NoisyTune λ before training; 0 = off
};
// The spec for an arm of the pipeline, given where its backbone is.
FinetuneSpec spec_for_arm(const Config& cfg, const std::string& arm, const std::string& backbone);

struct FinetuneRun {
  double lr = 0, weight_decay = 0;
  uint64_t seed = 0;
  int64_t epochs = 0;
  bool multi_label = false;                   // scores are mAP, not top-1 (keys "..._map" in the JSON)
  std::vector<double> train_loss, val_score;  // per epoch (val: NaN where not evaluated)
  double best_val = -1;
  int64_t best_epoch = 0;                    // 1-based
  bool diverged = false;                     // a non-finite loss stopped it (search trials only)
  std::string note;
  bool tested = false;
  Accuracy test;
  double seconds = 0;
};
nlohmann::json to_json(const FinetuneRun& r);
FinetuneRun run_from_json(const nlohmann::json& j);

// One fine-tuning run. With `test`, the best-validation model is evaluated on
// the test split; with `save_dir`, it is saved there (backbone.safetensors,
// head.safetensors). allow_divergence: a non-finite loss ends the run with
// diverged = true instead of an error (random-search trials).
FinetuneRun finetune_once(const Config& cfg, const Task& task, const FinetuneSpec& spec, double lr, double wd,
                          uint64_t seed, int64_t epochs, bool test, const std::string& save_dir,
                          bool allow_divergence, const std::string& label);

struct Hyper {
  double lr = 0, weight_decay = 0, val_score = 0;  // the search's best validation score (NaN: not searched)
  bool multi_label = false;
  std::string source;  // "search (N trials)", "config", "shared from ft"
};

// dir/hyper.json: the chosen values and where they came from.
Hyper read_hyper(const std::string& path);
void write_hyper(const std::string& path, const Hyper& h);

// Random search: search_trials draws of (lr, wd), log-uniform in the
// config's ranges (Philox, seed pipeline.seed), each trained for
// search_epochs and scored by its best validation accuracy. Writes one line
// per trial to dir/search.jsonl. With search_trials = 0 the config's lr/wd.
Hyper random_search(const Config& cfg, const Task& task, const FinetuneSpec& spec, const std::string& dir);

struct ArmResult {
  std::string arm;
  bool multi_label = false;
  Hyper hyper;
  std::vector<FinetuneRun> runs;  // one per seed
  // pipeline.stage_seeds: `runs` is this many consecutive blocks of equal
  // size, block k the fine-tuning of stage seed k's backbone.
  int64_t stage_seeds = 1;
  double seconds = 0;
};
// The runs of stage seed k's block.
std::vector<FinetuneRun> stage_block(const ArmResult& a, int64_t k);
// Stage seeds' results as one arm: runs concatenated in order, stage_seeds =
// blocks.size(). Every block must be one arm of one size.
ArmResult pool_stage_seeds(const std::vector<ArmResult>& blocks);
nlohmann::json to_json(const ArmResult& a);
ArmResult arm_from_json(const nlohmann::json& j);

// What a search for `spec` (its backbone, NoisyTune, head, frozen or not) reads (its reuse stamp).
Stamp search_stamp(const Config& cfg, const Task& task, const FinetuneSpec& spec);
// What fine-tuning seed `seed` of `spec` at `h` reads (its reuse stamp).
Stamp seed_stamp(const Config& cfg, const Task& task, const FinetuneSpec& spec, const Hyper& h, uint64_t seed);

// The whole protocol for one arm, into `dir`: search into dir/search (unless
// `shared` gives the values), then finetune.seeds runs (seeds first_seed ..
// first_seed + finetune.seeds − 1), each a unit in dir/seed<seed>/ (stamp.h:
// reused when its stamp matches), then
// dir/result.json. `summary` (optional) receives Reused when every unit was
// reused (with the newest one's stamp), else Fresh.
ArmResult finetune_arm(const Config& cfg, const Task& task, const FinetuneSpec& spec, const std::string& dir,
                       const Hyper* shared = nullptr, UnitStart* summary = nullptr, uint64_t first_seed = 0);

}  // namespace bissl::stages
