#include "tools/stages/evaluate.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tools/stats/svg.h"
#include "tools/stats/tsne.h"
#include "tools/pretrain/build.h"
#include "tools/stages/classify.h"
#include "tools/common/files.h"

namespace bissl::stages {

namespace fs = std::filesystem;

namespace {

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::max(std::sqrt(aa * bb), 1e-300);
}

// The class a test image is counted under in the feature analysis and
// coloured by in t-SNE: its label, or a multi-label image's first class.
int64_t display_class(const data::ImageSet& set, int64_t i) {
  if (!set.multi_label()) return set.labels[size_t(i)];
  for (int64_t c = 0; c < set.num_classes; ++c)
    if (set.target_row(i)[c] != data::kAbsent) return c;
  return 0;
}

// Test images for the feature analysis: every class equally, at most n.
std::vector<int64_t> stratified_subset(const data::ImageSet& set, int64_t n, int64_t classes) {
  std::vector<int64_t> r;
  if (n <= 0 || n >= set.n) {
    for (int64_t i = 0; i < set.n; ++i) r.push_back(i);
    return r;
  }
  int64_t per = std::max<int64_t>(1, n / classes);
  std::vector<int64_t> taken(size_t(classes), 0);
  for (int64_t i = 0; i < set.n; ++i) {
    int64_t c = display_class(set, i);
    if (taken[size_t(c)] < per) r.push_back(i), ++taken[size_t(c)];
  }
  return r;
}

void tsne_plot(const Config& cfg, const Task& task, const Tensor& feats, const std::vector<int64_t>& idx,
               const std::string& path, const std::string& title) {
  auto v = feats.to_vector();
  std::vector<float> x(v.begin(), v.end());
  evalstats::TsneOptions o;
  o.perplexity = std::min(cfg.eval.tsne_perplexity, double(idx.size() - 1) / 3.0);
  o.seed = cfg.seed;
  auto pts = evalstats::tsne(x, feats.shape()[0], feats.shape()[1], o);
  std::vector<int64_t> labels;
  for (int64_t i : idx) labels.push_back(display_class(*task.test, i));
  evalstats::write_scatter_svg(path, pts, labels, task.class_names, title);
}

}  // namespace

ArmSummary summarize(const ArmResult& a) {
  ArmSummary s;
  s.arm = a.arm;
  s.hyper = a.hyper;
  s.multi_label = a.multi_label;
  for (auto& r : a.runs) {
    BISSL_CHECK(r.tested, "eval: arm ", a.arm, " seed ", r.seed, " has no test result");
    BISSL_CHECK(r.multi_label == a.multi_label, "eval: arm ", a.arm, " seed ", r.seed, " is scored by ",
                metric_label(r.multi_label), ", the arm by ", metric_label(a.multi_label));
    s.test_score.push_back(r.test.score());
    s.test_topk.push_back(r.test.topk);
    s.val_score.push_back(r.best_val);
    s.k = r.test.k;
  }
  BISSL_CHECK(!s.test_score.empty(), "eval: arm ", a.arm, " has no fine-tuning runs");
  s.score = evalstats::mean_std(s.test_score);
  s.topk = evalstats::mean_std(s.test_topk);
  s.val = evalstats::mean_std(s.val_score);
  s.stage_seeds = a.stage_seeds;
  if (a.stage_seeds > 1) {
    for (int64_t k = 0; k < a.stage_seeds; ++k) {
      s.stage_scores.emplace_back();
      for (auto& r : stage_block(a, k)) s.stage_scores.back().push_back(r.test.score());
    }
    s.stage = evalstats::group_summary(s.stage_scores);
  }
  return s;
}

void stage_seed_tests(const ArmSummary& a, const ArmSummary& b, evalstats::PermutationResult& perm,
                      evalstats::BootstrapResult& boot) {
  BISSL_CHECK(a.stage_seeds > 1 && a.stage_seeds == b.stage_seeds, "eval: the stage-seed tests need both arms with "
              "the same number (> 1) of stage seeds, found ", a.arm, ": ", a.stage_seeds, ", ", b.arm, ": ", b.stage_seeds);
  perm = evalstats::group_permutation_test(a.stage_scores, b.stage_scores);
  boot = evalstats::two_level_bootstrap(a.stage_scores, b.stage_scores);
}

namespace {

nlohmann::json perm_json(const evalstats::PermutationResult& p) {
  return {{"difference", p.observed}, {"p_two_sided", p.p_two_sided}, {"p_greater", p.p_greater},
          {"assignments", p.assignments}};
}
nlohmann::json boot_json(const evalstats::BootstrapResult& b) {
  return {{"difference", b.observed},       {"interval_95", {b.lo, b.hi}}, {"p_not_greater", b.p_not_greater},
          {"p_not_less", b.p_not_less},     {"resamples", b.resamples},    {"exact", b.exact}};
}

}  // namespace

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j;
  const std::string m = metric_key(multi_label);
  j["metric"] = m;
  for (auto& a : arms) {
    nlohmann::json e{{"lr", a.hyper.lr},
                     {"weight_decay", a.hyper.weight_decay},
                     {"hyper_source", a.hyper.source},
                     {"test_" + m, a.test_score},
                     {"val_" + m, a.val_score},
                     {"test_" + m + "_mean", a.score.mean},
                     {"test_" + m + "_std", a.score.std},
                     {"val_" + m + "_mean", a.val.mean}};
    if (!multi_label) {
      e["test_topk"] = a.test_topk;
      e["k"] = a.k;
      e["test_topk_mean"] = a.topk.mean;
      e["test_topk_std"] = a.topk.std;
    }
    if (a.compared)
      e["vs_ft"] = perm_json(a.vs_ft);
    else if (!a.not_compared.empty())
      e["vs_ft"] = {{"not_tested", a.not_compared}};
    if (a.stage_seeds > 1) {
      nlohmann::json st;
      st["stage_seeds"] = a.stage_seeds;
      st["test_" + m] = a.stage_scores;
      for (auto& g : a.stage.groups) st["means"].push_back(g.mean), st["stds"].push_back(g.std);
      st["mean_of_means"] = a.stage.of_means.mean;
      st["std_of_means"] = a.stage.of_means.std;
      st["within_std"] = a.stage.within_std;
      st["between_std"] = a.stage.between_std;
      if (a.arm != "ft" && !a.stage_scores.empty() && a.vs_ft_stage.assignments > 0) {
        st["vs_ft_stage_permutation"] = perm_json(a.vs_ft_stage);
        st["vs_ft_two_level_bootstrap"] = boot_json(a.vs_ft_boot);
      }
      e["stage_seeds"] = st;
    }
    j["arms"][a.arm] = e;
  }
  for (auto& c : comparisons) {
    nlohmann::json e{{"a", c.a}, {"b", c.b}};
    if (c.tested) e.update(perm_json(c.result));
    else e["not_tested"] = "too many assignments for the exact test";
    if (c.staged) e["stage_permutation"] = perm_json(c.stage), e["two_level_bootstrap"] = boot_json(c.boot);
    j["comparisons"].push_back(e);
  }
  for (auto& al : alignment)
    j["alignment"][al.arm] = {{"param_cosine", al.param_cosine},
                              {"param_cosine_min", al.param_cosine_min},
                              {"param_cosine_min_tensor", al.param_cosine_min_name},
                              {"feature_cosine", al.feature_cosine}};
  for (auto& [cap, file] : plots) j["plots"].push_back({{"caption", cap}, {"file", file}});
  return j;
}

EvalResult run_eval(const Config& cfg, const Task& task, const std::vector<ArmResult>& arms,
                    const std::map<std::string, std::string>& starts, const std::string& finetune_dir,
                    const std::string& dir) {
  fs::create_directories(dir);
  const Device dev = resolve_device(cfg.device, cfg.deterministic);
  EvalResult res;
  res.multi_label = task.multi_label;
  const ArmSummary* ft = nullptr;
  for (auto& a : arms) {
    BISSL_CHECK(a.multi_label == task.multi_label, "eval: arm ", a.arm, "'s results are ", metric_label(a.multi_label),
                " scores, but the task is scored by ", metric_label(task.multi_label),
                " (were they made with another [task]?)");
    res.arms.push_back(summarize(a));
  }
  for (auto& s : res.arms)
    if (s.arm == "ft") ft = &s;
  if (ft)
    for (auto& s : res.arms)
      if (s.arm != "ft") {
        if (evalstats::permutation_test_fits(int64_t(ft->test_score.size()), int64_t(s.test_score.size()))) {
          s.vs_ft = evalstats::permutation_test(ft->test_score, s.test_score);
          s.compared = true;
        } else {
          s.not_compared = str(ft->test_score.size(), " + ", s.test_score.size(),
                               " runs give more than 2e8 assignments for the exact test");
        }
        if (s.stage_seeds > 1) stage_seed_tests(*ft, s, s.vs_ft_stage, s.vs_ft_boot);
      }
  for (auto& b : res.arms)
    if (b.arm == "bissl")
      for (auto& a : res.arms)
        if (a.arm != "ft" && a.arm != "bissl") {
          Comparison c;
          c.a = a.arm, c.b = b.arm;
          c.tested = evalstats::permutation_test_fits(int64_t(a.test_score.size()), int64_t(b.test_score.size()));
          if (c.tested) c.result = evalstats::permutation_test(a.test_score, b.test_score);
          if (a.stage_seeds > 1) c.staged = true, stage_seed_tests(a, b, c.stage, c.boot);
          res.comparisons.push_back(c);
        }

  std::vector<int64_t> idx = stratified_subset(*task.test, cfg.eval.tsne_points, task.num_classes);
  for (auto& a : arms) {
    std::string tuned_path = finetune_dir + "/" + a.arm + "/seed0/backbone.safetensors";
    if (!fs::exists(tuned_path)) {
      std::fprintf(stderr, "eval: %s has no saved seed-0 model (%s); no alignment analysis for it\n", a.arm.c_str(),
                   tuned_path.c_str());
      continue;
    }
    auto it = starts.find(a.arm);
    std::string start_path = it == starts.end() ? "" : it->second;
    int64_t fdim = 0;
    // Both backbones see the views their training saw (the tuned one carries them).
    const Config acfg = with_normalization(cfg, tuned_path, task.train->c);
    auto tuned = build_backbone(cfg, task.train->c, tuned_path, 0, fdim);
    // The random_init arm starts from the init of its seed-0 run (seed 0).
    auto start = build_backbone(cfg, task.train->c, start_path, cfg.seed * 7919, fdim);
    tuned->to(dev);
    start->to(dev);
    Alignment al;
    al.arm = a.arm;
    {
      NoGradGuard ng;
      std::vector<double> all_s, all_t;
      al.param_cosine_min = 2;
      auto ps = start->named_parameters(), pt = tuned->named_parameters();
      for (size_t i = 0; i < ps.size(); ++i) {
        auto vs = ps[i].second.to(Device::CPU).to_vector(), vt = pt[i].second.to(Device::CPU).to_vector();
        double c = cosine(vs, vt);
        if (c < al.param_cosine_min) al.param_cosine_min = c, al.param_cosine_min_name = ps[i].first;
        all_s.insert(all_s.end(), vs.begin(), vs.end());
        all_t.insert(all_t.end(), vt.begin(), vt.end());
      }
      al.param_cosine = cosine(all_s, all_t);
    }
    recalibrate_bn(*start, *task.train, acfg.task, cfg.eval.recalib_batches,
                   std::min<int64_t>(cfg.finetune.batch_size, task.train->n), cfg.seed + 77, dev, cfg.workers);
    Tensor fs_ = extract_features(*start, *task.test, acfg.task, dev, cfg.workers, idx);
    Tensor ft_ = extract_features(*tuned, *task.test, acfg.task, dev, cfg.workers, idx);
    {
      NoGradGuard ng;
      al.feature_cosine = mean(sum(mul(l2_normalize(fs_, 1), l2_normalize(ft_, 1)), {1})).item();
    }
    res.alignment.push_back(al);
    std::fprintf(stderr, "eval: %s: parameter cosine %.4f (min %.4f at %s), feature cosine %.4f\n", a.arm.c_str(),
                 al.param_cosine, al.param_cosine_min, al.param_cosine_min_name.c_str(), al.feature_cosine);
    if (cfg.eval.tsne_points > 0 && idx.size() >= 10) {
      std::string f1 = "tsne_" + a.arm + "_start.svg", f2 = "tsne_" + a.arm + "_finetuned.svg";
      tsne_plot(cfg, task, fs_, idx, dir + "/" + f1,
                str("t-SNE of test features: ", a.arm, ", before fine-tuning (BN recalibrated)"));
      tsne_plot(cfg, task, ft_, idx, dir + "/" + f2, str("t-SNE of test features: ", a.arm, ", fine-tuned (seed 0)"));
      res.plots.push_back({str(a.arm, ": features before fine-tuning (BN recalibrated)"), f1});
      res.plots.push_back({str(a.arm, ": features after fine-tuning (seed 0)"), f2});
    }
  }
  write_json_atomic(dir + "/eval.json", res.to_json());
  return res;
}

}  // namespace bissl::stages
