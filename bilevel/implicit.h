#pragma once
// The implicit part of BiSSL's upper gradient (BISSL_SPEC.md, "The
// optimisation problem"): u solving
//     (I + H/(λ+δ)) u = rhs,      rhs = ∇θP L_D(θP, φD),
// with H = ∇²θP L_P the Hessian of the lower (pretext) loss w.r.t. the
// backbone parameters only (heads held fixed), applied by bissl::hvp
// (forward-over-reverse). The upper gradient for θD is then
// u + ∇θD L_D(θD, φD). With δ = 0, (I + H/λ)⁻¹ = λ(H + λI)⁻¹ = dθP*/dθD.
#include <functional>
#include <vector>

#include "bilevel/cg.h"
#include "engine/tensor.h"
#include "ssl/objective.h"

namespace bissl::bilevel {

constexpr double kLambda = 0.001;  // λ, the lower level's proximal weight
constexpr double kDelta = 10.0;    // δ, the damping the reference adds to λ in the solve

// v ↦ v + H v/(λ+δ), one hvp call per product. lower_loss is L_P on one
// fixed pretext batch (a closure: the same batch, the same MAE mask seed);
// params are leaves that require grad (the backbone θP).
MatVec implicit_matvec(const std::function<Tensor()>& lower_loss, const std::vector<Tensor>& params, double lambda,
                       double delta);
// H·v by any means: a fresh hvp per call, or a Linearization's replay.
using HvpFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& v)>;
MatVec implicit_matvec(const HvpFn& hvp, double lambda, double delta);

// The loss-curvature (Gauss–Newton) part of H·v: Jᵀ ∇²_z L J v, with z the
// tensor `split` exposes (ssl::SplitLoss; J = ∂z/∂params) — H·v minus the
// network-curvature part Σ_i ∂L/∂z_i ∇² z_i v. One forward carrying v as
// tangents (z and J v), an H·v of L in z-space, one backward (Jᵀ). Side
// effects: those of one `split` call (BN running statistics in train mode).
std::vector<Tensor> gauss_newton_product(const std::function<ssl::SplitLoss()>& split,
                                         const std::vector<Tensor>& params, const std::vector<Tensor>& v);

// The reference's W-device H·v on one device (../shared/notes/
// REFERENCE_AUDIT.md §3): its gather's in-place all-reduce is invisible to
// autograd, so on W devices it computes T1 + (1/W)·Jᵀ∇²_zL·J·v — hv minus
// (1 − 1/W) of the Gauss–Newton part. `hv` is the exact H·v at v; W = 1
// returns it unchanged.
std::vector<Tensor> reference_multi_device_hv(std::vector<Tensor> hv, const std::vector<Tensor>& gauss_newton,
                                              int64_t devices);

struct ImplicitGradResult {
  std::vector<Tensor> u;          // one tensor per parameter, NaNs replaced by 0
  std::vector<double> residuals;  // CG's ‖r_k‖ over all tensors, [0] = ‖rhs‖
  int iterations = 0;             // CG iterations run = HVPs computed
  int64_t nan_replaced = 0;
  int64_t inf_replaced = 0;  // cg.nan_to_num
  std::vector<double> curvature;  // CG's Rayleigh quotients of I + H/(λ+δ), one per iteration
};

// Solves (I + H/(λ+δ)) u = rhs by conjugate gradient (cg: 5 layer-wise
// iterations by default, the spec's solver). rhs: one tensor per parameter,
// same shapes and dtype. Side effects are those of lower_loss, run once per
// iteration: in train mode every call moves the BN running statistics.
ImplicitGradResult implicit_gradient(const std::function<Tensor()>& lower_loss,
                                     const std::vector<Tensor>& backbone_params, const std::vector<Tensor>& rhs,
                                     double lambda = kLambda, double delta = kDelta, const CgOptions& cg = {});
// The same with H·v supplied (backbone_params: for the shapes of rhs).
ImplicitGradResult implicit_gradient(const HvpFn& hvp, const std::vector<Tensor>& backbone_params,
                                     const std::vector<Tensor>& rhs, double lambda = kLambda, double delta = kDelta,
                                     const CgOptions& cg = {});

}  // namespace bissl::bilevel
