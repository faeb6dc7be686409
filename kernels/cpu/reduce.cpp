#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/parallel.h"

namespace bissl::cpu {

// All reductions see x as [outer, n, inner] and reduce n. Accumulation is in
// double so f32 sums over large batches stay accurate.

template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, double scale) {
  if (inner == 1) {
#pragma omp parallel for if (outer * n > 32768)
    for (int64_t o = 0; o < outer; ++o) {
      const T* p = x + o * n;
      double acc = 0;
      for (int64_t j = 0; j < n; ++j) acc += p[j];
      out[o] = T(acc * scale);
    }
    return;
  }
  // Column sums: stream rows, accumulate a row of doubles per outer index.
#pragma omp parallel for if (outer * n * inner > 32768 && outer > 1)
  for (int64_t o = 0; o < outer; ++o) {
    std::vector<double> acc(size_t(inner), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      const T* p = x + (o * n + j) * inner;
      for (int64_t i = 0; i < inner; ++i) acc[size_t(i)] += p[i];
    }
    for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = T(acc[size_t(i)] * scale);
  }
}

template <class T>
void max_mid(const T* x, T* out, int64_t* idx, int64_t outer, int64_t n, int64_t inner) {
#pragma omp parallel for if (outer * n * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = x + o * n * inner + i;
      T best = p[0];
      int64_t bi = 0;
      for (int64_t j = 1; j < n; ++j) {
        T v = p[j * inner];
        if (v > best || (std::isnan(v) && !std::isnan(best))) best = v, bi = j;
      }
      out[o * inner + i] = best;
      if (idx) idx[o * inner + i] = bi;
    }
}

template <class T>
void logsumexp_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
#pragma omp parallel for if (outer * n * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = x + o * n * inner + i;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) m = std::max(m, p[j * inner]);
      if (!std::isfinite(m)) {
        out[o * inner + i] = m;
        continue;
      }
      double acc = 0;
      for (int64_t j = 0; j < n; ++j) acc += std::exp(double(p[j * inner] - m));
      out[o * inner + i] = T(double(m) + std::log(acc));
    }
}

template <class T>
void softmax_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool log) {
#pragma omp parallel for if (outer * n * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = x + o * n * inner + i;
      T* q = out + o * n * inner + i;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) m = std::max(m, p[j * inner]);
      double acc = 0;
      for (int64_t j = 0; j < n; ++j) acc += std::exp(double(p[j * inner] - m));
      if (log) {
        T lse = T(std::log(acc));
        for (int64_t j = 0; j < n; ++j) q[j * inner] = p[j * inner] - m - lse;
      } else {
        T inv = T(1.0 / acc);
        for (int64_t j = 0; j < n; ++j) q[j * inner] = std::exp(p[j * inner] - m) * inv;
      }
    }
}

template <class T>
void cross_entropy(const T* logits, const int64_t* target, int64_t rows, int64_t c, double ls, T* out) {
  auto row_loss = [&](int64_t r) {
    const T* p = logits + r * c;
    T m = p[0];
    for (int64_t j = 1; j < c; ++j) m = std::max(m, p[j]);
    double acc = 0, sum_logits = 0;
    for (int64_t j = 0; j < c; ++j) acc += std::exp(double(p[j] - m)), sum_logits += p[j];
    double lse = double(m) + std::log(acc);
    double nll = lse - double(p[target[r]]);
    // Only with smoothing: a -inf logit (masked similarity) makes this +inf.
    return ls > 0 ? (1.0 - ls) * nll + ls * (lse - sum_logits / double(c)) : nll;
  };
  *out = T(det_sum(rows, row_loss) / double(rows));
}

template <class T>
double sum_squares(const T* x, int64_t n) {
  return det_sum(n, [&](int64_t i) { return double(x[i]) * double(x[i]); });
}

template <class T>
void sum_squares_into(const T* x, int64_t n, double* out) {
  *out = sum_squares(x, n);
}

template <class T>
void scale_inplace(T* x, int64_t n, double s) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) x[i] = T(x[i] * s);
}

#define INST(T)                                                                  \
  template void sum_mid<T>(const T*, T*, int64_t, int64_t, int64_t, double);     \
  template void max_mid<T>(const T*, T*, int64_t*, int64_t, int64_t, int64_t);   \
  template void logsumexp_mid<T>(const T*, T*, int64_t, int64_t, int64_t);       \
  template void softmax_mid<T>(const T*, T*, int64_t, int64_t, int64_t, bool);   \
  template void cross_entropy<T>(const T*, const int64_t*, int64_t, int64_t, double, T*); \
  template double sum_squares<T>(const T*, int64_t);                             \
  template void sum_squares_into<T>(const T*, int64_t, double*);                 \
  template void scale_inplace<T>(T*, int64_t, double);
INST(float)
INST(double)

}  // namespace bissl::cpu
