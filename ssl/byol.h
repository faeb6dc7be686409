#pragma once
// BYOL (BISSL_SPEC.md): online = backbone + projector + predictor, target =
// copies of backbone + projector following the online network by an
// exponential moving average (decay 0.9995, constant). Loss, per image,
// (2 − 2·cos(q(v1), t(v2))) + (2 − 2·cos(q(v2), t(v1))), mean over the batch
// (q: online prediction, t: target projection, no gradient through t).
//
// The target backbone is a second instance of the backbone's architecture,
// made by a factory the caller passes (e.g. [&] { return
// std::make_shared<models::ResNet>(cfg, scratch_gen); }); its values always
// come from the online backbone (reset_target), never from the factory's init.
//
// Target state and who changes it:
//   * parameters: update_target (EMA) and reset_target (copy) only.
//   * BN buffers (running_mean, running_var, num_batches_tracked): copied
//     from the online network by update_target and reset_target; the
//     target's own forward in loss() restores them afterwards. The loss
//     never reads them (the target runs in train mode on batch statistics),
//     so this is a bookkeeping choice: it keeps the target a pure function
//     of the online history, makes loss() free of side effects on the target
//     (BiSSL evaluates the same batch 40 times per alternation for its HVPs,
//     and those must not move the target), and leaves sensible running
//     statistics should anyone evaluate the target. (The reference code EMAs
//     parameters only and lets its target's BN buffers drift with the
//     target's own forwards; the losses are identical.)
//   * the target runs under NoGradGuard and NoForwardADGuard on detached
//     views: no tape, no tangents, so reverse-mode gradients and
//     forward-over-reverse HVPs w.r.t. the online network never reach it.
//
// State dict names follow the reference BYOL module (minus its online
// "backbone.*"): head.projector.*, head.predictor.*, backbone_target.*,
// projector_target.*.
#include <cstdint>
#include <functional>
#include <memory>

#include "engine/random.h"
#include "models/heads.h"
#include "ssl/objective.h"

namespace bissl::ssl {

// Mean over the batch of (2 − 2·cos(p1, t2)) + (2 − 2·cos(p2, t1)), cosine
// along the last axis. p1, p2: online predictions of views 1 and 2; t1, t2:
// target projections of views 1 and 2 (used as given: pass detached tensors
// for BYOL's stop-gradient). All [N, d].
Tensor byol_loss(const Tensor& p1, const Tensor& p2, const Tensor& t1, const Tensor& t2);

struct ByolOptions {
  int64_t hidden_dim = 256;       // projector hidden width
  int64_t out_dim = 256;          // projection size (predictor in and out)
  int proj_layers = 3;
  int64_t pred_hidden_dim = 256;  // predictor hidden width
  int pred_layers = 3;
  double ema_decay = 0.9995;      // τ in p_t = τ·p_t + (1 − τ)·p_o
};

using BackboneFactory = std::function<std::shared_ptr<nn::Layer>()>;

class BYOL : public Objective {
 public:
  // Builds the heads from g (projector, then predictor), the target backbone
  // from make_backbone() and a target projector, then reset_target(online):
  // the target starts as an exact copy (values, dtype, device).
  BYOL(const nn::Module& online_backbone, const BackboneFactory& make_backbone, int64_t feature_dim, Generator& g,
       const ByolOptions& opts = {});

  // byol_loss(q(v1), q(v2), t(v1), t(v2)) with q = predictor∘projector∘backbone
  // (online, differentiable) and t = target_forward. Does not update the EMA.
  Tensor loss(nn::Layer& backbone, const SslBatch& batch) override;
  bool can_split() const override { return true; }
  SplitLoss split(nn::Layer& backbone, const SslBatch& batch) override;  // z = [p1; p2], targets inside
  // projector then predictor (reference names head.projector, head.predictor).
  models::NamedSequential& head() override { return *head_; }
  // update_target(backbone): the EMA step before each training forward.
  void before_train_step(const nn::Module& backbone) override { update_target(backbone); }

  // Under NoGradGuard: every target parameter p_t = τ·p_t + (1 − τ)·p_o (τ =
  // options.ema_decay) for backbone and projector; target BN buffers = the
  // online buffers (copied). Parameters pair up by name; shapes must match.
  void update_target(const nn::Module& online_backbone);
  // Target backbone and projector := the online ones (parameters and
  // buffers; converted to the online dtype/device first). BiSSL calls this
  // at its start, after loading the pretrained weights.
  void reset_target(const nn::Module& online_backbone);

  // Target projection of one view: no tape, no tangents, result detached,
  // target buffers left bit-identical.
  Tensor target_forward(const Tensor& view);

  models::MLPHead& projector() { return *projector_; }
  models::MLPHead& predictor() { return *predictor_; }
  nn::Layer& target_backbone() { return *backbone_target_; }
  models::MLPHead& target_projector() { return *projector_target_; }
  std::string type_name() const override { return "BYOL"; }
  std::string extra_repr() const override;

  ByolOptions options;

 private:
  std::shared_ptr<models::NamedSequential> head_;
  std::shared_ptr<models::MLPHead> projector_, predictor_;
  std::shared_ptr<nn::Layer> backbone_target_;
  std::shared_ptr<models::MLPHead> projector_target_;
};

}  // namespace bissl::ssl
