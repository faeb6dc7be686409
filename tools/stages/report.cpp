#include "tools/stages/report.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/backend.h"
#include "engine/numerics.h"
#include "tools/stats/svg.h"
#include "tools/common/files.h"
#include "tools/stages/progress.h"

namespace bissl::stages {

namespace fs = std::filesystem;

namespace {

std::string pct(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", 100 * v);
  return b;
}

std::string pm(const evalstats::MeanStd& m) { return pct(m.mean) + " ± " + pct(m.std); }

std::string pval(double p) {
  char b[32];
  std::snprintf(b, sizeof b, p < 0.001 ? "%.2e" : "%.4f", p);
  return b;
}

std::string seconds_text(double s) {
  char b[32];
  if (s >= 60) std::snprintf(b, sizeof b, "%.0f min %02.0f s", std::floor(s / 60), std::fmod(s, 60));
  else std::snprintf(b, sizeof b, "%.1f s", s);
  return b;
}

evalstats::Series series(const std::string& name, const std::vector<nlohmann::json>& rows, const std::string& x,
                         const std::string& y) {
  evalstats::Series s;
  s.name = name;
  for (auto& r : rows)
    if (r.contains(y) && r[y].is_number() && r.contains(x) && r[x].is_number())
      s.x.push_back(r[x].get<double>()), s.y.push_back(r[y].get<double>());
  return s;
}

}  // namespace

std::string machine_description() {
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  return str(cpu, ", ", std::thread::hardware_concurrency(), " hardware threads; ", backend_summary(), "; numerics ",
             numerics_summary());
}

std::string write_report(const ReportInputs& in, const std::string& path) {
  const Config& cfg = *in.cfg;
  const Task& task = *in.task;
  const std::string dir = fs::path(path).parent_path().string();
  std::ostringstream md;
  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));

  md << "# BiSSL on " << cfg.task.dataset << ": report\n\n";
  md << "- Written " << date << " by `bissl-pipeline`; run time of all stages " << seconds_text(in.total_seconds);
  if (in.invocation_seconds + 1 < in.total_seconds)
    md << " (this invocation " << seconds_text(in.invocation_seconds) << ": the other stages' outputs were reused)";
  md << ".\n";
  md << "- Machine: " << machine_description() << ".\n";
  md << "- Downstream task: " << task.describe() << ".\n";
  md << "- Pretext data: " << cfg.pretrain.dataset << " training images without labels"
     << (cfg.pretrain.limit > 0 ? str(" (first ", cfg.pretrain.limit, ")") : std::string()) << "; backbone "
     << cfg.pretrain.model.arch << " (" << cfg.pretrain.model.stem << " stem, width " << cfg.pretrain.model.width << "), "
     << cfg.pretrain.method.name << ".\n\n";

  const bool ml = task.multi_label;
  const std::string m = metric_label(ml);
  md << "## Results\n\n";
  md << "Test " << (ml ? "11-point mAP (VOC07 style, over the classes with a positive; "
                         + std::string(cfg.task.ignore_difficult ? "difficult labels left out" : "difficult labels count as present")
                         + ")" : std::string("accuracy"))
     << " of the model kept at its best validation epoch, mean ± sample standard deviation over "
     << (cfg.stage_seeds > 1 ? str(cfg.stage_seeds, " stage seeds × ", cfg.finetune.seeds,
                                   " fine-tuning seeds, pooled (the stage seeds' own analysis is below)")
                             : str(cfg.finetune.seeds, " fine-tuning seeds"))
     << "; p-values from the exact two-sample permutation test of each arm's "
     << "per-seed test " << m << " against FT's (all assignments enumerated). Hyper-parameters were chosen on the "
     << "validation split only.\n\n";
  int k = in.eval.arms.empty() ? 5 : in.eval.arms.front().k;
  md << "| arm | lr | weight decay | val " << m << " (%) | test " << m << " (%) | "
     << (ml ? std::string() : str("test top-", k, " (%) | ")) << "Δ " << m << " vs FT | p (two-sided) | p (arm > FT) |\n";
  md << (ml ? "|---|---|---|---|---|---|---|---|\n" : "|---|---|---|---|---|---|---|---|---|\n");
  for (auto& a : in.eval.arms) {
    md << "| " << a.arm << " | " << fmt(a.hyper.lr, 3) << " | " << fmt(a.hyper.weight_decay, 3) << " | "
       << pct(a.val.mean) << " | " << pm(a.score) << " | " << (ml ? std::string() : pm(a.topk) + " | ");
    if (a.compared)
      md << (a.vs_ft.observed >= 0 ? "+" : "") << pct(a.vs_ft.observed) << " | " << pval(a.vs_ft.p_two_sided) << " | "
         << pval(a.vs_ft.p_greater) << " |\n";
    else
      md << "— | — | — |\n";
  }
  for (auto& a : in.eval.arms)
    if (!a.not_compared.empty()) md << "\n" << a.arm << " vs FT: no exact test (" << a.not_compared << ").\n";
  for (auto& c : in.eval.comparisons)
    if (c.tested)
      md << "\n" << c.b << " vs " << c.a << ": Δ test " << m << " " << (c.result.observed >= 0 ? "+" : "")
         << pct(c.result.observed) << " points, p (two-sided) " << pval(c.result.p_two_sided) << ", p (" << c.b
         << " > " << c.a << ") " << pval(c.result.p_greater) << ".\n";
  md << "\nPer-seed test " << m << " (%):\n\n";
  for (auto& a : in.eval.arms) {
    md << "- " << a.arm << ": ";
    for (size_t i = 0; i < a.test_score.size(); ++i) md << (i ? ", " : "") << pct(a.test_score[i]);
    md << "\n";
  }
  if (!in.eval.arms.empty() && !in.eval.arms.front().hyper.source.empty())
    md << "\nHyper-parameters: " << in.eval.arms.front().hyper.source << ".\n";
  for (auto& a : in.eval.arms)
    if (a.compared) {
      int64_t n = a.vs_ft.assignments;
      md << "\nWith " << a.test_score.size() << " + " << a.test_score.size() << " seeds the permutation test has " << n
         << " assignments, so the smallest attainable two-sided p-value is " << pval(2.0 / double(n))
         << (2.0 / double(n) >= 0.05 ? " — no difference can reach p < 0.05 with this few seeds" : "") << ".\n";
      break;
    }

  if (cfg.stage_seeds > 1 && !in.eval.arms.empty()) {
    const int64_t K = cfg.stage_seeds;
    md << "\n## Stage seeds\n\n"
       << "Each training-stage arm ran " << K << " times with other stream and augmentation seeds (stage seeds 0.."
       << K - 1 << "); stage seed k's backbone was fine-tuned with seeds " << "k·" << cfg.finetune.seeds << " … k·"
       << cfg.finetune.seeds << " + " << cfg.finetune.seeds - 1
       << ", and an arm without a training stage got the same blocks of seeds on its one backbone. The unit of the "
       << "tests below is the stage seed: the exact permutation test over the " << K << " + " << K
       << " stage-seed means, and the two-level bootstrap (stage seeds drawn with replacement, then fine-tuning "
       << "seeds within each), whose 95 % interval and P*(Δ ≤ 0) count both levels' variance. Between and within: "
       << "the standard deviations of the stage seed's and the fine-tuning seed's effect (one-way random effects, "
       << "method of moments).\n\n";
    md << "| arm |";
    for (int64_t s = 0; s < K; ++s) md << " stage seed " << s << " (%) |";
    md << " mean of means (%) | spread of means | between | within | Δ vs FT | p (perm., arm > FT) | "
       << "95 % interval (two-level) | P*(Δ ≤ 0) |\n|---|";
    for (int64_t s = 0; s < K + 8; ++s) md << "---|";
    md << "\n";
    for (auto& a : in.eval.arms) {
      if (a.stage_seeds != K) continue;
      md << "| " << a.arm << " |";
      for (auto& g : a.stage.groups) md << " " << pm(g) << " |";
      md << " " << pct(a.stage.of_means.mean) << " | " << pct(a.stage.of_means.std) << " | " << pct(a.stage.between_std)
         << " | " << pct(a.stage.within_std) << " | ";
      if (a.arm != "ft" && a.vs_ft_stage.assignments > 0)
        md << (a.vs_ft_stage.observed >= 0 ? "+" : "") << pct(a.vs_ft_stage.observed) << " | "
           << pval(a.vs_ft_stage.p_greater) << " | [" << pct(a.vs_ft_boot.lo) << ", " << pct(a.vs_ft_boot.hi)
           << "] | " << pval(a.vs_ft_boot.p_not_greater) << " |\n";
      else
        md << "— | — | — | — |\n";
    }
    for (auto& c : in.eval.comparisons)
      if (c.staged)
        md << "\n" << c.b << " vs " << c.a << " with the stage seed as the unit: Δ " << (c.stage.observed >= 0 ? "+" : "")
           << pct(c.stage.observed) << " points, p (permutation, " << c.b << " > " << c.a << ") "
           << pval(c.stage.p_greater) << ", two-level 95 % interval [" << pct(c.boot.lo) << ", " << pct(c.boot.hi)
           << "], P*(Δ ≤ 0) " << pval(c.boot.p_not_greater) << ".\n";
    const int64_t n = evalstats::binomial(2 * K, K);
    evalstats::BootstrapResult b0;
    for (auto& a : in.eval.arms)
      if (a.vs_ft_boot.resamples > 0) b0 = a.vs_ft_boot;
    for (auto& c : in.eval.comparisons)
      if (c.staged) b0 = c.boot;
    md << "\nWith " << K << " + " << K << " stage seeds the permutation test has " << n
       << " assignments: the smallest one-sided p is " << pval(1.0 / double(n)) << ".";
    if (b0.resamples > 0)
      md << " The bootstrap is "
         << (b0.exact ? "exact (every resample enumerated)" : str(b0.resamples, " fixed-seed joint resamples")) << ".";
    md << "\n";
  }

  md << "\n## Stages\n\n| stage | what | time |\n|---|---|---|\n";
  for (auto& t : in.times)
    md << "| " << t.stage << " | " << t.detail << " | "
       << (t.reused ? str("reused, made ", t.made_at.empty() ? std::string("at an unknown time") : t.made_at, " by ",
                          t.code.empty() ? std::string("unknown code") : t.code,
                          t.seconds > 0 ? " (took " + seconds_text(t.seconds) + ")" : std::string())
                    : "computed now: " + seconds_text(t.seconds))
       << " |\n";

  // The implicit gradient's solver, per training stage that ran CG.
  for (auto& [arm, mpath] : in.train_metrics) {
    if (!fs::exists(mpath)) continue;
    auto rows = read_jsonl(mpath);
    std::vector<double> ratio;
    double min_curv = 1e300, max_curv = -1e300;
    int64_t grew = 0, nonfinite = 0;
    for (auto& r : rows)
      if (r.value("hvps", int64_t(0)) > 0) {
        double q = json_number(r, "cg_residual_last") / std::max(json_number(r, "cg_residual_first"), 1e-300);
        if (!std::isfinite(q)) {
          ++nonfinite;
          continue;
        }
        ratio.push_back(q);
        grew += q > 1;
        double lo = json_number(r, "cg_min_curvature"), hi = json_number(r, "cg_max_curvature");
        if (std::isfinite(lo)) min_curv = std::min(min_curv, lo);
        if (std::isfinite(hi)) max_curv = std::max(max_curv, hi);
      }
    if (ratio.empty()) continue;
    std::vector<double> sorted = ratio;
    std::sort(sorted.begin(), sorted.end());
    md << "\n**Conjugate gradient (" << arm << ").** " << cfg.bissl.cg.iterations << " "
       << (cfg.bissl.cg.layerwise ? "layer-wise" : "global") << " iterations per upper step on (I + H/(λ+δ)) u = "
       << "∇θP L_D. The final residual over the initial one (the recurrence's, averaged over an alternation's upper "
       << "steps): median " << fmt(sorted[sorted.size() / 2], 3) << ", range " << fmt(sorted.front(), 3) << " to "
       << fmt(sorted.back(), 3) << "; it grew in " << grew << " of " << ratio.size() << " alternations. Rayleigh "
       << "quotients (d·Ad)/(d·d) along CG's directions ranged from " << fmt(min_curv, 3) << " to " << fmt(max_curv, 3)
       << (min_curv < 0 ? " — negative values prove I + H/(λ+δ) indefinite here" : "")
       << ". Per-alternation values: `cg_residual_first`, `cg_residual_last`, `cg_min_curvature`, "
       << "`cg_max_curvature` in the stage's metrics.jsonl"
       << (nonfinite ? str(" (", nonfinite, " alternations had non-finite CG residuals; their u had NaNs set to 0)") : "")
       << "."
       << (cfg.bissl.cg.layerwise ? " The layer-wise recurrence's residual is not the true one; `bissl-cg-study --config <this "
                                    "config> --run <this run>` measures ‖b − Au‖/‖b‖ and H's extreme eigenvalues "
                                    "(docs/cg-study.md)."
                                  : "")
       << "\n";
  }

  // Curves.
  std::vector<std::pair<std::string, std::string>> plots;
  const std::string vkey = str("val_", metric_key(ml));
  if (!in.warmup_metrics.empty() && fs::exists(in.warmup_metrics)) {
    auto rows = read_jsonl(in.warmup_metrics);
    evalstats::write_lines_svg(dir + "/warmup.svg", {series("validation " + m, rows, "epoch", vkey)},
                               "Head warm-up on the frozen backbone", "epoch", "validation " + m);
    plots.push_back({"Head warm-up: validation " + m + " per epoch", "warmup.svg"});
  }
  for (auto& [arm, mpath] : in.train_metrics) {
    if (!fs::exists(mpath)) continue;
    auto rows = read_jsonl(mpath);
    std::string f1 = "train_" + arm + "_losses.svg", f2 = "train_" + arm + "_val.svg";
    evalstats::write_lines_svg(dir + "/" + f1,
                               {series("lower: L_P(θP)", rows, "alternation", "lower_loss"),
                                series("upper: L_D(θD)", rows, "alternation", "upper_loss_d"),
                                series("upper: L_D(θP)", rows, "alternation", "upper_loss_p")},
                               arm + ": losses per alternation", "alternation", "loss");
    plots.push_back({arm + ": losses per alternation (means over the phase's steps)", f1});
    auto vd = series("θD + φD", rows, "alternation", vkey + "_d"), vp = series("θP + φD", rows, "alternation", vkey + "_p");
    if (!vd.x.empty() || !vp.x.empty()) {
      evalstats::write_lines_svg(dir + "/" + f2, {vd, vp}, arm + ": downstream validation " + m, "alternation",
                                 "validation " + m);
      plots.push_back({arm + ": downstream validation " + m + " during the stage", f2});
    }
    auto dist = series("‖θD − θP‖", rows, "alternation", "distance");
    if (!dist.x.empty() && dist.y.back() > 0) {
      std::string f3 = "train_" + arm + "_distance.svg";
      evalstats::write_lines_svg(dir + "/" + f3, {dist}, arm + ": distance between the backbones", "alternation",
                                 "‖θD − θP‖");
      plots.push_back({arm + ": ‖θD − θP‖ after each alternation", f3});
    }
  }
  {
    std::vector<evalstats::Series> curves;
    for (auto& a : in.arms)
      if (!a.runs.empty()) {
        evalstats::Series s;
        s.name = a.arm + " (seed 0)";
        auto& r = a.runs.front();
        for (size_t e = 0; e < r.val_score.size(); ++e)
          if (!std::isnan(r.val_score[e])) s.x.push_back(double(e + 1)), s.y.push_back(r.val_score[e]);
        curves.push_back(s);
      }
    if (!curves.empty()) {
      evalstats::write_lines_svg(dir + "/finetune_val.svg", curves, "Fine-tuning: validation " + m, "epoch",
                                 "validation " + m);
      plots.push_back({"Fine-tuning: validation " + m + " per epoch (seed 0 of each arm)", "finetune_val.svg"});
    }
  }
  md << "\n## Curves\n\n";
  for (auto& [cap, f] : plots) md << "![" << cap << "](" << f << ")\n\n" << "*" << cap << "*\n\n";

  if (!in.eval.alignment.empty()) {
    md << "## Alignment\n\nHow far fine-tuning moves each arm's backbone (seed 0): cosine similarity of all backbone "
          "parameters before and after fine-tuning (one vector; and the least similar tensor), and the mean cosine "
          "similarity of test-image features of the starting backbone (BN statistics recalibrated on downstream "
          "training batches) and of the fine-tuned one.\n\n";
    md << "| arm | parameter cosine | least similar tensor | feature cosine |\n|---|---|---|---|\n";
    for (auto& al : in.eval.alignment)
      md << "| " << al.arm << " | " << fmt(al.param_cosine, 5) << " | " << fmt(al.param_cosine_min, 4) << " ("
         << al.param_cosine_min_name << ") | " << fmt(al.feature_cosine, 4) << " |\n";
    md << "\n";
  }
  if (!in.eval.plots.empty()) {
    md << "## t-SNE of test features\n\n";
    for (auto& [cap, f] : in.eval.plots)
      md << "![" << cap << "](" << in.eval_dir_rel << "/" << f << ")\n\n*" << cap << "*\n\n";
  }
  if (!in.notes.empty()) {
    md << "## Notes\n\n";
    for (auto& n : in.notes) md << "- " << n << "\n";
    md << "\n";
  }
  md << "## Resolved configuration\n\n```toml\n" << cfg.to_toml() << "```\n";
  std::string text = md.str();
  write_text_atomic(path, text);
  return text;
}

}  // namespace bissl::stages
