// One upper step of BiSSL (bilevel/trainer.h, UpperPhase): the trainer's
// upper phase and `bissl-inspect upper` both run this code.
#include <cmath>
#include <limits>

#include "bilevel/trainer.h"
#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/nn/layers.h"
#include "engine/ops.h"
#include "engine/profile.h"

namespace bissl::bilevel {

std::vector<Tensor> join(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  std::vector<Tensor> r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}

namespace {

std::vector<Tensor> clones(const std::vector<Tensor>& xs) {
  NoGradGuard ng;
  std::vector<Tensor> r;
  r.reserve(xs.size());
  for (const Tensor& x : xs) r.push_back(x.detach().clone());
  return r;
}

}  // namespace

Tensor downstream_share(const DownstreamLoss& loss, nn::Layer& backbone, nn::Layer& head, const DownstreamBatch& b) {
  Tensor l = loss(backbone, head, b);
  const double share = dist::row_share(b.x.shape()[0]);
  return share == 1.0 ? l : mul(l, share);
}

void share_buffers(const BilevelModels& m) {
  if (dist::group(dist::current_group()).size() == 1) return;
  std::vector<Tensor> bufs;
  for (nn::Module* mod : present_modules(m))
    for (auto& [name, t] : mod->named_buffers()) bufs.push_back(t);
  dist::broadcast_(bufs, 0);
}

std::vector<nn::Module*> present_modules(const BilevelModels& m) {
  std::vector<nn::Module*> r;
  for (nn::Module* mod : {static_cast<nn::Module*>(m.backbone_d), static_cast<nn::Module*>(m.backbone_p),
                          static_cast<nn::Module*>(m.pretext), static_cast<nn::Module*>(m.head_d)})
    if (mod) r.push_back(mod);
  return r;
}

void set_ghost(const BilevelModels& m, int64_t n) {
  for (nn::Module* mod : present_modules(m)) nn::set_ghost_batch(*mod, n);
}

void check_finite(double v, const std::string& what, int64_t alternation, int64_t step) {
  if (std::isfinite(v)) return;
  throw Error(str("bissl: ", what, " is ", v, " at alternation ", alternation, ", step ", step,
                  " (the parameters are those before this step; a BYOL target has already taken its EMA update)"));
}

double clip_level(const std::vector<Tensor>& params, double max_norm, const char* level, int64_t alternation,
                  int64_t step, bool allow_nonfinite) {
  const double norm = optim::grad_norm(params);
  if (!(allow_nonfinite && max_norm > 0))
    check_finite(norm, str("the ", level, " gradient norm"), alternation, step);
  if (max_norm > 0) optim::clip_grad_norm(params, max_norm, allow_nonfinite);
  return norm;
}

UpperPhase::UpperPhase(const BilevelModels& m, const BilevelOptions& o, DownstreamLoss loss, ssl::SslBatch fixed,
                       int64_t alternation)
    : m_(m), o_(o), loss_(std::move(loss)), fixed_(std::move(fixed)), alternation_(alternation) {
  BISSL_CHECK(o_.variant == Variant::BiSSL || o_.variant == Variant::IjDiscarded,
              "bissl: an upper step needs variant bissl or ij_discarded, found ", variant_name(o_.variant));
  BISSL_CHECK(m_.backbone_d && m_.backbone_p && m_.pretext && m_.head_d,
              "bissl: an upper step needs θD, θP, the pretext objective and φD");
  theta_d_ = m_.backbone_d->parameters();
  theta_p_ = m_.backbone_p->parameters();
  phi_d_ = m_.head_d->parameters();
  BISSL_CHECK(theta_d_.size() == theta_p_.size(), "bissl: θD has ", theta_d_.size(), " parameter tensors, θP ",
              theta_p_.size());
  BISSL_CHECK(o_.variant != Variant::BiSSL || fixed_.view1.defined(),
              "bissl: an upper step of variant bissl needs the phase's pretext batch");
}

UpperPhase::~UpperPhase() = default;

std::vector<std::pair<Tensor, Tensor>> UpperPhase::snapshot_buffers() const {
  std::vector<std::pair<Tensor, Tensor>> saved;
  for (nn::Module* mod : {static_cast<nn::Module*>(m_.backbone_p), static_cast<nn::Module*>(m_.pretext)})
    for (auto& [name, t] : mod->named_buffers()) saved.emplace_back(t, t.clone());
  return saved;
}

// H·v on the phase's pretext batch: fresh, or the phase's linearization
// replayed (cg_linearize); with reference_devices = W > 1 the reference's
// W-device product. Ghost sizes are set by the caller.
std::vector<Tensor> UpperPhase::hvp_of(const std::vector<Tensor>& v, UpperStepResult* trace_to) {
  auto lower_loss = [&] { return m_.pretext->loss(*m_.backbone_p, fixed_); };
  std::vector<Tensor> hv;
  // Each rank's product is that of its share of the loss: their sum is H·v
  // of the whole batch, the same on every rank (and so CG's iterates).
  if (!o_.cg_linearize) {
    hv = hvp(lower_loss, theta_p_, v).hv;
  } else if (!lin_) {
    // With cg_updates_bn every replay also moves the BN running statistics
    // as the fresh product's forward would (the reference's behaviour).
    lin_ = std::make_unique<Linearization>(lower_loss, theta_p_, v, o_.cg_updates_bn);
    hv = lin_->first().hv;
  } else {
    hv = lin_->hvp(v);
  }
  if (dist::group(dist::current_group()).size() > 1) {
    // In place on copies: a product may share storage with its direction
    // (a Linearization whose tangent key is the parameter's), CG's own d.
    for (Tensor& t : hv) t = t.clone();
    dist::all_reduce_sum_(hv);
  }
  if (o_.reference_devices > 1) {
    // The Gauss–Newton part from a fresh pass that leaves the buffers as
    // they were: the reference's product moves them once.
    auto saved = snapshot_buffers();
    std::vector<Tensor> gn =
        gauss_newton_product([&] { return m_.pretext->split(*m_.backbone_p, fixed_); }, theta_p_, v);
    for (auto& [live, copy] : saved) live.copy_(copy);
    dist::all_reduce_sum_(gn);
    hv = reference_multi_device_hv(std::move(hv), gn, o_.reference_devices);
  }
  if (on_hvp) on_hvp(v, hv);
  if (trace_to) {
    trace_to->directions.push_back(clones(v));
    trace_to->products.push_back(clones(hv));
  }
  return hv;
}

UpperStepResult UpperPhase::step(const DownstreamBatch& db, int64_t k) {
  ScopedRange range("bissl upper step");
  const bool implicit = o_.variant == Variant::BiSSL;
  const size_t P = theta_p_.size();
  const int64_t ghost_d = db.ghost > 0 ? db.ghost : o_.ghost_upper;
  UpperStepResult r;
  std::vector<Tensor> g_phi(phi_d_.size());
  bool inf_in_u = false;  // cg_nan_to_num replaced ±inf in this step's u
  if (implicit) {
    set_ghost(m_, ghost_d);
    Tensor lp = downstream_share(loss_, *m_.backbone_p, *m_.head_d, db);
    r.loss_p = dist::all_reduce_sum(lp.item());
    check_finite(r.loss_p, "the downstream loss of θP", alternation_, k);
    std::vector<Tensor> g1 = grad({lp}, join(theta_p_, phi_d_));
    dist::all_reduce_sum_(g1);
    r.rhs.assign(g1.begin(), g1.begin() + long(P));
    r.head_p.assign(g1.begin() + long(P), g1.end());

    set_ghost(m_, fixed_.ghost > 0 ? fixed_.ghost : o_.ghost_lower);
    // Snapshot of the buffers the CG products' forwards move (θP's and the
    // pretext heads' BN statistics), restored afterwards when asked.
    std::vector<std::pair<Tensor, Tensor>> saved;
    if (!o_.cg_updates_bn) saved = snapshot_buffers();
    UpperStepResult* trace_to = trace ? &r : nullptr;
    r.cg = implicit_gradient([&](const std::vector<Tensor>& v) { return hvp_of(v, trace_to); }, theta_p_, r.rhs,
                             o_.lambda, o_.delta, o_.cg);
    for (auto& [live, copy] : saved) live.copy_(copy);
    inf_in_u = r.cg.inf_replaced > 0;
  }
  set_ghost(m_, ghost_d);
  Tensor ld = downstream_share(loss_, *m_.backbone_d, *m_.head_d, db);
  r.loss_d = dist::all_reduce_sum(ld.item());
  check_finite(r.loss_d, "the downstream loss of θD", alternation_, k);
  std::vector<Tensor> upper_params = join(theta_d_, phi_d_);
  std::vector<Tensor> g2 = grad({ld}, upper_params);
  dist::all_reduce_sum_(g2);
  {
    NoGradGuard ng;
    for (size_t i = 0; i < P; ++i) theta_d_[i].set_grad(implicit ? add(r.cg.u[i], g2[i]) : g2[i]);
    for (size_t j = 0; j < phi_d_.size(); ++j) phi_d_[j].set_grad(implicit ? add(r.head_p[j], g2[P + j]) : g2[P + j]);
  }
  if (keep_unclipped) {
    for (size_t i = 0; i < P; ++i) r.grad_d.push_back(theta_d_[i].grad().clone());
    for (size_t j = 0; j < phi_d_.size(); ++j) r.grad_head.push_back(phi_d_[j].grad().clone());
  }
  if (inf_in_u && o_.clip > 0) {
    // PyTorch's norm of ±max finite overflows in the gradients' own dtype
    // (f32 too, where our double accumulation would not): an infinite
    // norm, so clip_grad_norm_ multiplies every gradient by 0.
    r.grad_norm = std::numeric_limits<double>::infinity();
    NoGradGuard ng;
    for (auto& p : upper_params)
      if (p.grad().defined()) p.set_grad(mul(p.grad(), 0.0));
  } else {
    r.grad_norm = clip_level(upper_params, o_.clip, "upper", alternation_, k, implicit && o_.cg.nan_to_num);
  }
  return r;
}

}  // namespace bissl::bilevel
