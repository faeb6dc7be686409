// The BiSSL trainer on N ranks × B/N rows against one process × B rows, in
// f64: two whole alternations (lower and upper phases, CG over H·v, both
// optimisers, BYOL's EMA, the schedules), then θD, θP, the heads, the BN
// buffers and the optimiser states compared within 3e-11 (kBound), and the same bits
// on every rank. Per-rank BN against ghost BN of the local size, SyncBN
// against whole-batch BN; SimCLR (gathered negatives), BYOL, MAE (global
// masks and drop path); fresh and replayed H·v; the reference's 1/W
// operator; the weighted-sum baseline; and a resume of an N-rank state on
// one process.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <type_traits>

#include "bilevel/trainer.h"
#include "engine/nn/layers.h"
#include "models/vit.h"
#include "ssl/byol.h"
#include "ssl/mae.h"
#include "ssl/simclr.h"
#include "tests/dist/dist_support.h"

using namespace bissl;
using namespace bissl::bilevel;
using namespace bissl::dist_test;

namespace {

constexpr int64_t kB = 12;  // the job's batch: 12, 6, 4 or 3 rows per rank on 1-4 ranks

// Batches as a pure function of (epoch, index); each rank serves its block
// of rows [rank·b, (rank+1)·b) of the whole batch (the loader's layout).
template <class B>
class BlockStream : public BatchStream<B> {
 public:
  BlockStream(int64_t bpe, std::function<B(int64_t, int64_t)> make, int rank, int world)
      : bpe_(bpe), make_(std::move(make)), rank_(rank), world_(world) {}
  int64_t batches_per_epoch() const override { return bpe_; }
  int64_t epoch() const override { return epoch_; }
  int64_t remaining() const override { return bpe_ - pos_; }
  void new_epoch() override { ++epoch_, pos_ = 0; }
  void seek(int64_t e, int64_t c) override { epoch_ = e, pos_ = c; }
  B next_in_epoch() override { return block(make_(epoch_, pos_++)); }
  B first_of_epoch(int64_t e, uint64_t draw) override {
    B b = block(make_(e, 0));
    if constexpr (std::is_same_v<B, ssl::SslBatch>) b.seed += 1000000 * draw;
    return b;
  }

 private:
  Tensor rows(const Tensor& t) const {
    if (!t.defined() || world_ == 1) return t;
    const int64_t b = t.shape()[0] / world_;
    return slice(t, 0, rank_ * b, (rank_ + 1) * b).clone();
  }
  B block(B b) const {
    if constexpr (std::is_same_v<B, ssl::SslBatch>) b.view1 = rows(b.view1), b.view2 = rows(b.view2);
    else b.x = rows(b.x), b.y = rows(b.y);
    return b;
  }
  int64_t bpe_, epoch_ = 0, pos_ = 0;
  std::function<B(int64_t, int64_t)> make_;
  int rank_, world_;
};

enum class Obj { SimCLR, BYOL, MAE };

// The models of one job, identical on every rank (fixed seeds).
struct Job {
  std::shared_ptr<nn::Layer> d, p;
  std::shared_ptr<ssl::Objective> obj;
  std::shared_ptr<nn::Linear> head;
  BilevelModels models() { return {d.get(), p.get(), obj.get(), head.get()}; }
  std::vector<nn::Module*> modules() { return {d.get(), p.get(), obj.get(), head.get()}; }
};

models::ViTConfig tiny_vit() {
  models::ViTConfig c;
  c.image_size = 8, c.patch_size = 4, c.in_channels = 2, c.embed_dim = 8, c.depth = 2, c.num_heads = 2;
  c.drop_path_rate = 0.3;  // drawn per row: the global draw is checked too
  return c;
}

Job make_job(Obj kind) {
  Job j;
  Generator g1(7), g2(7), g(8);
  if (kind == Obj::MAE) {
    j.d = std::make_shared<models::ViT>(tiny_vit(), g1);
    j.p = std::make_shared<models::ViT>(tiny_vit(), g2);
    ssl::MaeConfig mc;
    mc.decoder_dim = 8, mc.decoder_depth = 1, mc.decoder_heads = 2;
    j.obj = std::make_shared<ssl::MaeObjective>(tiny_vit(), mc, g);
  } else {
    j.d = std::make_shared<testing::TinyConvNet>(2, 8, g1);
    j.p = std::make_shared<testing::TinyConvNet>(2, 8, g2);
    if (kind == Obj::BYOL) {
      ssl::ByolOptions o;
      o.hidden_dim = 8, o.out_dim = 4, o.pred_hidden_dim = 8, o.ema_decay = 0.9;
      auto factory = [] {
        Generator gg(99);
        return std::static_pointer_cast<nn::Layer>(std::make_shared<testing::TinyConvNet>(2, 8, gg));
      };
      j.obj = std::make_shared<ssl::BYOL>(*j.p, factory, 8, g, o);
    } else {
      ssl::SimclrOptions o;
      o.hidden_dim = 8, o.out_dim = 4;
      j.obj = std::make_shared<ssl::SimCLR>(8, g, o);
    }
  }
  j.head = std::make_shared<nn::Linear>(8, 3, g);
  for (nn::Module* m : j.modules()) m->to(DType::F64);
  NoGradGuard ng;
  for (auto& t : j.d->parameters()) t.copy_(add(t, mul(randn(t.shape(), g, DType::F64), 0.05)));
  return j;
}

int64_t side(Obj kind) { return kind == Obj::MAE ? 8 : 5; }

ssl::SslBatch pretext_batch(Obj kind, int64_t e, int64_t i) {
  Generator g(100 + uint64_t(e * 1000 + i));
  const int64_t s = side(kind);
  Tensor v1 = randn({kB, s, s, 2}, g, DType::F64);
  Tensor v2 = kind == Obj::MAE ? Tensor() : randn({kB, s, s, 2}, g, DType::F64);
  return {v1, v2, uint64_t(e * 1000 + i)};
}

DownstreamBatch downstream_batch(Obj kind, int64_t e, int64_t i) {
  Generator g(900 + uint64_t(e * 1000 + i));
  const int64_t s = side(kind);
  return {randn({kB, s, s, 2}, g, DType::F64), randint({kB}, 0, 3, g)};
}

BilevelOptions small_options() {
  BilevelOptions o;
  o.alternations = 3;
  o.lower_steps = 3;
  o.upper_steps = 2;
  o.cg.iterations = 2;
  o.lower_lr = 0.1;
  o.lower_warmup = 2;
  o.upper_lr = 0.05;
  o.upper_wd = 1e-3;
  o.ghost_lower = o.ghost_upper = 0;
  return o;
}

struct Case {
  std::string name;
  Obj kind = Obj::SimCLR;
  bool sync = false;  // SyncBN against whole-batch BN; else per-rank BN against ghost BN of the local size
  std::function<void(BilevelOptions&)> tweak;
};

// Everything a run leaves, flattened: parameters, buffers, trainer state.
struct Outcome {
  std::vector<double> params, buffers, state;
  std::vector<Tensor> param_tensors;  // the models' state, for the same-bits check
};

Outcome outcome_of(Job& j, BilevelTrainer& t) {
  Outcome out;
  std::vector<Tensor> ps, bs, ss;
  for (nn::Module* m : j.modules()) {
    for (auto& [k, v] : m->named_parameters()) ps.push_back(v.detach());
    for (auto& [k, v] : m->named_buffers()) bs.push_back(v.to(DType::F64));
    for (auto& [k, v] : m->state_dict()) out.param_tensors.push_back(v.detach());
  }
  for (auto& [k, v] : t.state_dict()) ss.push_back(v.to(DType::F64));
  out.params = flat(ps), out.buffers = flat(bs), out.state = flat(ss);
  return out;
}

// A job on `world` ranks of which this is `rank` (1, 0: one process).
struct Run {
  Job job;
  BlockStream<ssl::SslBatch> lower;
  BlockStream<DownstreamBatch> upper;
  std::unique_ptr<BilevelTrainer> trainer;
  Run(const Case& c, int rank, int world)
      : job(make_job(c.kind)),
        lower(5, [k = c.kind](int64_t e, int64_t i) { return pretext_batch(k, e, i); }, rank, world),
        upper(3, [k = c.kind](int64_t e, int64_t i) { return downstream_batch(k, e, i); }, rank, world) {
    BilevelOptions o = small_options();
    if (!c.sync) o.ghost_lower = o.ghost_upper = kB / N();  // the local size, in both runs
    if (c.tweak) c.tweak(o);
    for (nn::Module* m : job.modules()) nn::set_sync_batch_norm(*m, c.sync);
    trainer = std::make_unique<BilevelTrainer>(job.models(), o, lower, upper);
  }
};

// The bound: summation order alone moves these runs by ~1e-12. One process
// whose θP starts perturbed by 2e-16 (relative, one rounding) ends an
// alternation 2e-13 away in its parameters and 9e-13 in its optimiser
// states (SimCLR, per-rank BN; measured 2026-12-07): BN over 3-6 rows, LARS
// and CG amplify roundings ~1000-fold. N ranks measured at most 2.4e-12
// (parameters) and 5e-12 (states) over np 2-4; MAE (LayerNorm only) 3e-17.
// The weakest wrong rule, the proximal term added on every rank (λ = 0.001,
// np 2), moves the parameters by 4e-6.
constexpr double kBound = 3e-11;

void compare(const Outcome& got, const Outcome& ref, const std::string& what) {
  CAPTURE(what);
  const double ep = rel(got.params, ref.params), eb = rel(got.buffers, ref.buffers), es = rel(got.state, ref.state);
  CHECK(ep <= kBound);
  CHECK(eb <= kBound);
  CHECK(es <= kBound);
  if (R() == 0)
    MESSAGE("np " << N() << ", " << what << ": parameters " << ep << ", buffers " << eb << ", optimiser states " << es);
}

}  // namespace

TEST_CASE("BiSSL alternations on N ranks equal one process on the whole batch") {
  const std::vector<Case> cases = {
      {"SimCLR, per-rank BN", Obj::SimCLR, false, nullptr},
      {"SimCLR, SyncBN, replayed H·v", Obj::SimCLR, true, [](BilevelOptions& o) { o.cg_linearize = true; }},
      {"BYOL, per-rank BN, replayed H·v", Obj::BYOL, false, [](BilevelOptions& o) { o.cg_linearize = true; }},
      {"BYOL, SyncBN", Obj::BYOL, true, nullptr},
      {"MAE with drop path", Obj::MAE, false, nullptr},
      {"SimCLR, the reference's 1/W operator (W = 2)", Obj::SimCLR, false,
       [](BilevelOptions& o) { o.reference_devices = 2; }},
      {"SimCLR, CG batch 'next', CG leaves the BN buffers", Obj::SimCLR, false,
       [](BilevelOptions& o) { o.cg_batch = "next", o.cg_updates_bn = false; }},
      {"weighted sum baseline", Obj::SimCLR, false, [](BilevelOptions& o) { o.variant = Variant::WeightedSum; }},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    Outcome ref;
    {
      dist::CommScope self(dist::kSelf);
      Run one(c, 0, 1);
      for (int a = 0; a < 2; ++a) one.trainer->alternation();
      ref = outcome_of(one.job, *one.trainer);
    }
    Run many(c, R(), N());
    AlternationStats st;
    for (int a = 0; a < 2; ++a) st = many.trainer->alternation();
    const Outcome got = outcome_of(many.job, *many.trainer);
    compare(got, ref, c.name);
    // Replicas: the same bits on every rank (parameters, buffers, states).
    bool same = true;
    for (const Tensor& t : got.param_tensors) same = same && same_bits_everywhere(t);
    for (auto& [k, v] : many.trainer->state_dict()) same = same && same_bits_everywhere(v);
    CHECK(same);
    CHECK(std::isfinite(st.lower_loss));
  }
}

TEST_CASE("a trainer state from N ranks resumes on one process on the same trajectory") {
  const Case c{"BYOL, per-rank BN", Obj::BYOL, false, nullptr};
  Outcome ref;
  {
    dist::CommScope self(dist::kSelf);
    Run one(c, 0, 1);
    for (int a = 0; a < 3; ++a) one.trainer->alternation();
    ref = outcome_of(one.job, *one.trainer);
  }
  // One alternation on N ranks; its models and trainer state (as a
  // checkpoint holds them) continue on one process for two more.
  Run many(c, R(), N());
  many.trainer->alternation();
  std::vector<nn::StateDict> models;
  for (nn::Module* m : many.job.modules()) models.push_back(m->state_dict());
  const optim::StateDict state = many.trainer->state_dict();
  dist::CommScope self(dist::kSelf);
  Run resumed(c, 0, 1);
  for (size_t i = 0; i < models.size(); ++i) resumed.job.modules()[i]->load_state_dict(models[i]);
  resumed.trainer->load_state_dict(state);
  for (int a = 0; a < 2; ++a) resumed.trainer->alternation();
  compare(outcome_of(resumed.job, *resumed.trainer), ref, "resumed on one process after one alternation on N");
}
