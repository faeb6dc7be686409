#include "tools/stages/pipeline.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/numerics.h"
#include "tools/pretrain/build.h"
#include "tools/pretrain/run.h"
#include "tools/stages/bissl_stage.h"
#include "tools/stages/classify.h"
#include "tools/stages/evaluate.h"
#include "tools/common/files.h"
#include "tools/stages/finetune.h"
#include "tools/stages/report.h"
#include "tools/stages/stamp.h"
#include "tools/stages/task.h"
#include "tools/stages/warmup.h"

namespace bissl::stages {

namespace fs = std::filesystem;

namespace {

bool is_training_arm(const std::string& a) {
  return a == "bissl" || a == "ij_discarded" || a == "weighted_sum" || a == "mix";
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void banner(const std::string& s) { std::fprintf(stderr, "\n==== %s ====\n", s.c_str()); }

}  // namespace

void apply_quick_preset(Config& c) {
  c.out = "runs/pipeline_quick";
  c.pretrain.limit = 4096;
  c.pretrain.epochs = 1;
  c.pretrain.steps = 0;
  c.pretrain.batch_size = 128;
  c.task.train_per_class = 50;
  c.task.val_per_class = 50;
  c.warmup.epochs = 3;
  c.bissl.alternations = 2;
  c.bissl.lower_steps = 4;
  c.bissl.upper_steps = 2;
  c.bissl.lower_batch = 64;
  c.bissl.upper_batch = 64;
  c.bissl.lower_warmup = 2;
  c.finetune.epochs = 4;
  c.finetune.search_trials = 2;
  c.finetune.search_epochs = 2;
  c.finetune.seeds = 2;
  c.eval.tsne_points = 200;
  c.eval.recalib_batches = 4;
  if (c.task.dataset == "fashion-mnist-mosaic") {  // a few hundred mosaics per split
    c.task.train_images = 200;
    c.task.val_images = 100;
    c.task.test_images = 300;
  }
}

const std::string& quick_preset_help() {
  static const std::string h =
      "the main job (or --config's pipeline) scaled down to about a minute on a 2-core CPU, into runs/pipeline_quick: "
      "pretraining on 4096 images for 1 epoch of batch 128, 50 + 50 labelled images per class, 3 warm-up epochs, "
      "BiSSL 2 alternations x (4 lower + 2 upper steps) of batch 64, fine-tuning 2 search trials x 2 epochs and "
      "2 seeds x 4 epochs, t-SNE of 200 points (--set overrides it)";
  return h;
}

const std::string& main_job_config_text() {
  static const std::string t =
#include "bissl_main_job_config.inc"
      ;
  return t;
}

namespace {

// A stage's row in the report: computed now, or reused (when, by what code).
StageTime stage_row(const std::string& stage, const std::string& detail, const UnitStart& u) {
  StageTime st;
  st.stage = stage, st.detail = detail;
  st.reused = u.state == UnitState::Reused;
  st.made_at = u.made.made_at;
  st.code = u.made.code;
  return st;
}

}  // namespace

std::string run_pipeline(const Config& cfg_in) {
  auto t_start = std::chrono::steady_clock::now();
  Config cfg = cfg_in;
  cfg.validate();
  set_numerics(parse_numerics(cfg.numerics));  // a no-op after tool_main's enter_numerics
  const std::string out = cfg.out;
  {
    std::error_code ec;
    fs::create_directories(out, ec);
    BISSL_CHECK(!ec, "pipeline: cannot create the output folder '", out, "' (pipeline.out): ", ec.message());
  }
  write_text_atomic(out + "/config.toml", cfg.to_toml(/*docs=*/true));
  std::fprintf(stderr, "bissl-pipeline: resolved config\n%s\nbackend: %s\nnumerics: %s\n", cfg.to_toml().c_str(),
               backend_summary().c_str(), numerics_summary().c_str());
  resolve_device(cfg.device, cfg.deterministic);  // checks the device; sets CUDA determinism for every stage
  ReportInputs rep;
  rep.cfg = &cfg;
  // Each stage's time when it actually ran, kept across invocations so the
  // report of a resumed or re-run pipeline still says what every stage cost.
  const std::string timings_path = out + "/timings.json";
  nlohmann::json timings = fs::exists(timings_path) ? read_json(timings_path) : nlohmann::json::object();
  auto record = [&](StageTime st) {
    if (!st.reused) {
      timings[st.stage] = st.seconds;
      write_json_atomic(timings_path, timings);
    } else {
      st.seconds = timings.value(st.stage, 0.0);
    }
    rep.times.push_back(st);
  };

  // The downstream task.
  Task task = load_task(cfg.task);
  rep.task = &task;
  fs::create_directories(out + "/task");
  dist::on_root([&] { save_task_splits(task, cfg.task, out + "/task"); });  // rank 0 writes them
  std::fprintf(stderr, "task: %s\n", task.describe().c_str());

  // The pretraining images' content digest, for the stamps of the units that
  // read them (pretraining, the training stages); loaded only when needed.
  std::string pretext_digest_memo;
  auto pretext_digest = [&]() -> const std::string& {
    if (pretext_digest_memo.empty()) pretext_digest_memo = pretrain::load_data(cfg.pretrain)->content_digest();
    return pretext_digest_memo;
  };

  // 1. Pretraining.
  const std::string pre = cfg.pretrained.empty() ? out + "/pretrain" : cfg.pretrained;
  {
    banner("pretraining");
    auto t0 = std::chrono::steady_clock::now();
    const std::string detail = str(cfg.pretrain.method.name, " on ", cfg.pretrain.dataset, ", ", cfg.pretrain.epochs,
                                   " epoch(s) of batch ", cfg.pretrain.batch_size);
    // pretrain.train.device / .numerics are pipeline.device / .numerics here.
    // Its settings; its images (below) only where it is made here.
    const Stamp settings = Stamp::of(cfg, "pretrain", {"pretrain", "pipeline.deterministic", "pipeline.numerics"}, {},
                                     nlohmann::json::object(), {"pretrain.train.device"});
    const bool have = fs::exists(pre + "/backbone.safetensors") && fs::exists(pre + "/objective.safetensors");
    StageTime st;
    if (!cfg.pretrained.empty() || !cfg.run_pretrain) {
      // Someone else's pretraining: checked against today's settings when it
      // has a stamp, never recomputed.
      const std::string why = !cfg.pretrained.empty() ? "pipeline.pretrained" : "pipeline.run_pretrain = false";
      BISSL_CHECK(have, "pipeline: ", why, ", but '", pre, "' does not hold backbone.safetensors and objective.safetensors");
      UnitStart u;
      u.state = UnitState::Reused;
      Stamp made;
      if (read_stamp(pre, made)) {
        // Its [pretrain.*] must be today's; where and how deterministically it
        // ran may differ, and its images are not read here (they may be gone).
        Stamp a = made, b = settings;
        for (auto* k : {"device (resolved)", "pipeline.deterministic", "pipeline.numerics"}) a.settings.erase(k), b.settings.erase(k);
        a.inputs.erase("pretraining data");
        std::string diff = first_difference(a, b);
        BISSL_CHECK(diff.empty(), "pipeline: the pretraining in '", pre, "' (", why, ") was made with other settings: ",
                    diff, "; give this config its settings or pretrain again");
        u.made = made;
        st = stage_row("pretrain", str(detail, " — taken from ", pre, " (", why, ")"), u);
      } else {
        st = stage_row("pretrain", str("taken from ", pre, " (", why, "; no stamp, so its settings are not checked)"), u);
      }
    } else {
      const Stamp stamp = Stamp(settings).with_input("pretraining data", pretext_digest());
      UnitStart u = begin_unit(pre, stamp, cfg.no_recompute);
      if (u.state != UnitState::Reused) {
        pretrain::Config pc = cfg.pretrain;
        pc.out = pre;
        pc.device = cfg.device;
        pc.numerics = cfg.numerics;
        pc.workers = cfg.workers;
        std::string resume = fs::exists(pre + "/checkpoint.safetensors") ? pre + "/checkpoint.safetensors" : "";
        pretrain::run(pc, resume);
        finish_unit(pre, stamp);
      }
      st = stage_row("pretrain", detail, u);
    }
    st.seconds = since(t0);
    record(st);
  }
  const std::string pre_backbone = pre + "/backbone.safetensors";
  // The views' normalisation, from the pretrained backbone, for every stage
  // (the random_init arm too, which has no backbone to take it from).
  cfg = with_normalization(cfg, pre_backbone, task.train->c);
  std::fprintf(stderr, "normalisation (%s): %s\n", cfg.pretrain.normalize.c_str(),
               pretrain::describe_normalization({cfg.task.norm_mean, cfg.task.norm_std}, task.train->c).c_str());

  // 2. Hyper-parameters: random search on the validation split, fine-tuning the pretrained backbone.
  Hyper shared;
  if (cfg.finetune.share_search) {
    banner("fine-tuning hyper-parameter search");
    auto t0 = std::chrono::steady_clock::now();
    const std::string sdir = out + "/finetune/search";
    const FinetuneSpec ft = spec_for_arm(cfg, "ft", pre_backbone);
    const Stamp stamp = search_stamp(cfg, task, ft);
    UnitStart u = begin_unit(sdir, stamp, cfg.no_recompute);
    if (u.state == UnitState::Reused) {
      shared = read_hyper(sdir + "/hyper.json");
    } else {
      shared = random_search(cfg, task, ft, sdir);
      write_hyper(sdir + "/hyper.json", shared);
      finish_unit(sdir, stamp);
    }
    shared.source += " on FT (the pretrained backbone), used by every arm and by BiSSL's upper level";
    std::fprintf(stderr, "chosen: lr %.4g, weight decay %.4g (%s)\n", shared.lr, shared.weight_decay,
                 shared.source.c_str());
    StageTime st = stage_row("search", str(cfg.finetune.search_trials, " random (lr, wd) trials on the validation split"), u);
    cfg.finetune.lr = shared.lr;
    cfg.finetune.weight_decay = shared.weight_decay;
    st.seconds = since(t0);
    record(st);
  }

  // 3. Head warm-up (for the arms whose training stage has a downstream head).
  const std::string wdir = out + "/warmup";
  bool need_head = false;
  for (auto& a : cfg.arms) need_head |= a == "bissl" || a == "ij_discarded" || a == "weighted_sum";
  if (need_head) {
    banner("head warm-up");
    auto t0 = std::chrono::steady_clock::now();
    const Stamp stamp = Stamp::of(cfg, "warmup", {"pipeline", "task", "warmup", "pretrain.model", "pretrain.data.image_size"},
                                  {{"backbone", pre_backbone}})
                            .with_input("task data", task.digest());
    UnitStart u = begin_unit(wdir, stamp, cfg.no_recompute);
    if (u.state != UnitState::Reused) {
      run_warmup(cfg, task, pre_backbone, wdir);
      finish_unit(wdir, stamp);
    }
    StageTime st = stage_row("warmup", str(cfg.warmup.epochs, " epochs, linear head on the frozen backbone"), u);
    st.seconds = since(t0);
    record(st);
    rep.warmup_metrics = wdir + "/metrics.jsonl";
  }

  // 4. Training stages: BiSSL and the baselines that produce a backbone,
  // each pipeline.stage_seeds times (stage seed k > 0 into <arm>-s<k>).
  const int64_t K = cfg.stage_seeds;
  auto stage_dir = [&](const std::string& base, int64_t k) { return k == 0 ? base : str(base, "-s", k); };
  std::map<std::string, std::string> starts;                      // arm -> the backbone its fine-tuning starts from
  std::map<std::string, std::vector<std::string>> stage_starts;  // ... for each stage seed
  for (auto& a : cfg.arms) {
    if (!is_training_arm(a)) {
      starts[a] = a == "random_init" ? "" : pre_backbone;
      stage_starts[a].assign(size_t(K), starts[a]);
      continue;
    }
    std::string variant = a == "mix" ? "pretext_only" : a;
    // θD and θP start from the backbone as the warm-up left it (same weights as
    // pretrained, BN statistics updated on downstream data), the pretext heads
    // from pretraining, φD from the warm-up.
    bool has_head = a != "mix";
    std::string start = has_head ? wdir + "/backbone.safetensors" : pre_backbone;
    BisslInputs in{start, pre + "/objective.safetensors", has_head ? wdir + "/head.safetensors" : ""};
    for (int64_t k = 0; k < K; ++k) {
      const std::string tdir = stage_dir(out + "/train/" + a, k);
      banner(K == 1 ? "training stage: " + a : str("training stage: ", a, ", stage seed ", k, " of ", K));
      auto t0 = std::chrono::steady_clock::now();
      const Stamp stamp = bissl_stamp(cfg, task, in, pretext_digest(), variant, a == "mix", uint64_t(k));
      UnitStart u = begin_unit(tdir, stamp, cfg.no_recompute);
      if (u.state != UnitState::Reused) {
        run_bissl(cfg, task, in, tdir, variant, a == "mix", true, 0, uint64_t(k));
        finish_unit(tdir, stamp);
      }
      const std::string row = k == 0 ? "train " + a : str("train ", a, " (stage seed ", k, ")");
      StageTime st = stage_row(row, str(variant, ", ", cfg.bissl.alternations, " alternations"), u);
      st.seconds = since(t0);
      record(st);
      rep.train_metrics.push_back({k == 0 ? a : str(a, "-s", k), tdir + "/metrics.jsonl"});
      stage_starts[a].push_back(tdir + "/backbone.safetensors");
    }
    starts[a] = stage_starts[a][0];
  }

  // 5. Fine-tuning every arm (each seed its own unit); with stage seeds, each
  // stage seed's backbone with its own block of seeds, pooled per arm.
  std::vector<ArmResult> arms;
  for (auto& a : cfg.arms) {
    std::vector<ArmResult> blocks;
    for (int64_t k = 0; k < K; ++k) {
      banner(K == 1 ? "fine-tuning: " + a : str("fine-tuning: ", a, ", stage seed ", k, " of ", K));
      auto t0 = std::chrono::steady_clock::now();
      const std::string fdir = stage_dir(out + "/finetune/" + a, k);
      UnitStart u;
      blocks.push_back(finetune_arm(cfg, task, spec_for_arm(cfg, a, stage_starts[a][size_t(k)]), fdir,
                                    cfg.finetune.share_search ? &shared : nullptr, &u,
                                    uint64_t(k * cfg.finetune.seeds)));
      const std::string row = k == 0 ? "finetune " + a : str("finetune ", a, " (stage seed ", k, ")");
      StageTime st = stage_row(row, str(cfg.finetune.seeds, " seeds x ", cfg.finetune.epochs, " epochs"), u);
      st.seconds = since(t0);
      record(st);
    }
    arms.push_back(K == 1 ? blocks[0] : pool_stage_seeds(blocks));
  }
  rep.arms = arms;

  // 6. Evaluation (always computed: statistics, alignment and t-SNE of today's results) and the report.
  banner("evaluation");
  {
    auto t0 = std::chrono::steady_clock::now();
    rep.eval = run_eval(cfg, task, arms, starts, out + "/finetune", out + "/eval");
    StageTime st;
    st.stage = "eval", st.detail = "statistics, permutation tests, alignment, t-SNE";
    st.seconds = since(t0);
    record(st);
  }
  rep.eval_dir_rel = "eval";
  rep.total_seconds = 0;
  for (auto& t : rep.times) rep.total_seconds += t.seconds;
  rep.invocation_seconds = since(t_start);
  if (cfg.bissl.alternations < 500 || cfg.bissl.lower_batch < 1024)
    rep.notes.push_back(str("BiSSL ran ", cfg.bissl.alternations, " alternations with lower batch ",
                            cfg.bissl.lower_batch, " and upper batch ", cfg.bissl.upper_batch,
                            " (the spec: 500, 1024, 256) to fit this machine; N_L = ", cfg.bissl.lower_steps,
                            ", N_U = ", cfg.bissl.upper_steps, ", CG ", cfg.bissl.cg.iterations,
                            " iterations, λ = ", cfg.bissl.lambda, ", δ = ", cfg.bissl.delta, "."));
  if (cfg.finetune.epochs < 400 || cfg.finetune.seeds < 10 || cfg.finetune.search_trials < 100)
    rep.notes.push_back(str("Fine-tuning: ", cfg.finetune.epochs, " epochs, ", cfg.finetune.seeds, " seeds, ",
                            cfg.finetune.search_trials, " search trials of ",
                            cfg.finetune.search_epochs > 0 ? cfg.finetune.search_epochs : cfg.finetune.epochs,
                            " epochs (the spec: 400 epochs, 10 seeds, 100-200 trials)."));
  std::string text = write_report(rep, out + "/report.md");
  std::fprintf(stderr, "\nreport: %s/report.md (this invocation %.1f s; all stages %.1f s)\n", out.c_str(),
               rep.invocation_seconds, rep.total_seconds);
  return text;
}

}  // namespace bissl::stages
