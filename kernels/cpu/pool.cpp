#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/kernels.h"
#include "kernels/pool_math.h"

namespace bissl::cpu {

using kern_math::pool_window;
using kern_math::PoolWindow;

template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx) {
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow)
        for (int64_t c = 0; c < s.c; ++c) {
          const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c + c;
          T best;
          int64_t bi;
          kern_math::max_pool_cell(s, x, n, oh, ow, c, -std::numeric_limits<T>::infinity(), best, bi);
          y[o] = best;
          idx[o] = bi;
        }
}

template <class T>
void avg_pool2d(const PoolShape& s, const T* x, T* y, bool cip) {
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        PoolWindow wdw = pool_window(s, oh, ow, cip);
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
        PoolWindow wdw = pool_window(s, oh, ow, cip);
        const T* g = gy + ((n * s.ho + oh) * s.wo + ow) * s.c;
        T inv = T(1) / T(wdw.divisor);
        for (int64_t ih = wdw.h0; ih < wdw.h1; ++ih)
          for (int64_t iw = wdw.w0; iw < wdw.w1; ++iw) {
            T* d = gx + ((n * s.h + ih) * s.w + iw) * s.c;
            for (int64_t c = 0; c < s.c; ++c) d[c] += g[c] * inv;
          }
      }
}

template <class T>
void max_pool2d_backward(const PoolShape& s, const T* gy, const int64_t* idx, T* gx) {
#pragma omp parallel for collapse(2) if (s.n * s.h * s.w * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t ih = 0; ih < s.h; ++ih)
      for (int64_t iw = 0; iw < s.w; ++iw)
        for (int64_t c = 0; c < s.c; ++c) {
          const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c + c;
          gx[q] = kern_math::max_pool_input_grad(s, gy, idx, n, ih, iw, c, q);
        }
}

#define INST(T)                                                                   \
  template void max_pool2d<T>(const PoolShape&, const T*, T*, int64_t*);          \
  template void max_pool2d_backward<T>(const PoolShape&, const T*, const int64_t*, T*); \
  template void avg_pool2d<T>(const PoolShape&, const T*, T*, bool);              \
  template void avg_pool2d_backward<T>(const PoolShape&, const T*, T*, bool);
INST(float)
INST(double)

}  // namespace bissl::cpu
