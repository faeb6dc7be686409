#pragma once
// Evaluation (BISSL_SPEC.md, pipeline step 5) over the fine-tuned arms:
// test top-1 / top-k (or mAP for a multi-label task) mean ± std over seeds,
// the exact two-sample permutation test of every arm against "ft", and the
// alignment analysis — cosine
// similarity of the backbone's parameters before and after fine-tuning and
// of its features (the starting backbone's BN recalibrated on downstream
// batches), and t-SNE plots of test features.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/stats/stats.h"
#include "tools/stages/finetune.h"

namespace bissl::stages {

// The score of a task: top-1 accuracy, or mAP when multi_label; top-k is
// for single-label tasks only.
struct ArmSummary {
  std::string arm;
  Hyper hyper;
  bool multi_label = false;
  int k = 5;
  std::vector<double> test_score, test_topk, val_score;  // per seed
  evalstats::MeanStd score, topk, val;
  bool compared = false;                 // a permutation test against ft was run
  evalstats::PermutationResult vs_ft;    // observed = mean(arm) − mean(ft), test score
  std::string not_compared;              // why there is no test against ft ("" when there is, or no ft)
  // pipeline.stage_seeds > 1: the test scores in blocks, one per stage seed,
  // and the tests whose unit is the stage seed (against ft).
  int64_t stage_seeds = 1;
  evalstats::Groups stage_scores;
  evalstats::GroupSummary stage;
  evalstats::PermutationResult vs_ft_stage;  // over the stage-seed means
  evalstats::BootstrapResult vs_ft_boot;     // two-level: stage seeds, then fine-tuning seeds
};

// A permutation test between two arms other than the FT reference.
struct Comparison {
  std::string a, b;                   // observed = mean(b) − mean(a), test score
  evalstats::PermutationResult result;
  bool tested = true;                 // false: too many assignments for the exact test (`result` unset)
  bool staged = false;                // stage seeds: the tests below were run
  evalstats::PermutationResult stage;
  evalstats::BootstrapResult boot;
};

struct Alignment {
  std::string arm;
  double param_cosine = 0;    // all backbone parameters as one vector: start vs fine-tuned (seed 0)
  double param_cosine_min = 0;  // the least aligned parameter tensor
  std::string param_cosine_min_name;
  double feature_cosine = 0;  // mean over test images: start (BN recalibrated) vs fine-tuned features
};

struct EvalResult {
  std::vector<ArmSummary> arms;
  std::vector<Comparison> comparisons;  // bissl against every arm but ft
  std::vector<Alignment> alignment;
  std::vector<std::pair<std::string, std::string>> plots;  // (caption, file name relative to the eval dir)
  bool multi_label = false;
  nlohmann::json to_json() const;
};

ArmSummary summarize(const ArmResult& a);
// The stage-seed tests of b against a (both with the same stage_seeds > 1).
void stage_seed_tests(const ArmSummary& a, const ArmSummary& b, evalstats::PermutationResult& perm,
                      evalstats::BootstrapResult& boot);

// arms: the fine-tuned arms (from finetune_arm or result.json files);
// starts: arm -> the backbone its fine-tuning started from ("" = random);
// finetune_dir: where <arm>/seed0/backbone.safetensors lie. Writes
// dir/eval.json and the plots.
EvalResult run_eval(const Config& cfg, const Task& task, const std::vector<ArmResult>& arms,
                    const std::map<std::string, std::string>& starts, const std::string& finetune_dir,
                    const std::string& dir);

}  // namespace bissl::stages
