#include "bilevel/implicit.h"

#include "engine/autograd.h"
#include "engine/ops.h"

namespace bissl::bilevel {

MatVec implicit_matvec(const std::function<Tensor()>& lower_loss, const std::vector<Tensor>& params, double lambda,
                       double delta) {
  return implicit_matvec(
      [lower_loss, params](const TensorList& v) {
        BISSL_CHECK(v.size() == params.size(), "implicit_matvec: ", v.size(), " directions for ", params.size(),
                    " parameters");
        return hvp(lower_loss, params, v).hv;
      },
      lambda, delta);
}

MatVec implicit_matvec(const HvpFn& hvp_fn, double lambda, double delta) {
  BISSL_CHECK(lambda + delta > 0, "implicit_gradient: expected lambda + delta > 0, found ", lambda, " + ", delta);
  const double scale = 1.0 / (lambda + delta);
  return [hvp_fn, scale](const TensorList& v) {
    TensorList hv = hvp_fn(v);
    NoGradGuard ng;
    NoForwardADGuard nf;
    TensorList out(v.size());
    for (size_t l = 0; l < v.size(); ++l) out[l] = add(v[l], mul(hv[l].detach(), scale));
    return out;
  };
}

ImplicitGradResult implicit_gradient(const std::function<Tensor()>& lower_loss,
                                     const std::vector<Tensor>& backbone_params, const std::vector<Tensor>& rhs,
                                     double lambda, double delta, const CgOptions& cg) {
  return implicit_gradient([&](const TensorList& v) { return hvp(lower_loss, backbone_params, v).hv; },
                           backbone_params, rhs, lambda, delta, cg);
}

ImplicitGradResult implicit_gradient(const HvpFn& hvp_fn, const std::vector<Tensor>& backbone_params,
                                     const std::vector<Tensor>& rhs, double lambda, double delta,
                                     const CgOptions& cg) {
  BISSL_CHECK(rhs.size() == backbone_params.size(), "implicit_gradient: ", rhs.size(), " right-hand sides for ",
              backbone_params.size(), " parameters");
  for (size_t l = 0; l < rhs.size(); ++l)
    BISSL_CHECK(rhs[l].defined() && rhs[l].shape() == backbone_params[l].shape() &&
                    rhs[l].dtype() == backbone_params[l].dtype(),
                "implicit_gradient: rhs[", l, "] is ",
                rhs[l].defined() ? shape_str(rhs[l].shape()) + " " + dtype_name(rhs[l].dtype()) : "empty",
                ", expected the parameter's ", shape_str(backbone_params[l].shape()), " ",
                dtype_name(backbone_params[l].dtype()));
  CgResult r = conjugate_gradient(implicit_matvec(hvp_fn, lambda, delta), rhs, cg);
  ImplicitGradResult out;
  out.u = std::move(r.x);
  out.residuals = std::move(r.residuals);
  out.iterations = r.iterations;
  out.nan_replaced = r.nan_replaced;
  out.inf_replaced = r.inf_replaced;
  out.curvature = std::move(r.curvature);
  return out;
}

std::vector<Tensor> gauss_newton_product(const std::function<ssl::SplitLoss()>& split,
                                         const std::vector<Tensor>& params, const std::vector<Tensor>& v) {
  // 1. z on the tape, and J·v as its tangent: the parameters carry v.
  ssl::SplitLoss s;
  Tensor zdot;
  {
    TangentScope tangents(params, v, "gauss_newton_product");
    NoForwardADGuard on(false);
    EnableGradGuard gg(true);
    s = split();
    BISSL_CHECK(s.z.defined() && s.loss, "gauss_newton_product: the split gave no tensor or no loss");
    Tensor t = s.z.tangent();
    NoGradGuard ng;
    zdot = t.defined() ? t.detach() : zeros_like(s.z);
  }
  // 2. h = ∇²_z L · (J v), z a leaf here.
  Tensor z0 = s.z.detach();
  z0.requires_grad_(true);
  std::vector<Tensor> h = hvp([&] { return s.loss(z0); }, {z0}, {zdot}).hv;
  // 3. Jᵀ h through z's tape (no tangents now).
  NoForwardADGuard off;
  return grad({s.z}, params, {h[0]});
}

std::vector<Tensor> reference_multi_device_hv(std::vector<Tensor> hv, const std::vector<Tensor>& gauss_newton,
                                              int64_t devices) {
  BISSL_CHECK(devices >= 1, "reference_multi_device_hv: expected devices >= 1, found ", devices);
  BISSL_CHECK(hv.size() == gauss_newton.size(), "reference_multi_device_hv: ", hv.size(), " products but ",
              gauss_newton.size(), " Gauss-Newton terms");
  if (devices == 1) return hv;
  NoGradGuard ng;
  const double drop = 1.0 - 1.0 / double(devices);
  for (size_t i = 0; i < hv.size(); ++i) hv[i] = sub(hv[i], mul(gauss_newton[i], drop));
  return hv;
}

}  // namespace bissl::bilevel
