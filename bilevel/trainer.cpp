#include "bilevel/trainer.h"

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/dist/reducer.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "engine/profile.h"
#include "ssl/byol.h"

namespace bissl::bilevel {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

optim::StateDict with_prefix(const optim::StateDict& sd, const std::string& p) {
  optim::StateDict r;
  for (auto& [k, t] : sd) r.emplace_back(p + k, t);
  return r;
}

}  // namespace

const schema::Names<Variant>& variant_names() {
  static const schema::Names<Variant> n{{{"bissl", Variant::BiSSL},
                                          {"ij_discarded", Variant::IjDiscarded},
                                          {"weighted_sum", Variant::WeightedSum},
                                          {"pretext_only", Variant::PretextOnly}}};
  return n;
}

Variant parse_variant(const std::string& n) {
  if (const Variant* v = variant_names().value_of(n)) return *v;
  throw Error(str("bilevel: variant must be bissl, ij_discarded, weighted_sum or pretext_only, found '", n, "'"));
}

const char* variant_name(Variant v) {
  const std::string* n = variant_names().name_of(v);
  return n ? n->c_str() : "?";
}

void BilevelOptions::validate() const {
  schema::validate(*this, "bissl");
  BISSL_CHECK(upper_lr > 0 && upper_wd >= 0, "bissl: the upper lr and weight decay must be resolved before training "
              "(-1 = the fine-tuning value, which the caller sets), found lr ", upper_lr, ", weight decay ", upper_wd);
}

Tensor cross_entropy_loss(nn::Layer& backbone, nn::Layer& head, const DownstreamBatch& b) {
  Tensor z = head.forward(backbone.forward(b.x));
  return b.y.dtype() == DType::I64 ? cross_entropy(z, b.y) : cross_entropy_soft(z, b.y);
}

BilevelTrainer::BilevelTrainer(BilevelModels m, BilevelOptions o, PretextStream& lower, DownstreamStream& upper,
                               DownstreamLoss loss)
    : m_(m), o_(o), lower_(lower), upper_(upper), loss_(std::move(loss)) {
  o_.validate();
  BISSL_CHECK(m_.backbone_p && m_.pretext, "bissl: the lower backbone and the pretext objective are required");
  bool needs_d = o_.variant == Variant::BiSSL || o_.variant == Variant::IjDiscarded;
  BISSL_CHECK(!needs_d || m_.backbone_d, "bissl: variant ", variant_name(o_.variant), " needs the upper backbone θD");
  BISSL_CHECK(o_.variant == Variant::PretextOnly || m_.head_d, "bissl: variant ", variant_name(o_.variant),
              " needs the downstream head φD");
  theta_p_ = m_.backbone_p->parameters();
  phi_p_ = m_.pretext->head_parameters();
  if (m_.backbone_d) {
    theta_d_ = m_.backbone_d->parameters();
    BISSL_CHECK(theta_d_.size() == theta_p_.size(), "bissl: θD has ", theta_d_.size(), " parameter tensors, θP ",
                theta_p_.size());
    for (size_t i = 0; i < theta_d_.size(); ++i)
      BISSL_CHECK(theta_d_[i].shape() == theta_p_[i].shape(), "bissl: θD and θP differ at parameter ", i, ": ",
                  shape_str(theta_d_[i].shape()), " vs ", shape_str(theta_p_[i].shape()));
  }
  if (m_.head_d) phi_d_ = m_.head_d->parameters();

  std::vector<Tensor> lower_params = join(theta_p_, phi_p_);
  if (o_.variant == Variant::WeightedSum) lower_params = join(lower_params, phi_d_);
  lower_opt_ = std::make_unique<optim::LARS>(lower_params, o_.lower_lr, o_.lower_momentum, o_.lower_wd, o_.lower_trust);
  int64_t lower_per_alt = o_.lower_steps + (o_.variant == Variant::WeightedSum ? o_.upper_steps : 0);
  int64_t lower_total = o_.lower_total > 0 ? o_.lower_total : o_.alternations * lower_per_alt;
  const bool reference = o_.schedule == "reference";
  const int64_t warmup = o_.lower_warmup >= 0 ? o_.lower_warmup : 10 * o_.lower_steps;
  int64_t warm = std::min(warmup, lower_total);
  lower_sched_ = {o_.lower_lr, warm, std::max(lower_total, warm), reference ? 0.001 * o_.lower_lr : 0.0, reference};
  if (needs_d) {
    std::vector<optim::ParamGroup> groups = o_.upper_groups;
    if (groups.empty()) groups.push_back(optim::ParamGroup{join(theta_d_, phi_d_)});
    size_t n = 0;
    for (auto& g : groups) n += g.params.size();
    BISSL_CHECK(n == theta_d_.size() + phi_d_.size(), "bissl: the upper parameter groups hold ", n,
                " tensors, expected θD's and φD's ", theta_d_.size() + phi_d_.size());
    if (o_.upper_adamw) upper_opt_ = std::make_unique<optim::AdamW>(groups, o_.upper_lr, 0.9, 0.999, 1e-8, o_.upper_wd);
    else upper_opt_ = std::make_unique<optim::SGD>(groups, o_.upper_lr, o_.upper_momentum, o_.upper_wd);
    int64_t upper_total = o_.upper_total > 0 ? o_.upper_total : o_.alternations * o_.upper_steps;
    upper_sched_ = {o_.upper_lr, 0, upper_total, reference ? 0.001 * o_.upper_lr : 0.0, reference};
  }
  // The baselines apply no H and ignore reference_devices.
  BISSL_CHECK(o_.reference_devices == 1 || o_.variant != Variant::BiSSL || m_.pretext->can_split(),
              "bissl: reference_devices = ", o_.reference_devices, " needs a pretext loss with a gathered tensor "
              "(SimCLR, BYOL), found ", m_.pretext->type_name());
  if (auto* byol = dynamic_cast<ssl::BYOL*>(m_.pretext)) byol->reset_target(*m_.backbone_p);
}

double BilevelTrainer::distance() const {
  if (theta_d_.empty()) return 0.0;
  NoGradGuard ng;
  double s = 0;
  for (size_t i = 0; i < theta_d_.size(); ++i) {
    Tensor d = sub(theta_d_[i].detach(), theta_p_[i].detach());
    s += sum(mul(d, d)).item();
  }
  return std::sqrt(s);
}

Tensor BilevelTrainer::lower_objective(const ssl::SslBatch& b, double& lp, double& reg) {
  Tensor loss = m_.pretext->loss(*m_.backbone_p, b);  // this rank's share on several ranks
  lp = dist::all_reduce_sum(loss.item());
  if (o_.variant == Variant::PretextOnly || o_.variant == Variant::WeightedSum || o_.lambda == 0 || theta_d_.empty()) {
    reg = 0;
    return loss;
  }
  Tensor r;
  for (size_t i = 0; i < theta_p_.size(); ++i) {
    Tensor d = sub(theta_p_[i], theta_d_[i].detach());  // θD is a constant on the lower level
    Tensor s = sum(mul(d, d));
    r = r.defined() ? add(r, s) : s;
  }
  Tensor rt = mul(r, 0.5 * o_.lambda);
  reg = rt.item();
  // Every rank holds the same θD and θP: the term enters the sum over ranks
  // once, through the group's rank 0.
  return dist::is_group_root() ? add(loss, rt) : loss;
}

void BilevelTrainer::lower_phase(AlternationStats& s) {
  ScopedRange range("bissl lower phase");
  bool joint = o_.variant == Variant::WeightedSum;
  int64_t n = o_.lower_steps + (joint ? o_.upper_steps : 0);
  lower_.reserve(n);
  if (joint) upper_.reserve(n);
  std::vector<Tensor> params = join(theta_p_, phi_p_);
  if (joint) params = join(params, phi_d_);
  double sum_lp = 0, sum_reg = 0, sum_gn = 0;
  dist::GradReducer reducer(params);  // sums started while the backward runs
  for (int64_t k = 0; k < n; ++k) {
    ssl::SslBatch b = lower_.next();
    set_ghost(m_, b.ghost > 0 ? b.ghost : o_.ghost_lower);
    m_.pretext->before_train_step(*m_.backbone_p);
    double lp = 0, reg = 0;
    Tensor loss = lower_objective(b, lp, reg);
    check_finite(lp, "the lower (pretext) loss", done_ + 1, k + 1);
    if (joint) {
      DownstreamBatch db = upper_.next();
      set_ghost(m_, db.ghost > 0 ? db.ghost : o_.ghost_upper);
      Tensor ld = downstream_share(loss_, *m_.backbone_p, *m_.head_d, db);
      const double ldv = dist::all_reduce_sum(ld.item());
      check_finite(ldv, "the downstream loss", done_ + 1, k + 1);
      loss = add(mul(loss, 1.0 - o_.weight), mul(ld, o_.weight));
      s.upper_loss_d += ldv / double(n);
    }
    lower_opt_->zero_grad();
    reducer.backward(loss);
    double gn = clip_level(params, o_.clip, "lower", done_ + 1, k + 1);
    lower_opt_->lr = lower_sched_.lr_at(lower_opt_->steps());
    lower_opt_->step();
    lower_opt_->zero_grad();
    sum_lp += lp, sum_reg += reg, sum_gn += gn;
    s.lower_lr = lower_opt_->lr;
    ++s.lower_steps;
  }
  if (n > 0) s.lower_loss = sum_lp / double(n), s.lower_reg = sum_reg / double(n), s.lower_grad_norm = sum_gn / double(n);
}

void BilevelTrainer::upper_phase(AlternationStats& s) {
  if (!upper_opt_ || o_.upper_steps == 0) return;
  ScopedRange range("bissl upper phase");
  const bool implicit = o_.variant == Variant::BiSSL;
  ssl::SslBatch fixed;
  if (implicit) {  // one pretext batch for the whole phase
    if (o_.cg_batch == "next") {
      lower_.reserve(1);
      fixed = lower_.next();
    } else {
      fixed = lower_.first_of_epoch(lower_.served_epoch(), uint64_t(done_ + 1));
    }
  }
  upper_.reserve(o_.upper_steps);
  UpperPhase phase(m_, o_, loss_, fixed, done_ + 1);
  phase.on_hvp = on_hvp;
  double sum_ld = 0, sum_lp = 0, sum_gn = 0, sum_r0 = 0, sum_rk = 0;
  double min_curv = std::numeric_limits<double>::infinity(), max_curv = -min_curv;
  for (int64_t k = 0; k < o_.upper_steps; ++k) {
    DownstreamBatch db = upper_.next();
    const UpperStepResult r = phase.step(db, k + 1);
    if (implicit) {
      if (on_cg) on_cg(fixed);
      sum_lp += r.loss_p;
      s.hvps += r.cg.iterations;
      s.cg_nan_replaced += r.cg.nan_replaced;
      s.cg_inf_replaced += r.cg.inf_replaced;
      sum_r0 += r.cg.residuals.front(), sum_rk += r.cg.residuals.back();
      for (double c : r.cg.curvature) min_curv = std::min(min_curv, c), max_curv = std::max(max_curv, c);
    }
    sum_ld += r.loss_d;
    if (on_upper_step) on_upper_step(db, r, fixed);
    upper_opt_->lr = upper_sched_.lr_at(upper_opt_->steps());
    upper_opt_->step();
    upper_opt_->zero_grad();
    sum_gn += r.grad_norm;
    s.upper_lr = upper_opt_->lr;
    ++s.upper_steps;
  }
  double n = double(o_.upper_steps);
  s.upper_loss_d = sum_ld / n, s.upper_loss_p = sum_lp / n, s.upper_grad_norm = sum_gn / n;
  s.cg_residual_first = sum_r0 / n, s.cg_residual_last = sum_rk / n;
  if (implicit) s.cg_min_curvature = min_curv, s.cg_max_curvature = max_curv;
}

AlternationStats BilevelTrainer::alternation() {
  ScopedRange range("bissl alternation");
  auto t0 = std::chrono::steady_clock::now();
  AlternationStats s;
  // Train mode everywhere (the spec): callers may have evaluated in between.
  for (nn::Module* mod : present_modules(m_)) mod->train();
  lower_phase(s);
  upper_phase(s);
  set_ghost(m_, 0);
  share_buffers(m_);
  ++done_;
  s.alternation = done_;
  s.distance = distance();
  s.seconds = seconds_since(t0);
  return s;
}

optim::StateDict BilevelTrainer::state_dict() const {
  optim::StateDict sd = with_prefix(lower_opt_->state_dict(), "lower_opt.");
  if (upper_opt_)
    for (auto& kv : with_prefix(upper_opt_->state_dict(), "upper_opt.")) sd.push_back(kv);
  sd.emplace_back("alternations_done", from_ints({done_}, {}));
  sd.emplace_back("lower_stream",
                  from_ints({lower_.epoch(), lower_.consumed(), lower_.reshuffles(), lower_.served_epoch()}, {4}));
  sd.emplace_back("upper_stream", from_ints({upper_.epoch(), upper_.consumed(), upper_.reshuffles()}, {3}));
  return sd;
}

void BilevelTrainer::load_state_dict(const optim::StateDict& sd) {
  optim::StateDict lo, up;
  bool have_done = false;
  for (auto& [k, t] : sd) {
    if (k.rfind("lower_opt.", 0) == 0) lo.emplace_back(k.substr(10), t);
    else if (k.rfind("upper_opt.", 0) == 0) up.emplace_back(k.substr(10), t);
    else if (k == "alternations_done") done_ = int64_t(t.item()), have_done = true;
    else if (k == "lower_stream" || k == "upper_stream") {
      auto v = t.to_vector();
      // The lower one also holds the epoch of its last batch (older checkpoints: 3 values).
      const bool lower = k == "lower_stream";
      BISSL_CHECK(v.size() == 3 || (lower && v.size() == 4), "bissl: checkpoint entry ", k, " has ", v.size(),
                  " values, expected ", lower ? "3 or 4" : "3");
      if (lower) {
        lower_.seek(int64_t(v[0]), int64_t(v[1]));
        lower_.set_reshuffles(int64_t(v[2]));
        // Without it: a phase always consumes, so none consumed means a cycling
        // loader moved on by itself after the previous epoch's last batch.
        const int64_t e = int64_t(v[0]), consumed = int64_t(v[1]);
        lower_.set_served_epoch(v.size() == 4 ? int64_t(v[3]) : consumed > 0 ? e : std::max<int64_t>(e - 1, 0));
      } else {
        upper_.seek(int64_t(v[0]), int64_t(v[1]));
        upper_.set_reshuffles(int64_t(v[2]));
      }
    } else {
      throw Error(str("bissl: unknown trainer checkpoint entry '", k, "'"));
    }
  }
  BISSL_CHECK(have_done, "bissl: the trainer checkpoint has no alternations_done entry");
  lower_opt_->load_state_dict(lo);
  if (upper_opt_) upper_opt_->load_state_dict(up);
}

void noisytune(nn::Module& m, double lambda, uint64_t seed) {
  BISSL_CHECK(lambda >= 0, "noisytune: expected lambda >= 0, found ", lambda);
  Generator g(seed);
  NoGradGuard ng;
  for (auto& p : m.parameters()) {
    if (p.numel() < 2) continue;
    Tensor cpu = p.detach().to(Device::CPU);
    double sd = std::sqrt(var(cpu, {}, 1, false).item());
    Tensor noise = rand(p.shape(), g, p.dtype(), -lambda / 2, lambda / 2);
    p.copy_(add(cpu, mul(noise, sd)).to(p.device()));
  }
}

}  // namespace bissl::bilevel
