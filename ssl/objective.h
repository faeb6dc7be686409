#pragma once
// The common shape of a self-supervised (pretext) objective, as used by the
// pretraining loop and by BiSSL's lower level, whose Hessian–vector products
// differentiate the loss twice w.r.t. the backbone.
//
// An objective owns its head(s) φ and any auxiliary state (BYOL's target
// network) but not the backbone θ: the backbone is passed to every call, so
// one objective serves θ during pretraining and θP during BiSSL. It is an
// nn::Module, so `state_dict()` (checkpoints), `to(DType)` (f64 gradient
// checks), `to(Device)` and `train()/eval()` cover everything it owns.
//
// A training step, in order:
//   obj.before_train_step(backbone);          // BYOL: EMA target update
//   Tensor L = obj.loss(backbone, batch);     // backbone and heads in train mode
//   backward(L); optimiser.step();            // over θ and obj.head_parameters()
// HVPs call only `loss` (e.g. bissl::hvp([&] { return obj.loss(bb, batch); },
// bb.parameters(), v)); they never call before_train_step.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/nn/module.h"
#include "engine/tensor.h"

namespace bissl::ssl {

// One batch for a pretext loss: two augmented views of the same N images,
// NHWC [N, H, W, C] (or whatever the backbone accepts), equal shapes.
// Single-view objectives (MAE) leave view2 empty. `seed` is for randomness
// inside the loss (MAE's masks): the same batch with the same seed gives the
// same loss, which BiSSL's HVPs need (one fixed batch for all CG products).
struct SslBatch {
  Tensor view1, view2;
  uint64_t seed = 0;
  // > 0: this batch's ghost BN size instead of the trainer's ghost_lower (a
  // short last batch split over the reference's devices).
  int64_t ghost = 0;
};

// A loss split at the tensor the reference gathers across devices: z (on
// the tape, differentiable w.r.t. the backbone) and the loss as a function
// of z alone, loss(z) = Objective::loss. SimCLR: both views' projections;
// BYOL: the online predictions (the targets, constants, inside `loss`).
// BiSSL's reference-operator option needs it (bilevel/implicit.h).
struct SplitLoss {
  Tensor z;
  std::function<Tensor(const Tensor& z)> loss;
};

class Objective : public nn::Module {
 public:
  // L_P(θ, φ) on one batch, differentiable (reverse mode, tangents,
  // forward-over-reverse) w.r.t. the backbone's and the heads' parameters.
  // Backbone and heads run in their current mode; in train mode (pretraining,
  // BiSSL) batch norm uses the batch statistics of each view separately, is
  // differentiated through them, and updates its running statistics, the
  // only side effect. Everything else the objective owns (BYOL's target
  // network, parameters and buffers) is left bit-identical.
  // On several ranks (dist::current_group() of size > 1, each rank holding
  // a block of the job's batch) it returns this rank's share: the shares add
  // up to the loss of the whole batch, so gradients and H·v summed over the
  // ranks are the whole batch's (SimCLR gathers negatives from every rank,
  // BYOL weighs its mean by dist::row_share). One rank: the loss itself.
  virtual Tensor loss(nn::Layer& backbone, const SslBatch& batch) = 0;
  // The same loss split at its gathered tensor (see SplitLoss); objectives
  // without one (MAE) say so.
  virtual bool can_split() const { return false; }
  virtual SplitLoss split(nn::Layer& backbone, const SslBatch& batch) {
    (void)backbone, (void)batch;
    throw Error(str(type_name(), ": this objective has no gathered tensor to split its loss at"));
  }

  // The trainable head(s) φ (the optimiser updates them with the backbone).
  virtual nn::Module& head() = 0;
  std::vector<Tensor> head_parameters() { return head().parameters(); }

  // Once per optimiser step, before that step's forward (pretraining and the
  // BiSSL lower level); never inside HVPs or evaluation. BYOL updates its
  // EMA target here. Default: nothing.
  virtual void before_train_step(const nn::Module& backbone) {}
};

// For two-view objectives: both views defined, equal shapes.
inline void check_two_views(const SslBatch& b, const char* who) {
  BISSL_CHECK(b.view1.defined() && b.view2.defined(), who, ": expected two views, found ",
              b.view1.defined() ? "view2" : "view1", " empty");
  BISSL_CHECK(b.view1.shape() == b.view2.shape(), who, ": expected views of equal shape, found ",
              shape_str(b.view1.shape()), " and ", shape_str(b.view2.shape()));
}

}  // namespace bissl::ssl
