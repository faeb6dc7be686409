#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/kernels.h"
#include "kernels/pool_math.h"

namespace bissl::cpu {

using kern_math::pool_window;
using kern_math::PoolWindow;

// Max pooling and its gathered VJP, one pixel's channels at a time (the
// shared formulas in pool_math.h; CUDA runs them one channel per thread, with
// the same taps and windows in the same order: the same values and indices).
template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx) {
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c;
        kern_math::max_pool_cells(s, x, n, oh, ow, 0, s.c, -std::numeric_limits<T>::infinity(), y + o, idx + o);
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
        kern_math::max_pool_input_grads(s, gy, idx, n, ih, iw, 0, s.c, gx + ((n * s.h + ih) * s.w + iw) * s.c);
}

#define INST(T)                                                                   \
  template void max_pool2d<T>(const PoolShape&, const T*, T*, int64_t*);          \
  template void max_pool2d_backward<T>(const PoolShape&, const T*, const int64_t*, T*); \
  template void avg_pool2d<T>(const PoolShape&, const T*, T*, bool);              \
  template void avg_pool2d_backward<T>(const PoolShape&, const T*, T*, bool);
INST(float)
INST(double)

}  // namespace bissl::cpu
