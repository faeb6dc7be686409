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
