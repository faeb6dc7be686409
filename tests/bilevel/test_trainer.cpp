// The BiSSL trainer (Algorithm 1): step counts per level, which parameters
// each optimiser touches, batch-stream reshuffle points, the fixed pretext
// batch within an upper phase, the upper gradients against an independent
// computation, the lower objective, BYOL's EMA untouched by HVPs, exact
// resume, and errors on non-finite losses. Tiny f64 networks on in-memory
// streams.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "bilevel/trainer.h"
#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "ssl/byol.h"
#include "ssl/simclr.h"
#include "tests/support.h"

using namespace bissl;
using namespace bissl::bilevel;
using bissl::testing::TinyConvNet;

namespace {

// Batches are a pure function of (epoch, index); every batch served is logged.
template <class B>
class MemStream : public BatchStream<B> {
 public:
  MemStream(int64_t bpe, std::function<B(int64_t, int64_t)> make) : bpe_(bpe), make_(std::move(make)) {}
  int64_t batches_per_epoch() const override { return bpe_; }
  int64_t epoch() const override { return epoch_; }
  int64_t remaining() const override { return bpe_ - pos_; }
  void new_epoch() override { ++epoch_, pos_ = 0; }
  void seek(int64_t e, int64_t c) override { epoch_ = e, pos_ = c; }
  B next_in_epoch() override {
    served.push_back({epoch_, pos_});
    return make_(epoch_, pos_++);
  }
  // Batch 0 of epoch e; a pretext batch's seed tells the draw (its "augmentation").
  B first_of_epoch(int64_t e, uint64_t draw) override {
    peeked.push_back({e, int64_t(draw)});
    B b = make_(e, 0);
    if constexpr (std::is_same_v<B, ssl::SslBatch>) b.seed += 1000000 * draw;
    return b;
  }
  std::vector<std::pair<int64_t, int64_t>> served, peeked;

 private:
  int64_t bpe_, epoch_ = 0, pos_ = 0;
  std::function<B(int64_t, int64_t)> make_;
};

uint64_t code(int64_t e, int64_t i) { return uint64_t(e * 1000 + i); }

ssl::SslBatch pretext_batch(int64_t e, int64_t i) {
  Generator g(100 + code(e, i));
  return {randn({4, 5, 5, 2}, g, DType::F64), randn({4, 5, 5, 2}, g, DType::F64), code(e, i)};
}

DownstreamBatch downstream_batch(int64_t e, int64_t i) {
  Generator g(900 + code(e, i));
  return {randn({4, 5, 5, 2}, g, DType::F64), randint({4}, 0, 3, g)};
}

// A multi-label task's batch: multi-hot targets [4, 3] (rows with 0 to 3 classes).
DownstreamBatch multi_label_batch(int64_t e, int64_t i) {
  Generator g(900 + code(e, i));
  Tensor x = randn({4, 5, 5, 2}, g, DType::F64);
  Tensor y = randint({4, 3}, 0, 2, g).to(DType::F64);
  return {x, y};
}

// θD, θP (same init, θD nudged so the two differ), SimCLR (or BYOL) heads, φD.
struct Setup {
  std::shared_ptr<TinyConvNet> d, p;
  std::shared_ptr<ssl::Objective> obj;
  std::shared_ptr<nn::Linear> head;
  MemStream<ssl::SslBatch> lower;
  MemStream<DownstreamBatch> upper;

  explicit Setup(int64_t lower_bpe = 5, int64_t upper_bpe = 3, bool byol = false, bool multi_label = false)
      : lower(lower_bpe, pretext_batch), upper(upper_bpe, multi_label ? multi_label_batch : downstream_batch) {
    Generator g1(7), g2(7), g(8);
    d = std::make_shared<TinyConvNet>(2, 8, g1);
    p = std::make_shared<TinyConvNet>(2, 8, g2);
    if (byol) {
      ssl::ByolOptions o;
      o.hidden_dim = 8, o.out_dim = 4, o.pred_hidden_dim = 8, o.ema_decay = 0.9;
      auto factory = [] {
        Generator gg(99);
        return std::static_pointer_cast<nn::Layer>(std::make_shared<TinyConvNet>(2, 8, gg));
      };
      obj = std::make_shared<ssl::BYOL>(*p, factory, 8, g, o);
    } else {
      ssl::SimclrOptions o;
      o.hidden_dim = 8, o.out_dim = 4;
      obj = std::make_shared<ssl::SimCLR>(8, g, o);
    }
    head = std::make_shared<nn::Linear>(8, 3, g);
    for (nn::Module* m : {static_cast<nn::Module*>(d.get()), static_cast<nn::Module*>(p.get()),
                          static_cast<nn::Module*>(obj.get()), static_cast<nn::Module*>(head.get())})
      m->to(DType::F64);
    NoGradGuard ng;
    for (auto& t : d->parameters()) t.copy_(add(t, mul(randn(t.shape(), g, DType::F64), 0.05)));
  }
  BilevelModels models() { return {d.get(), p.get(), obj.get(), head.get()}; }
};

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
  return o;
}

std::vector<Tensor> snap(const std::vector<Tensor>& ts) {
  std::vector<Tensor> r;
  for (auto& t : ts) r.push_back(t.detach().clone());
  return r;
}

double max_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    auto va = a[i].to_vector(), vb = b[i].to_vector();
    for (size_t j = 0; j < va.size(); ++j) m = std::max(m, std::abs(va[j] - vb[j]));
  }
  return m;
}

using Served = std::vector<std::pair<int64_t, int64_t>>;

}  // namespace

TEST_SUITE("trainer") {
  TEST_CASE("Algorithm 1 bookkeeping: step counts, HVPs, reshuffle points, the fixed pretext batch (cg_batch next)") {
    Setup s(/*lower_bpe=*/5, /*upper_bpe=*/3);
    BilevelOptions o = small_options();
    o.cg_batch = "next";
    BilevelTrainer t(s.models(), o, s.lower, s.upper);
    std::vector<std::vector<uint64_t>> cg_batches(1);
    t.on_cg = [&](const ssl::SslBatch& b) { cg_batches.back().push_back(b.seed); };
    for (int a = 0; a < 3; ++a) {
      AlternationStats st = t.alternation();
      CHECK(st.alternation == a + 1);
      CHECK(st.lower_steps == 3);
      CHECK(st.upper_steps == 2);
      CHECK(st.hvps == 2 * 2);  // N_U x CG iterations
      CHECK(st.cg_residual_first > 0);
      cg_batches.emplace_back();
    }
    CHECK(t.lower_steps_done() == 9);
    CHECK(t.upper_steps_done() == 6);
    // Lower stream (5 per epoch): 3 lower batches + 1 fixed per alternation; a new
    // epoch when fewer than 3 remain at the start of a lower phase.
    CHECK(s.lower.served == Served{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 1}, {1, 2}, {1, 3},
                                   {2, 0}, {2, 1}, {2, 2}, {2, 3}});
    CHECK(s.lower.reshuffles() == 2);
    // Upper stream (3 per epoch, 2 per phase): 0,1 | new epoch (1 left < 2) 0,1 | new epoch 0,1.
    CHECK(s.upper.served == Served{{0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {2, 1}});
    // One pretext batch for all the CG solves of a phase: the one after its lower steps.
    CHECK(cg_batches[0] == std::vector<uint64_t>{code(0, 3), code(0, 3)});
    CHECK(cg_batches[1] == std::vector<uint64_t>{code(1, 3), code(1, 3)});
    CHECK(cg_batches[2] == std::vector<uint64_t>{code(2, 3), code(2, 3)});
  }

  TEST_CASE("the reference's CG batch: the first of the lower epoch, drawn anew each alternation, not consumed") {
    Setup s(/*lower_bpe=*/7, /*upper_bpe=*/3);
    BilevelOptions o = small_options();
    o.alternations = 4;
    BilevelTrainer t(s.models(), o, s.lower, s.upper);
    std::vector<std::vector<uint64_t>> cg_batches(1);
    t.on_cg = [&](const ssl::SslBatch& b) { cg_batches.back().push_back(b.seed); };
    for (int a = 0; a < 4; ++a) {
      t.alternation();
      cg_batches.emplace_back();
    }
    // 3 lower batches per alternation, 7 per epoch: 0-2, 3-5 | new epoch (1 left) 0-2, 3-5; no batch for CG.
    CHECK(s.lower.served == Served{{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5},
                                   {1, 0}, {1, 1}, {1, 2}, {1, 3}, {1, 4}, {1, 5}});
    CHECK(s.lower.reshuffles() == 1);
    // The CG batch: batch 0 of the epoch the lower phase drew from, draw = the alternation.
    CHECK(s.lower.peeked == Served{{0, 1}, {0, 2}, {1, 3}, {1, 4}});
    for (int a = 0; a < 4; ++a) {
      const uint64_t want = code(a < 2 ? 0 : 1, 0) + 1000000ull * uint64_t(a + 1);
      CHECK(cg_batches[size_t(a)] == std::vector<uint64_t>{want, want});  // one batch for the phase's solves
    }
    // Resumed between alternations 3 and 4, the CG batch is still epoch 1's: the
    // checkpoint keeps the epoch of the last lower batch.
    optim::StateDict sd = t.state_dict();
    Setup r(7, 3);
    BilevelTrainer t2(r.models(), o, r.lower, r.upper);
    t2.load_state_dict(sd);
    CHECK(r.lower.served_epoch() == 1);
  }

  TEST_CASE("both levels' schedules step as the reference's; 'shifted' is the earlier rule") {
    for (const char* rule : {"reference", "shifted"}) {
      CAPTURE(rule);
      Setup s;
      BilevelOptions o = small_options();  // lower: warm-up 2, 9 steps; upper: 6 steps
      o.schedule = rule;
      const bool ref = o.schedule == "reference";
      BilevelTrainer t(s.models(), o, s.lower, s.upper);
      std::vector<double> lower, upper;
      for (int a = 0; a < 3; ++a) {
        AlternationStats st = t.alternation();
        lower.push_back(st.lower_lr), upper.push_back(st.upper_lr);
      }
      const double pi = 3.14159265358979323846;
      auto cosine = [&](double base, double t, double w, double total) {
        const double end = ref ? 0.001 * base : 0.0;
        return end + 0.5 * (base - end) * (1 + std::cos(pi * (t - w) / (total - w)));
      };
      // The last step of each phase: lower steps 3, 6, 9 run at f(2), f(5), f(8),
      // upper steps 2, 4, 6 at f(1), f(3), f(5); the rules differ in the end lr.
      for (int a = 0; a < 3; ++a) {
        const double k = 3.0 * (a + 1), j = 2.0 * (a + 1);
        CHECK(lower[size_t(a)] == doctest::Approx(cosine(0.1, k - 1, 2, 9)));
        CHECK(upper[size_t(a)] == doctest::Approx(cosine(0.05, j - 1, 0, 6)));
      }
      // ... and in the warm-up: step 1 at the base lr (reference) or base/W
      // (shifted); step 2 at base·1/W or base·2/W.
      Setup w;
      BilevelOptions ow = o;
      ow.lower_steps = 1;
      BilevelTrainer tw(w.models(), ow, w.lower, w.upper);
      AlternationStats s1, s2;
      tw.lower_phase(s1);
      tw.lower_phase(s2);
      CHECK(s1.lower_lr == doctest::Approx(ref ? 0.1 : 0.05));
      CHECK(s2.lower_lr == doctest::Approx(ref ? 0.05 : 0.1));
    }
    BilevelOptions o;
    o.lower_steps = 7;
    Setup s;
    o.upper_lr = 0.05, o.upper_wd = 0, o.alternations = 100;
    BilevelTrainer t(s.models(), o, s.lower, s.upper);  // lower_warmup -1: 10·N_L = 70 steps
    AlternationStats st;
    t.lower_phase(st);
    CHECK(st.lower_lr == doctest::Approx(1.0 * 6 / 70));  // step 7 at f(6)
  }

  TEST_CASE("reference_devices: the reference's W-device H·v; the BN buffers move as with the exact one") {
    Setup a, b;
    BilevelOptions o = small_options();
    o.alternations = 1;
    BilevelTrainer ta(a.models(), o, a.lower, a.upper);
    o.reference_devices = 4;
    BilevelTrainer tb(b.models(), o, b.lower, b.upper);
    AlternationStats sa = ta.alternation(), sb = tb.alternation();
    CHECK(sa.hvps == sb.hvps);
    CHECK(sa.lower_loss == sb.lower_loss);  // the lower phase is the same
    CHECK(max_diff(a.d->parameters(), b.d->parameters()) > 1e-9);  // u is not
    // θP's running statistics: the Gauss-Newton passes leave them as they were.
    auto buffers = [](nn::Module& m) {
      std::vector<Tensor> r;
      for (auto& [k, t] : m.named_buffers()) r.push_back(t);
      return r;
    };
    CHECK(max_diff(buffers(*a.p), buffers(*b.p)) == 0.0);
    // A pretext loss without a gathered tensor (MAE) is refused; the baselines ignore the option.
    struct NoSplit : ssl::SimCLR {
      using ssl::SimCLR::SimCLR;
      bool can_split() const override { return false; }
    };
    Generator g(3);
    NoSplit plain(8, g);
    Setup c;
    BilevelModels mc = c.models();
    mc.pretext = &plain;
    CHECK_THROWS_WITH_AS(BilevelTrainer(mc, o, c.lower, c.upper),
                         doctest::Contains("reference_devices = 4 needs a pretext loss with a gathered tensor"), Error);
    o.variant = Variant::IjDiscarded;
    CHECK_NOTHROW(BilevelTrainer(mc, o, c.lower, c.upper));
  }

  TEST_CASE("a non-finite u: an error naming the step, or the reference's nan_to_num and a zeroed upper step") {
    // H·v = −(λ+δ)·v makes I + H/(λ+δ) exactly zero (λ + δ = 1), and with
    // ε = 0 CG's first step is rr / 0 = inf: u = ±inf where the right-hand
    // side is not zero.
    BilevelOptions o = small_options();
    o.alternations = 1, o.upper_steps = 1, o.lambda = 0.5, o.delta = 0.5, o.cg.epsilon = 0, o.cg.iterations = 1;
    auto singular = [](const std::vector<Tensor>& v, std::vector<Tensor>& hv) {
      NoGradGuard ng;
      for (size_t i = 0; i < hv.size(); ++i) hv[i] = mul(v[i], -1.0);
    };
    {
      Setup s;
      BilevelTrainer t(s.models(), o, s.lower, s.upper);
      t.on_hvp = singular;
      CHECK_THROWS_WITH_AS(t.alternation(), doctest::Contains("the upper gradient norm is inf at alternation 1, step 1"),
                           Error);
    }
    o.cg.nan_to_num = true;
    Setup s;
    BilevelTrainer t(s.models(), o, s.lower, s.upper);
    t.on_hvp = singular;
    AlternationStats st;
    t.lower_phase(st);
    auto td0 = snap(s.d->parameters()), fd0 = snap(s.head->parameters());
    t.upper_phase(st);
    CHECK(st.cg_inf_replaced > 0);
    CHECK(std::isinf(st.upper_grad_norm));
    // Every upper gradient zeroed: the SGD step is weight decay alone, p − lr·wd·p.
    auto decayed = [&](const std::vector<Tensor>& p0) {
      std::vector<Tensor> r;
      for (auto& p : p0) r.push_back(mul(p, 1.0 - o.upper_lr * o.upper_wd));
      return r;
    };
    CHECK(max_diff(s.d->parameters(), decayed(td0)) <= 1e-15);
    CHECK(max_diff(s.head->parameters(), decayed(fd0)) <= 1e-15);
  }

  TEST_CASE("a downstream set smaller than a phase is cycled within the phase") {
    Setup s(/*lower_bpe=*/10, /*upper_bpe=*/1);
    BilevelOptions o = small_options();
    o.upper_steps = 3;
    BilevelTrainer t(s.models(), o, s.lower, s.upper);
    t.alternation();
    CHECK(s.upper.served == Served{{1, 0}, {2, 0}, {3, 0}});  // reserve(3) starts epoch 1, then dry -> 2, 3
    t.alternation();
    CHECK(s.upper.served.back() == std::make_pair(int64_t(6), int64_t(0)));
  }

  TEST_CASE("each optimiser touches only its level's parameters") {
    Setup s;
    BilevelTrainer t(s.models(), small_options(), s.lower, s.upper);
    auto tp = s.p->parameters(), td = s.d->parameters(), fp = s.obj->head_parameters(), fd = s.head->parameters();
    auto p0 = snap(tp), d0 = snap(td), fp0 = snap(fp), fd0 = snap(fd);
    AlternationStats st;
    t.lower_phase(st);
    CHECK(max_diff(td, d0) == 0.0);
    CHECK(max_diff(fd, fd0) == 0.0);
    CHECK(max_diff(tp, p0) > 0.0);
    CHECK(max_diff(fp, fp0) > 0.0);
    p0 = snap(tp), fp0 = snap(fp);
    t.upper_phase(st);
    CHECK(max_diff(tp, p0) == 0.0);
    CHECK(max_diff(fp, fp0) == 0.0);
    CHECK(max_diff(td, d0) > 0.0);
    CHECK(max_diff(fd, fd0) > 0.0);
    CHECK(t.lower_optimizer().param_groups()[0].params.size() == tp.size() + fp.size());
    CHECK(t.upper_optimizer()->param_groups()[0].params.size() == td.size() + fd.size());
  }

  TEST_CASE("one upper step applies u + ∇θD L_D to θD and both φD gradients to φD (class and multi-hot targets)") {
    for (bool multi : {false, true})
    for (Variant v : {Variant::BiSSL, Variant::IjDiscarded}) {
      std::string name = str(variant_name(v), multi ? ", multi-hot targets" : ", class targets");
      CAPTURE(name);
      Setup s(5, 3, false, multi);
      BilevelOptions o = small_options();
      o.variant = v;
      o.lower_steps = 0;  // the fixed pretext batch is then the stream's first
      o.upper_steps = 1;
      o.upper_momentum = 0, o.upper_wd = 0, o.clip = 0;
      o.lambda = 0.01, o.delta = 0.5;  // an H/(λ+δ) that matters
      o.cg.iterations = 3;
      BilevelTrainer t(s.models(), o, s.lower, s.upper);
      auto tp = s.p->parameters(), td = s.d->parameters(), fd = s.head->parameters();
      const size_t P = tp.size();

      // The spec's gradients, computed here independently.
      DownstreamBatch db = multi ? multi_label_batch(0, 0) : downstream_batch(0, 0);
      // L_D: cross-entropy against class indices, or against the multi-hot targets.
      auto loss_d = [&](const Tensor& z) { return multi ? cross_entropy_soft(z, db.y) : cross_entropy(z, db.y); };
      ssl::SslBatch fixed = pretext_batch(0, 0);
      s.d->train(), s.p->train(), s.obj->train(), s.head->train();
      std::vector<Tensor> all_p = tp, all_d = td;
      all_p.insert(all_p.end(), fd.begin(), fd.end());
      all_d.insert(all_d.end(), fd.begin(), fd.end());
      auto g1 = grad({loss_d(s.head->forward(s.p->forward(db.x)))}, all_p);
      auto g2 = grad({loss_d(s.head->forward(s.d->forward(db.x)))}, all_d);
      std::vector<Tensor> rhs(g1.begin(), g1.begin() + long(P));
      auto u = implicit_gradient([&] { return s.obj->loss(*s.p, fixed); }, tp, rhs, o.lambda, o.delta, o.cg).u;
      std::vector<Tensor> want_d, want_f;
      {
        NoGradGuard ng;
        for (size_t i = 0; i < P; ++i)
          want_d.push_back(sub(td[i].detach(), mul(v == Variant::BiSSL ? add(u[i], g2[i]) : g2[i], o.upper_lr)));
        for (size_t j = 0; j < fd.size(); ++j)
          want_f.push_back(
              sub(fd[j].detach(), mul(v == Variant::BiSSL ? add(g1[P + j], g2[P + j]) : g2[P + j], o.upper_lr)));
      }
      double unorm = 0;
      for (auto& x : u) unorm += sum(mul(x, x)).item();
      REQUIRE(unorm > 0);
      AlternationStats st = t.alternation();
      CHECK(st.hvps == (v == Variant::BiSSL ? 3 : 0));
      double e1 = max_diff(td, want_d), e2 = max_diff(fd, want_f);
      MESSAGE(name, ": θD max error ", e1, ", φD max error ", e2);
      CHECK(e1 <= 1e-13);
      CHECK(e2 <= 1e-13);
    }
  }

  TEST_CASE("cg_linearize: one linearization per upper phase trains exactly as fresh HVPs") {
    // cg_updates_bn: every product moves the BN running statistics (the
    // reference's quirk); a replay repeats the recorded forward's updates.
    for (bool updates_bn : {false, true})
    for (bool byol : {false, true}) {
      CAPTURE(byol);
      CAPTURE(updates_bn);
      BilevelOptions o = small_options();
      o.alternations = 2, o.upper_steps = 3, o.cg.iterations = 3;
      o.cg_updates_bn = updates_bn;
      Setup plain(5, 3, byol), lin(5, 3, byol);
      BilevelTrainer tp(plain.models(), o, plain.lower, plain.upper);
      o.cg_linearize = true;
      BilevelTrainer tl(lin.models(), o, lin.lower, lin.upper);
      for (int a = 0; a < 2; ++a) {
        AlternationStats sp = tp.alternation(), sl = tl.alternation();
        CHECK(sp.hvps == sl.hvps);
        CHECK(sp.cg_residual_last == sl.cg_residual_last);
      }
      CHECK(max_diff(plain.d->parameters(), lin.d->parameters()) == 0);
      CHECK(max_diff(plain.p->parameters(), lin.p->parameters()) == 0);
      CHECK(max_diff(plain.head->parameters(), lin.head->parameters()) == 0);
      std::vector<Tensor> bp, bl;
      for (auto& [n, t] : plain.p->named_buffers()) bp.push_back(t);
      for (auto& [n, t] : lin.p->named_buffers()) bl.push_back(t);
      REQUIRE(bp.size() == bl.size());
      CHECK(max_diff(bp, bl) == 0);
      // The pretext heads' buffers (BYOL's predictor and target) too.
      std::vector<Tensor> op, ol;
      std::vector<std::string> on;
      for (auto& [n, t] : plain.obj->named_buffers()) op.push_back(t), on.push_back(n);
      for (auto& [n, t] : lin.obj->named_buffers()) ol.push_back(t);
      REQUIRE(op.size() == ol.size());
      for (size_t i = 0; i < op.size(); ++i) {
        CAPTURE(on[i]);
        CHECK(op[i].to_vector() == ol[i].to_vector());
      }
    }
  }

  TEST_CASE("on CUDA, alternations equal the CPU's (f64; skips without a GPU)") {
    if (cuda_device_count() == 0) {
      MESSAGE("SKIPPED: the trainer on CUDA (no GPU on this machine)");
      return;
    }
    // (linearize, cg_updates_bn): fresh products; replays; replays that
    // repeat the BN updates (batch_norm_update_running on the device).
    for (auto [lin, upd] : {std::pair{false, true}, std::pair{true, false}, std::pair{true, true}}) {
      const bool linearize = lin, updates_bn = upd;  // (structured bindings cannot be captured before C++20: clang)
      CAPTURE(linearize);
      CAPTURE(updates_bn);
      BilevelOptions o = small_options();
      o.alternations = 2;
      o.cg_updates_bn = updates_bn, o.cg_linearize = linearize;
      Setup cpu, gpu;
      // The GPU run's streams hand the same batches over on the device.
      MemStream<ssl::SslBatch> lower(5, [](int64_t e, int64_t i) {
        ssl::SslBatch b = pretext_batch(e, i);
        return ssl::SslBatch{b.view1.to(Device::CUDA), b.view2.to(Device::CUDA), b.seed};
      });
      MemStream<DownstreamBatch> upper(3, [](int64_t e, int64_t i) {
        DownstreamBatch b = downstream_batch(e, i);
        return DownstreamBatch{b.x.to(Device::CUDA), b.y.to(Device::CUDA)};
      });
      for (nn::Module* m : {static_cast<nn::Module*>(gpu.d.get()), static_cast<nn::Module*>(gpu.p.get()),
                            static_cast<nn::Module*>(gpu.obj.get()), static_cast<nn::Module*>(gpu.head.get())})
        m->to(Device::CUDA);
      BilevelTrainer tc(cpu.models(), o, cpu.lower, cpu.upper), tg(gpu.models(), o, lower, upper);
      for (int a = 0; a < 2; ++a) {
        AlternationStats sc = tc.alternation(), sg = tg.alternation();
        CHECK(sc.hvps == sg.hvps);
      }
      auto on_cpu = [](const std::vector<Tensor>& ts) {
        std::vector<Tensor> r;
        for (auto& t : ts) r.push_back(t.to(Device::CPU));
        return r;
      };
      double e = std::max({max_diff(cpu.d->parameters(), on_cpu(gpu.d->parameters())),
                           max_diff(cpu.p->parameters(), on_cpu(gpu.p->parameters())),
                           max_diff(cpu.head->parameters(), on_cpu(gpu.head->parameters()))});
      MESSAGE("trainer, CUDA vs CPU after 2 alternations (f64): max abs difference ", e);
      CHECK(e <= 1e-10);
    }
  }

  TEST_CASE("a lower step minimises L_P + λ·½‖θD − θP‖² with θD held constant") {
    Setup a, b;  // identical twins: one through the trainer, one by hand
    BilevelOptions o = small_options();
    o.lower_steps = 1, o.upper_steps = 0, o.lambda = 0.3, o.clip = 0;
    BilevelTrainer t(a.models(), o, a.lower, a.upper);
    auto d0 = snap(a.d->parameters());
    AlternationStats st;
    t.lower_phase(st);
    CHECK(max_diff(a.d->parameters(), d0) == 0.0);

    auto tp = b.p->parameters(), td = b.d->parameters();
    std::vector<Tensor> params = tp;
    for (auto& x : b.obj->head_parameters()) params.push_back(x);
    optim::LARS opt(params, o.lower_lr, o.lower_momentum, o.lower_wd, o.lower_trust);
    b.p->train(), b.obj->train();
    Tensor loss = b.obj->loss(*b.p, pretext_batch(0, 0));
    double reg = 0;
    for (size_t i = 0; i < tp.size(); ++i) {
      Tensor diff = sub(tp[i], td[i].detach());
      Tensor s2 = mul(sum(mul(diff, diff)), 0.5 * o.lambda);
      reg += s2.item();
      loss = add(loss, s2);
    }
    backward(loss);
    opt.lr = o.lower_lr;  // step 1 runs at the base lr, even inside the warm-up (the reference's schedule)
    opt.step();
    CHECK(st.lower_reg == doctest::Approx(reg).epsilon(1e-12));
    CHECK(max_diff(a.p->parameters(), tp) <= 1e-14);
    CHECK(max_diff(a.obj->head_parameters(), b.obj->head_parameters()) <= 1e-14);
  }

  TEST_CASE("ghost batch norm sizes apply to the lower level's forwards") {
    Setup a, b;
    BilevelOptions o = small_options();
    o.lower_steps = 1, o.upper_steps = 0, o.clip = 0, o.ghost_lower = 2;  // batches of 4: two ghost batches
    BilevelTrainer t(a.models(), o, a.lower, a.upper);
    AlternationStats st;
    t.lower_phase(st);
    b.p->train(), b.obj->train();
    nn::set_ghost_batch(*b.p, 2);
    nn::set_ghost_batch(*b.obj, 2);
    double ghost = b.obj->loss(*b.p, pretext_batch(0, 0)).item();
    nn::set_ghost_batch(*b.p, 0);
    nn::set_ghost_batch(*b.obj, 0);
    double whole = b.obj->loss(*b.p, pretext_batch(0, 0)).item();
    CHECK(st.lower_loss == doctest::Approx(ghost).epsilon(1e-13));
    CHECK(std::abs(ghost - whole) > 1e-6);
  }

  TEST_CASE("BYOL: target reset to θP at the start, EMA moved by lower steps only, never by HVPs") {
    Setup s(5, 3, /*byol=*/true);
    auto* byol = dynamic_cast<ssl::BYOL*>(s.obj.get());
    REQUIRE(byol);
    {  // nudge θP so that the reset is visible
      NoGradGuard ng;
      Generator g(3);
      for (auto& t : s.p->parameters()) t.copy_(add(t, mul(randn(t.shape(), g, DType::F64), 0.1)));
    }
    BilevelTrainer t(s.models(), small_options(), s.lower, s.upper);
    auto target_state = [&] {
      std::vector<Tensor> r;
      for (auto& [k, v] : byol->state_dict())
        if (k.find("target") != std::string::npos) r.push_back(v.clone());
      return r;
    };
    auto target0 = target_state();
    REQUIRE(!target0.empty());
    auto bb_target = byol->state_dict();
    // After the reset the target backbone equals θP.
    std::vector<Tensor> tb;
    for (auto& [k, v] : bb_target)
      if (k.rfind("backbone_target.", 0) == 0 && k.find("running") == std::string::npos &&
          k.find("num_batches") == std::string::npos)
        tb.push_back(v);
    REQUIRE(tb.size() == s.p->parameters().size());
    CHECK(max_diff(tb, s.p->parameters()) == 0.0);
    AlternationStats st;
    t.lower_phase(st);
    auto target1 = target_state();
    CHECK(max_diff(target1, target0) > 0.0);
    t.upper_phase(st);
    CHECK(st.hvps == 4);
    CHECK(max_diff(target_state(), target1) == 0.0);
  }

  TEST_CASE("checkpoint and resume continue bit-identically") {
    BilevelOptions o = small_options();
    Setup a;
    BilevelTrainer ta(a.models(), o, a.lower, a.upper);
    ta.alternation();
    ta.alternation();

    Setup b;
    nn::StateDict saved_p, saved_d, saved_o, saved_h;
    optim::StateDict saved_t;
    {
      BilevelTrainer tb(b.models(), o, b.lower, b.upper);
      tb.alternation();
      auto keep = [](const nn::Module& m) {
        nn::StateDict r;
        for (auto& [k, v] : m.state_dict()) r.emplace_back(k, v.clone());
        return r;
      };
      saved_p = keep(*b.p), saved_d = keep(*b.d), saved_o = keep(*b.obj), saved_h = keep(*b.head);
      for (auto& [k, v] : tb.state_dict()) saved_t.emplace_back(k, v.clone());
    }
    Setup c;  // a fresh process: new models and streams
    c.p->load_state_dict(saved_p), c.d->load_state_dict(saved_d), c.obj->load_state_dict(saved_o),
        c.head->load_state_dict(saved_h);
    BilevelTrainer tc(c.models(), o, c.lower, c.upper);
    tc.load_state_dict(saved_t);
    CHECK(tc.alternations_done() == 1);
    tc.alternation();
    CHECK(max_diff(c.p->parameters(), a.p->parameters()) == 0.0);
    CHECK(max_diff(c.d->parameters(), a.d->parameters()) == 0.0);
    CHECK(max_diff(c.head->parameters(), a.head->parameters()) == 0.0);
    CHECK(max_diff(c.obj->head_parameters(), a.obj->head_parameters()) == 0.0);
    CHECK(c.lower.served.back() == a.lower.served.back());
    CHECK(c.upper.served.back() == a.upper.served.back());
  }

  TEST_CASE("baseline variants: weighted sum and pretext-only") {
    {
      Setup s;
      BilevelOptions o = small_options();
      o.variant = Variant::WeightedSum;
      o.weight = 0.25;
      BilevelTrainer t(s.models(), o, s.lower, s.upper);
      auto fd0 = snap(s.head->parameters()), d0 = snap(s.d->parameters());
      AlternationStats st = t.alternation();
      CHECK(st.lower_steps == 5);  // N_L + N_U joint steps
      CHECK(st.upper_steps == 0);
      CHECK(st.hvps == 0);
      CHECK(t.upper_optimizer() == nullptr);
      CHECK(max_diff(s.head->parameters(), fd0) > 0.0);  // φD trained jointly
      CHECK(max_diff(s.d->parameters(), d0) == 0.0);     // θD unused
      CHECK(s.upper.served.size() == 5);
    }
    {
      Setup s;
      BilevelOptions o = small_options();
      o.variant = Variant::PretextOnly;
      BilevelModels m = s.models();
      m.backbone_d = nullptr, m.head_d = nullptr;
      BilevelTrainer t(m, o, s.lower, s.upper);
      AlternationStats st = t.alternation();
      CHECK(st.lower_steps == 3);
      CHECK(st.lower_reg == 0.0);
      CHECK(s.upper.served.empty());
    }
  }

  TEST_CASE("non-finite losses and gradients stop with the level, alternation and step") {
    {
      Setup s;
      BilevelTrainer t(s.models(), small_options(), s.lower, s.upper);
      t.alternation();
      {
        NoGradGuard ng;
        Tensor w = s.obj->head_parameters().back();  // the projector's last Linear: the loss itself turns NaN
        w.copy_(full(w.shape(), std::nan(""), DType::F64));
      }
      CHECK_THROWS_WITH_AS(t.alternation(), doctest::Contains("lower (pretext) loss is nan at alternation 2, step 1"),
                           Error);
    }
    {
      Setup s;
      BilevelTrainer t(s.models(), small_options(), s.lower, s.upper);
      {
        NoGradGuard ng;  // NaN weights behind a ReLU: the loss stays finite, the gradient does not
        s.p->parameters()[0].copy_(full(s.p->parameters()[0].shape(), std::nan(""), DType::F64));
      }
      CHECK_THROWS_WITH_AS(t.alternation(), doctest::Contains("lower gradient norm is nan at alternation 1, step 1"),
                           Error);
    }
  }

  TEST_CASE("options are validated") {
    Setup s;
    BilevelOptions o = small_options();
    o.lambda = -1;
    CHECK_THROWS_WITH_AS(BilevelTrainer(s.models(), o, s.lower, s.upper),
                         doctest::Contains("bissl.lambda must be > 0, found -1"), Error);
    o.lambda = 0.001;
    o.upper_lr = -1;  // "the fine-tuning lr": the caller must resolve it
    CHECK_THROWS_WITH_AS(BilevelTrainer(s.models(), o, s.lower, s.upper),
                         doctest::Contains("upper lr and weight decay must be resolved"), Error);
    o.upper_lr = 0.05;
    o.cg.iterations = 0;
    CHECK_THROWS_WITH_AS(BilevelTrainer(s.models(), o, s.lower, s.upper),
                         doctest::Contains("bissl.cg_iterations must be >= 1, found 0"), Error);
    CHECK_THROWS_WITH_AS(parse_variant("bilevel"), doctest::Contains("variant must be bissl"), Error);
    BilevelOptions og = small_options();
    og.upper_groups = {optim::ParamGroup{s.d->parameters()}};  // φD missing
    CHECK_THROWS_WITH_AS(BilevelTrainer(s.models(), og, s.lower, s.upper),
                         doctest::Contains("upper parameter groups hold 3 tensors"), Error);
    og.upper_groups = {optim::ParamGroup{s.d->parameters(), 0.5}, optim::ParamGroup{s.head->parameters(), 1.0, 0.0}};
    og.upper_adamw = true;
    BilevelTrainer tg(s.models(), og, s.lower, s.upper);
    CHECK(tg.upper_optimizer()->name() == "AdamW");
    CHECK(tg.upper_optimizer()->param_groups()[0].lr_scale == 0.5);
    BilevelModels m = s.models();
    m.backbone_d = nullptr;
    CHECK_THROWS_WITH_AS(BilevelTrainer(m, small_options(), s.lower, s.upper), doctest::Contains("needs the upper backbone"),
                         Error);
  }

  TEST_CASE("NoisyTune adds uniform noise scaled by each tensor's standard deviation") {
    Generator g(1);
    nn::Linear l(6, 5, g);
    l.to(DType::F64);
    auto before = snap(l.parameters());
    noisytune(l, 0.2, 3);
    auto after = l.parameters();
    for (size_t i = 0; i < after.size(); ++i) {
      double sd = std::sqrt(var(before[i]).item());
      auto d = sub(after[i].detach(), before[i]).to_vector();
      double mx = 0;
      for (double x : d) mx = std::max(mx, std::abs(x));
      CHECK(mx > 0);
      CHECK(mx <= 0.1 * sd + 1e-15);
    }
  }
}
