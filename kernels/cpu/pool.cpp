#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/kernels.h"
#include "kernels/pool_math.h"

namespace bissl::cpu {

using kern_math::pool_window;
using kern_math::PoolWindow;

// Max pooling, channels innermost: each window's taps are visited once per
// output pixel and compared across all channels at once (vectorisable). The
// same taps in the same order as kern_math::max_pool_cell, the first maximum
// kept on ties: the same values and indices as the CUDA kernel.
template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx) {
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c;
        T* best = y + o;
        int64_t* bi = idx + o;
        for (int64_t c = 0; c < s.c; ++c) best[c] = -std::numeric_limits<T>::infinity(), bi[c] = -1;
        for (int64_t ki = 0; ki < s.k; ++ki) {
          const int64_t ih = oh * s.stride - s.pad + ki;
          if (ih < 0 || ih >= s.h) continue;
          for (int64_t kj = 0; kj < s.k; ++kj) {
            const int64_t iw = ow * s.stride - s.pad + kj;
            if (iw < 0 || iw >= s.w) continue;
            const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c;
            const T* in = x + q;
            for (int64_t c = 0; c < s.c; ++c) {
              const bool take = bi[c] < 0 || in[c] > best[c];
              best[c] = take ? in[c] : best[c];
              bi[c] = take ? q + c : bi[c];
            }
          }
        }
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

// Max pooling's VJP in gather form, channels innermost: for each input
// pixel the windows over it are visited in increasing (oh, ow) order, as
// kern_math::max_pool_input_grad does per element, so the sums are the same
// bits; each gradient element is written once (no atomics, no zero fill).
template <class T>
void max_pool2d_backward(const PoolShape& s, const T* gy, const int64_t* idx, T* gx) {
  using kern_math::first_window_over;
#pragma omp parallel for collapse(2) if (s.n * s.h * s.w * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t ih = 0; ih < s.h; ++ih)
      for (int64_t iw = 0; iw < s.w; ++iw) {
        const int64_t q = ((n * s.h + ih) * s.w + iw) * s.c;
        T* acc = gx + q;
        for (int64_t c = 0; c < s.c; ++c) acc[c] = T(0);
        for (int64_t oh = first_window_over(s, ih); oh < s.ho && oh * s.stride - s.pad <= ih; ++oh)
          for (int64_t ow = first_window_over(s, iw); ow < s.wo && ow * s.stride - s.pad <= iw; ++ow) {
            const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c;
            const int64_t* id = idx + o;
            const T* g = gy + o;
            for (int64_t c = 0; c < s.c; ++c)
              if (id[c] == q + c) acc[c] += g[c];
          }
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
