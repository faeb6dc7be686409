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

}  // namespace bissl::bilevel
