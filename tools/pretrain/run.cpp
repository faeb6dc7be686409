#include "tools/pretrain/run.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/augment.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/dist/comm.h"
#include "engine/dist/reducer.h"
#include "engine/nn/layers.h"
#include "engine/numerics.h"
#include "engine/io/safetensors.h"
#include "engine/nn/state_io.h"
#include "engine/optim/optimizer.h"
#include "engine/optim/schedule.h"
#include "engine/profile.h"
#include "models/factory.h"
#include "models/resnet.h"
#include "models/vit.h"
#include "ssl/byol.h"
#include "ssl/factory.h"
#include "ssl/mae.h"
#include "ssl/simclr.h"
#include "tools/common/files.h"
#include "tools/pretrain/build.h"

namespace bissl::pretrain {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCheckpointFormat = "bissl-pretrain-checkpoint-1";

struct Parts {
  std::shared_ptr<const data::ImageSet> train;
  std::shared_ptr<nn::Layer> backbone;
  std::shared_ptr<ssl::Objective> objective;
  std::unique_ptr<optim::Optimizer> opt;
  std::vector<Tensor> params;  // the optimiser's: the backbone's, then the heads'
  Device dev = Device::CPU;
};

Parts build(const Config& c) {
  Parts p;
  p.dev = device_of(c.device);
  p.train = load_data(c);
  Generator g(c.seed);
  int64_t fdim = 0;
  p.backbone = models::make_backbone(c.model, p.train->c, c.image_size, g, fdim);
  p.objective = ssl::make_objective(c.method, c.model, *p.backbone, p.train->c, c.image_size, fdim, g, target_seed(c));
  p.backbone->to(p.dev);
  p.objective->to(p.dev);
  std::vector<Tensor> params = p.backbone->parameters();
  for (auto& t : p.objective->head_parameters()) params.push_back(t);
  p.params = params;
  if (c.optimizer == "lars") p.opt = std::make_unique<optim::LARS>(params, c.lr, c.momentum, c.weight_decay, c.trust);
  else if (c.optimizer == "adamw") p.opt = std::make_unique<optim::AdamW>(params, c.lr, 0.9, 0.95, 1e-8, c.weight_decay);
  else p.opt = std::make_unique<optim::SGD>(params, c.lr, c.momentum, c.weight_decay);
  return p;
}

struct Position {
  int64_t step = 0, epoch = 0, batch_in_epoch = 0;
};

void save_checkpoint(const std::string& path, const Config& c, Parts& p, const Position& pos) {
  io::NamedTensors all = nn::prefixed("backbone.", p.backbone->state_dict());
  for (auto& kv : nn::prefixed("objective.", p.objective->state_dict())) all.push_back(kv);
  for (auto& kv : nn::prefixed("optim.", p.opt->state_dict())) all.push_back(kv);
  io::save_safetensors(path, all,
                       {{"format", kCheckpointFormat},
                        {"step", std::to_string(pos.step)},
                        {"epoch", std::to_string(pos.epoch)},
                        {"batch_in_epoch", std::to_string(pos.batch_in_epoch)},
                        {"config", c.to_toml()}});
}

int64_t meta_int(const io::SafetensorsFile& f, const std::string& k, const std::string& path) {
  auto it = f.metadata.find(k);
  BISSL_CHECK(it != f.metadata.end(), "resume: checkpoint '", path, "' has no '", k, "' in its metadata");
  return std::stoll(it->second);
}

void save_weights(const Config& c, Parts& p, const std::string& dir) {
  models::save_backbone(*p.backbone, dir + "/backbone.safetensors",
                        normalization_metadata({c.norm_mean, c.norm_std}));
  nn::save_module(*p.objective, dir + "/objective.safetensors", {{"method", c.method.name}});
}

std::string eta(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  int64_t t = int64_t(s);
  char b[32];
  if (t >= 3600) std::snprintf(b, sizeof b, "%lldh%02lldm", (long long)(t / 3600), (long long)(t % 3600 / 60));
  else std::snprintf(b, sizeof b, "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
  return b;
}

}  // namespace

Summary run(Config cfg, const std::string& resume_from, int64_t stop_after) {
  set_numerics(parse_numerics(cfg.numerics));  // a no-op after tool_main's enter_numerics
  io::SafetensorsFile ckpt;
  Position pos;
  if (!resume_from.empty()) {
    ckpt = io::load_safetensors(resume_from);
    auto fmt = ckpt.metadata.find("format");
    BISSL_CHECK(fmt != ckpt.metadata.end() && fmt->second == kCheckpointFormat, "resume: '", resume_from,
                "' is not a bissl-pretrain checkpoint (expected metadata format=", kCheckpointFormat, ")");
    Config saved;
    saved.load_toml_string(ckpt.metadata.at("config"), resume_from + " (saved config)");
    saved.out = cfg.out;      // outputs may move
    if (cfg.steps > 0) saved.steps = cfg.steps;
    cfg = saved;
    pos = {meta_int(ckpt, "step", resume_from), meta_int(ckpt, "epoch", resume_from),
           meta_int(ckpt, "batch_in_epoch", resume_from)};
  }
  cfg.validate();
  // Several ranks (mpirun, docs/distributed.md): every rank holds a block of
  // each batch and the same replicated model; rank 0 alone writes (the
  // writers are collective: dist::on_root) and prints.
  const bool root = dist::is_root();
  const int ranks = dist::size();
  BISSL_CHECK(cfg.batch_size % ranks == 0, "pretrain: train.batch_size ", cfg.batch_size, " does not split over ",
              ranks, " ranks; use a multiple of ", ranks);
  dist::on_root([&] { fs::create_directories(cfg.out); });
  files::write_text_atomic(cfg.out + "/config.toml", cfg.to_toml(/*docs=*/true));
  if (root) {
    std::fprintf(stderr, "bissl-pretrain: resolved config\n%s", cfg.to_toml().c_str());
    std::fprintf(stderr, "backend: %s\n", backend_summary().c_str());
    if (ranks > 1)
      std::fprintf(stderr, "ranks: %d, %lld images each per step, batch norm %s\n", ranks,
                   (long long)(cfg.batch_size / ranks), cfg.sync_batch_norm ? "over the whole batch (sync)" : "per rank");
  }

  Parts p = build(cfg);
  // The views' normalisation (data.normalize): stored with the run, in its
  // backbone.safetensors and normalization.json, for every later stage.
  {
    data::Normalization n = compute_normalization(cfg, *p.train);
    cfg.norm_mean = n.mean, cfg.norm_std = n.std;
    const data::Normalization used = n.empty() ? data::Normalization{data::default_mean(p.train->c),
                                                                     data::default_std(p.train->c)}
                                               : n;
    nlohmann::json j{{"normalize", cfg.normalize}, {"mean", used.mean}, {"std", used.std}};
    if (cfg.normalize == "pretext")
      j["images"] = data::evenly_spaced(p.train->n, cfg.stats_images).size();
    files::write_text_atomic(cfg.out + "/normalization.json", j.dump(2) + "\n");
    if (root) {
      std::fprintf(stderr, "normalisation (%s): %s\n", cfg.normalize.c_str(),
                   describe_normalization(n, p.train->c).c_str());
    }
  }
  if (!resume_from.empty()) {
    p.backbone->load_state_dict(nn::with_prefix(ckpt, "backbone."));
    p.objective->load_state_dict(nn::with_prefix(ckpt, "objective."));
    p.opt->load_state_dict(nn::with_prefix(ckpt, "optim."));
    if (root) std::fprintf(stderr, "resumed from %s at step %lld\n", resume_from.c_str(), (long long)pos.step);
  }
  p.backbone->train();
  p.objective->train();
  // Ghost sizes count rows of the whole batch (engine/nn/layers.h): 0, the
  // default, is the whole batch, synchronised over the ranks; false keeps
  // each rank's rows.
  const int64_t ghost = cfg.sync_batch_norm ? 0 : cfg.batch_size / ranks;
  nn::set_ghost_batch(*p.backbone, ghost);
  nn::set_ghost_batch(*p.objective, ghost);

  data::LoaderOptions lo;
  lo.batch_size = cfg.batch_size;
  lo.drop_last = true;
  lo.shuffle = true;
  lo.seed = cfg.seed;
  lo.workers = cfg.workers;
  lo.cycle = true;
  lo.device = p.dev;
  lo.views = pretext_views(cfg, p.train->c);
  lo.rank = dist::rank(), lo.world = ranks;  // batch_size stays the whole job's
  data::Loader loader(p.train, lo);
  BISSL_CHECK(loader.batches_per_epoch() > 0, "pretrain: ", p.train->n, " images make no batch of ", cfg.batch_size);
  int64_t total = cfg.steps > 0 ? cfg.steps : cfg.epochs * loader.batches_per_epoch();
  int64_t warm = cfg.warmup >= 1 ? int64_t(cfg.warmup) : int64_t(cfg.warmup * double(total));
  optim::WarmupCosine sched{cfg.lr, warm, std::max(total, warm), cfg.lr * cfg.final_lr_ratio};

  // Resume: the batch stream is a pure function of (seed, epoch, step).
  loader.start_epoch(pos.epoch);
  data::Batch b;
  for (int64_t i = 0; i < pos.batch_in_epoch; ++i) loader.next(b);

  // A resumed run keeps the lines up to its checkpoint (a killed run may have
  // logged steps after it, which are about to be redone).
  if (!resume_from.empty() && fs::exists(cfg.out + "/metrics.jsonl")) {
    std::string keep;
    for (auto& row : files::read_jsonl(cfg.out + "/metrics.jsonl"))
      if (row.value("step", int64_t(0)) <= pos.step) keep += row.dump() + "\n";
    files::write_text_atomic(cfg.out + "/metrics.jsonl", keep);
  }
  std::ofstream metrics;
  if (root) metrics.open(cfg.out + "/metrics.jsonl", resume_from.empty() ? std::ios::trunc : std::ios::app);
  auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  int64_t last_step = pos.step, done_here = 0;
  double loss_v = 0, rate = 0;
  bool tty = root && isatty(2);
  const std::string ckpt_path = cfg.out + "/checkpoint.safetensors";

  dist::GradReducer reducer(p.params);  // sums started while the backward runs
  while (pos.step < total && (stop_after <= 0 || done_here < stop_after)) {
    ScopedRange range("pretrain step");
    loader.next(b);
    ssl::SslBatch sb;
    sb.view1 = b.views[0];
    if (b.views.size() > 1) sb.view2 = b.views[1];
    sb.seed = cfg.seed * 1000003ull + uint64_t(pos.step);
    p.objective->before_train_step(*p.backbone);
    Tensor loss = p.objective->loss(*p.backbone, sb);  // this rank's share on several ranks
    loss_v = dist::all_reduce_sum(loss.item());
    if (!std::isfinite(loss_v)) {
      std::string where = cfg.out + "/checkpoint_nonfinite.safetensors";
      // Every rank sees the same sum and calls the (collective) save, so
      // no rank's error ends the job before rank 0 has written.
      save_checkpoint(where, cfg, p, pos);
      throw Error(str("pretrain: the loss is ", loss_v, " at step ", pos.step, " (epoch ", b.epoch, ", batch ", b.step,
                      "); the state before this step is saved to ", where));
    }
    p.opt->zero_grad();
    reducer.backward(loss);  // the whole batch's gradient on every rank
    p.opt->lr = sched.lr_at(pos.step);
    p.opt->step();
    ++pos.step, ++done_here;
    pos.epoch = b.epoch;
    pos.batch_in_epoch = b.step + 1;
    if (pos.batch_in_epoch == loader.batches_per_epoch()) ++pos.epoch, pos.batch_in_epoch = 0;

    bool log_now = root && (pos.step % std::max<int64_t>(cfg.log_every, 1) == 0 || pos.step == total);
    if (log_now) {
      auto now = std::chrono::steady_clock::now();
      double dt = std::chrono::duration<double>(now - last).count();
      rate = double((pos.step - last_step) * cfg.batch_size) / std::max(dt, 1e-9);
      last = now, last_step = pos.step;
      double elapsed = std::chrono::duration<double>(now - t0).count();
      double eta_s = double(total - pos.step) * cfg.batch_size / std::max(rate, 1e-9);
      metrics << nlohmann::json{{"step", pos.step},        {"epoch", b.epoch},   {"loss", loss_v},
                                {"lr", p.opt->lr},          {"images_per_s", rate}, {"elapsed_s", elapsed},
                                {"data_wait_s", loader.wait_seconds()}}
                     .dump()
              << "\n";
      metrics.flush();
      BISSL_CHECK(metrics, "pretrain: writing ", cfg.out, "/metrics.jsonl failed (disk full?)");
      std::fprintf(stderr, "%sstep %lld/%lld [%3.0f%%] epoch %lld | loss %.4f | lr %.4g | %.1f img/s | ETA %s%s",
                   tty ? "\r" : "", (long long)pos.step, (long long)total, 100.0 * double(pos.step) / double(total),
                   (long long)b.epoch, loss_v, p.opt->lr, rate, eta(eta_s).c_str(), tty ? "   " : "\n");
    }
    if (cfg.checkpoint_every > 0 && pos.step % cfg.checkpoint_every == 0) save_checkpoint(ckpt_path, cfg, p, pos);
  }
  if (tty) std::fprintf(stderr, "\n");
  save_checkpoint(ckpt_path, cfg, p, pos);
  Summary s;
  s.steps = pos.step;
  s.final_loss = loss_v;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.images_per_s = double(done_here * cfg.batch_size) / std::max(s.seconds, 1e-9);
  if (pos.step >= total) save_weights(cfg, p, cfg.out);
  files::write_json_atomic(cfg.out + "/summary.json", nlohmann::json{{"steps", s.steps},
                                                                   {"final_loss", s.final_loss},
                                                                   {"images_per_s", s.images_per_s},
                                                                   {"seconds", s.seconds},
                                                                   {"ranks", ranks},
                                                                   {"communication_seconds", dist::communication_seconds()},
                                                                   {"backend", backend_summary()},
                                                                   {"finished", pos.step >= total}});
  return s;
}

}  // namespace bissl::pretrain
