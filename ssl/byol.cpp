#include "ssl/byol.h"

#include "engine/autograd.h"
#include "engine/dist/comm.h"
#include "engine/ops.h"

namespace bissl::ssl {

namespace {

// The dtype and device of a module's first floating parameter.
bool storage_of(const nn::Module& m, DType& t, Device& d) {
  for (auto& p : m.parameters())
    if (is_floating(p.dtype())) {
      t = p.dtype();
      d = p.device();
      return true;
    }
  return false;
}

// Brings dst to src's dtype and device (no-op when they already agree).
void match_storage(nn::Module& dst, const nn::Module& src) {
  DType ts, td;
  Device ds, dd;
  if (!storage_of(src, ts, ds) || !storage_of(dst, td, dd)) return;
  if (td != ts) dst.to(ts);
  if (dd != ds) dst.to(ds);
}

// Pairs dst's and src's named tensors by position, checking names and shapes.
void check_pairs(const nn::StateDict& d, const nn::StateDict& s, const char* what) {
  BISSL_CHECK(d.size() == s.size(), "BYOL::update_target: the target has ", d.size(), " ", what,
              ", the online network ", s.size());
  for (size_t i = 0; i < d.size(); ++i) {
    BISSL_CHECK(d[i].first == s[i].first, "BYOL::update_target: ", what, " ", i, " is ", d[i].first,
                " in the target but ", s[i].first, " online");
    BISSL_CHECK(d[i].second.shape() == s[i].second.shape() && d[i].second.dtype() == s[i].second.dtype(),
                "BYOL::update_target: ", d[i].first, " is ", shape_str(d[i].second.shape()), " ",
                dtype_name(d[i].second.dtype()), " in the target but ", shape_str(s[i].second.shape()), " ",
                dtype_name(s[i].second.dtype()), " online");
  }
}

void ema_into(const nn::Module& target, const nn::Module& online, double tau) {
  auto tp = target.named_parameters(), op = online.named_parameters();
  auto tb = target.named_buffers(), ob = online.named_buffers();
  check_pairs(tp, op, "parameters");
  check_pairs(tb, ob, "buffers");
  for (size_t i = 0; i < tp.size(); ++i) {
    Tensor& pt = tp[i].second;
    pt.copy_(add(mul(pt.detach(), tau), mul(op[i].second.detach(), 1.0 - tau)));
  }
  for (size_t i = 0; i < tb.size(); ++i) tb[i].second.copy_(ob[i].second);
}

}  // namespace

Tensor byol_loss(const Tensor& p1, const Tensor& p2, const Tensor& t1, const Tensor& t2) {
  BISSL_CHECK(p1.dim() == 2 && p2.shape() == p1.shape() && t1.shape() == p1.shape() && t2.shape() == p1.shape(),
              "byol_loss: expected four [N, d] tensors of equal shape, found ", shape_str(p1.shape()), ", ",
              shape_str(p2.shape()), ", ", shape_str(t1.shape()), ", ", shape_str(t2.shape()));
  auto cosine = [](const Tensor& a, const Tensor& b) {
    return sum(mul(l2_normalize(a, -1), l2_normalize(b, -1)), {-1});  // [N]
  };
  Tensor per_image = 4.0 - 2.0 * (cosine(p1, t2) + cosine(p2, t1));
  return mean(per_image);
}

BYOL::BYOL(const nn::Module& online_backbone, const BackboneFactory& make_backbone, int64_t feature_dim, Generator& g,
           const ByolOptions& opts)
    : options(opts) {
  BISSL_CHECK(opts.ema_decay >= 0 && opts.ema_decay <= 1, "BYOL: expected ema_decay in [0, 1], found ",
              opts.ema_decay);
  BISSL_CHECK(make_backbone, "BYOL: expected a backbone factory, found an empty function");
  head_ = register_module("head", std::make_shared<models::NamedSequential>());
  projector_ = head_->push_back(
      "projector", std::make_shared<models::MLPHead>(feature_dim, opts.hidden_dim, opts.out_dim, g, opts.proj_layers));
  predictor_ = head_->push_back(
      "predictor", std::make_shared<models::MLPHead>(opts.out_dim, opts.pred_hidden_dim, opts.out_dim, g,
                                                     opts.pred_layers));
  std::shared_ptr<nn::Layer> tb = make_backbone();
  BISSL_CHECK(tb, "BYOL: the backbone factory returned a null pointer");
  BISSL_CHECK(tb.get() != &online_backbone, "BYOL: the backbone factory must return a new instance, not the online one");
  backbone_target_ = register_module("backbone_target", tb);
  // Values come from the online projector below; a scratch generator keeps
  // g's stream independent of the target's existence.
  Generator scratch(0);
  projector_target_ = register_module(
      "projector_target",
      std::make_shared<models::MLPHead>(feature_dim, opts.hidden_dim, opts.out_dim, scratch, opts.proj_layers));
  backbone_target_->requires_grad_(false);
  projector_target_->requires_grad_(false);
  reset_target(online_backbone);
}

void BYOL::reset_target(const nn::Module& online_backbone) {
  match_storage(*backbone_target_, online_backbone);
  match_storage(*projector_target_, *projector_);
  backbone_target_->load_state_dict(online_backbone.state_dict());
  projector_target_->load_state_dict(projector_->state_dict());
}

void BYOL::update_target(const nn::Module& online_backbone) {
  NoGradGuard ng;
  NoForwardADGuard nf;
  ema_into(*backbone_target_, online_backbone, options.ema_decay);
  ema_into(*projector_target_, *projector_, options.ema_decay);
}

Tensor BYOL::target_forward(const Tensor& view) {
  NoGradGuard ng;
  NoForwardADGuard nf;
  NoForwardEffectsGuard ne;  // nothing for a Linearization to repeat: see below
  // A train-mode forward updates BN running statistics; put them back.
  nn::StateDict bufs = backbone_target_->named_buffers();
  for (auto& b : projector_target_->named_buffers()) bufs.push_back(b);
  std::vector<Tensor> saved;
  saved.reserve(bufs.size());
  for (auto& b : bufs) saved.push_back(b.second.clone());
  struct Restore {
    nn::StateDict& b;
    std::vector<Tensor>& s;
    ~Restore() {
      for (size_t i = 0; i < b.size(); ++i) b[i].second.copy_(s[i]);
    }
  } restore{bufs, saved};
  return projector_target_->forward(backbone_target_->forward(view.detach())).detach();
}

Tensor BYOL::loss(nn::Layer& backbone, const SslBatch& batch) {
  SplitLoss s = split(backbone, batch);
  return s.loss(s.z);
}

SplitLoss BYOL::split(nn::Layer& backbone, const SslBatch& batch) {
  ScopedRange range(range_name().c_str());
  check_two_views(batch, "BYOL");
  Tensor p1 = head_->forward(backbone.forward(batch.view1));
  Tensor p2 = head_->forward(backbone.forward(batch.view2));
  Tensor t1 = target_forward(batch.view1);
  Tensor t2 = target_forward(batch.view2);
  const int64_t n = p1.shape()[0];
  // On several ranks this rank's share of the whole batch's mean (one rank: the mean itself).
  const double share = dist::row_share(n);
  return {concat({p1, p2}, 0), [n, t1, t2, share](const Tensor& z) {
            Tensor l = byol_loss(slice(z, 0, 0, n), slice(z, 0, n, 2 * n), t1, t2);
            return share == 1.0 ? l : mul(l, share);
          }};
}

std::string BYOL::extra_repr() const { return str("ema_decay=", options.ema_decay); }

}  // namespace bissl::ssl
