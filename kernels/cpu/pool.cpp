#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/kernels.h"

namespace bissl::cpu {

template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx) {
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow)
        for (int64_t c = 0; c < s.c; ++c) {
          T best = -std::numeric_limits<T>::infinity();
          int64_t bi = -1;
          for (int64_t ki = 0; ki < s.k; ++ki) {
            int64_t ih = oh * s.stride - s.pad + ki;
            if (ih < 0 || ih >= s.h) continue;
            for (int64_t kj = 0; kj < s.k; ++kj) {
              int64_t iw = ow * s.stride - s.pad + kj;
              if (iw < 0 || iw >= s.w) continue;
              int64_t q = ((n * s.h + ih) * s.w + iw) * s.c + c;
              if (bi < 0 || x[q] > best) best = x[q], bi = q;
            }
          }
          int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c + c;
          y[o] = best;
          idx[o] = bi;
        }
}

namespace {
// PyTorch's window arithmetic (ceil_mode off).
struct Window {
  int64_t h0, h1, w0, w1, divisor;
};
inline Window window(const PoolShape& s, int64_t oh, int64_t ow, bool count_include_pad) {
  int64_t h0 = oh * s.stride - s.pad, w0 = ow * s.stride - s.pad;
  int64_t h1 = std::min(h0 + s.k, s.h + s.pad), w1 = std::min(w0 + s.k, s.w + s.pad);
  int64_t full = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, s.h), w1 = std::min(w1, s.w);
  return {h0, h1, w0, w1, count_include_pad ? full : (h1 - h0) * (w1 - w0)};
}
}  // namespace

template <class T>
void avg_pool2d(const PoolShape& s, const T* x, T* y, bool cip) {
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        Window wdw = window(s, oh, ow, cip);
        T* out = y + ((n * s.ho + oh) * s.wo + ow) * s.c;
        for (int64_t c = 0; c < s.c; ++c) out[c] = T(0);
        for (int64_t ih = wdw.h0; ih < wdw.h1; ++ih)
          for (int64_t iw = wdw.w0; iw < wdw.w1; ++iw) {
            const T* in = x + ((n * s.h + ih) * s.w + iw) * s.c;
            for (int64_t c = 0; c < s.c; ++c) out[c] += in[c];
          }
        T inv = T(1) / T(wdw.divisor);
        for (int64_t c = 0; c < s.c; ++c) out[c] *= inv;
      }
}

template <class T>
void avg_pool2d_backward(const PoolShape& s, const T* gy, T* gx, bool cip) {
  std::memset(gx, 0, size_t(s.n * s.h * s.w * s.c) * sizeof(T));
#pragma omp parallel for if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        Window wdw = window(s, oh, ow, cip);
        const T* g = gy + ((n * s.ho + oh) * s.wo + ow) * s.c;
        T inv = T(1) / T(wdw.divisor);
        for (int64_t ih = wdw.h0; ih < wdw.h1; ++ih)
          for (int64_t iw = wdw.w0; iw < wdw.w1; ++iw) {
            T* d = gx + ((n * s.h + ih) * s.w + iw) * s.c;
            for (int64_t c = 0; c < s.c; ++c) d[c] += g[c] * inv;
          }
      }
}

#define INST(T)                                                                   \
  template void max_pool2d<T>(const PoolShape&, const T*, T*, int64_t*);          \
  template void avg_pool2d<T>(const PoolShape&, const T*, T*, bool);              \
  template void avg_pool2d_backward<T>(const PoolShape&, const T*, T*, bool);
INST(float)
INST(double)

}  // namespace bissl::cpu
