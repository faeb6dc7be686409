#include "tools/stages/bissl_stage.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/io/safetensors.h"
#include "engine/nn/state_io.h"
#include "models/factory.h"
#include "models/heads.h"
#include "models/vit.h"
#include "tools/common/files.h"
#include "tools/pretrain/build.h"
#include "tools/stages/classify.h"
#include "tools/stages/progress.h"

namespace bissl::stages {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "bissl-train-checkpoint-1";

Config with_variant(const Config& cfg, const std::string& variant) {
  Config c = cfg;
  if (!variant.empty()) c.bissl.variant = bilevel::parse_variant(variant);
  return c;
}

// The trainer's options as configured, the upper level's -1s resolved to the
// fine-tuning lr and weight decay (the spec) and its optimiser fine-tuning's.
bilevel::BilevelOptions trainer_options(const Config& cfg) {
  bilevel::BilevelOptions o = cfg.bissl;
  if (o.upper_lr < 0) o.upper_lr = cfg.finetune.lr;
  if (o.upper_wd < 0) o.upper_wd = cfg.finetune.weight_decay;
  return o;
}

}  // namespace

uint64_t stage_stream_seed(uint64_t base, uint64_t k) { return base + k * 0x9E3779B97F4A7C15ull; }

Stamp bissl_stamp(const Config& cfg_in, const Task& task, const BisslInputs& in, const std::string& pretext_data,
                  const std::string& variant, bool mix, uint64_t stage_seed) {
  Config cfg = with_variant(cfg_in, variant);
  std::vector<std::pair<std::string, std::string>> files = {{"backbone", in.backbone}, {"objective", in.objective}};
  if (cfg.bissl.variant != bilevel::Variant::PretextOnly) files.push_back({"head", in.head});
  // The upper level reads fine-tuning's optimiser and (bissl.upper_lr = -1) its lr and weight decay.
  const bilevel::BilevelOptions o = trainer_options(cfg);
  nlohmann::json extra = {{"mix", mix}, {"upper lr (resolved)", o.upper_lr}, {"upper weight decay (resolved)", o.upper_wd}};
  if (stage_seed > 0) extra["stage seed"] = stage_seed;  // stage seed 0's stamp is the one it always had
  return Stamp::of(cfg, str("train ", bilevel::variant_name(cfg.bissl.variant), mix ? " (mix)" : "",
                            stage_seed > 0 ? str(", stage seed ", stage_seed) : ""),
                   // θP's lower stream (data and views), the models, BYOL's target seed.
                   {"pipeline", "task", "bissl", "finetune.optimizer", "pretrain.data", "pretrain.model", "pretrain.method",
                    "pretrain.train.seed"},
                   files, extra)
      .with_input("task data", task.digest())
      .with_input("pretraining data", pretext_data);
}

BisslStageResult run_bissl(const Config& cfg_in, const Task& task, const BisslInputs& in, const std::string& dir,
                           const std::string& variant_name_in, bool mix, bool resume, int64_t stop_after,
                           uint64_t stage_seed) {
  auto t0 = std::chrono::steady_clock::now();
  const double comm0 = dist::communication_seconds();
  Config cfg = with_normalization(with_variant(cfg_in, variant_name_in), in.backbone, task.train->c);
  const auto& bc = cfg.bissl;
  const std::string variant = bilevel::variant_name(bc.variant);
  // The lower stream's images: the pretext set (unlabelled), with the
  // downstream training split for the mix baseline.
  std::shared_ptr<const data::ImageSet> pretext = pretrain::load_data(cfg.pretrain);
  // What a checkpoint must agree on to be resumed: every setting this stage
  // reads and the content of its inputs.
  const Stamp stamp = bissl_stamp(cfg, task, in, pretext->content_digest(), "", mix, stage_seed);
  const std::string signature = stamp.signature();
  fs::create_directories(dir);
  write_text_atomic(dir + "/config.toml", cfg.to_toml());
  const Device dev = resolve_device(cfg.device, cfg.deterministic);

  bilevel::BilevelOptions o = trainer_options(cfg);
  const int64_t upper_batch = std::min(bc.upper_batch, task.train->n);
  BISSL_CHECK(bc.ghost_upper <= 0 || upper_batch <= bc.ghost_upper || upper_batch % bc.ghost_upper == 0,
              "bissl: bissl.ghost_upper = ", bc.ghost_upper, " does not divide the upper batch of ", upper_batch,
              " images (the task's training split is smaller than bissl.upper_batch)");
  const bool two_backbones = o.variant == bilevel::Variant::BiSSL || o.variant == bilevel::Variant::IjDiscarded;
  const bool needs_head = o.variant != bilevel::Variant::PretextOnly;

  // Models: θD and θP from the same pretrained weights.
  const int64_t ch = task.train->c;
  int64_t fdim = 0;
  auto theta_p = build_backbone(cfg, ch, in.backbone, cfg.seed, fdim);
  std::shared_ptr<nn::Layer> theta_d;
  // θD trains as fine-tuning does (the spec: the upper level uses the
  // fine-tuning values): a ViT gets its drop path and layer-wise lr decay.
  if (two_backbones) theta_d = build_backbone(cfg, ch, in.backbone, cfg.seed, fdim, cfg.finetune.drop_path);
  Generator g(cfg.seed + 11);
  auto objective = build_objective(cfg, *theta_p, ch, fdim, g);
  nn::load_module(*objective, in.objective, "the pretext objective");
  std::shared_ptr<models::LinearHead> head;
  if (needs_head) {
    head = std::make_shared<models::LinearHead>(fdim, task.num_classes, g);
    BISSL_CHECK(!in.head.empty(), "bissl: variant ", variant, " needs the warm-up head (head.safetensors)");
    nn::load_module(*head, in.head, "the warm-up head");
  }
  theta_p->to(dev);
  if (theta_d) theta_d->to(dev);
  objective->to(dev);
  if (head) head->to(dev);

  // Streams: the pretext set (unlabelled) and the downstream training split.
  if (mix) pretext = std::make_shared<const data::ImageSet>(concat_unlabelled(pretext, task.train));
  // bissl.short_batches = keep: each stream's short last batch as the
  // reference's W = batch / ghost devices serve it.
  auto devices = [&](int64_t batch, int64_t ghost) -> int64_t {
    if (bc.short_batches != "keep") return 0;
    return ghost > 0 && batch > ghost ? batch / ghost : 1;
  };
  LoaderPretextStream lower(pretext, cfg.pretrain, bc.lower_batch, stage_stream_seed(cfg.seed * 7 + 1, stage_seed),
                           cfg.workers, dev, devices(bc.lower_batch, bc.ghost_lower));
  LoaderDownstreamStream upper(task.train, cfg.task, upper_batch, stage_stream_seed(cfg.seed * 7 + 2, stage_seed),
                               cfg.workers, dev, devices(upper_batch, bc.ghost_upper));

  if (auto* vit = dynamic_cast<models::ViT*>(theta_d.get()); vit && head)
    o.upper_groups = models::vit_layer_decay_groups(*vit, cfg.finetune.layer_decay, o.upper_wd, head->parameters());
  bilevel::BilevelModels m{theta_d.get(), theta_p.get(), objective.get(), head.get()};
  bilevel::BilevelTrainer trainer(m, o, lower, upper);

  const std::string ckpt = dir + "/checkpoint.safetensors";
  BisslStageResult res;
  std::ofstream metrics;
  if (resume && fs::exists(ckpt)) {
    io::SafetensorsFile f = io::load_safetensors(ckpt);
    auto fmt_it = f.metadata.find("format");
    BISSL_CHECK(fmt_it != f.metadata.end() && fmt_it->second == kFormat, "bissl: '", ckpt,
                "' is not a bissl-train checkpoint (expected metadata format=", kFormat, ")");
    auto sig = f.metadata.find("signature");
    if (sig == f.metadata.end() || sig->second != signature) {
      std::string diff = "no settings recorded";
      try {
        if (sig != f.metadata.end()) diff = first_difference(Stamp::from_json(nlohmann::json::parse(sig->second)), stamp);
      } catch (const std::exception&) {
        diff = "an older checkpoint format";
      }
      throw Error(str("bissl: '", ckpt, "' was made with other settings (", diff,
                      "); use --fresh or another output directory"));
    }
    theta_p->load_state_dict(nn::with_prefix(f, "theta_p."));
    if (theta_d) theta_d->load_state_dict(nn::with_prefix(f, "theta_d."));
    objective->load_state_dict(nn::with_prefix(f, "objective."));
    if (head) head->load_state_dict(nn::with_prefix(f, "head_d."));
    trainer.load_state_dict(nn::with_prefix(f, "trainer."));
    res.resumed = true;
    std::fprintf(stderr, "bissl: resumed from %s after %lld alternations\n", ckpt.c_str(),
                 (long long)trainer.alternations_done());
    // Keep the metrics of the alternations the checkpoint covers.
    std::string keep;
    for (auto& row : read_jsonl(dir + "/metrics.jsonl"))
      if (row.value("alternation", int64_t(0)) <= trainer.alternations_done()) keep += row.dump() + "\n";
    write_text_atomic(dir + "/metrics.jsonl", keep);
    if (dist::is_root()) metrics.open(dir + "/metrics.jsonl", std::ios::app);
  } else if (dist::is_root()) {
    metrics.open(dir + "/metrics.jsonl", std::ios::trunc);
  }

  auto save_ckpt = [&](const std::string& path) {
    io::NamedTensors all = nn::prefixed("theta_p.", theta_p->state_dict());
    if (theta_d)
      for (auto& kv : nn::prefixed("theta_d.", theta_d->state_dict())) all.push_back(kv);
    for (auto& kv : nn::prefixed("objective.", objective->state_dict())) all.push_back(kv);
    if (head)
      for (auto& kv : nn::prefixed("head_d.", head->state_dict())) all.push_back(kv);
    for (auto& kv : nn::prefixed("trainer.", trainer.state_dict())) all.push_back(kv);
    io::save_safetensors(path, all,
                         {{"format", kFormat},
                          {"signature", signature},
                          {"alternations_done", std::to_string(trainer.alternations_done())},
                          {"config", cfg.to_toml()}});
  };

  std::fprintf(stderr, "bissl: variant %s, %lld alternations x (%lld lower + %lld upper steps), lower batch %lld, "
               "upper batch %lld, upper lr %.4g wd %.4g, backend %s\n",
               variant.c_str(), (long long)bc.alternations, (long long)bc.lower_steps, (long long)bc.upper_steps,
               (long long)bc.lower_batch, (long long)bc.upper_batch, o.upper_lr, o.upper_wd, backend_summary().c_str());
  Progress progress(str("bissl (", variant, ")"), bc.alternations, "alt");
  int64_t here = 0;
  while (trainer.alternations_done() < bc.alternations && (stop_after <= 0 || here < stop_after)) {
    bilevel::AlternationStats s;
    try {
      s = trainer.alternation();
    } catch (const Error& e) {
      // The state at the failure, for diagnosis (mid-alternation: resume from checkpoint.safetensors).
      std::string where = dir + "/checkpoint_failed.safetensors", saved;
      // On several ranks the error may be this rank's alone, and a save is
      // collective (the others may wait elsewhere): the job ends unsaved.
      if (dist::size() > 1) throw Error(str(e.what(), "; on several ranks the failing state is not saved"));
      try {
        save_ckpt(where);
        saved = "; the state at the failure is saved to " + where + " (for diagnosis; resume uses checkpoint.safetensors)";
      } catch (const std::exception& e2) {
        saved = str("; saving the state to ", where, " failed too: ", e2.what());
      }
      throw Error(str(e.what(), saved));
    }
    ++here;
    nlohmann::json j = schema::to_json(s);
    bool eval_now = head && bc.eval_every > 0 &&
                    (s.alternation % bc.eval_every == 0 || s.alternation == bc.alternations);
    std::string extra = str("L_P ", fmt(s.lower_loss, 4));
    if (needs_head) extra += str(" | L_D ", fmt(s.upper_loss_d, 4));
    if (eval_now) {
      // The task's score: "val_top1_d" / "val_top1_p", or "val_map_d" / "val_map_p".
      const std::string key = str("val_", metric_key(task.multi_label));
      if (theta_d) {
        double vd = evaluate(*theta_d, *head, *task.val, task.num_classes, cfg.task, dev, cfg.workers,
                             cfg.task.ignore_difficult)
                        .score();
        j[key + "_d"] = vd;
        extra += str(" | val(θD) ", fmt(100 * vd, 3), "%");
      }
      double vp = evaluate(*theta_p, *head, *task.val, task.num_classes, cfg.task, dev, cfg.workers,
                           cfg.task.ignore_difficult)
                      .score();
      j[key + "_p"] = vp;
      extra += str(" | val(θP) ", fmt(100 * vp, 3), "%");
    }
    if (two_backbones) extra += str(" | ‖θD−θP‖ ", fmt(s.distance, 3));
    if (dist::is_root()) {  // rank 0's file
      metrics << j.dump() << "\n";
      metrics.flush();
      BISSL_CHECK(metrics, "bissl: writing ", dir, "/metrics.jsonl failed (disk full?)");
    }
    res.stats.push_back(s);
    progress.update(trainer.alternations_done(), extra);
    if (bc.checkpoint_every > 0 && trainer.alternations_done() % bc.checkpoint_every == 0) save_ckpt(ckpt);
  }
  progress.done();
  save_ckpt(ckpt);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (trainer.alternations_done() >= bc.alternations) {
    models::save_backbone(*theta_p, dir + "/backbone.safetensors", backbone_metadata(cfg));
    if (theta_d) models::save_backbone(*theta_d, dir + "/backbone_d.safetensors", backbone_metadata(cfg));
    if (head) nn::save_module(*head, dir + "/head_d.safetensors");
    nn::save_module(*objective, dir + "/objective.safetensors", {{"method", cfg.pretrain.method.name}});
    write_json_atomic(dir + "/summary.json", nlohmann::json{{"variant", variant},
                                                            {"signature", signature},
                                                            {"alternations", trainer.alternations_done()},
                                                            {"lower_steps", trainer.lower_steps_done()},
                                                            {"upper_steps", trainer.upper_steps_done()},
                                                            {"upper_lr", o.upper_lr},
                                                            {"upper_wd", o.upper_wd},
                                                            {"seconds", res.seconds},
                                                            {"ranks", dist::size()},
                                                            {"communication_seconds",
                                                             dist::communication_seconds() - comm0},
                                                            {"backend", backend_summary()}});
  }
  return res;
}

}  // namespace bissl::stages
