#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/kernels.h"
#include "kernels/pool_math.h"

namespace bissl::cpu {

using kern_math::pool_window;
using kern_math::PoolWindow;

// Max pooling: the shared formula (pool_math.h) over blocks of a pixel's
// channels (CUDA runs it one channel per thread, with the same taps in the
// same order: the same values and indices).
template <class Off, class T>
void max_pool2d_blocks(const PoolShape& s, const T* x, T* y, int64_t* idx) {
  constexpr int64_t kBlock = 32;
#pragma omp parallel for collapse(2) if (s.n * s.ho * s.wo * s.c > 32768)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        const int64_t o = ((n * s.ho + oh) * s.wo + ow) * s.c;
        for (int64_t c0 = 0; c0 < s.c; c0 += kBlock)
          kern_math::max_pool_cells<kBlock, Off>(s, x, n, oh, ow, c0, std::min(kBlock, s.c - c0),
                                                 -std::numeric_limits<T>::infinity(), y + o + c0, idx + o + c0);
      }
}

template <class T>
void max_pool2d(const PoolShape& s, const T* x, T* y, int64_t* idx) {
  // Offsets within a window: 32 bits unless k rows of the image do not fit.
  if (s.k * s.w * s.c < (int64_t(1) << 31)) max_pool2d_blocks<int32_t>(s, x, y, idx);
  else max_pool2d_blocks<int64_t>(s, x, y, idx);
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

// Max pooling's VJP as a scatter, one image per thread: each output adds its
// gradient at its argmax, outputs in increasing order. An input element
// therefore receives its windows' gradients in increasing window order,
// starting from +0: the same additions in the same order as the gather form
// the CUDA kernel runs (kern_math::max_pool_input_grads), bit for bit, at a
// fraction of the reads (one per output instead of one per window and input).
template <class T>
void max_pool2d_backward(const PoolShape& s, const T* gy, const int64_t* idx, T* gx) {
  const int64_t in_image = s.h * s.w * s.c, out_image = s.ho * s.wo * s.c;
#pragma omp parallel for if (s.n * in_image > 32768)
  for (int64_t n = 0; n < s.n; ++n) {
    std::memset(gx + n * in_image, 0, size_t(in_image) * sizeof(T));
    for (int64_t o = n * out_image; o < (n + 1) * out_image; ++o)
      if (idx[o] >= 0) gx[idx[o]] += gy[o];
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
