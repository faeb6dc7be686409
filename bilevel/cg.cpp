#include "bilevel/cg.h"

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace bissl::bilevel {

namespace {

// Σ over the list of the 0-d tensors s[l] (one device read later, not here).
Tensor sum_list(const TensorList& s) {
  Tensor t = s[0];
  for (size_t l = 1; l < s.size(); ++l) t = add(t, s[l]);
  return t;
}

double host_scalar(const Tensor& t) { return t.item(); }  // item() copies one element back from a device

void check_product(const TensorList& Ad, const TensorList& b) {
  BISSL_CHECK(Ad.size() == b.size(), "conjugate_gradient: the matrix-vector product returned ", Ad.size(),
              " tensors, expected ", b.size());
  for (size_t l = 0; l < b.size(); ++l) {
    BISSL_CHECK(Ad[l].defined(), "conjugate_gradient: the matrix-vector product returned an empty tensor at ", l);
    BISSL_CHECK(Ad[l].shape() == b[l].shape() && Ad[l].dtype() == b[l].dtype(),
                "conjugate_gradient: the matrix-vector product's tensor ", l, " has shape ",
                shape_str(Ad[l].shape()), " ", dtype_name(Ad[l].dtype()), ", expected ", shape_str(b[l].shape()),
                " ", dtype_name(b[l].dtype()));
  }
}

}  // namespace

double list_dot(const TensorList& a, const TensorList& b) {
  BISSL_CHECK(!a.empty() && a.size() == b.size(), "list_dot: expected two lists of the same non-zero length, found ",
              a.size(), " and ", b.size());
  NoGradGuard ng;
  NoForwardADGuard nf;
  TensorList s(a.size());
  for (size_t l = 0; l < a.size(); ++l) s[l] = sum(mul(a[l], b[l]));
  return host_scalar(sum_list(s));
}

CgResult conjugate_gradient(const MatVec& A, const TensorList& b_in, const CgOptions& opts) {
  BISSL_CHECK(!b_in.empty(), "conjugate_gradient: expected at least one tensor in b, found none");
  BISSL_CHECK(opts.iterations >= 0, "conjugate_gradient: expected iterations >= 0, found ", opts.iterations);
  BISSL_CHECK(opts.epsilon >= 0, "conjugate_gradient: expected epsilon >= 0, found ", opts.epsilon);
  BISSL_CHECK(opts.tolerance >= 0, "conjugate_gradient: expected tolerance >= 0, found ", opts.tolerance);
  const size_t L = b_in.size();
  for (size_t l = 0; l < L; ++l) {
    BISSL_CHECK(b_in[l].defined(), "conjugate_gradient: b[", l, "] is an empty tensor");
    // The inner products add 0-d tensors across the list (the residual norm in both variants).
    BISSL_CHECK(b_in[l].dtype() == b_in[0].dtype() && b_in[l].device() == b_in[0].device(),
                "conjugate_gradient: expected every tensor of b in one dtype and device, found ",
                dtype_name(b_in[l].dtype()), "/", device_name(b_in[l].device()), " at ", l, " and ",
                dtype_name(b_in[0].dtype()), "/", device_name(b_in[0].device()), " at 0");
  }
  BISSL_CHECK(is_floating(b_in[0].dtype()), "conjugate_gradient: expected f32 or f64 tensors, found ",
              dtype_name(b_in[0].dtype()));
  // The caller's modes, restored around A (an HVP needs the tape and tangents).
  const bool caller_grad = grad_enabled(), caller_fwd = forward_ad_enabled();
  NoGradGuard no_grad;
  NoForwardADGuard no_fwd;
  auto apply_A = [&](const TensorList& v) {
    TensorList out;
    {
      EnableGradGuard g(caller_grad);
      NoForwardADGuard f(!caller_fwd);
      out = A(v);
    }
    check_product(out, v);
    for (auto& t : out) t = t.detach();
    return out;
  };

  // Standard CG from x₀ = 0 (the reference's recurrences, per tensor l):
  //   r₀ = b − A x₀ = b,   d₀ = r₀
  //   for k = 0 .. iterations−1:
  //     Ad  = A(d)                                   (full coupled product)
  //     α   = r·r / (d·Ad + ε)
  //     x  += α d
  //     r'  = r − α Ad
  //     β   = r'·r' / (r·r + ε)
  //     d   = r' + β d
  //     r   = r'
  // layer-wise: every inner product above is over tensor l alone (α_l, β_l);
  // global: over all tensors (one α, one β). ε = opts.epsilon (kCgEps).
  TensorList x(L), r(L), d(L);
  TensorList rr(L);  // r_l·r_l, carried from one iteration to the next (it is the previous r'·r')
  for (size_t l = 0; l < L; ++l) {
    r[l] = b_in[l].detach();
    d[l] = r[l];
    x[l] = zeros_like(r[l]);
    rr[l] = sum(mul(r[l], r[l]));
  }
  CgResult res;
  res.residuals.push_back(std::sqrt(host_scalar(sum_list(rr))));
  const double stop_at = opts.tolerance * res.residuals[0];
  const double eps = opts.epsilon;

  for (int k = 0; k < opts.iterations; ++k) {
    if (opts.tolerance > 0 && res.residuals.back() <= stop_at) break;
    TensorList Ad = apply_A(d);
    TensorList dAd(L), rr_new(L), r_new(L);
    for (size_t l = 0; l < L; ++l) dAd[l] = sum(mul(d[l], Ad[l]));
    {  // the Rayleigh quotient of A along d: negative = A is not positive definite
      TensorList dd(L);
      for (size_t l = 0; l < L; ++l) dd[l] = sum(mul(d[l], d[l]));
      res.curvature.push_back(host_scalar(div(sum_list(dAd), add(sum_list(dd), 1e-300))));
    }
    if (opts.layerwise) {
      for (size_t l = 0; l < L; ++l) {
        Tensor alpha = div(rr[l], add(dAd[l], eps));
        x[l] = add(x[l], mul(alpha, d[l]));
        r_new[l] = sub(r[l], mul(alpha, Ad[l]));
        rr_new[l] = sum(mul(r_new[l], r_new[l]));
        Tensor beta = div(rr_new[l], add(rr[l], eps));
        d[l] = add(r_new[l], mul(beta, d[l]));
      }
    } else {
      Tensor alpha = div(sum_list(rr), add(sum_list(dAd), eps));
      for (size_t l = 0; l < L; ++l) {
        x[l] = add(x[l], mul(alpha, d[l]));
        r_new[l] = sub(r[l], mul(alpha, Ad[l]));
        rr_new[l] = sum(mul(r_new[l], r_new[l]));
      }
      Tensor beta = div(sum_list(rr_new), add(sum_list(rr), eps));
      for (size_t l = 0; l < L; ++l) d[l] = add(r_new[l], mul(beta, d[l]));
    }
    r = std::move(r_new);
    rr = std::move(rr_new);
    res.residuals.push_back(std::sqrt(host_scalar(sum_list(rr))));
    ++res.iterations;
  }

  // NaN → 0 (BISSL_SPEC.md); ±inf are left as they are.
  // x ≥ −inf holds for every number and fails only for NaN.
  const double neg_inf = -std::numeric_limits<double>::infinity();
  Tensor nan_count;
  for (size_t l = 0; l < L; ++l) {
    Tensor ok = compare(x[l], "ge", neg_inf);
    Tensor bad = sum(cast(sub(ones_like(ok), ok), DType::F64));
    nan_count = nan_count.defined() ? add(nan_count, bad) : bad;
    x[l] = where(ok, x[l], zeros({}, x[l].dtype(), x[l].device()));
  }
  res.nan_replaced = int64_t(std::llround(host_scalar(nan_count)));
  if (opts.nan_to_num) {
    // ±inf → ±max finite of the dtype (torch.nan_to_num's defaults).
    Tensor inf_count;
    for (size_t l = 0; l < L; ++l) {
      const double big = x[l].dtype() == DType::F64 ? std::numeric_limits<double>::max()
                                                    : double(std::numeric_limits<float>::max());
      Tensor hi = compare(x[l], "gt", big), lo = compare(x[l], "lt", -big);
      Tensor bad = sum(cast(add(hi, lo), DType::F64));
      inf_count = inf_count.defined() ? add(inf_count, bad) : bad;
      x[l] = where(hi, full({}, big, x[l].dtype(), x[l].device()), x[l]);
      x[l] = where(lo, full({}, -big, x[l].dtype(), x[l].device()), x[l]);
    }
    res.inf_replaced = int64_t(std::llround(host_scalar(inf_count)));
  }
  res.x = std::move(x);
  return res;
}

}  // namespace bissl::bilevel
