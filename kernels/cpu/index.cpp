#include <cstring>

#include "kernels/cpu/kernels.h"

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
void take_flat(const T* x, const int64_t* idx, T* out, int64_t n) {
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = x[idx[i]];
}

template <class T>
void scatter_add_flat(const T* g, const int64_t* idx, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[idx[i]] += g[i];
}

#define INST(T)                                                                                \
  template void index_select<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void index_add<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void gather_mid<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);   \
  template void scatter_add_mid<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void take_flat<T>(const T*, const int64_t*, T*, int64_t);                           \
  template void scatter_add_flat<T>(const T*, const int64_t*, T*, int64_t);
INST(float)
INST(double)

}  // namespace bissl::cpu
