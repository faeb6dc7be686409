#include <cstring>

#include "kernels/cpu/kernels.h"
#include "kernels/philox.h"

namespace bissl::cpu {

template <class T>
void index_select(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
  (void)n;
#pragma omp parallel for if (outer * k * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      std::memcpy(out + (o * k + j) * inner, x + (o * n + idx[j]) * inner, size_t(inner) * sizeof(T));
}

template <class T>
void index_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
#pragma omp parallel for if (outer * k * inner > 32768 && outer > 1)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j) {
      T* d = out + (o * n + idx[j]) * inner;
      const T* s = g + (o * k + j) * inner;
      for (int64_t i = 0; i < inner; ++i) d[i] += s[i];
    }
}

template <class T>
void gather_mid(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
#pragma omp parallel for if (outer * k * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t q = (o * k + j) * inner + i;
        out[q] = x[(o * n + idx[q]) * inner + i];
      }
}

template <class T>
void scatter_add_mid(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
#pragma omp parallel for if (outer * k * inner > 32768 && outer > 1)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t q = (o * k + j) * inner + i;
        out[(o * n + idx[q]) * inner + i] += g[q];
      }
}

template <class T>
void gather_rows(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
#pragma omp parallel for if (outer * k * inner > 32768)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      std::memcpy(out + (o * k + j) * inner, x + (o * n + idx[o * k + j]) * inner, size_t(inner) * sizeof(T));
}

template <class T>
void scatter_rows_add(const T* g, const int64_t* idx, T* out, int64_t outer, int64_t n, int64_t k, int64_t inner) {
#pragma omp parallel for if (outer * k * inner > 32768 && outer > 1)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j) {
      T* d = out + (o * n + idx[o * k + j]) * inner;
      const T* s = g + (o * k + j) * inner;
      for (int64_t i = 0; i < inner; ++i) d[i] += s[i];
    }
}

template <class T>
void take_flat(const T* x, const int64_t* idx, T* out, int64_t n, int64_t /*limit: checked by the op*/) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = x[idx[i]];
}

template <class T>
void scatter_add_flat(const T* g, const int64_t* idx, T* out, int64_t n, int64_t /*limit: checked by the op*/) {
  for (int64_t i = 0; i < n; ++i) out[idx[i]] += g[i];
}

template <class T>
void one_hot(const int64_t* idx, T* out, int64_t n, int64_t classes) {
  for (int64_t i = 0; i < n * classes; ++i) out[i] = T(idx[i / classes] == i % classes);
}

template <class T>
void dropout_mask(T* out, int64_t n, double p, uint64_t seed, uint64_t offset) {
  T keep = T(1.0 / (1.0 - p));
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = philox_unit(philox_words(seed, offset, uint64_t(i))) >= p ? keep : T(0);
}

bool indices_in_range(const int64_t* idx, int64_t n, int64_t hi, int64_t* bad) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= hi) {
      *bad = idx[i];
      return false;
    }
  return true;
}

#define INST(T)                                                                                \
  template void index_select<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void index_add<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void gather_mid<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);   \
  template void scatter_add_mid<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void gather_rows<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);  \
  template void scatter_rows_add<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void take_flat<T>(const T*, const int64_t*, T*, int64_t, int64_t);                           \
  template void scatter_add_flat<T>(const T*, const int64_t*, T*, int64_t, int64_t);                           \
  template void one_hot<T>(const int64_t*, T*, int64_t, int64_t);                                     \
  template void dropout_mask<T>(T*, int64_t, double, uint64_t, uint64_t);
INST(float)
INST(double)
template void index_select<int64_t>(const int64_t*, const int64_t*, int64_t*, int64_t, int64_t, int64_t, int64_t);

}  // namespace bissl::cpu
