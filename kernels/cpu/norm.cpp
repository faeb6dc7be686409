#include <array>
#include <cmath>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"
#include "kernels/norm_math.h"

namespace bissl::cpu {

namespace {
// Column sums of f(value, column, row) over rows, in double, deterministic.
template <class T, class F>
void column_sums(const T* x, int64_t rows, int64_t c, std::vector<double>& acc, F f) {
  det_column_sums(rows, c, acc, [&](int64_t r, int64_t j) { return f(x[r * c + j], j, r); });
}
// Several such sums in one pass (det_column_sums_fused: the same bits as
// separate passes); f(row, column) returns every term.
template <size_t K, class F>
void column_sums(int64_t rows, int64_t c, const std::array<std::vector<double>*, K>& acc, F f) {
  det_column_sums_fused<K>(rows, c, acc, f);
}
}  // namespace

template <class T>
void batch_norm_stats(const T* x, int64_t rows, int64_t c, T* mean, T* var) {
  std::vector<double> s, ss;
  column_sums(x, rows, c, s, [](T v, int64_t, int64_t) { return double(v); });
  std::vector<double> m(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) m[size_t(j)] = s[size_t(j)] / double(rows);
  column_sums(x, rows, c, ss, [&](T v, int64_t j, int64_t) {
    double d = double(v) - m[size_t(j)];
    return d * d;
  });
  for (int64_t j = 0; j < c; ++j) {
    mean[j] = T(m[size_t(j)]);
    var[j] = T(ss[size_t(j)] / double(rows));
  }
}

template <class T>
void batch_norm_finish(const T* mean, const T* var, T* invstd, T* rm, T* rv, int64_t c, double eps, double mom,
                       int64_t rows) {
  double unbias = double(rows) / double(rows - 1);
  for (int64_t j = 0; j < c; ++j)
    kern_math::bn_finish_channel(mean[j], var[j], eps, mom, unbias, invstd[j], rm ? rm + j : nullptr,
                                 rv ? rv + j : nullptr);
}

template <class T>
void batch_norm_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y, int64_t rows,
                      int64_t c) {
  std::vector<kern_math::BnAffine<T>> affine(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) affine[size_t(j)] = kern_math::bn_affine(mean[j], invstd[j], gamma, beta, j);
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) y[r * c + j] = x[r * c + j] * affine[size_t(j)].scale + affine[size_t(j)].shift;
}

template <class T>
void batch_norm_backward(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c) {
  std::vector<double> sg, sgx;
  column_sums<2>(rows, c, {&sg, &sgx}, [&](int64_t r, int64_t j) {
    const T g = gy[r * c + j];
    return std::array<double, 2>{double(g), double(g) * double(x[r * c + j] - mean[j]) * double(invstd[j])};
  });
  for (int64_t j = 0; j < c; ++j) {
    if (gbeta) gbeta[j] = T(sg[size_t(j)]);
    if (ggamma) ggamma[j] = T(sgx[size_t(j)]);
  }
  if (!gx) return;
  const double inv_n = 1.0 / double(rows);
  // The channel's part of every element's gradient, once per channel; the
  // row loop is then arithmetic on arrays, which the compiler vectorises.
  std::vector<double> k(static_cast<size_t>(c)), mg(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) {
    const kern_math::BnGradCoef q = kern_math::bn_input_grad_coef(invstd[j], gamma, j, sg[size_t(j)], inv_n);
    k[size_t(j)] = q.k, mg[size_t(j)] = q.mean_g;
  }
  const double *kp = k.data(), *mp = mg.data(), *sp = sgx.data();
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T *g = gy + r * c, *xr = x + r * c;
    T* out = gx + r * c;
    for (int64_t j = 0; j < c; ++j)
      out[j] = kern_math::bn_input_grad_at(g[j], xr[j], mean[j], invstd[j], kp[j], mp[j], sp[j], inv_n);
  }
}

template <class T>
void batch_norm_jvp(const T* x, const T* mean, const T* invstd, const T* gamma, const T* tx, const T* tgamma,
                    const T* tbeta, T* ty, T* tmean, T* tinvstd, int64_t rows, int64_t c) {
  const double inv_n = 1.0 / double(rows);
  std::vector<double> a(static_cast<size_t>(c), 0.0), b(static_cast<size_t>(c), 0.0);
  if (tx) {
    column_sums<2>(rows, c, {&a, &b}, [&](int64_t r, int64_t j) {
      const T t = tx[r * c + j];
      return std::array<double, 2>{double(t), double(t) * kern_math::bn_xhat(x[r * c + j], mean[j], invstd[j])};
    });
    for (int64_t j = 0; j < c; ++j)
      kern_math::bn_stat_tangents(invstd[j], a[size_t(j)], b[size_t(j)], inv_n, tmean[j], tinvstd[j]);
  }
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) {
      const int64_t q = r * c + j;
      ty[q] = kern_math::bn_output_tangent<T>(tx ? double(tx[q]) : 0.0, tx != nullptr,
                                              kern_math::bn_xhat(x[q], mean[j], invstd[j]), double(invstd[j]), gamma,
                                              tgamma, tbeta, j, a[size_t(j)], b[size_t(j)], inv_n);
    }
}

template <class T>
void batch_norm_backward_jvp(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* tinvstd, const T* tgamma, T* tdx, T* tdgamma,
                             T* tdbeta, int64_t rows, int64_t c) {
  const double inv_n = 1.0 / double(rows);
  auto xhat = [&](int64_t r, int64_t j) { return kern_math::bn_xhat(x[r * c + j], mean[j], invstd[j]); };
  auto txhat = [&](int64_t r, int64_t j) {
    return kern_math::bn_xhat_tangent(x[r * c + j], mean[j], invstd[j], tx, tmean, tinvstd, r * c + j, j);
  };
  // p = Σ tgy: a sum of zeros without tgy, which is the 0 it stood for.
  std::vector<double> sg, sgx, p, q;
  column_sums<4>(rows, c, {&sg, &sgx, &p, &q}, [&](int64_t r, int64_t j) {
    const double g = double(gy[r * c + j]), tg = tgy ? double(tgy[r * c + j]) : 0.0, xh = xhat(r, j);
    return std::array<double, 4>{g, g * xh, tg, kern_math::bn_backward_tangent_term(g, tg, xh, txhat(r, j))};
  });
  for (int64_t j = 0; j < c; ++j) {
    if (tdbeta) tdbeta[j] = T(p[size_t(j)]);
    if (tdgamma) tdgamma[j] = T(q[size_t(j)]);
  }
  if (!tdx) return;
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) {
      const int64_t k = r * c + j;
      tdx[k] = kern_math::bn_input_grad_tangent<T>(double(gy[k]), tgy ? double(tgy[k]) : 0.0, xhat(r, j), txhat(r, j),
                                                   double(invstd[j]), gamma, tgamma, tinvstd, j, sg[size_t(j)],
                                                   sgx[size_t(j)], p[size_t(j)], q[size_t(j)], inv_n);
    }
}

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t c,
                        double eps) {
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    kern_math::layer_norm_row(x + r * c, gamma, beta, y + r * c, c, eps, mean[r], rstd[r]);
}

template <class T>
void layer_norm_backward(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c) {
  if (ggamma || gbeta) {
    std::vector<double> sg, sgx;
    column_sums<2>(rows, c, {&sg, &sgx}, [&](int64_t r, int64_t j) {
      const T g = gy[r * c + j];
      return std::array<double, 2>{double(g), double(g) * double(x[r * c + j] - mean[r]) * double(rstd[r])};
    });
    for (int64_t j = 0; j < c; ++j) {
      if (gbeta) gbeta[j] = T(sg[size_t(j)]);
      if (ggamma) ggamma[j] = T(sgx[size_t(j)]);
    }
  }
  if (!gx) return;
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    kern_math::layer_norm_row_backward(gy + r * c, x + r * c, mean[r], rstd[r], gamma, gx + r * c, c);
}

template <class T>
void layer_norm_jvp(const T* x, const T* mean, const T* rstd, const T* gamma, const T* tx, const T* tgamma,
                    const T* tbeta, T* ty, T* tmean, T* trstd, int64_t rows, int64_t c) {
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    kern_math::layer_norm_row_jvp(x + r * c, mean[r], rstd[r], gamma, tx ? tx + r * c : nullptr, tgamma, tbeta,
                                  ty + r * c, tx ? tmean + r : nullptr, tx ? trstd + r : nullptr, c);
}

template <class T>
void layer_norm_backward_jvp(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, const T* tgy,
                             const T* tx, const T* tmean, const T* trstd, const T* tgamma, T* tdx, T* tdgamma,
                             T* tdbeta, int64_t rows, int64_t c) {
  if (tdgamma || tdbeta) {
    std::vector<double> p, q;  // p = Σ tgy (zeros without tgy)
    column_sums<2>(rows, c, {&p, &q}, [&](int64_t r, int64_t j) {
      const int64_t k = r * c + j;
      const double tg = tgy ? double(tgy[k]) : 0.0;
      const double xh = kern_math::bn_xhat(x[k], mean[r], rstd[r]);
      const double txh = kern_math::ln_xhat_tangent(x[k], mean[r], rstd[r], tx ? double(tx[k]) : 0.0,
                                                    tmean ? tmean + r : nullptr, trstd ? trstd + r : nullptr);
      return std::array<double, 2>{tg, kern_math::bn_backward_tangent_term(double(gy[k]), tg, xh, txh)};
    });
    for (int64_t j = 0; j < c; ++j) {
      if (tdbeta) tdbeta[j] = T(p[size_t(j)]);
      if (tdgamma) tdgamma[j] = T(q[size_t(j)]);
    }
  }
  if (!tdx) return;
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    kern_math::layer_norm_row_backward_jvp(gy + r * c, x + r * c, mean[r], rstd[r], gamma, tgy ? tgy + r * c : nullptr,
                                           tx ? tx + r * c : nullptr, tmean ? tmean + r : nullptr,
                                           trstd ? trstd + r : nullptr, tgamma, tdx + r * c, c);
}

#define INST(T)                                                                                         \
  template void batch_norm_stats<T>(const T*, int64_t, int64_t, T*, T*);                                \
  template void batch_norm_finish<T>(const T*, const T*, T*, T*, T*, int64_t, double, double, int64_t); \
  template void batch_norm_apply<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);                                                        \
  template void batch_norm_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                  int64_t, int64_t);                                                    \
  template void batch_norm_backward_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,   \
                                           const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t);          \
  template void layer_norm_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                  int64_t, int64_t);                                                    \
  template void layer_norm_backward_jvp<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,   \
                                           const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t);          \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double); \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);
INST(float)
INST(double)

}  // namespace bissl::cpu
