#include <cmath>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"

namespace bissl::cpu {

namespace {
// Column sums of f(value, column, row) over rows, in double, deterministic.
template <class T, class F>
void column_sums(const T* x, int64_t rows, int64_t c, std::vector<double>& acc, F f) {
  det_column_sums(rows, c, acc, [&](int64_t r, int64_t j) { return f(x[r * c + j], j, r); });
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
  for (int64_t j = 0; j < c; ++j) {
    invstd[j] = T(1.0 / std::sqrt(double(var[j]) + eps));
    if (rm && rv) {
      rm[j] = T((1 - mom) * double(rm[j]) + mom * double(mean[j]));
      rv[j] = T((1 - mom) * double(rv[j]) + mom * double(var[j]) * unbias);
    }
  }
}

template <class T>
void batch_norm_apply(const T* x, const T* mean, const T* invstd, const T* gamma, const T* beta, T* y, int64_t rows,
                      int64_t c) {
  std::vector<T> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) {
    scale[size_t(j)] = invstd[j] * (gamma ? gamma[j] : T(1));
    shift[size_t(j)] = (beta ? beta[j] : T(0)) - mean[j] * scale[size_t(j)];
  }
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) y[r * c + j] = x[r * c + j] * scale[size_t(j)] + shift[size_t(j)];
}

template <class T>
void batch_norm_backward(const T* gy, const T* x, const T* mean, const T* invstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c) {
  std::vector<double> sg, sgx;
  column_sums(gy, rows, c, sg, [](T v, int64_t, int64_t) { return double(v); });
  column_sums(gy, rows, c, sgx, [&](T g, int64_t j, int64_t r) {
    return double(g) * double(x[r * c + j] - mean[j]) * double(invstd[j]);
  });
  for (int64_t j = 0; j < c; ++j) {
    if (gbeta) gbeta[j] = T(sg[size_t(j)]);
    if (ggamma) ggamma[j] = T(sgx[size_t(j)]);
  }
  if (!gx) return;
  double inv_n = 1.0 / double(rows);
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j) {
      double xhat = double(x[r * c + j] - mean[j]) * double(invstd[j]);
      double k = (gamma ? double(gamma[j]) : 1.0) * double(invstd[j]);
      gx[r * c + j] = T(k * (double(gy[r * c + j]) - sg[size_t(j)] * inv_n - xhat * sgx[size_t(j)] * inv_n));
    }
}

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t c,
                        double eps) {
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = x + r * c;
    double s = 0, ss = 0;
    for (int64_t j = 0; j < c; ++j) s += p[j];
    double m = s / double(c);
    for (int64_t j = 0; j < c; ++j) ss += (p[j] - m) * (p[j] - m);
    double rs = 1.0 / std::sqrt(ss / double(c) + eps);
    mean[r] = T(m);
    rstd[r] = T(rs);
    for (int64_t j = 0; j < c; ++j)
      y[r * c + j] = T((p[j] - m) * rs * (gamma ? double(gamma[j]) : 1.0) + (beta ? double(beta[j]) : 0.0));
  }
}

template <class T>
void layer_norm_backward(const T* gy, const T* x, const T* mean, const T* rstd, const T* gamma, T* gx, T* ggamma,
                         T* gbeta, int64_t rows, int64_t c) {
  if (ggamma || gbeta) {
    std::vector<double> sg, sgx;
    column_sums(gy, rows, c, sg, [](T v, int64_t, int64_t) { return double(v); });
    column_sums(gy, rows, c, sgx, [&](T g, int64_t j, int64_t r) {
      return double(g) * double(x[r * c + j] - mean[r]) * double(rstd[r]);
    });
    for (int64_t j = 0; j < c; ++j) {
      if (gbeta) gbeta[j] = T(sg[size_t(j)]);
      if (ggamma) ggamma[j] = T(sgx[size_t(j)]);
    }
  }
  if (!gx) return;
#pragma omp parallel for if (rows * c > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    double a = 0, b = 0;
    for (int64_t j = 0; j < c; ++j) {
      double d = double(gy[r * c + j]) * (gamma ? double(gamma[j]) : 1.0);
      double xhat = double(x[r * c + j] - mean[r]) * double(rstd[r]);
      a += d, b += d * xhat;
    }
    for (int64_t j = 0; j < c; ++j) {
      double d = double(gy[r * c + j]) * (gamma ? double(gamma[j]) : 1.0);
      double xhat = double(x[r * c + j] - mean[r]) * double(rstd[r]);
      gx[r * c + j] = T(double(rstd[r]) * (d - a / double(c) - xhat * b / double(c)));
    }
  }
}

#define INST(T)                                                                                         \
  template void batch_norm_stats<T>(const T*, int64_t, int64_t, T*, T*);                                \
  template void batch_norm_finish<T>(const T*, const T*, T*, T*, T*, int64_t, double, double, int64_t); \
  template void batch_norm_apply<T>(const T*, const T*, const T*, const T*, const T*, T*, int64_t, int64_t); \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);                                                        \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double); \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, \
                                       int64_t);
INST(float)
INST(double)

}  // namespace bissl::cpu
