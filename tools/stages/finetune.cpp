#include "tools/stages/finetune.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "bilevel/trainer.h"
#include "data/augment.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/dist/reducer.h"
#include "engine/io/safetensors.h"
#include "engine/nn/state_io.h"
#include "engine/ops.h"
#include "engine/optim/optimizer.h"
#include "engine/optim/schedule.h"
#include "models/factory.h"
#include "models/heads.h"
#include "models/vit.h"
#include "tools/common/files.h"
#include "tools/pretrain/build.h"
#include "tools/stages/progress.h"

namespace bissl::stages {

namespace fs = std::filesystem;

namespace {

nn::StateDict snapshot(const nn::Module& m) {
  nn::StateDict s;
  for (auto& [k, t] : m.state_dict()) s.emplace_back(k, t.clone());
  return s;
}

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

nlohmann::json number_or_null(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

// Result files name their scores after the metric: "val_top1" or "val_map".
bool multi_label_of(const nlohmann::json& j) { return j.value("metric", std::string("top1")) == "map"; }
std::string key(const char* prefix, bool multi_label) { return std::string(prefix) + metric_key(multi_label); }

}  // namespace

FinetuneSpec spec_for_arm(const Config& cfg, const std::string& arm, const std::string& backbone) {
  FinetuneSpec s;
  s.arm = arm;
  s.backbone = arm == "random_init" ? "" : backbone;
  s.train_backbone = arm != "linear_probe";
  s.zero_head = arm == "zero_head";
  s.noisytune = arm == "noisytune" ? cfg.finetune.noisytune : 0.0;
  return s;
}

nlohmann::json to_json(const FinetuneRun& r) {
  const bool ml = r.multi_label;
  nlohmann::json j{{"metric", metric_key(ml)},
                   {"lr", r.lr},
                   {"weight_decay", r.weight_decay},
                   {"seed", r.seed},
                   {"epochs", r.epochs},
                   {"train_loss", r.train_loss},
                   {key("best_val_", ml), r.best_val},
                   {"best_epoch", r.best_epoch},
                   {"diverged", r.diverged},
                   {"note", r.note},
                   {"seconds", r.seconds}};
  nlohmann::json vals = nlohmann::json::array();
  for (double v : r.val_score) vals.push_back(number_or_null(v));
  j[key("val_", ml)] = vals;
  if (r.tested && ml)
    j["test"] = {{"map", r.test.map}, {"loss", r.test.loss}, {"n", r.test.n}};
  else if (r.tested)
    j["test"] = {{"top1", r.test.top1}, {"topk", r.test.topk}, {"k", r.test.k}, {"loss", r.test.loss}, {"n", r.test.n}};
  return j;
}

FinetuneRun run_from_json(const nlohmann::json& j) {
  FinetuneRun r;
  const bool ml = r.multi_label = multi_label_of(j);
  r.lr = j.at("lr");
  r.weight_decay = j.at("weight_decay");
  r.seed = j.at("seed");
  r.epochs = j.at("epochs");
  r.train_loss = j.at("train_loss").get<std::vector<double>>();
  for (auto& v : j.at(key("val_", ml))) r.val_score.push_back(v.is_null() ? nan() : v.get<double>());
  r.best_val = j.at(key("best_val_", ml));
  r.best_epoch = j.at("best_epoch");
  r.diverged = j.value("diverged", false);
  r.note = j.value("note", "");
  r.seconds = j.value("seconds", 0.0);
  if (j.contains("test")) {
    auto& t = j["test"];
    r.tested = true;
    r.test.multi_label = ml;
    if (ml) {
      r.test.map = t.at("map");
    } else {
      r.test.top1 = t.at("top1");
      r.test.topk = t.at("topk");
      r.test.k = t.at("k");
    }
    r.test.loss = t.value("loss", 0.0);
    r.test.n = t.value("n", 0);
  }
  return r;
}

FinetuneRun finetune_once(const Config& cfg_in, const Task& task, const FinetuneSpec& spec, double lr, double wd,
                          uint64_t seed, int64_t epochs, bool test, const std::string& save_dir,
                          bool allow_divergence, const std::string& label) {
  const Config cfg = with_normalization(cfg_in, spec.backbone, task.train->c);
  auto t0 = std::chrono::steady_clock::now();
  const Device dev = resolve_device(cfg.device, cfg.deterministic);
  const auto& fc = cfg.finetune;
  FinetuneRun r;
  r.lr = lr, r.weight_decay = wd, r.seed = seed, r.epochs = epochs;
  r.multi_label = task.multi_label;

  int64_t fdim = 0;
  auto backbone = build_backbone(cfg, task.train->c, spec.backbone, cfg.seed * 7919 + seed, fdim, fc.drop_path);
  Generator g(cfg.seed * 104729 + seed + 17);
  auto head = std::make_shared<models::LinearHead>(fdim, task.num_classes, g, spec.zero_head);
  if (spec.noisytune > 0) bilevel::noisytune(*backbone, spec.noisytune, cfg.seed * 31 + seed);
  backbone->to(dev);
  head->to(dev);
  std::vector<Tensor> params = head->parameters();
  if (spec.train_backbone) {
    params = backbone->parameters();
    for (auto& p : head->parameters()) params.push_back(p);
  } else {
    backbone->requires_grad_(false);
  }

  int64_t n = task.train->n, bs = std::min(fc.batch_size, n);
  data::LoaderOptions lo = train_loader_options(bs, cfg.seed * 1000 + seed, cfg.workers, dev);
  lo.cycle = false;
  lo.drop_last = n % bs == 1;  // a batch of one image has no batch statistics
  lo.views = {downstream_train_view(cfg.task, task.train->c)};
  data::Loader loader(task.train, lo);
  int64_t steps_per_epoch = loader.batches_per_epoch(), total = epochs * steps_per_epoch;
  // ViTs: MAE's layer-wise lr decay groups (no decay on biases, norms and tokens).
  std::vector<optim::ParamGroup> groups{optim::ParamGroup{params}};
  if (auto* vit = dynamic_cast<models::ViT*>(backbone.get()); vit && spec.train_backbone)
    groups = models::vit_layer_decay_groups(*vit, fc.layer_decay, wd, head->parameters());
  std::unique_ptr<optim::Optimizer> opt_ptr;
  if (fc.optimizer == "adamw") opt_ptr = std::make_unique<optim::AdamW>(groups, lr, 0.9, 0.999, 1e-8, wd);
  else opt_ptr = std::make_unique<optim::SGD>(groups, lr, fc.momentum, wd);
  optim::Optimizer& opt = *opt_ptr;
  dist::GradReducer reducer(params);
  optim::WarmupCosine sched{lr, 0, total, 0.0};

  nn::StateDict best_bb, best_head;
  Progress progress(label, epochs, "epoch");
  for (int64_t e = 0; e < epochs; ++e) {
    loader.start_epoch(e);
    backbone->train(spec.train_backbone);
    head->train();
    double loss_sum = 0;
    int64_t nb = 0;
    data::Batch b;
    bool diverged = false;
    while (loader.next(b)) {
      Tensor feats;
      if (spec.train_backbone) {
        feats = backbone->forward(b.views[0]);
      } else {
        NoGradGuard ng;
        feats = backbone->forward(b.views[0]);
      }
      double lv = 0;
      Tensor loss = rank_share(downstream_loss(head->forward(feats), b), b.size(), lv);
      if (!std::isfinite(lv)) {
        std::string where = str(spec.arm, ": the fine-tuning loss is ", lv, " at epoch ", e + 1, ", batch ", nb + 1,
                                " (lr ", lr, ", weight decay ", wd, ", seed ", seed, ")");
        if (!allow_divergence) throw Error(where);
        r.diverged = true;
        r.note = where;
        diverged = true;
        break;
      }
      opt.zero_grad();
      reducer.backward(loss);
      opt.lr = sched.lr_at(opt.steps());
      opt.step();
      loss_sum += lv;
      ++nb;
    }
    if (diverged) break;
    r.train_loss.push_back(loss_sum / double(std::max<int64_t>(nb, 1)));
    bool eval_now = (fc.eval_every > 0 && (e + 1) % fc.eval_every == 0) || e + 1 == epochs;
    double v = nan();
    if (eval_now) {
      v = evaluate(*backbone, *head, *task.val, task.num_classes, cfg.task, dev, cfg.workers,
                   cfg.task.ignore_difficult)
              .score();
      if (v > r.best_val) {
        r.best_val = v;
        r.best_epoch = e + 1;
        best_bb = snapshot(*backbone);
        best_head = snapshot(*head);
      }
    }
    r.val_score.push_back(v);
    progress.update(e + 1, str("loss ", fmt(r.train_loss.back(), 4), " | val ", metric_label(r.multi_label), " ",
                               std::isnan(v) ? std::string("-") : fmt(100 * v, 2) + "%"));
  }
  progress.done();
  if (!best_bb.empty()) {
    backbone->load_state_dict(best_bb);
    head->load_state_dict(best_head);
  }
  if (test && !r.diverged) {
    r.test = evaluate(*backbone, *head, *task.test, task.num_classes, cfg.task, dev, cfg.workers,
                      cfg.task.ignore_difficult);
    r.tested = true;
  }
  if (!save_dir.empty() && !r.diverged) {
    fs::create_directories(save_dir);
    models::save_backbone(*backbone, save_dir + "/backbone.safetensors", backbone_metadata(cfg));
    nn::save_module(*head, save_dir + "/head.safetensors");
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

Hyper read_hyper(const std::string& path) {
  auto j = read_json(path);
  Hyper h;
  h.multi_label = multi_label_of(j);
  h.lr = j.at("lr"), h.weight_decay = j.at("weight_decay");
  h.val_score = json_number(j, key("val_", h.multi_label));
  h.source = j.at("source");
  return h;
}

void write_hyper(const std::string& path, const Hyper& h) {
  write_json_atomic(path, nlohmann::json{{"metric", metric_key(h.multi_label)},
                                         {"lr", h.lr},
                                         {"weight_decay", h.weight_decay},
                                         {key("val_", h.multi_label), number_or_null(h.val_score)},
                                         {"source", h.source}});
}

namespace {

// finetune.parallel = "seeds" on several ranks: job(i) for i in [0, n), job
// i on rank i mod N alone, computed as one process computes it
// (CommScope(kSelf): its loaders, BN, reductions and files are that rank's
// own), N jobs at a time; every job's result text ends on every rank.
std::vector<std::string> side_by_side(int64_t n, const std::function<std::string(int64_t)>& job) {
  const int ranks = dist::size(), me = dist::rank();
  std::vector<std::string> out(static_cast<size_t>(n));
  for (int64_t start = 0; start < n; start += ranks) {
    std::string mine;
    if (start + me < n) {
      dist::CommScope self(dist::kSelf);
      mine = job(start + me);
    }
    for (int r = 0; r < ranks && start + r < n; ++r) {
      std::string s = r == me ? mine : std::string();
      dist::broadcast_string(s, r);
      out[size_t(start + r)] = std::move(s);
    }
  }
  return out;
}

bool side_by_side_mode(const Config& cfg) { return cfg.finetune.parallel == "seeds" && dist::size() > 1; }

}  // namespace

Hyper random_search(const Config& cfg, const Task& task, const FinetuneSpec& spec, const std::string& dir) {
  const auto& fc = cfg.finetune;
  Hyper best;
  best.multi_label = task.multi_label;
  if (fc.search_trials == 0) {
    best.lr = fc.lr, best.weight_decay = fc.weight_decay, best.val_score = nan(), best.source = "config";
    return best;
  }
  fs::create_directories(dir);
  // Trials already in search.jsonl (an interrupted search) are reused when
  // they are the same draws; the rest run.
  std::vector<nlohmann::json> done = fs::exists(dir + "/search.jsonl") ? read_jsonl(dir + "/search.jsonl")
                                                                       : std::vector<nlohmann::json>{};
  // Several ranks: every rank has read the file before rank 0 rewrites it
  // (a rank reading a shorter file would train a trial the others reuse).
  dist::group(dist::current_group()).barrier();
  std::string kept;
  Generator g(cfg.seed * 1315423911ull + 99);
  int64_t epochs = fc.search_epochs > 0 ? fc.search_epochs : fc.epochs;
  best.val_score = -1;
  if (side_by_side_mode(cfg)) {
    // The draws first, then which trials an interrupted search already ran
    // (up to the first that differs), then the rest side by side on the
    // ranks; search.jsonl is written once, at the end.
    std::vector<double> lrs, wds;
    std::vector<bool> reuse;
    bool stale = false;
    for (int64_t t = 0; t < fc.search_trials; ++t) {
      lrs.push_back(std::exp(std::log(fc.lr_min) + g.uniform() * (std::log(fc.lr_max) - std::log(fc.lr_min))));
      wds.push_back(std::exp(std::log(fc.wd_min) + g.uniform() * (std::log(fc.wd_max) - std::log(fc.wd_min))));
      const nlohmann::json* prev = size_t(t) < done.size() ? &done[size_t(t)] : nullptr;
      stale = stale || !(prev && prev->value("trial", int64_t(-1)) == t && json_number(*prev, "lr") == lrs.back() &&
                         json_number(*prev, "weight_decay") == wds.back() &&
                         prev->value("epochs", int64_t(0)) == epochs && multi_label_of(*prev) == task.multi_label);
      reuse.push_back(!stale);
    }
    const std::vector<std::string> runs = side_by_side(fc.search_trials, [&](int64_t t) {
      if (reuse[size_t(t)]) return done[size_t(t)].dump();
      FinetuneRun r = finetune_once(cfg, task, spec, lrs[size_t(t)], wds[size_t(t)], uint64_t(1000 + t), epochs, false,
                                    "", true,
                                    str(spec.arm, " search ", t + 1, "/", fc.search_trials, " (lr ",
                                        fmt(lrs[size_t(t)], 3), ", wd ", fmt(wds[size_t(t)], 3), ")"));
      nlohmann::json j = to_json(r);
      j["trial"] = t;
      return j.dump();
    });
    for (int64_t t = 0; t < fc.search_trials; ++t) {
      const nlohmann::json j = nlohmann::json::parse(runs[size_t(t)]);
      const FinetuneRun r = run_from_json(j);
      kept += j.dump() + "\n";
      if (!r.diverged && r.best_val > best.val_score)
        best.lr = lrs[size_t(t)], best.weight_decay = wds[size_t(t)], best.val_score = r.best_val;
    }
    write_text_atomic(dir + "/search.jsonl", kept);
  }
  for (int64_t t = 0; t < fc.search_trials && !side_by_side_mode(cfg); ++t) {
    // log-uniform draws: exp(U(log lo, log hi))
    double lr = std::exp(std::log(fc.lr_min) + g.uniform() * (std::log(fc.lr_max) - std::log(fc.lr_min)));
    double wd = std::exp(std::log(fc.wd_min) + g.uniform() * (std::log(fc.wd_max) - std::log(fc.wd_min)));
    FinetuneRun r;
    const nlohmann::json* prev = size_t(t) < done.size() ? &done[size_t(t)] : nullptr;
    if (prev && prev->value("trial", int64_t(-1)) == t && json_number(*prev, "lr") == lr &&
        json_number(*prev, "weight_decay") == wd && prev->value("epochs", int64_t(0)) == epochs &&
        multi_label_of(*prev) == task.multi_label) {
      r = run_from_json(*prev);
    } else {
      done.resize(std::min(done.size(), size_t(t)));  // anything after a mismatch is stale
      r = finetune_once(cfg, task, spec, lr, wd, uint64_t(1000 + t), epochs, false, "", true,
                        str(spec.arm, " search ", t + 1, "/", fc.search_trials, " (lr ", fmt(lr, 3), ", wd ",
                            fmt(wd, 3), ")"));
    }
    nlohmann::json j = to_json(r);
    j["trial"] = t;
    kept += j.dump() + "\n";
    write_text_atomic(dir + "/search.jsonl", kept);
    if (!r.diverged && r.best_val > best.val_score) best.lr = lr, best.weight_decay = wd, best.val_score = r.best_val;
  }
  BISSL_CHECK(best.val_score >= 0, spec.arm, ": every one of the ", fc.search_trials,
              " search trials diverged; narrow finetune.lr_max (", fc.lr_max, ")");
  best.source = str("search (", fc.search_trials, " trials, ", epochs, " epochs each)");
  return best;
}

nlohmann::json to_json(const ArmResult& a) {
  nlohmann::json runs = nlohmann::json::array();
  for (auto& r : a.runs) runs.push_back(to_json(r));
  nlohmann::json j = {{"arm", a.arm},
          {"metric", metric_key(a.multi_label)},
          {"lr", a.hyper.lr},
          {"weight_decay", a.hyper.weight_decay},
          {key("search_val_", a.multi_label), number_or_null(a.hyper.val_score)},
          {"hyper_source", a.hyper.source},
          {"runs", runs},
          {"seconds", a.seconds}};
  if (a.stage_seeds > 1) j["stage_seeds"] = a.stage_seeds;
  return j;
}

std::vector<FinetuneRun> stage_block(const ArmResult& a, int64_t k) {
  const int64_t n = static_cast<int64_t>(a.runs.size()) / a.stage_seeds;
  BISSL_CHECK(a.stage_seeds >= 1 && n * a.stage_seeds == static_cast<int64_t>(a.runs.size()) && k >= 0 &&
                  k < a.stage_seeds,
              "arm ", a.arm, ": expected ", a.stage_seeds, " equal blocks of runs and a block below that, found ",
              a.runs.size(), " runs and block ", k);
  return std::vector<FinetuneRun>(a.runs.begin() + k * n, a.runs.begin() + (k + 1) * n);
}

ArmResult pool_stage_seeds(const std::vector<ArmResult>& blocks) {
  BISSL_CHECK(!blocks.empty(), "pool_stage_seeds: expected at least one stage seed's results, found none");
  ArmResult p = blocks[0];
  p.runs.clear();
  p.seconds = 0;
  p.stage_seeds = static_cast<int64_t>(blocks.size());
  for (auto& b : blocks) {
    BISSL_CHECK(b.arm == p.arm && b.runs.size() == blocks[0].runs.size() && b.stage_seeds == 1,
                "pool_stage_seeds: expected blocks of arm ", p.arm, " with ", blocks[0].runs.size(),
                " runs each, found arm ", b.arm, " with ", b.runs.size());
    p.runs.insert(p.runs.end(), b.runs.begin(), b.runs.end());
    p.seconds += b.seconds;
  }
  return p;
}

ArmResult arm_from_json(const nlohmann::json& j) {
  ArmResult a;
  a.arm = j.at("arm");
  a.multi_label = a.hyper.multi_label = multi_label_of(j);
  a.hyper.lr = j.at("lr");
  a.hyper.weight_decay = j.at("weight_decay");
  a.hyper.val_score = json_number(j, key("search_val_", a.multi_label));
  a.hyper.source = j.at("hyper_source");
  for (auto& r : j.at("runs")) a.runs.push_back(run_from_json(r));
  a.seconds = j.value("seconds", 0.0);
  a.stage_seeds = j.value("stage_seeds", int64_t(1));
  BISSL_CHECK(a.stage_seeds >= 1 && a.runs.size() % size_t(a.stage_seeds) == 0, "arm ", a.arm, ": ", a.runs.size(),
              " runs do not split into ", a.stage_seeds, " stage seeds");
  return a;
}

namespace {
// What a fine-tuning run of `spec` reads besides the config.
nlohmann::json spec_json(const FinetuneSpec& spec) {
  return {{"arm", spec.arm}, {"train_backbone", spec.train_backbone}, {"zero_head", spec.zero_head},
          {"noisytune", spec.noisytune}};
}
}  // namespace

Stamp search_stamp(const Config& cfg, const Task& task, const FinetuneSpec& spec) {
  std::vector<std::pair<std::string, std::string>> files;
  if (!spec.backbone.empty()) files.push_back({"backbone", spec.backbone});
  // Trials train for search_epochs (when set) at drawn lr / wd (when there are trials).
  std::vector<std::string> unread;
  if (cfg.finetune.search_epochs > 0) unread.push_back("finetune.epochs");
  if (cfg.finetune.search_trials > 0) unread.insert(unread.end(), {"finetune.lr", "finetune.weight_decay"});
  return Stamp::of(cfg, "search",
                   {"pipeline", "task", "finetune.optimizer", "finetune.recipe", "finetune.search", "pretrain.model",
                    "pretrain.data.image_size"},
                   files, spec_json(spec), unread)
      .with_input("task data", task.digest());
}

Stamp seed_stamp(const Config& cfg, const Task& task, const FinetuneSpec& spec, const Hyper& h, uint64_t seed) {
  std::vector<std::pair<std::string, std::string>> files;
  if (!spec.backbone.empty()) files.push_back({"backbone", spec.backbone});
  nlohmann::json extra = spec_json(spec);
  extra["lr"] = h.lr, extra["weight_decay"] = h.weight_decay, extra["seed"] = seed;
  return Stamp::of(cfg, str("finetune ", spec.arm, " seed ", seed),
                   {"pipeline", "task", "finetune.optimizer", "finetune.recipe", "pretrain.model", "pretrain.data.image_size"},
                   files, extra, {"finetune.lr", "finetune.weight_decay"})  // the run's lr / wd are h's
      .with_input("task data", task.digest());
}

ArmResult finetune_arm(const Config& cfg, const Task& task, const FinetuneSpec& spec, const std::string& dir,
                       const Hyper* shared, UnitStart* summary, uint64_t first_seed) {
  auto t0 = std::chrono::steady_clock::now();
  fs::create_directories(dir);
  ArmResult a;
  a.arm = spec.arm;
  a.multi_label = task.multi_label;
  bool all_reused = true;
  Stamp newest;
  auto note = [&](const UnitStart& u) {
    all_reused &= u.state == UnitState::Reused;
    if (u.state == UnitState::Reused && u.made.made_at >= newest.made_at) newest = u.made;
  };
  if (shared) {
    a.hyper = *shared;
  } else {
    const std::string sdir = dir + "/search";
    const Stamp st = search_stamp(cfg, task, spec);
    UnitStart u = begin_unit(sdir, st, cfg.no_recompute);
    note(u);
    if (u.state == UnitState::Reused) {
      a.hyper = read_hyper(sdir + "/hyper.json");
    } else {
      a.hyper = random_search(cfg, task, spec, sdir);
      write_hyper(sdir + "/hyper.json", a.hyper);
      finish_unit(sdir, st);
    }
  }
  write_hyper(dir + "/hyper.json", a.hyper);
  if (side_by_side_mode(cfg)) {
    // Seed i on rank i mod N as one process (its unit, stamp and files that
    // rank's own); the results gathered in seed order.
    const std::vector<std::string> runs = side_by_side(cfg.finetune.seeds, [&](int64_t i) {
      const uint64_t k = first_seed + uint64_t(i);
      const std::string sd = str(dir, "/seed", k);
      const Stamp st = seed_stamp(cfg, task, spec, a.hyper, k);
      UnitStart u = begin_unit(sd, st, cfg.no_recompute);
      note(u);
      if (u.state == UnitState::Reused) return read_json(sd + "/result.json").dump();
      FinetuneRun r = finetune_once(cfg, task, spec, a.hyper.lr, a.hyper.weight_decay, k, cfg.finetune.epochs, true,
                                    sd, false, str(spec.arm, " seed ", k, " (rank ", dist::rank(), ")"));
      write_json_atomic(sd + "/result.json", to_json(r));
      finish_unit(sd, st);
      return to_json(r).dump();
    });
    for (const std::string& s : runs) a.runs.push_back(run_from_json(nlohmann::json::parse(s)));
    // Every rank must agree on the arm's state (the pipeline writes by it).
    all_reused = dist::all_reduce_max(all_reused ? 0.0 : 1.0) == 0.0;
  }
  for (int64_t i = 0; i < cfg.finetune.seeds && !side_by_side_mode(cfg); ++i) {
    const uint64_t k = first_seed + uint64_t(i);
    std::string sd = str(dir, "/seed", k);
    const Stamp st = seed_stamp(cfg, task, spec, a.hyper, k);
    UnitStart u = begin_unit(sd, st, cfg.no_recompute);
    note(u);
    if (u.state == UnitState::Reused) {
      a.runs.push_back(run_from_json(read_json(sd + "/result.json")));
      continue;
    }
    FinetuneRun r = finetune_once(cfg, task, spec, a.hyper.lr, a.hyper.weight_decay, k, cfg.finetune.epochs, true,
                                  sd, false,
                                  first_seed == 0 ? str(spec.arm, " seed ", k + 1, "/", cfg.finetune.seeds)
                                                  : str(spec.arm, " seed ", k, " (", i + 1, "/", cfg.finetune.seeds, ")"));
    write_json_atomic(sd + "/result.json", to_json(r));
    finish_unit(sd, st);
    const char* m = metric_label(r.multi_label);
    if (r.multi_label)
      std::fprintf(stderr, "%s seed %lld: best val %s %.2f%% (epoch %lld), test %s %.2f%%\n", spec.arm.c_str(),
                   (long long)k, m, 100 * r.best_val, (long long)r.best_epoch, m, 100 * r.test.map);
    else
      std::fprintf(stderr, "%s seed %lld: best val %s %.2f%% (epoch %lld), test %s %.2f%%, top-%d %.2f%%\n",
                   spec.arm.c_str(), (long long)k, m, 100 * r.best_val, (long long)r.best_epoch, m, 100 * r.test.top1,
                   r.test.k, 100 * r.test.topk);
    a.runs.push_back(std::move(r));
  }
  a.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_json_atomic(dir + "/result.json", to_json(a));
  if (summary) {
    summary->state = all_reused ? UnitState::Reused : UnitState::Fresh;
    summary->made = newest;
  }
  return a;
}

}  // namespace bissl::stages
