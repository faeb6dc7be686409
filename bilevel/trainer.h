#pragma once
// The BiSSL trainer: Algorithm 1 of BISSL_SPEC.md, plus the training-stage
// baselines that share its machinery.
//
// One alternation (defaults in brackets, the spec's):
//   lower phase, N_L [20] steps on θP and φP:
//     pretext batch from the lower stream; objective.before_train_step(θP)
//     (BYOL's EMA); L = L_P(θP, φP) + λ·½‖θD − θP‖² (backbone parameters
//     only, θD a constant); clip ‖∇(θP, φP)‖ to 10; LARS (lr 1.0, wd 1e-6,
//     momentum 0.9, trust 0.001) with linear warm-up [10·N_L steps] then
//     cosine over [T·N_L] steps to 0.001·lr, the schedule stepping after the
//     optimiser as the reference's (step 1 at the base lr, step k ≥ 2 at
//     f(k−1); schedule = "shifted" is this project's earlier rule).
//   upper phase, N_U [8] steps on θD and φD, with one pretext batch for all
//     its steps (and all CG products within them): [cg_batch = epoch_first]
//     the reference's next(iter(loader)), i.e. the first batch of the lower
//     stream's current epoch, freshly augmented (draw = the alternation),
//     the stream not advanced, so the same images serve every alternation
//     until the lower stream starts a new epoch; [next] the lower stream's
//     next batch, consumed:
//     downstream batch from the upper stream;
//     [g_θP, g_φ1] = ∇(θP, φD) L_D(θP, φD);
//     u solves (I + H/(λ+δ)) u = g_θP by CG (5 layer-wise iterations),
//       H = ∇²θP L_P(θP, φP) on the fixed pretext batch (bilevel/implicit.h);
//     [g_θD, g_φ2] = ∇(θD, φD) L_D(θD, φD) on the same downstream batch;
//     θD.grad = u + g_θD, φD.grad = g_φ1 + g_φ2; clip ‖·‖ to 10; SGD
//     (momentum 0.9, the dataset's lr/wd) with cosine over [T·N_U] steps to
//     0.001·lr, stepped as the lower one. A non-finite u is an error naming
//     alternation and step, or [cg_nan_to_num] the reference's nan_to_num
//     (±inf → ±max finite), after which the clip's infinite norm zeroes the
//     step's gradients as PyTorch's clip_grad_norm_ does.
//
// Variants (BilevelOptions::variant):
//   bissl          the above.
//   ij_discarded   the ablation "IJ term discarded": θD.grad = g_θD,
//                  φD.grad = g_φ2 (no u, no φD gradient through θP) — plain
//                  alternating optimisation; no HVPs.
//   weighted_sum   the baseline (1−w)·L_P + w·L_D trained jointly on one
//                  backbone (θP), gradients of the two terms from separate
//                  batches (one pretext, one downstream), N_L + N_U steps per
//                  alternation with the lower optimiser over θP, φP and φD.
//   pretext_only   continued pretraining (the "pretext + downstream mix"
//                  baseline when the lower stream serves that mix): the lower
//                  phase alone with λ = 0.
// Every variant's result is θP (with its BN buffers); bissl and ij_discarded
// also train θD and φD.
//
// Batch norm: every forward runs in train mode. ghost_lower/ghost_upper set
// ghost batch norm (engine/nn/layers.h) on the backbones and the pretext
// heads for pretext batches / downstream batches, emulating the reference's
// per-device statistics (256 per view on the lower level and 64 on the upper
// with its 4 devices). Each loss evaluation moves the running statistics,
// the CG products' too (the reference's behaviour); cg_updates_bn = false
// restores θP's and the pretext heads' buffers after every CG solve instead.
// cg_linearize: within an upper phase θP and the pretext batch are fixed, so
// the phase's first H·v records a bissl::Linearization and every later one
// (up to N_U × CG iterations) replays only its tangent rules: the same
// numbers, less work, more memory. With cg_updates_bn each replay also
// repeats the recorded forward's BN running-statistics updates, so the
// buffers move exactly as fresh products' forwards would move them. Random
// draws inside the pretext loss (a ViT θP's drop path) are the exception:
// replays reuse the recorded draw (the stages' config refuses that mix).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/cg.h"
#include "bilevel/implicit.h"
#include "bilevel/streams.h"
#include "engine/autograd.h"
#include "engine/nn/module.h"
#include "engine/optim/optimizer.h"
#include "engine/optim/schedule.h"
#include "engine/schema.h"
#include "ssl/objective.h"

namespace bissl::bilevel {

enum class Variant { BiSSL, IjDiscarded, WeightedSum, PretextOnly };
const schema::Names<Variant>& variant_names();   // bissl | ij_discarded | weighted_sum | pretext_only
Variant parse_variant(const std::string& name);  // one of variant_names(), else an Error
const char* variant_name(Variant v);

struct BilevelOptions {
  Variant variant = Variant::BiSSL;
  int64_t alternations = 500;  // T
  int64_t lower_steps = 20;    // N_L
  int64_t upper_steps = 8;     // N_U
  double lambda = kLambda;     // λ of the proximal term λ·½‖θD − θP‖²
  double delta = kDelta;       // δ: CG solves (I + H/(λ+δ))
  CgOptions cg;                // 5 layer-wise iterations from 0
  // Lower level: LARS, linear warm-up then cosine.
  double lower_lr = 1.0, lower_wd = 1e-6, lower_momentum = 0.9, lower_trust = 0.001;
  int64_t lower_warmup = -1;  // -1 = 10·N_L (the reference's; 200 at the spec's N_L)
  int64_t lower_total = 0;  // cosine horizon in lower steps; 0 = T·N_L (the spec's 10 000)
  // Upper level: SGD with momentum, cosine to 0 without warm-up. The spec
  // takes lr and weight decay from fine-tuning: -1 means "the caller's
  // fine-tuning value", which the caller resolves before the trainer starts.
  double upper_lr = -1, upper_wd = -1, upper_momentum = 0.9;
  bool upper_adamw = false;  // AdamW (β 0.9, 0.999) instead of SGD above (MAE's fine-tuning optimiser; set by the caller)
  // Parameter groups of the upper optimiser (e.g. a ViT's layer-wise lr
  // decay, models::vit_layer_decay_groups); empty = one group, θD then φD.
  // Must hold exactly θD's and φD's tensors.
  std::vector<optim::ParamGroup> upper_groups;
  int64_t upper_total = 0;  // 0 = T·N_U (the spec's 4 000)
  // How both levels' schedules step: "reference" (step 1 at the base lr,
  // step k ≥ 2 at f(k−1), cosines ending at 0.001·base) or "shifted" (step k
  // at f(k) with warm-up (k+1)/W, cosines ending at 0; before issue 14).
  std::string schedule = "reference";
  // The pretext batch of an upper phase: "epoch_first" (the reference) or "next".
  std::string cg_batch = "epoch_first";
  double clip = 10.0;       // max total gradient norm per level (0 = no clipping)
  // Ghost BN sizes (0 = whole-batch statistics): the reference's per-device
  // statistics on its 4 devices (256 per view below, 64 above).
  int64_t ghost_lower = 256, ghost_upper = 64;
  bool cg_updates_bn = true;                 // see above
  bool cg_linearize = false;                 // see above
  // W > 1: every H·v is the reference's W-device product T1 + (1/W)·Jᵀ∇²_zL·J·v
  // (bilevel/implicit.h), to reproduce its numbers on one device; 1 = exact H.
  // Variants without H·v ignore it.
  int64_t reference_devices = 1;
  double weight = 0.5;                       // w of weighted_sum

  // The settings (upper_adamw and upper_groups are wiring, set by the caller).
  template <class V>
  void fields(V& v) {
    v("variant", variant, variant_names(), "bissl, or a training-stage baseline: ij_discarded, weighted_sum, pretext_only");
    v("alternations", alternations, schema::ge(0), "T: lower + upper phases (the spec: 500)");
    v("lower_steps", lower_steps, schema::ge(0), "N_L: lower steps per alternation (the spec: 20)");
    v("upper_steps", upper_steps, schema::ge(0), "N_U: upper steps per alternation (the spec: 8)");
    v("lambda", lambda, schema::gt(0), "λ of the lower level's proximal term λ·½‖θD − θP‖² (the spec: 0.001)");
    v("delta", delta, schema::ge(0), "δ: CG solves (I + H/(λ+δ)) u = ∇θP L_D (the spec: 10)");
    schema::fields_prefixed(cg, v, "cg_");
    v("lower_lr", lower_lr, schema::gt(0), "LARS lr of the lower level");
    v("lower_wd", lower_wd, schema::ge(0), "LARS weight decay of the lower level");
    v("lower_momentum", lower_momentum, schema::in_open_hi(0, 1), "LARS momentum of the lower level");
    v("lower_trust", lower_trust, schema::gt(0), "LARS trust coefficient of the lower level");
    v("lower_warmup", lower_warmup, schema::ge(0).or_value(-1),
      "linear warm-up of the lower lr, in lower steps; -1 = 10·N_L (the reference's)");
    v("lower_total", lower_total, schema::ge(0), "cosine horizon of the lower lr in steps; 0 = T·N_L");
    v("upper_lr", upper_lr, schema::gt(0).or_value(-1), "SGD lr of the upper level; -1 = the fine-tuning lr (the spec)");
    v("upper_wd", upper_wd, schema::ge(0).or_value(-1), "upper weight decay; -1 = the fine-tuning weight decay (the spec)");
    v("upper_momentum", upper_momentum, schema::in_open_hi(0, 1), "SGD momentum of the upper level");
    v("upper_total", upper_total, schema::ge(0), "cosine horizon of the upper lr in steps; 0 = T·N_U");
    v("schedule", schedule, schema::one_of({"reference", "shifted"}),
      "reference: step 1 at the base lr, step k >= 2 at f(k-1), cosines to 0.001·lr; shifted: step k at f(k), "
      "cosines to 0 (this project's rule before issue 14)");
    v("cg_batch", cg_batch, schema::one_of({"epoch_first", "next"}),
      "the upper phase's pretext batch: the first of the lower stream's current epoch, freshly augmented and not "
      "consumed (the reference's next(iter(loader))), or the stream's next batch, consumed");
    v("clip", clip, schema::ge(0), "max total gradient norm per level; 0 = no clipping");
    v("ghost_lower", ghost_lower, schema::ge(0), "ghost BN size on pretext batches; 0 = whole-batch statistics");
    v("ghost_upper", ghost_upper, schema::ge(0), "ghost BN size on downstream batches; 0 = whole-batch statistics");
    v("cg_updates_bn", cg_updates_bn, schema::any(), "CG's H·v forwards move the BN running statistics (the reference)");
    v("cg_linearize", cg_linearize, schema::any(),
      "one recorded linearization per upper phase, replayed by every H·v: fresh H·v's numbers, faster (θP without drop path)");
    v("weight", weight, schema::probability(), "w of weighted_sum's (1−w)·L_P + w·L_D");
    v("reference_devices", reference_devices, schema::ge(1),
      "W > 1: every H·v is the reference's W-device product T1 + (1/W)·Jᵀ∇²_zL·J·v (its gather drops (1 − 1/W) of "
      "the loss-curvature term; SimCLR, BYOL), two more passes per product; 1 = the exact H");
  }

  void validate() const;
};

// The models BiSSL trains; the trainer keeps references, the caller owns
// them. backbone_d (θD) and backbone_p (θP) have the same architecture;
// head_d (φD) maps backbone features to class logits.
struct BilevelModels {
  nn::Layer* backbone_d = nullptr;
  nn::Layer* backbone_p = nullptr;
  ssl::Objective* pretext = nullptr;  // L_P and its heads φP (BYOL: and the EMA target)
  nn::Layer* head_d = nullptr;
};

// The downstream loss L_D(θ, φD) on one batch; default cross-entropy of
// head(backbone(x)) against y: class indices (i64 [N]), or multi-hot / soft
// targets (float [N, classes], a multi-label task).
using DownstreamLoss = std::function<Tensor(nn::Layer& backbone, nn::Layer& head, const DownstreamBatch& b)>;
Tensor cross_entropy_loss(nn::Layer& backbone, nn::Layer& head, const DownstreamBatch& b);

// What one alternation did (means over its steps).
struct AlternationStats {
  int64_t alternation = 0;       // 1-based, after it finished
  int64_t lower_steps = 0, upper_steps = 0, hvps = 0;
  double lower_loss = 0;         // L_P
  double lower_reg = 0;          // λ·½‖θD − θP‖² (before each lower step)
  double lower_grad_norm = 0;    // before clipping
  double upper_loss_d = 0;       // L_D(θD, φD)
  double upper_loss_p = 0;       // L_D(θP, φD) (bissl only)
  double upper_grad_norm = 0;    // before clipping
  double cg_residual_first = 0;  // ‖r_0‖ = ‖∇θP L_D‖ (bissl)
  double cg_residual_last = 0;   // ‖r_K‖ (the recurrence's, see bilevel/cg.h)
  int64_t cg_nan_replaced = 0;
  int64_t cg_inf_replaced = 0;   // cg_nan_to_num
  double cg_min_curvature = 0;   // min / max Rayleigh quotient of I + H/(λ+δ) along CG's directions
  double cg_max_curvature = 0;   // (min < 0: not positive definite; max/min: a lower bound on its condition)
  double distance = 0;           // ‖θD − θP‖ over backbone parameters, at the end
  double lower_lr = 0, upper_lr = 0;  // the last step's
  double seconds = 0;

  // One metrics.jsonl line (schema::to_json).
  template <class V>
  void fields(V& v) {
    auto a = schema::any();
    v("alternation", alternation, a, "1-based, after it finished");
    v("lower_steps", lower_steps, a, "lower steps so far");
    v("upper_steps", upper_steps, a, "upper steps so far");
    v("hvps", hvps, a, "Hessian-vector products this alternation");
    v("lower_loss", lower_loss, a, "L_P");
    v("lower_reg", lower_reg, a, "λ·½‖θD − θP‖² before each lower step");
    v("lower_grad_norm", lower_grad_norm, a, "lower gradient norm before clipping");
    v("upper_loss_d", upper_loss_d, a, "L_D(θD, φD)");
    v("upper_loss_p", upper_loss_p, a, "L_D(θP, φD)");
    v("upper_grad_norm", upper_grad_norm, a, "upper gradient norm before clipping");
    v("cg_residual_first", cg_residual_first, a, "‖r_0‖ = ‖∇θP L_D‖");
    v("cg_residual_last", cg_residual_last, a, "‖r_K‖ (the recurrence's)");
    v("cg_nan_replaced", cg_nan_replaced, a, "elements of u that were NaN");
    v("cg_inf_replaced", cg_inf_replaced, a, "elements of u that were ±inf (cg_nan_to_num: set to ±max finite)");
    v("cg_min_curvature", cg_min_curvature, a, "min Rayleigh quotient along CG's directions");
    v("cg_max_curvature", cg_max_curvature, a, "max Rayleigh quotient along CG's directions");
    v("distance", distance, a, "‖θD − θP‖ at the end");
    v("lower_lr", lower_lr, a, "the last lower step's lr");
    v("upper_lr", upper_lr, a, "the last upper step's lr");
    v("seconds", seconds, a, "wall time of the alternation");
  }
};

// On several ranks (dist::current_group() of size > 1; docs/distributed.md):
// each rank holds a block of every batch of both streams, its losses are
// its shares of the whole batch's (ssl/objective.h; downstream_share), and
// every gradient, right-hand side and H·v is summed over the ranks before
// use, so clipping, CG, the optimisers and the statistics are replicated:
// the same numbers on every rank, those of one process up to summation
// order. The proximal term enters once (rank 0's lower loss). Batch norm
// normalises each rank's rows (ghost BN of the local size), or all rows
// with BatchNorm::sync; after each alternation every rank takes rank 0's
// BN buffers (DDP's broadcast_buffers), which are those of one process.

// The downstream loss (a mean over b's rows) weighed into this rank's
// share of the whole batch's mean (dist::row_share); one rank: the loss.
Tensor downstream_share(const DownstreamLoss& loss, nn::Layer& backbone, nn::Layer& head, const DownstreamBatch& b);
// Every rank takes rank 0's buffers (BN statistics) of the models present.
void share_buffers(const BilevelModels& m);

// The tensors of a, then those of b.
std::vector<Tensor> join(const std::vector<Tensor>& a, const std::vector<Tensor>& b);
// The models present (θD and φD are absent in some variants).
std::vector<nn::Module*> present_modules(const BilevelModels& m);
// Ghost batch norm of size n (0 = whole-batch statistics) on every model present.
void set_ghost(const BilevelModels& m, int64_t n);
// Throws bissl::Error "bissl: <what> is <v> at alternation <a>, step <k> ..."
// when v is not finite.
void check_finite(double v, const std::string& what, int64_t alternation, int64_t step);
// Clips the gradients of `params` to max_norm (when > 0); returns the norm
// before clipping; a non-finite norm is an error naming level, alternation
// and step. allow_nonfinite: PyTorch's arithmetic instead (an infinite norm
// zeroes the gradients; cg_nan_to_num's upper level).
double clip_level(const std::vector<Tensor>& params, double max_norm, const char* level, int64_t alternation,
                  int64_t step, bool allow_nonfinite = false);

// What one upper step computed (UpperPhase::step).
struct UpperStepResult {
  double loss_p = 0;             // L_D(θP, φD) (bissl)
  double loss_d = 0;             // L_D(θD, φD)
  std::vector<Tensor> rhs;       // ∇θP L_D(θP, φD), CG's right-hand side (bissl)
  std::vector<Tensor> head_p;    // ∇φD L_D(θP, φD) (bissl)
  ImplicitGradResult cg;         // u and CG's residuals / curvature (bissl)
  // θD's and φD's assembled gradients before clipping (only with
  // UpperPhase::keep_unclipped; the clipped ones are in θD.grad, φD.grad).
  std::vector<Tensor> grad_d, grad_head;
  double grad_norm = 0;          // ‖(θD, φD) gradient‖ before clipping (inf: u held ±inf under cg_nan_to_num)
  // UpperPhase::trace: every H·v of the step, v and H·v as CG received them
  // (the first v is rhs, so products[0] = H·rhs).
  std::vector<std::vector<Tensor>> directions, products;
};

// One upper phase (Algorithm 1's, as described above): θP and the pretext
// batch `fixed` stay fixed, and step() computes one upper step's gradients
// on a downstream batch: for bissl rhs = ∇θP L_D(θP, φD), u by CG over
// H·v on `fixed` (exact, linearized or the reference's W-device operator,
// with the BN-buffer rules of the options), then ∇(θD, φD) L_D(θD, φD), the
// assembly, and the clip. It leaves the clipped gradients in θD.grad and
// φD.grad; the caller steps its optimiser. The trainer and
// `bissl-inspect upper` both run exactly this code. Variants: bissl and
// ij_discarded (which ignores `fixed`). alternation (1-based) names errors.
class UpperPhase {
 public:
  UpperPhase(const BilevelModels& m, const BilevelOptions& o, DownstreamLoss loss, ssl::SslBatch fixed,
             int64_t alternation);
  UpperPhase(const UpperPhase&) = delete;
  UpperPhase& operator=(const UpperPhase&) = delete;
  ~UpperPhase();

  // step: 1-based within the phase, for error messages.
  UpperStepResult step(const DownstreamBatch& db, int64_t step);

  bool keep_unclipped = false;  // fill UpperStepResult::grad_d / grad_head (copies)
  bool trace = false;           // fill UpperStepResult::directions / products
  // Called with every direction v and its H·v before CG receives it; it may
  // change hv (tests make the system singular).
  std::function<void(const std::vector<Tensor>& v, std::vector<Tensor>& hv)> on_hvp;

 private:
  std::vector<Tensor> hvp_of(const std::vector<Tensor>& v, UpperStepResult* trace_to);
  // Copies of the buffers a pretext forward moves (θP's and the pretext
  // heads' BN statistics), paired with the live tensors to restore them into.
  std::vector<std::pair<Tensor, Tensor>> snapshot_buffers() const;

  BilevelModels m_;
  const BilevelOptions& o_;
  DownstreamLoss loss_;
  ssl::SslBatch fixed_;
  int64_t alternation_;
  std::vector<Tensor> theta_d_, theta_p_, phi_d_;
  std::unique_ptr<Linearization> lin_;  // cg_linearize: the phase's first H·v, replayed by the rest
};

class BilevelTrainer {
 public:
  // Fresh start: BYOL's target is reset to a copy of θP here (the spec);
  // resume with load_state_dict afterwards.
  BilevelTrainer(BilevelModels m, BilevelOptions o, PretextStream& lower, DownstreamStream& upper,
                 DownstreamLoss loss = cross_entropy_loss);

  // One alternation: lower phase then upper phase. Throws bissl::Error
  // naming the level, alternation and step when a loss or gradient is not
  // finite; the parameters are those before the failing step.
  AlternationStats alternation();
  // The phases on their own (tests look between them).
  void lower_phase(AlternationStats& s);
  void upper_phase(AlternationStats& s);

  int64_t alternations_done() const { return done_; }
  int64_t lower_steps_done() const { return lower_opt_->steps(); }
  int64_t upper_steps_done() const { return upper_opt_ ? upper_opt_->steps() : 0; }
  optim::Optimizer& lower_optimizer() { return *lower_opt_; }
  optim::Optimizer* upper_optimizer() { return upper_opt_.get(); }  // null for weighted_sum/pretext_only
  const BilevelOptions& options() const { return o_; }
  double distance() const;  // ‖θD − θP‖ over backbone parameters

  // Trainer state for exact resume: both optimisers, counters and the
  // streams' positions (the models are saved by the caller).
  optim::StateDict state_dict() const;
  void load_state_dict(const optim::StateDict& sd);

  // Called after every HVP-based solve with the fixed pretext batch's seed
  // (tests check that one batch serves a whole upper phase).
  std::function<void(const ssl::SslBatch&)> on_cg;
  // Called with every direction v and its H·v before CG receives it; it may
  // change hv (tests make the system singular to reach the non-finite-u paths).
  std::function<void(const std::vector<Tensor>& v, std::vector<Tensor>& hv)> on_hvp;
  // Called after each upper step's gradients are in θD.grad / φD.grad
  // (clipped) and before the optimiser steps, with the step's batch, result
  // and the phase's pretext batch (tests compare it with bissl-inspect upper).
  std::function<void(const DownstreamBatch&, const UpperStepResult&, const ssl::SslBatch& fixed)> on_upper_step;

 private:
  Tensor lower_objective(const ssl::SslBatch& b, double& lp, double& reg);

  BilevelModels m_;
  BilevelOptions o_;
  PretextStream& lower_;
  DownstreamStream& upper_;
  DownstreamLoss loss_;
  std::vector<Tensor> theta_d_, theta_p_, phi_p_, phi_d_;
  std::unique_ptr<optim::Optimizer> lower_opt_, upper_opt_;
  optim::WarmupCosine lower_sched_, upper_sched_;
  int64_t done_ = 0;
};

// NoisyTune (Wu et al. 2022): every parameter tensor p += U(−λ/2, λ/2)·std(p),
// before fine-tuning. Tensors with one element (std undefined) are left alone.
void noisytune(nn::Module& m, double lambda, uint64_t seed);

}  // namespace bissl::bilevel
