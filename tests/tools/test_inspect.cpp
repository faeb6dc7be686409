// `bissl-inspect upper` (tools/inspect/upper.h) against the trainer's own
// upper steps: the trainer runs a lower phase and an upper phase on a small
// ResNet-18 in f64; at every upper step the inputs it used (θP with its
// heads, θD, φD, the fixed pretext batch, the downstream batch) are written
// as PyTorch-layout safetensors, and `upper` run on those files must give
// the same numbers bit for bit: losses, rhs, u, the CG residuals, and the
// clipped θD and φD gradients — for SimCLR with ghost BN, BYOL with the
// reference's W-device operator and linearized (replayed) products, and
// ij_discarded. Also: what `upper` writes, and its errors.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/trainer.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/ops.h"
#include "models/heads.h"
#include "models/torch_state.h"
#include "tests/support.h"
#include "tools/inspect/upper.h"

using namespace bissl;
using namespace bissl::bilevel;
using bissl::testing::TempDir;

namespace {

// Batches as a pure function of (epoch, index).
template <class B>
class FnStream : public BatchStream<B> {
 public:
  FnStream(int64_t bpe, std::function<B(int64_t, int64_t, uint64_t)> make) : bpe_(bpe), make_(std::move(make)) {}
  int64_t batches_per_epoch() const override { return bpe_; }
  int64_t epoch() const override { return epoch_; }
  int64_t remaining() const override { return bpe_ - pos_; }
  void new_epoch() override { ++epoch_, pos_ = 0; }
  void seek(int64_t e, int64_t c) override { epoch_ = e, pos_ = c; }
  B next_in_epoch() override { return make_(epoch_, pos_++, 0); }
  B first_of_epoch(int64_t e, uint64_t draw) override { return make_(e, 0, draw); }

 private:
  int64_t bpe_, epoch_ = 0, pos_ = 0;
  std::function<B(int64_t, int64_t, uint64_t)> make_;
};

constexpr int64_t kSize = 8;  // 8x8 RGB images

ssl::SslBatch pretext_batch(int64_t e, int64_t i, uint64_t draw) {
  const uint64_t code = uint64_t(e * 100 + i) + 7919 * draw;
  Generator g(300 + code);
  ssl::SslBatch b;
  b.view1 = randn({4, kSize, kSize, 3}, g, DType::F64);
  b.view2 = randn({4, kSize, kSize, 3}, g, DType::F64);
  b.seed = 11 + code;
  return b;
}

DownstreamBatch downstream_batch(int64_t e, int64_t i, uint64_t) {
  Generator g(700 + uint64_t(e * 100 + i));
  return {randn({4, kSize, kSize, 3}, g, DType::F64), randint({4}, 0, 3, g)};
}

inspect::ModelOptions model_options() {
  inspect::ModelOptions m;
  m.backbone.arch = "resnet18";
  m.backbone.width = 0.125;
  m.backbone.stem = "cifar";
  m.num_classes = 0;
  m.image_size = kSize;
  return m;
}

inspect::LossOptions loss_options(const std::string& loss) {
  inspect::LossOptions l;
  l.loss = loss;
  l.projector = "16-16-8";
  l.predictor = "16-8";
  return l;
}

inspect::RunOptions run_options(uint64_t seed, const std::string& weights = "") {
  inspect::RunOptions r;
  r.dtype = DType::F64;
  r.seed = seed;
  r.weights = weights;
  return r;
}

std::vector<Tensor> snap(const std::vector<Tensor>& ts) {
  NoGradGuard ng;
  std::vector<Tensor> r;
  for (auto& t : ts) r.push_back(t.detach().clone());
  return r;
}

// Bitwise equality of two lists (same shapes, every element the same double).
bool same_bits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() || a[i].to_vector() != b[i].to_vector()) return false;
  return true;
}

// What the trainer did at one upper step, and the files of its inputs.
struct Recorded {
  UpperStepResult r;
  std::vector<Tensor> grad_d, grad_head;  // clipped, as the optimiser saw them
  std::string weights_p, weights_d, head_d, pretext, downstream;
  uint64_t pretext_seed = 0;
};

io::NamedTensors nchw_batch(const Tensor& x) { return {{"images", permute(x, {0, 3, 1, 2})}}; }

// Runs one alternation of `o` with the models of a fresh session and
// records every upper step.
std::vector<Recorded> run_trainer(const std::string& loss, const BilevelOptions& o, const TempDir& dir) {
  inspect::Session sp(model_options(), loss_options(loss), run_options(5));
  std::shared_ptr<nn::Layer> theta_d = sp.twin_backbone("");
  Generator g(17);
  {
    NoGradGuard ng;
    for (auto& t : theta_d->parameters()) t.copy_(add(t, mul(randn(t.shape(), g, DType::F64), 0.05)));
  }
  models::LinearHead head(sp.feature_dim(), 3, g);
  head.to(DType::F64);
  FnStream<ssl::SslBatch> lower(3, pretext_batch);
  FnStream<DownstreamBatch> upper(5, downstream_batch);
  BilevelModels m{theta_d.get(), &sp.backbone(), sp.objective(), &head};
  BilevelTrainer t(m, o, lower, upper);
  AlternationStats s;
  for (nn::Module* mod : {static_cast<nn::Module*>(theta_d.get()), static_cast<nn::Module*>(&sp.backbone()),
                          static_cast<nn::Module*>(sp.objective()), static_cast<nn::Module*>(&head)})
    mod->train();
  t.lower_phase(s);
  std::vector<Recorded> steps;
  // θP and its heads are fixed for the phase: written once, before it.
  const std::string weights_p = dir.file("weights_p.safetensors");
  io::save_safetensors(weights_p, sp.torch_weights());
  t.on_upper_step = [&](const DownstreamBatch& db, const UpperStepResult& r, const ssl::SslBatch& fixed) {
    Recorded rec;
    rec.r = r;
    rec.grad_d = snap([&] {
      std::vector<Tensor> gs;
      for (auto& p : theta_d->parameters()) gs.push_back(p.grad());
      return gs;
    }());
    rec.grad_head = snap({head.weight.grad(), head.bias.grad()});
    const std::string k = std::to_string(steps.size());
    rec.weights_p = weights_p;
    rec.weights_d = dir.file("weights_d_" + k + ".safetensors");
    rec.head_d = dir.file("head_d_" + k + ".safetensors");
    rec.pretext = dir.file("pretext_" + k + ".safetensors");
    rec.downstream = dir.file("downstream_" + k + ".safetensors");
    io::save_safetensors(rec.weights_d, models::torch_state_dict(*theta_d));
    io::save_safetensors(rec.head_d, models::torch_state_dict(head));
    if (fixed.view1.defined()) io::save_safetensors(rec.pretext, nchw_batch(concat({fixed.view1, fixed.view2}, 0)));
    else io::save_safetensors(rec.pretext, nchw_batch(db.x));  // ij_discarded: unused, but the session wants one
    io::NamedTensors dbf = nchw_batch(db.x);
    dbf.emplace_back("labels", db.y);
    io::save_safetensors(rec.downstream, dbf);
    rec.pretext_seed = fixed.seed;
    steps.push_back(std::move(rec));
  };
  t.upper_phase(s);
  return steps;
}

// `upper` on a step's files.
inspect::UpperOutput run_inspect(const std::string& loss, const BilevelOptions& o, const Recorded& rec,
                                 bool trace = false) {
  inspect::Session s(model_options(), loss_options(loss), run_options(rec.pretext_seed, rec.weights_p));
  s.set_batch(inspect::load_batch(rec.pretext));
  inspect::UpperFiles f;
  f.weights_d = rec.weights_d;
  f.head_d = rec.head_d;
  f.downstream = rec.downstream;
  return inspect::run_upper(s, f, o, trace);
}

std::map<std::string, Tensor> by_name(const io::NamedTensors& ts) {
  std::map<std::string, Tensor> m;
  for (auto& [k, t] : ts) m[k] = t;
  return m;
}

BilevelOptions small_options() {
  BilevelOptions o;
  o.alternations = 2;
  o.lower_steps = 2;
  o.upper_steps = 2;
  o.cg.iterations = 3;
  o.lower_lr = 0.1;
  o.upper_lr = 0.05;
  o.upper_wd = 1e-3;
  o.ghost_lower = 2;
  o.ghost_upper = 2;
  o.clip = 0.5;  // small enough to clip: the clipped gradients differ from the assembled ones
  return o;
}

void check_equal(const std::string& loss, const BilevelOptions& o) {
  TempDir dir("inspect_upper_" + loss);
  std::vector<Recorded> steps = run_trainer(loss, o, dir);
  REQUIRE(steps.size() == size_t(o.upper_steps));
  const bool implicit = o.variant == Variant::BiSSL;
  for (size_t k = 0; k < steps.size(); ++k) {
    CAPTURE(k);
    const Recorded& rec = steps[k];
    inspect::UpperOutput out = run_inspect(loss, o, rec);
    const UpperStepResult& a = rec.r;
    const UpperStepResult& b = out.step;
    CHECK(a.loss_d == b.loss_d);
    CHECK(a.grad_norm == b.grad_norm);
    if (implicit) {
      CHECK(a.loss_p == b.loss_p);
      CHECK(same_bits(a.rhs, b.rhs));
      CHECK(same_bits(a.head_p, b.head_p));
      CHECK(same_bits(a.cg.u, b.cg.u));
      CHECK(a.cg.residuals == b.cg.residuals);
      CHECK(a.cg.curvature == b.cg.curvature);
      CHECK(a.cg.iterations == o.cg.iterations);
    }
    // The files hold the same numbers, in PyTorch layout under PyTorch names.
    auto named = by_name(out.tensors);
    inspect::Session names(model_options(), loss_options(loss), run_options(0));
    const nn::StateDict& tn = names.backbone_params();
    REQUIRE(tn.size() == rec.grad_d.size());
    std::vector<Tensor> file_grad_d, want_grad_d, file_u, want_u;
    for (size_t i = 0; i < tn.size(); ++i) {
      REQUIRE(named.count("grad_d_clipped." + tn[i].first));
      file_grad_d.push_back(named["grad_d_clipped." + tn[i].first]);
      want_grad_d.push_back(inspect::to_torch_layout(rec.grad_d[i]));
      if (implicit) {
        REQUIRE(named.count("u." + tn[i].first));
        file_u.push_back(named["u." + tn[i].first]);
        want_u.push_back(inspect::to_torch_layout(a.cg.u[i]));
      }
    }
    CHECK(same_bits(file_grad_d, want_grad_d));
    CHECK(same_bits(file_u, want_u));
    CHECK(same_bits({named["grad_head_clipped.weight"], named["grad_head_clipped.bias"]}, rec.grad_head));
    CHECK(named["loss_d"].item() == a.loss_d);
    // The clip moved something: the clipped gradients are not the assembled ones.
    CHECK(b.grad_norm > o.clip);
    CHECK_FALSE(same_bits(b.grad_head, rec.grad_head));
  }
}

}  // namespace

// The longest comparisons, their own ctest entry (test_inspect_trainer):
// beside the rest in the release run; left out of CI's sanitizer run (nosan),
// whose --quick main job runs the trainer's code under ASan.
TEST_SUITE("parallel: trainer") {
  TEST_CASE("equals the trainer's upper steps bit for bit: SimCLR, ghost BN, fresh H·v moving the BN buffers") {
    check_equal("ntxent", small_options());
  }

  TEST_CASE("the comparison can fail: other settings or other inputs give other numbers") {
    TempDir dir("inspect_upper_control");
    const BilevelOptions o = small_options();
    std::vector<Recorded> steps = run_trainer("ntxent", o, dir);
    const UpperStepResult& a = steps[0].r;
    BilevelOptions other = o;
    other.delta = 10.5;
    CHECK_FALSE(same_bits(a.cg.u, run_inspect("ntxent", other, steps[0]).step.cg.u));
    other = o;
    other.ghost_lower = 4;  // whole-view statistics instead of two ghost batches
    CHECK_FALSE(same_bits(a.cg.u, run_inspect("ntxent", other, steps[0]).step.cg.u));
    Recorded moved = steps[0];
    moved.weights_d = steps[1].weights_d;  // θD after one upper step
    const UpperStepResult b = run_inspect("ntxent", o, moved).step;
    CHECK(same_bits(a.cg.u, b.cg.u));  // u depends on θP and the batches only
    CHECK(a.loss_d != b.loss_d);
  }

  TEST_CASE("equals the trainer's upper steps bit for bit: BYOL, the reference's W = 2 operator, replayed H·v") {
    BilevelOptions o = small_options();
    o.reference_devices = 2;
    o.cg_linearize = true;  // the trainer's second step replays the phase's linearization; upper records afresh
    o.cg.layerwise = false;
    check_equal("byol", o);
  }
}

TEST_SUITE("inspect upper") {
  TEST_CASE("equals the trainer's upper steps bit for bit: ij_discarded") {
    BilevelOptions o = small_options();
    o.variant = Variant::IjDiscarded;
    check_equal("ntxent", o);
  }

  TEST_CASE("what it writes: H·rhs is the first CG product, u solves the CG system, the trace") {
    TempDir dir("inspect_upper_files");
    BilevelOptions o = small_options();
    o.cg.iterations = 2;
    std::vector<Recorded> steps = run_trainer("ntxent", o, dir);
    inspect::UpperOutput out = run_inspect("ntxent", o, steps[0], /*trace=*/true);
    auto named = by_name(out.tensors);
    inspect::Session s(model_options(), loss_options("ntxent"), run_options(steps[0].pretext_seed, steps[0].weights_p));
    s.set_batch(inspect::load_batch(steps[0].pretext));
    std::vector<Tensor> params;
    for (auto& [k, t] : s.backbone_params()) params.push_back(t);
    // H·rhs from bissl::hvp on the same loss (ghost BN of the lower level).
    nn::set_ghost_batch(s.backbone(), o.ghost_lower);
    nn::set_ghost_batch(*s.objective(), o.ghost_lower);
    std::vector<Tensor> hv = hvp([&] { return s.loss(); }, params, out.step.rhs).hv;
    std::vector<Tensor> hv_file;
    for (auto& [k, t] : s.backbone_params()) hv_file.push_back(named.at("hvp_rhs." + k));
    std::vector<Tensor> hv_torch;
    for (auto& t : hv) hv_torch.push_back(inspect::to_torch_layout(t));
    CHECK(same_bits(hv_file, hv_torch));
    // The trace: direction 0 is rhs, and one product per CG iteration.
    for (int k = 0; k < o.cg.iterations; ++k)
      for (auto& [name, t] : s.backbone_params()) {
        CHECK(named.count(str("cg.", k, ".d.", name)) == 1);
        CHECK(named.count(str("cg.", k, ".hvp.", name)) == 1);
      }
    CHECK(named.count(str("cg.", o.cg.iterations, ".d.conv1.weight")) == 0);
    std::vector<Tensor> d0;
    for (auto& [name, t] : s.backbone_params()) d0.push_back(named.at("cg.0.d." + name));
    std::vector<Tensor> rhs_file;
    for (auto& [name, t] : s.backbone_params()) rhs_file.push_back(named.at("rhs." + name));
    CHECK(same_bits(d0, rhs_file));
    CHECK(named.at("cg.residuals").numel() == o.cg.iterations + 1);
    // The assembled θD gradient is u + ∇θD L_D before clipping: grad_d − u is
    // the plain downstream gradient, the same as ij_discarded's (no clip).
    BilevelOptions ij = o;
    ij.variant = Variant::IjDiscarded;
    ij.clip = 0;
    inspect::UpperOutput plain = run_inspect("ntxent", ij, steps[0]);
    double worst = 0;
    for (size_t i = 0; i < out.step.grad_d.size(); ++i) {
      NoGradGuard ng;
      Tensor d = sub(sub(out.step.grad_d[i], out.step.cg.u[i]), plain.step.grad_d[i]);
      for (double x : d.to_vector()) worst = std::max(worst, std::abs(x));
    }
    CHECK(worst <= 1e-12);
  }

  TEST_CASE("errors are one line naming what was expected") {
    TempDir dir("inspect_upper_errors");
    std::vector<Recorded> steps = run_trainer("ntxent", small_options(), dir);
    const Recorded& rec = steps[0];
    auto run_with = [&](const std::string& loss, inspect::UpperFiles f, BilevelOptions o = small_options()) {
      inspect::Session s(model_options(), loss_options(loss), run_options(rec.pretext_seed, rec.weights_p));
      s.set_batch(inspect::load_batch(rec.pretext));
      inspect::run_upper(s, f, o, false);
    };
    inspect::UpperFiles ok{rec.weights_d, rec.head_d, rec.downstream};
    // φD with the wrong number of features.
    Generator g(1);
    models::LinearHead wrong(5, 3, g);
    io::save_safetensors(dir.file("wrong_head.safetensors"), models::torch_state_dict(wrong));
    inspect::UpperFiles f = ok;
    f.head_d = dir.file("wrong_head.safetensors");
    testing::expect_error([&] { run_with("ntxent", f); }, {"wrong_head.safetensors", "weight"});
    // A label outside φD's classes.
    io::NamedTensors bad = {{"images", permute(randn({4, kSize, kSize, 3}, g), {0, 3, 1, 2})},
                            {"labels", from_ints({0, 1, 2, 3}, {4})}};
    io::save_safetensors(dir.file("bad_labels.safetensors"), bad);
    f = ok;
    f.downstream = dir.file("bad_labels.safetensors");
    testing::expect_error([&] { run_with("ntxent", f); }, {"label 3 at 3 is outside [0, 3)", "φD has 3 classes"});
    // Neither labels nor targets.
    io::save_safetensors(dir.file("no_labels.safetensors"), io::NamedTensors{bad[0]});
    f.downstream = dir.file("no_labels.safetensors");
    testing::expect_error([&] { run_with("ntxent", f); }, {"\"labels\"", "\"targets\"", "neither"});
    // θD from a file that lacks a tensor.
    io::NamedTensors partial = models::torch_state_dict(*inspect::Session(model_options(), loss_options("ntxent"),
                                                                          run_options(0)).twin_backbone(""));
    partial.erase(partial.begin());
    io::save_safetensors(dir.file("partial.safetensors"), partial);
    f = ok;
    f.weights_d = dir.file("partial.safetensors");
    testing::expect_error([&] { run_with("ntxent", f); }, {"partial.safetensors", "no tensor 'conv1.weight'"});
    // A variant without an upper level.
    BilevelOptions o = small_options();
    o.variant = Variant::PretextOnly;
    testing::expect_error([&] { run_with("ntxent", ok, o); }, {"--variant must be bissl or ij_discarded", "pretext_only"});
  }
}
