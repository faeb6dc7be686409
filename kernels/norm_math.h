#pragma once
// Normalisation formulas shared by host and device code: running moments
// for batch-norm statistics (kernels/cuda/norm.cu; tested on the host in
// tests/engine/test_kernel_math.cpp), and the per-channel and per-row
// formulas of batch norm and layer norm (kernels/cpu/norm.cpp and
// kernels/cuda/norm.cu).
#include <cmath>
#include <cstdint>

#include "kernels/philox.h"  // BISSL_HD

#ifdef __CUDA_ARCH__
#define BISSL_NORM_SQRT ::sqrt
#else
#define BISSL_NORM_SQRT std::sqrt
#endif

namespace bissl::kern_math {

// Count, mean and M2 = Σ (x − mean)² of the values seen so far.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
};

// Welford's update with one more value.
BISSL_HD inline void welford_add(Moments& a, double v) {
  a.n += 1;
  const double d = v - a.mean;
  a.mean += d / a.n;
  a.m2 += d * (v - a.mean);
}

// Chan, Golub and LeVeque's merge of a group (nb values, mean mb, M2 m2b)
// into a. A group of 0 values leaves a unchanged.
BISSL_HD inline void chan_merge(Moments& a, double nb, double mb, double m2b) {
  if (nb <= 0) return;
  const double nab = a.n + nb, d = mb - a.mean;
  a.mean += d * (nb / nab);
  a.m2 += m2b + d * d * (a.n * nb / nab);
  a.n = nab;
}

// ---- batch norm (rows = N·H·W, channels last) ----

// invstd of one channel from its biased variance, and the running statistics'
// momentum update (unbiased variance: unbias = rows / (rows − 1)) when given.
template <class T>
BISSL_HD inline void bn_finish_channel(T mean, T var, double eps, double mom, double unbias, T& invstd, T* rm,
                                       T* rv) {
  invstd = T(1.0 / BISSL_NORM_SQRT(double(var) + eps));
  if (rm && rv) {
    *rm = T((1 - mom) * double(*rm) + mom * double(mean));
    *rv = T((1 - mom) * double(*rv) + mom * double(var) * unbias);
  }
}

// y = x·scale + shift with scale = invstd·γ and shift = β − mean·scale
// (γ = 1, β = 0 when absent).
template <class T>
struct BnAffine {
  T scale, shift;
};
template <class T>
BISSL_HD inline BnAffine<T> bn_affine(T mean, T invstd, const T* gamma, const T* beta, int64_t j) {
  const T scale = invstd * (gamma ? gamma[j] : T(1));
  return {scale, (beta ? beta[j] : T(0)) - mean * scale};
}

// ∂L/∂x of one element from the column sums sg = Σ gy and sgx = Σ gy·x̂:
// k·(gy − sg/n − x̂·sgx/n) with k = γ·invstd. The per-channel part (k and
// sg/n) apart, so that the CPU forms it once per channel, not per element.
struct BnGradCoef {
  double k, mean_g;  // γ·invstd, sg·(1/n)
};
template <class T>
BISSL_HD inline BnGradCoef bn_input_grad_coef(T invstd, const T* gamma, int64_t j, double sg, double inv_rows) {
  return {(gamma ? double(gamma[j]) : 1.0) * double(invstd), sg * inv_rows};
}
template <class T>
BISSL_HD inline T bn_input_grad_at(T gy, T x, T mean, T invstd, double k, double mean_g, double sgx, double inv_rows) {
  const double xhat = double(x - mean) * double(invstd);
  return T(k * (double(gy) - mean_g - xhat * sgx * inv_rows));
}
template <class T>
BISSL_HD inline T bn_input_grad(T gy, T x, T mean, T invstd, const T* gamma, int64_t j, double sg, double sgx,
                                double inv_rows) {
  const BnGradCoef q = bn_input_grad_coef(invstd, gamma, j, sg, inv_rows);
  return bn_input_grad_at(gy, x, mean, invstd, q.k, q.mean_g, sgx, inv_rows);
}

// ---- batch norm tangents (forward mode; closed forms of the JVPs) ----
// Notation: x̂ = (x − mean)·invstd, n rows, ẋ the tangent of x (null
// pointers are zero tangents, a null γ is 1).

// x̂ as the kernels compute it (x − mean in T, as batch_norm_backward).
template <class T>
BISSL_HD inline double bn_xhat(T x, T mean, T invstd) {
  return double(x - mean) * double(invstd);
}

// Forward (batch_norm_train): with the column sums a = Σ ẋ and b = Σ ẋ·x̂,
//   ṁean = a/n,  (invstd)˙ = −invstd²·b/n,
//   ẏ = γ·invstd·(ẋ − a/n − x̂·b/n) + x̂·γ̇ + β̇.
template <class T>
BISSL_HD inline T bn_output_tangent(double tx, bool has_tx, double xhat, double invstd, const T* gamma,
                                    const T* tgamma, const T* tbeta, int64_t j, double a, double b, double inv_rows) {
  double t = 0;
  if (has_tx) t = (gamma ? double(gamma[j]) : 1.0) * invstd * (tx - a * inv_rows - xhat * b * inv_rows);
  if (tgamma) t += xhat * double(tgamma[j]);
  if (tbeta) t += double(tbeta[j]);
  return T(t);
}

// The statistics' tangents from the same sums.
template <class T>
BISSL_HD inline void bn_stat_tangents(T invstd, double a, double b, double inv_rows, T& tmean, T& tinvstd) {
  tmean = T(a * inv_rows);
  tinvstd = T(-double(invstd) * double(invstd) * b * inv_rows);
}

// Backward (batch_norm_backward: dx = γ·invstd·(gy − sg/n − x̂·sgx/n),
// dγ = sgx = Σ gy·x̂, dβ = sg = Σ gy). With
//   x̂˙ = invstd·(ẋ − ṁean) + (x − mean)·(invstd)˙
// its column sums are p = Σ ġy (= dβ˙) and q = Σ (ġy·x̂ + gy·x̂˙) (= dγ˙), and
//   dx˙ = (γ̇·invstd + γ·(invstd)˙)·(gy − sg/n − x̂·sgx/n)
//         + γ·invstd·(ġy − p/n − x̂˙·sgx/n − x̂·q/n).
template <class T>
BISSL_HD inline double bn_xhat_tangent(T x, T mean, T invstd, const T* tx, const T* tmean, const T* tinvstd,
                                       int64_t q, int64_t j) {
  double t = 0;
  if (tx) t += double(tx[q]);
  if (tmean) t -= double(tmean[j]);
  t *= double(invstd);
  if (tinvstd) t += double(x - mean) * double(tinvstd[j]);
  return t;
}
// The summand of q for one element.
BISSL_HD inline double bn_backward_tangent_term(double gy, double tgy, double xhat, double txhat) {
  return tgy * xhat + gy * txhat;
}
template <class T>
BISSL_HD inline T bn_input_grad_tangent(double gy, double tgy, double xhat, double txhat, double invstd,
                                        const T* gamma, const T* tgamma, const T* tinvstd, int64_t j, double sg,
                                        double sgx, double p, double q, double inv_rows) {
  const double g = gamma ? double(gamma[j]) : 1.0;
  const double inner = gy - sg * inv_rows - xhat * sgx * inv_rows;
  const double dk = (tgamma ? double(tgamma[j]) * invstd : 0.0) + (tinvstd ? g * double(tinvstd[j]) : 0.0);
  return T(dk * inner + g * invstd * (tgy - p * inv_rows - txhat * sgx * inv_rows - xhat * q * inv_rows));
}

// ---- layer norm (one row of c values) ----

template <class T>
BISSL_HD inline void layer_norm_row(const T* p, const T* gamma, const T* beta, T* y, int64_t c, double eps,
                                    T& mean, T& rstd) {
  double s = 0, ss = 0;
  for (int64_t j = 0; j < c; ++j) s += double(p[j]);
  const double m = s / double(c);
  for (int64_t j = 0; j < c; ++j) ss += (double(p[j]) - m) * (double(p[j]) - m);
  const double rs = 1.0 / BISSL_NORM_SQRT(ss / double(c) + eps);
  mean = T(m);
  rstd = T(rs);
  for (int64_t j = 0; j < c; ++j)
    y[j] = T((double(p[j]) - m) * rs * (gamma ? double(gamma[j]) : 1.0) + (beta ? double(beta[j]) : 0.0));
}

// ∂L/∂x of one row: rstd·(d − mean(d) − x̂·mean(d·x̂)), d = gy·γ.
template <class T>
BISSL_HD inline void layer_norm_row_backward(const T* gy, const T* x, T mean, T rstd, const T* gamma, T* gx,
                                             int64_t c) {
  double a = 0, b = 0;
  for (int64_t j = 0; j < c; ++j) {
    const double d = double(gy[j]) * (gamma ? double(gamma[j]) : 1.0);
    const double xhat = double(x[j] - mean) * double(rstd);
    a += d, b += d * xhat;
  }
  for (int64_t j = 0; j < c; ++j) {
    const double d = double(gy[j]) * (gamma ? double(gamma[j]) : 1.0);
    const double xhat = double(x[j] - mean) * double(rstd);
    gx[j] = T(double(rstd) * (d - a / double(c) - xhat * b / double(c)));
  }
}

// ---- layer norm tangents (one row; closed forms of the JVPs) ----
// The batch-norm formulas with rows and columns exchanged: statistics per
// row of c values, γ and β per column. Null pointers are zero tangents.

// x̂˙ of one element from the tangents of x and of its row's statistics.
template <class T>
BISSL_HD inline double ln_xhat_tangent(T x, T mean, T rstd, double tx, const T* tmean, const T* trstd) {
  double t = tx;
  if (tmean) t -= double(*tmean);
  t *= double(rstd);
  if (trstd) t += double(x - mean) * double(*trstd);
  return t;
}

// layer_norm: ẏ, and (when tx is given) ṁean = a/c, rstd˙ = −rstd²·b/c with
// the row sums a = Σ ẋ, b = Σ ẋ·x̂.
template <class T>
BISSL_HD inline void layer_norm_row_jvp(const T* x, T mean, T rstd, const T* gamma, const T* tx, const T* tgamma,
                                        const T* tbeta, T* ty, T* tmean, T* trstd, int64_t c) {
  double a = 0, b = 0;
  const double inv_c = 1.0 / double(c);
  if (tx) {
    for (int64_t j = 0; j < c; ++j) {
      a += double(tx[j]);
      b += double(tx[j]) * bn_xhat(x[j], mean, rstd);
    }
    *tmean = T(a * inv_c);
    *trstd = T(-double(rstd) * double(rstd) * b * inv_c);
  }
  for (int64_t j = 0; j < c; ++j)
    ty[j] = bn_output_tangent<T>(tx ? double(tx[j]) : 0.0, tx != nullptr, bn_xhat(x[j], mean, rstd), double(rstd),
                                 gamma, tgamma, tbeta, j, a, b, inv_c);
}

// layer_norm_backward's dx˙ for one row. With d = gy·γ, a = Σ d, b = Σ d·x̂,
// ḋ = ġy·γ + gy·γ̇, ȧ = Σ ḋ, ḃ = Σ (ḋ·x̂ + d·x̂˙):
//   dx˙ = rstd˙·(d − a/c − x̂·b/c) + rstd·(ḋ − ȧ/c − x̂˙·b/c − x̂·ḃ/c).
// The per-element terms of layer_norm_backward's tangent: d = gy·γ, ḋ, x̂, x̂˙.
struct LnTerms {
  double d, td, xh, txh;
};
template <class T>
BISSL_HD inline LnTerms ln_backward_terms(const T* gy, const T* x, T mean, T rstd, const T* gamma, const T* tgy,
                                          const T* tx, const T* tmean, const T* trstd, const T* tgamma, int64_t j) {
  const double g = gamma ? double(gamma[j]) : 1.0;
  return {double(gy[j]) * g,
          (tgy ? double(tgy[j]) * g : 0.0) + (tgamma ? double(gy[j]) * double(tgamma[j]) : 0.0),
          bn_xhat(x[j], mean, rstd), ln_xhat_tangent(x[j], mean, rstd, tx ? double(tx[j]) : 0.0, tmean, trstd)};
}
template <class T>
BISSL_HD inline void layer_norm_row_backward_jvp(const T* gy, const T* x, T mean, T rstd, const T* gamma,
                                                 const T* tgy, const T* tx, const T* tmean, const T* trstd,
                                                 const T* tgamma, T* tdx, int64_t c) {
  double a = 0, b = 0, ta = 0, tb = 0;
  const double inv_c = 1.0 / double(c);
  for (int64_t j = 0; j < c; ++j) {
    const LnTerms e = ln_backward_terms(gy, x, mean, rstd, gamma, tgy, tx, tmean, trstd, tgamma, j);
    a += e.d, b += e.d * e.xh, ta += e.td, tb += e.td * e.xh + e.d * e.txh;
  }
  for (int64_t j = 0; j < c; ++j) {
    const LnTerms e = ln_backward_terms(gy, x, mean, rstd, gamma, tgy, tx, tmean, trstd, tgamma, j);
    const double inner = e.d - a * inv_c - e.xh * b * inv_c;
    tdx[j] = T((trstd ? double(*trstd) * inner : 0.0) +
               double(rstd) * (e.td - ta * inv_c - e.txh * b * inv_c - e.xh * tb * inv_c));
  }
}

}  // namespace bissl::kern_math

#undef BISSL_NORM_SQRT
